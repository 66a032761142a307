"""Checkpoints saved by earlier versions keep loading and computing the same outputs.

`tests/fixtures/legacy_checkpoints/` holds tiny checkpoints written by `make_checkpoints.py` on an earlier commit
(named in each folder's `made_with.txt`) with the logits they gave then. The remote code they shipped is kept once,
in `vendor/<commit>/`, frozen as that commit wrote it. They load three ways: through this version of the library,
through their own remote code (the folder as it was saved: weights plus that code), and, re-saved by this version,
through this version's remote code.
"""

import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_fresh
from safetensors.torch import load_file
from transformers import AutoTokenizer, configuration_utils

from modeling_multitask import MultiTaskModel


LEGACY = Path(__file__).parent / "fixtures" / "legacy_checkpoints"
VARIANTS = sorted(path.name for path in LEGACY.iterdir() if (path / "config.json").is_file())


def expected_of(folder: Path) -> tuple[dict, dict]:
    stored = load_file(folder / "expected.safetensors")
    inputs = {key.removeprefix("input_"): value for key, value in stored.items() if key.startswith("input_")}
    logits = {key.removeprefix("logits_"): value for key, value in stored.items() if key.startswith("logits_")}
    return inputs, logits


def as_saved(variant: str, tmp_path: Path) -> Path:
    """The checkpoint folder as `save_pretrained` wrote it: its files plus the remote code of its commit."""
    folder = tmp_path / variant
    shutil.copytree(LEGACY / variant, folder)
    commit = (folder / "made_with.txt").read_text().strip()
    for code in (LEGACY / "vendor" / commit).glob("*.py"):
        shutil.copy(code, folder / code.name)
    return folder


def test_fixtures_are_present():
    assert VARIANTS == ["fusion_private", "plain_mean"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_this_version_computes_what_the_legacy_checkpoint_did(variant):
    inputs, expected = expected_of(LEGACY / variant)
    model = MultiTaskModel.from_pretrained(LEGACY / variant).eval()
    with torch.no_grad():
        every_task = model(**inputs).task_logits
        one_by_one = {task: model(**inputs, task_ids=i).logits for i, task in enumerate(model.config.task_names)}
    assert sorted(every_task) == sorted(expected)
    for task, logits in expected.items():
        torch.testing.assert_close(every_task[task], logits, rtol=0, atol=1e-6)
        torch.testing.assert_close(one_by_one[task], logits, rtol=0, atol=1e-6)


@pytest.mark.skipif(
    not hasattr(configuration_utils, "SubConfigSpec"),
    reason="the remote code these checkpoints shipped imports SubConfigSpec (transformers >= 5.20); re-saved by this "
    "version, they load on 5.17 too",
)
@pytest.mark.parametrize("variant", VARIANTS)
def test_legacy_checkpoint_loads_with_its_own_remote_code(variant, tmp_path):
    inputs, expected = expected_of(LEGACY / variant)
    _, outputs = run_fresh(as_saved(variant, tmp_path), inputs, tmp_path)
    for task, logits in expected.items():
        torch.testing.assert_close(outputs[task], logits, rtol=0, atol=1e-6)


def test_legacy_checkpoint_resaved_loads_through_this_versions_remote_code(tmp_path):
    folder = LEGACY / "fusion_private"
    inputs, expected = expected_of(folder)
    MultiTaskModel.from_pretrained(folder).save_pretrained(tmp_path / "resaved")
    AutoTokenizer.from_pretrained(folder).save_pretrained(tmp_path / "resaved")
    _, outputs = run_fresh(tmp_path / "resaved", inputs, tmp_path)
    for task, logits in expected.items():
        torch.testing.assert_close(outputs[task], logits, rtol=0, atol=1e-6)
