"""What a training run may write to its output folder and publish: no secrets, no local absolute paths.

The output folder is what `multitask-push` (or `training.push_to_hub`) uploads, so everything written there is
treated as public: the experiment copy loses its secrets and its absolute paths, the encoder is named by its Hub id
(or a relative folder name), and the Hub token is kept out of the `TrainingArguments` that the Trainer pickles into
every checkpoint's `training_args.bin`.
"""

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..hub import clean_tokenizer_config, save_pipeline_files
from .experiment import DataSource, Experiment
from .pretrained import published_encoder_name


# Keys whose values are credentials, wherever they sit in the experiment (`training.hub_token` above all).
SECRET_KEY = re.compile(r"(^|_)(token|secret|password|api_key|apikey)$", re.IGNORECASE)
# TrainingArguments fields that make the Trainer push on its own: the CLI publishes the final checkpoint itself.
PUBLISH_FIELDS = ("push_to_hub", "hub_token")


@dataclasses.dataclass
class PublishSettings:
    """How the training CLI publishes the final checkpoint (taken out of `training:`)."""

    push_to_hub: bool = False
    hub_token: str | None = None  # used for the push only; None: HF_TOKEN or the saved login

    def __repr__(self) -> str:  # never print the token
        return f"PublishSettings(push_to_hub={self.push_to_hub}, hub_token={'***' if self.hub_token else None})"


def split_publish_settings(experiment: Experiment) -> tuple[Experiment, PublishSettings]:
    """The experiment without `push_to_hub` / `hub_token` in `training:`, and those settings on their own.

    The Trainer would otherwise push every checkpoint (with `training_args.bin`, which holds absolute paths) and
    pickle the token into `training_args.bin`; the CLI pushes the cleaned final folder once, at the end.
    """
    training = {key: value for key, value in experiment.training.items() if key not in PUBLISH_FIELDS}
    settings = PublishSettings(
        push_to_hub=bool(experiment.training.get("push_to_hub", False)),
        hub_token=experiment.training.get("hub_token"),
    )
    return dataclasses.replace(experiment, training=training), settings


def publishable_path(value: str, base_dir: Path) -> str:
    """A local path as it may be published: relative to the experiment's folder, or only its file name."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        return value
    try:
        return path.resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return path.name


def _looks_like_absolute_path(value: str) -> bool:
    return value.startswith("~") or os.path.isabs(value)


def publishable_experiment(raw: Any, base_dir: Path) -> Any:
    """The parsed experiment file with secret keys dropped and every absolute path made relative (see
    `publishable_path`); the encoder is named as `published_encoder_name` names it."""

    def clean(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            return {k: clean(v, str(k)) for k, v in node.items() if not SECRET_KEY.search(str(k))}
        if isinstance(node, list):
            return [clean(item, key) for item in node]
        if isinstance(node, str) and key == "base_model":
            return published_encoder_name(node) if _looks_like_absolute_path(node) else node
        if isinstance(node, str) and _looks_like_absolute_path(node):
            return publishable_path(node, base_dir)
        return node

    return clean(raw)


def _data_summary(source: DataSource, base_dir: Path) -> dict:
    if source.dataset is not None:
        summary = {"dataset": source.dataset, "splits": dict(source.splits)}
        return summary | ({"config": source.config} if source.config else {})
    files = {}
    for split, value in source.files.items():
        if isinstance(value, dict):
            files[split] = {column: publishable_path(str(path), base_dir) for column, path in value.items()}
        else:
            files[split] = publishable_path(str(value), base_dir)
    return {"files": files}


def training_data(experiment: Experiment) -> dict[str, dict]:
    """Task -> where its examples came from: `{"dataset": hub id, "config": ..., "splits": {...}}` or
    `{"files": {split: relative path}}`, for `metrics.json` and the model card."""
    base_dir = experiment.path.resolve().parent if experiment.path is not None else Path.cwd()
    return {task.name: _data_summary(task.data, base_dir) for task in experiment.tasks}


class ServableCheckpoints(TrainerCallback):
    """Makes every `checkpoint-<step>` folder servable as the final folder is: `pipeline(model=checkpoint,
    trust_remote_code=True)` needs the pipeline files and their `custom_pipelines` entry in `config.json`, which the
    Trainer's own save does not write (and a clean `tokenizer_config.json`, see `hub.clean_tokenizer_config`)."""

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            save_pipeline_files(folder)
            clean_tokenizer_config(folder)
