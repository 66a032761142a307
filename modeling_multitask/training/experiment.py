"""The experiment file (`experiment.yaml`), parsed once and strictly into typed objects.

```yaml
model:
  base_model: "sentence-transformers/all-MiniLM-L6-v2"   # a local folder or a Hub id
  dropout: 0.1
  pooling: mean                                         # optional: cls | mean
  fusion: {type: attention, hidden_size: 384}           # optional
  task_private_layers: 0                                # optional: top encoder layers copied per task
  word_splitting: whitespace                            # optional: whitespace | punctuation
tasks:
  - name: intent
    type: sequence_classification
    data: {train: data/train.jsonl, validation: data/dev.jsonl}
    text_column: text
    label_column: intent
sampling: {strategy: temperature, temperature: 2.0}
training:                                               # any transformers.TrainingArguments field
  output_dir: runs/demo
  num_train_epochs: 3
```

Unknown keys are rejected with their path and the nearest valid key. Relative data and label-file paths are read
from the folder holding the experiment file; `training.output_dir`, as everywhere in transformers, is relative to
the working directory.
"""

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments

from configuration_multitask import (
    TASK_TYPES,
    TaskType,
    check_model_settings,
    check_task_name,
    check_task_spec,
    check_unique_task_names,
)


class ExperimentError(ValueError):
    """A mistake in the experiment file or its data: reported to the user without a traceback."""


SPLITS = ("train", "validation", "test")
FILE_FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "conll", "lines", "squad")
SAMPLING_STRATEGIES = ("proportional", "temperature", "uniform", "round_robin")
MIN_TEMPERATURE = 0.05  # n^(1/0.05) = n^20 stays a finite float up to n = 10^15 examples
UNSEEN_LABEL_RULES = ("error", "unk")
# Each type's built-in metrics, the first its primary one (defined by the type: see `task_type.TaskType.metrics`).
DEFAULT_METRICS = {name: [metric.name for metric in kind.metrics] for name, kind in TASK_TYPES.items()}


# Defaults where the experiment says nothing: what a multi-task run needs from the Trainer.
TRAINING_DEFAULTS = {
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "learning_rate": 5e-5,
    "num_train_epochs": 3,
    "warmup_steps": 0.1,  # a float below 1 is a fraction of the total steps
    "logging_steps": 10,
    "save_total_limit": 2,
    "report_to": "none",
}


@dataclasses.dataclass
class DataSource:
    """Where a task's examples come from: local files per split, or a Hub dataset.

    A split is a file path (format from its suffix, or `format`), or a mapping from column name to a text file with
    one example per line (the "lines" format, e.g. ATIS's `seq.in` / `seq.out` / `label`).
    """

    files: dict[str, Any] = dataclasses.field(default_factory=dict)  # split -> path or {column: path}
    format: str | None = None
    dataset: str | None = None  # Hub dataset id
    config: str | None = None
    splits: dict[str, str] = dataclasses.field(default_factory=dict)  # our split -> the Hub dataset's split name
    delimiter: str | None = None
    has_header: bool = True
    column_names: list[str] | None = None  # for csv/tsv files without a header
    quoting: bool | None = None  # csv/tsv: honour "..." quotes; None: on for csv, off for tsv (GLUE's bare quotes)
    streaming: bool = False  # read the train split lazily while training (see docs/PERFORMANCE.md, "Streaming")
    num_examples: int | None = None  # a streamed train split's size, for the sampling weights (else one counting pass)

    def key(self) -> tuple:
        """Identifies the data, so that tasks reading the same examples can share one encoder pass."""
        return (
            repr(sorted(self.files.items())),
            self.dataset,
            self.config,
            repr(sorted(self.splits.items())),
            self.streaming,
        )


@dataclasses.dataclass
class TaskSpec:
    """One task of the experiment file. The keys every type has are fields; the keys a type adds (its definition's
    `settings`, which go into the model config, and `data_settings`, which only the data reader uses) are in
    `settings` and `data_settings`, and read like fields too (`task.decoding`, `task.label_separator`)."""

    name: str
    type: str
    data: DataSource
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    labels: list[str] | None = None
    num_labels: int | None = None
    unseen_labels: str = "error"
    max_length: int = 128
    loss_weight: float = 1.0
    metrics: list[str] | None = None
    settings: dict = dataclasses.field(default_factory=dict)  # model-side keys of the task's type
    data_settings: dict = dataclasses.field(default_factory=dict)  # data-side keys of the task's type
    # Not an experiment key: whether max_length is the default, which an encoder with fewer positions may lower.
    max_length_is_default: bool = dataclasses.field(default=False, init=False, repr=False)

    @property
    def definition(self) -> TaskType:
        return TASK_TYPES[self.type]

    @property
    def is_token_level(self) -> bool:
        return self.definition.head_input == "token"

    def __getattr__(self, key: str):
        # A type's own keys read like fields (`task.decoding`); a key another type owns reads as its default.
        for section in ("settings", "data_settings"):
            values = self.__dict__.get(section) or {}
            if key in values:
                return values[key]
        for kind in TASK_TYPES.values():
            if key in kind.settings or key in kind.data_settings:
                return {**kind.settings, **kind.data_settings}[key]
        raise AttributeError(f"TaskSpec has no attribute {key!r}.")

    def model_spec(self, labels: list[str] | None) -> dict:
        """This task's entry of `MultiTaskConfig.tasks`: its model-side keys, with the label names of the data."""
        return {
            "name": self.name,
            "type": self.type,
            "labels": labels,
            "loss_weight": self.loss_weight,
            "max_length": self.max_length,  # the pipeline reads QA windows and choice pairs at it, as evaluation does
            **self.settings,
        }

    @property
    def has_validation(self) -> bool:
        return "validation" in (self.data.splits if self.data.dataset is not None else self.data.files)


@dataclasses.dataclass
class ModelSpec:
    base_model: str
    dropout: float = 0.1
    pooling: str = "cls"
    fusion: dict | None = None
    task_private_layers: int = 0  # the top encoder layers each task gets its own copy of (0: all shared)
    word_splitting: str = "whitespace"  # what a word is: "whitespace", or "punctuation" (split off, as in CoNLL)


@dataclasses.dataclass
class SamplingSpec:
    strategy: str = "temperature"
    temperature: float = 2.0
    max_examples_per_task: int | None = None
    eval_max_examples_per_task: int | None = None  # evaluate each task on its first N validation/test examples
    joint: bool = True  # tasks with the same data and text columns train together, one encoder pass per example
    group_by_length: bool = False  # batches of similar length within a task (less padding)


@dataclasses.dataclass
class DataPipelineSpec:
    """The experiment's `data_pipeline:` section: how task data becomes features (see `data.prepare_data`)."""

    cache: bool = (
        True  # keep tokenised features on disk and reuse them while data, tokenizer and settings are the same
    )
    cache_dir: str | None = None  # where; None: $MULTITASK_CACHE, else <HF datasets cache>/multitask
    num_proc: int = 1  # processes that tokenise each split (`datasets.Dataset.map(num_proc=...)`)


@dataclasses.dataclass
class Experiment:
    model: ModelSpec
    tasks: list[TaskSpec]
    sampling: SamplingSpec
    training: dict
    path: Path | None = None
    seed: int = 42
    data_pipeline: DataPipelineSpec = dataclasses.field(default_factory=DataPipelineSpec)

    def training_arguments(self, **overrides) -> TrainingArguments:
        arguments = {"seed": self.seed, **self.training, **overrides}
        try:
            return TrainingArguments(**arguments)
        except (ValueError, TypeError) as error:
            raise ExperimentError(f"training: {error}") from error


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _nearest(key: str, allowed) -> str:
    match = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


def _check_keys(section: Any, allowed, path: str, required=(), listing: str | None = None) -> dict:
    """`section` if it is a mapping of `allowed` keys with every `required` one set; `listing` replaces the list of
    allowed keys in the error (the training section's are TrainingArguments' hundred-odd fields)."""
    if not isinstance(section, dict):
        raise ExperimentError(f"{path} must be a mapping, got {type(section).__name__}: {section!r}.")
    for key in section:
        if key not in allowed:
            listing = listing or ", ".join(allowed)
            raise ExperimentError(f"Unknown key '{path}.{key}'.{_nearest(str(key), allowed)} Allowed here: {listing}.")
    for key in required:
        if section.get(key) is None:
            raise ExperimentError(f"Missing required key '{path}.{key}'.")
    return section


def _resolve(path: Any, base: Path, where: str) -> Path:
    if not isinstance(path, str):
        raise ExperimentError(f"{where} must be a file path, got {path!r}.")
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else (base / resolved)


def _parse_data(raw: Any, base: Path, where: str) -> DataSource:
    allowed = [
        "train",
        "validation",
        "test",
        "format",
        "dataset",
        "config",
        "splits",
        "delimiter",
        "has_header",
        "column_names",
        "quoting",
        "streaming",
        "num_examples",
    ]
    raw = _check_keys(raw, allowed, where)
    source = DataSource(
        format=raw.get("format"),
        dataset=raw.get("dataset"),
        config=raw.get("config"),
        delimiter=raw.get("delimiter"),
        has_header=raw.get("has_header", True),
        column_names=raw.get("column_names"),
        quoting=raw.get("quoting"),
        streaming=raw.get("streaming", False),
        num_examples=raw.get("num_examples"),
    )
    for flag in ("has_header", "quoting", "streaming"):
        value = getattr(source, flag)
        if value is not None and not isinstance(value, bool):
            raise ExperimentError(f"{where}.{flag} must be true or false, got {value!r}.")
    if source.format is not None and source.format not in FILE_FORMATS:
        raise ExperimentError(
            f"{where}.format '{source.format}' is unknown.{_nearest(source.format, FILE_FORMATS)} "
            f"Allowed: {', '.join(FILE_FORMATS)}."
        )
    _check_streaming_keys(source, where)
    if source.dataset is not None:
        splits = raw.get("splits") or {"train": "train", "validation": "validation"}
        source.splits = dict(_check_keys(splits, SPLITS, f"{where}.splits"))
        if any(raw.get(split) for split in SPLITS):
            raise ExperimentError(
                f"{where}: give either a Hub 'dataset' (with 'splits') or local files per split, not both."
            )
        return source
    for split in SPLITS:
        value = raw.get(split)
        if value is None:
            continue
        if isinstance(value, dict):
            source.files[split] = {
                column: _resolve(p, base, f"{where}.{split}.{column}") for column, p in value.items()
            }
        else:
            source.files[split] = _resolve(value, base, f"{where}.{split}")
    if "train" not in source.files:
        raise ExperimentError(f"{where} needs a 'train' file (or a Hub 'dataset').")
    return source


def _check_streaming_keys(source: DataSource, where: str) -> None:
    count = source.num_examples
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise ExperimentError(f"{where}.num_examples must be a positive integer (the train examples), got {count!r}.")
    if count is not None and not source.streaming:
        raise ExperimentError(
            f"{where}.num_examples is read only for a streamed train split: set {where}.streaming: true, or drop "
            "num_examples (a split read in full is counted)."
        )
    if source.streaming and source.dataset is not None and count is None:
        raise ExperimentError(
            f"{where}: a streamed Hub dataset cannot be counted before training; give its train size as "
            f"{where}.num_examples (it sets the task's sampling weight)."
        )


def _check_streamed_tasks(tasks: list[TaskSpec], sampling: SamplingSpec, training: dict) -> None:
    """What a stream cannot do without: a step count (it has no length, so no epochs), label names it cannot infer
    (a Hub stream is not read before training), and lengths read up front (`group_by_length`)."""
    streamed = [(index, task) for index, task in enumerate(tasks) if task.data.streaming]
    if not streamed:
        return
    index, task = streamed[0]
    where = f"tasks[{index}] ({task.name}).data.streaming"
    max_steps = training.get("max_steps")
    if max_steps is None or max_steps == -1:
        raise ExperimentError(
            f"{where} is true, so training.max_steps is required: a stream has no length, so num_train_epochs cannot "
            "be counted. Set training.max_steps (e.g. --set training.max_steps=10000)."
        )
    if sampling.group_by_length:
        raise ExperimentError(
            f"{where} is true, but sampling.group_by_length needs every example's length before training: set "
            "sampling.group_by_length: false, or stream no task."
        )
    for index, task in streamed:
        needs_labels = task.definition.min_labels is not None and task.labels is None and task.num_labels is None
        if task.data.dataset is not None and needs_labels:
            raise ExperimentError(
                f"tasks[{index}] ({task.name}) streams the Hub dataset '{task.data.dataset}', which is not read "
                "before training, so its labels cannot be inferred: list them in the task's labels."
            )


# TaskSpec keys whose value is one plain scalar: a wrong type fails here, not deep inside reading or training.
_SCALAR_TYPES = {
    "text_column": str,
    "text_pair_column": str,
    "label_column": str,
    "unseen_labels": str,
    "num_labels": int,
    "max_length": int,
}


def _check_scalar_types(raw: dict, where: str) -> None:
    for key, expected in _SCALAR_TYPES.items():
        value = raw.get(key)
        if value is None or (isinstance(value, expected) and not isinstance(value, bool)):
            continue
        hint = f" (write {value} without quotes)" if isinstance(value, str) and value.strip().isdigit() else ""
        raise ExperimentError(
            f"{where}.{key} must be {'an integer' if expected is int else 'a string'}, got {value!r}{hint}."
        )
    if raw.get("num_labels") is not None and raw["num_labels"] < 1:
        raise ExperimentError(f"{where}.num_labels must be a positive integer, got {raw['num_labels']!r}.")


def _read_utf8(path: Path, what: str) -> str:
    """A text file's contents as UTF-8 (never the locale's encoding: `LC_ALL=C` would fail on any non-ASCII byte),
    without a leading byte-order mark."""
    if path.is_dir():
        raise ExperimentError(f"{what}: {path} is a directory, not a file.")
    if not path.is_file():
        raise ExperimentError(f"{what}: {path} does not exist.")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ExperimentError(
            f"{what}: {path} is not UTF-8 text ({error.reason} at byte {error.start}): save it as UTF-8."
        ) from None


def _parse_task(raw: Any, index: int, base: Path) -> TaskSpec:
    where = f"tasks[{index}]"
    common = [f.name for f in dataclasses.fields(TaskSpec) if f.init and f.name not in ("settings", "data_settings")]
    definition = TASK_TYPES.get(raw.get("type")) if isinstance(raw, dict) else None
    own_keys = [*definition.settings, *definition.data_settings] if definition is not None else []
    raw = _check_keys(
        raw, [*common, *own_keys, *_keys_of_other_types(own_keys)], where, required=("name", "type", "data")
    )
    try:
        check_task_name(raw["name"], f"tasks[{index}]")
    except ValueError as error:
        raise ExperimentError(str(error)) from None
    where = f"tasks[{index}] ({raw['name']})"
    _check_scalar_types(raw, where)
    if definition is None:
        raise ExperimentError(
            f"{where}.type '{raw['type']}' is unknown.{_nearest(str(raw['type']), TASK_TYPES)} "
            f"Allowed types: {', '.join(TASK_TYPES)}."
        )
    values = {key: value for key, value in raw.items() if key in common and key != "data"}
    task = TaskSpec(data=_parse_data(raw["data"], base, f"{where}.data"), **values)
    task.max_length_is_default = "max_length" not in raw
    for column, default in definition.default_columns.items():
        if column not in raw:
            setattr(task, column, default)
    if task.unseen_labels not in UNSEEN_LABEL_RULES:
        raise ExperimentError(f"{where}.unseen_labels must be one of {', '.join(UNSEEN_LABEL_RULES)}.")
    if isinstance(task.labels, str):  # a label file, one label per line
        label_file = _resolve(task.labels, base, f"{where}.labels")
        if not label_file.is_file():
            raise ExperimentError(f"{where}.labels: label file {label_file} does not exist.")
        task.labels = [line.strip() for line in _read_utf8(label_file, f"{where}.labels").splitlines() if line.strip()]
    if task.labels is not None:
        if not isinstance(task.labels, list) or not all(isinstance(x, (str, int)) for x in task.labels):
            raise ExperimentError(f"{where}.labels must be a list of label names or a label file path.")
        task.labels = [str(label) for label in task.labels]  # labels written as 0/1 match the data's "0"/"1"
    for key in raw:  # another type's data-side key (the config reports model-side ones the same way)
        owners = [name for name, kind in TASK_TYPES.items() if key in kind.data_settings]
        if owners and key not in definition.data_settings:
            raise ExperimentError(f"{where}.{key} is for {' and '.join(owners)} tasks only.")
    # The model-side keys are checked by the config's own validator, the one every rule of a task lives in.
    other_settings = {key for kind in TASK_TYPES.values() for key in kind.settings}
    model_side = {key: raw[key] for key in ("name", "type", "loss_weight", *other_settings) if key in raw}
    model_side.update(labels=task.labels, num_labels=task.num_labels)
    if raw.get("max_length") is None and not task.max_length_is_default:
        # A saved config's null means "not recorded"; an experiment has to say a length, or leave the key out.
        raise ExperimentError(
            f"{where}.max_length must be an integer >= 4, or left out for the default {TaskSpec.max_length}."
        )
    try:
        # The config's own rule checks the range; a default max_length may yet be lowered to the encoder's limit,
        # so the type's settings are checked against it later.
        checked = check_task_spec({**model_side, "max_length": raw.get("max_length")}, index, labels_known=False)
        if not task.max_length_is_default:
            definition.check_settings(task.name, checked, None)
    except ValueError as error:
        # The config's messages start "Task 'name' (type): ", which `where` already says.
        message = re.sub(rf"^Task {re.escape(repr(task.name))}( \([a-z_]+\))?: ", "", str(error))
        raise ExperimentError(f"{where}: {message}") from None
    task.settings = {key: checked[key] for key in definition.settings}
    task.data_settings = {key: raw.get(key, default) for key, default in definition.data_settings.items()}
    for key, value in task.data_settings.items():
        if value is not None and not isinstance(value, type(definition.data_settings[key])):
            expected = type(definition.data_settings[key]).__name__
            raise ExperimentError(f"{where}.{key} must be a {expected}, got {value!r}.")
    try:
        definition.check_data_settings({key: raw[key] for key in definition.data_settings if key in raw}, checked)
    except ValueError as error:
        raise ExperimentError(f"{where}: {error}") from None
    known_metrics = DEFAULT_METRICS[task.type]
    for metric in task.metrics or []:
        if metric not in known_metrics and not str(metric).startswith("evaluate:"):
            raise ExperimentError(
                f"{where}.metrics: '{metric}' is unknown for {task.type}.{_nearest(metric, known_metrics)} "
                f"Built-in: {', '.join(known_metrics)}; or 'evaluate:<module id>' (needs the Hub)."
            )
    return task


def _keys_of_other_types(own_keys) -> list[str]:
    """Keys that other task types add: allowed past the key check so that the type's validator says whose they are."""
    return [
        key for kind in TASK_TYPES.values() for key in (*kind.settings, *kind.data_settings) if key not in own_keys
    ]


def parse_experiment(raw: Any, base_dir: Path | str = ".", path: Path | None = None) -> Experiment:
    """Validate a parsed YAML mapping into an [`Experiment`]; every mistake raises [`ExperimentError`]."""
    base = Path(base_dir)
    raw = _check_keys(
        raw,
        ["model", "tasks", "sampling", "training", "seed", "data_pipeline"],
        "experiment",
        required=("model", "tasks"),
    )
    model_raw = _check_keys(
        raw["model"], [f.name for f in dataclasses.fields(ModelSpec)], "model", required=("base_model",)
    )
    model = ModelSpec(**model_raw)
    if not isinstance(model.base_model, str):
        raise ExperimentError(f"model.base_model must be a folder path or a Hub id, got {model.base_model!r}.")
    base_model = Path(model.base_model).expanduser()
    if not base_model.is_absolute() and (base / base_model).is_dir():
        model.base_model = str(base / base_model)
    if not isinstance(raw["tasks"], list) or not raw["tasks"]:
        raise ExperimentError("'tasks' must be a non-empty list of task definitions.")
    tasks = [_parse_task(task, i, base) for i, task in enumerate(raw["tasks"])]
    try:
        check_unique_task_names([task.name for task in tasks])
    except ValueError as error:
        raise ExperimentError(str(error)) from None
    _check_metric_keys_unambiguous(tasks)

    sampling = SamplingSpec(
        **_check_keys(raw.get("sampling") or {}, [f.name for f in dataclasses.fields(SamplingSpec)], "sampling")
    )
    if sampling.strategy not in SAMPLING_STRATEGIES:
        raise ExperimentError(
            f"sampling.strategy '{sampling.strategy}' is unknown."
            f"{_nearest(sampling.strategy, SAMPLING_STRATEGIES)} "
            f"Allowed: {', '.join(SAMPLING_STRATEGIES)}."
        )
    if not _is_number(sampling.temperature) or not sampling.temperature > 0:
        raise ExperimentError(f"sampling.temperature must be a number > 0, got {sampling.temperature!r}.")
    if sampling.temperature < MIN_TEMPERATURE:
        # The weights are n^(1/T): with T = 0.01 a task of 1,000 examples weighs 10^300, and float overflows.
        raise ExperimentError(
            f"sampling.temperature {sampling.temperature!r} is too small: the sampling weights n^(1/T) overflow. "
            f"Use a temperature >= {MIN_TEMPERATURE} (1 is proportional; to train mostly the largest task, "
            "use strategy: proportional)."
        )
    for key in ("max_examples_per_task", "eval_max_examples_per_task"):
        cap = getattr(sampling, key)
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
            raise ExperimentError(f"sampling.{key} must be a positive integer or null, got {cap!r}.")
    check_model_section(model)

    training = dict(raw.get("training") or {})
    argument_names = [f.name for f in dataclasses.fields(TrainingArguments) if f.init]
    _check_keys(training, argument_names, "training", listing="see the transformers.TrainingArguments docs")
    training = _read_training_numbers(training)
    _check_training_numbers(training)
    _check_report_to(training.get("report_to"))
    _check_streamed_tasks(tasks, sampling, training)
    _set_best_model_direction(training, tasks)
    return Experiment(
        model=model,
        tasks=tasks,
        sampling=sampling,
        training=training,
        path=path,
        seed=raw.get("seed", 42),
        data_pipeline=_parse_data_pipeline(raw.get("data_pipeline"), base),
    )


def check_model_section(model: ModelSpec, encoder_config=None) -> None:
    """The `model:` section, by the config's own rules (`check_model_settings`); with the encoder's config, also the
    fusion size and the private-layer depth."""
    settings = {key: getattr(model, key) for key in ("dropout", "pooling", "fusion", "task_private_layers")}
    try:
        check_model_settings(encoder_config, word_splitting=model.word_splitting, **settings)
    except ValueError as error:
        raise ExperimentError(f"model.{error}") from None


def _parse_data_pipeline(raw: Any, base: Path) -> DataPipelineSpec:
    """The `data_pipeline:` section: `cache` (true/false), `cache_dir` (a folder, relative to the experiment file),
    `num_proc` (a whole number >= 1)."""
    spec = DataPipelineSpec(
        **_check_keys(raw or {}, [f.name for f in dataclasses.fields(DataPipelineSpec)], "data_pipeline")
    )
    if not isinstance(spec.cache, bool):
        raise ExperimentError(f"data_pipeline.cache must be true or false, got {spec.cache!r}.")
    if spec.cache_dir is not None:
        if not isinstance(spec.cache_dir, str) or not spec.cache_dir.strip():
            raise ExperimentError(f"data_pipeline.cache_dir must be a folder path, got {spec.cache_dir!r}.")
        folder = Path(spec.cache_dir).expanduser()
        folder = folder if folder.is_absolute() else base / folder
        if folder.exists() and not folder.is_dir():
            raise ExperimentError(
                f"data_pipeline.cache_dir {folder} is an existing file, not a folder: choose another cache_dir."
            )
        spec.cache_dir = str(folder)
    if isinstance(spec.num_proc, bool) or not isinstance(spec.num_proc, int) or spec.num_proc < 1:
        raise ExperimentError(
            f"data_pipeline.num_proc must be a whole number >= 1 (processes that tokenise), got {spec.num_proc!r}."
        )
    return spec


def _check_metric_keys_unambiguous(tasks: list[TaskSpec]) -> None:
    """Metric keys are `eval_<task>_<metric>`, read back by the longest task name they start with. Two tasks such as
    `ner` and `ner_micro` would make `eval_ner_micro_f1` both ner's `micro_f1` and ner_micro's `f1`: refuse that."""
    for task in tasks:
        own_keys = [f"{task.name}_{metric}" for metric in [*(task.metrics or DEFAULT_METRICS[task.type]), "loss"]]
        for other in tasks:
            if other is task or not other.name.startswith(f"{task.name}_"):
                continue
            clash = next((key for key in own_keys if key.startswith(f"{other.name}_")), None)
            if clash is not None:
                raise ExperimentError(
                    f"Task names '{task.name}' and '{other.name}' clash: the metric key 'eval_{clash}' of "
                    f"'{task.name}' reads as a metric of '{other.name}'. Rename one of them (e.g. "
                    f"'{other.name.replace('_', '-')}')."
                )


# TrainingArguments numbers that must be positive, or training fails late (0) or silently trains anyway (-1 epochs).
_POSITIVE_TRAINING_NUMBERS = (
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
)


def _check_training_numbers(training: dict) -> None:
    for key in _POSITIVE_TRAINING_NUMBERS:
        value = training.get(key)
        if value is None:
            continue
        if not _is_number(value) or not value > 0:
            raise ExperimentError(f"training.{key} must be a number > 0, got {value!r}.")
    max_steps = training.get("max_steps")
    if max_steps is not None and (
        not isinstance(max_steps, int) or isinstance(max_steps, bool) or (max_steps == 0 or max_steps < -1)
    ):
        raise ExperimentError(
            f"training.max_steps must be a positive integer (or -1 to train for num_train_epochs), got {max_steps!r}."
        )
    learning_rate = training.get("learning_rate")
    if learning_rate is not None and (not _is_number(learning_rate) or learning_rate < 0):
        raise ExperimentError(f"training.learning_rate must be a number >= 0, got {learning_rate!r}.")


def _best_model_metrics(tasks: list[TaskSpec]) -> tuple[list[str], list[str]]:
    """The `metric_for_best_model` values evaluation produces (`eval_<task>_<metric>`, without `eval_`), and the
    prefixes of `evaluate:` metrics, whose result keys are known only once they run (`<task>_<module>_<key>`)."""
    names, prefixes = ["combined_score"], []
    for task in tasks:
        if not task.has_validation:  # never evaluated, so none of its keys ever exists
            continue
        for metric in [*(task.metrics or DEFAULT_METRICS[task.type]), "loss"]:
            if str(metric).startswith("evaluate:"):
                prefixes.append(f"{task.name}_{metric.split(':', 1)[1]}_")
            else:
                names.append(f"{task.name}_{metric}")
    return names, prefixes


def _set_best_model_direction(training: dict, tasks: list[TaskSpec]) -> None:
    """Check `metric_for_best_model` against the metrics evaluation produces, and set `greater_is_better` from it.

    The Trainer only knows that a name ending in `loss` is lower-is-better: with `<task>_mse` it would keep the worst
    checkpoint and stop early the wrong way. An unknown name fails in the Trainer only after the first evaluation.
    """
    # Imported here: metrics and evaluation import this module.
    from .evaluation import per_task
    from .metrics import greater_is_better

    chosen = training.get("metric_for_best_model")
    if chosen is None:
        return
    names, prefixes = _best_model_metrics(tasks)
    if not isinstance(chosen, str):
        raise ExperimentError(f"training.metric_for_best_model must be a metric name, got {chosen!r}.")
    key = chosen.removeprefix("eval_")
    if key == "loss":
        raise ExperimentError(
            "training.metric_for_best_model 'loss': evaluation reports a loss per task, not one overall loss. Use "
            "'combined_score' (the mean of the tasks' primary metrics) or one task's loss, e.g. "
            f"'{next((n for n in names if n.endswith('_loss')), '<task>_loss')}'."
        )
    if key not in names and not any(key.startswith(prefix) for prefix in prefixes):
        unevaluated = [task.name for task in tasks if not task.has_validation and key.startswith(f"{task.name}_")]
        why = f" (task '{unevaluated[0]}' has no validation data, so it is never evaluated)" if unevaluated else ""
        shown = ", ".join(names + [f"{prefix}<key>" for prefix in prefixes])
        raise ExperimentError(
            f"training.metric_for_best_model '{chosen}' is not a metric evaluation reports{why}."
            f"{_nearest(key, names)} Allowed (with or without 'eval_'): {shown}."
        )
    if key == "combined_score":
        metric = key  # greater-is-better by construction (see metrics.combined_score)
    else:
        # The metric is what follows the task name; task names may hold '_', so read it as evaluation does.
        ((metric,),) = per_task({f"eval_{key}": 0.0}, "eval", [task.name for task in tasks]).values()
        evaluate_prefix = next((p for p in prefixes if key.startswith(p)), None)
        if evaluate_prefix is not None:  # `<module>_<key>`: the result key says the direction (e.g. mse_mse)
            metric = key[len(evaluate_prefix) :]
    direction = greater_is_better(metric)
    explicit = training.get("greater_is_better")
    if explicit is not None and explicit != direction:
        raise ExperimentError(
            f"training.greater_is_better is {explicit} but metric_for_best_model '{chosen}' is "
            f"{'higher' if direction else 'lower'}-is-better: leave greater_is_better out (it follows the metric)."
        )
    training["greater_is_better"] = direction


def _check_report_to(report_to: Any) -> None:
    """Every `training.report_to` integration must be one transformers knows and whose package is installed: the
    Trainer checks only when it is built, after the data is tokenised, and fails with a traceback."""
    from transformers.integrations import integration_utils as integrations

    if report_to is None or report_to in ("none", "all", ["none"], ["all"]):
        return
    requested = [report_to] if isinstance(report_to, str) else report_to
    if not isinstance(requested, list) or not all(isinstance(name, str) for name in requested):
        raise ExperimentError(f"training.report_to must be an integration name or a list of them, got {report_to!r}.")
    known = sorted(integrations.INTEGRATION_TO_CALLBACK)
    available = set(integrations.get_available_reporting_integrations())
    available |= {"flyte"} if integrations.is_flytekit_available() else set()
    available |= {"azure_ml"} if integrations.is_azureml_available() else set()
    for name in requested:
        if name not in known:
            raise ExperimentError(
                f"training.report_to '{name}' is not an integration transformers knows.{_nearest(name, known)} "
                f"Allowed: none, all, {', '.join(known)}."
            )
        if name not in available:
            package = {"comet_ml": "comet-ml", "azure_ml": "azureml-core", "flyte": "flytekit"}.get(name, name)
            raise ExperimentError(
                f"training.report_to '{name}': its package is not installed here. Install it (pip install "
                f"{package}), or set report_to: none."
            )


def _numeric_type(hint) -> type | None:
    """`float` or `int` when a TrainingArguments field holds that number (optionally None), else None."""
    options = set(typing.get_args(hint)) - {type(None)} if isinstance(hint, types.UnionType) else {hint}
    return options.pop() if options in ({float}, {int}) else None


def _read_training_numbers(training: dict) -> dict:
    """Numbers of the `training` section that YAML read as strings, converted, or a clear error.

    YAML 1.1 reads `1e-4` (no dot) as the string "1e-4". TrainingArguments accepts it and training fails only when
    the optimizer is built, after the data and model are loaded; here it fails, or is fixed, before anything runs.
    """
    hints = typing.get_type_hints(TrainingArguments)
    converted = dict(training)
    for key, value in training.items():
        number_type = _numeric_type(hints.get(key))
        if number_type is None or not isinstance(value, str):
            continue
        try:
            converted[key] = number_type(value)
        except ValueError:
            raise ExperimentError(
                f"training.{key} must be a number ({number_type.__name__}), got {value!r}."
            ) from None
    return converted


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ExperimentError(f"--set expects key.path=value, got '{text}'.")
    key, value = text.split("=", 1)
    try:
        return key.strip().split("."), yaml.safe_load(value)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ExperimentError(
            f"--set {text}: the value {value!r} is not valid YAML ({problem}). Quote it for a string "
            f"(--set '{key}=\"...\"'), or complete the list or mapping, e.g. [1, 2]."
        ) from None


def _override_index(node: list, key: str, override: str, path: list[str]) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise ExperimentError(
            f"--set {override}: '{'.'.join(path)}' is not an index of the list, which has {len(node)} entries "
            f"(0 to {len(node) - 1}). Add the entry in the experiment file."
        )
    return int(key)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `--set a.b=value` overrides (values parsed as YAML; `tasks.0.max_length=64` indexes the task list)."""
    for override in overrides:
        keys, value = _parse_override(override)
        node = raw
        for i, key in enumerate(keys[:-1]):
            path = keys[: i + 1]
            if isinstance(node, list):
                node = node[_override_index(node, key, override, path)]
            else:
                node = node.setdefault(key, {})
            if not isinstance(node, (dict, list)):
                # e.g. `model.fusion.hidden_size=32` while `fusion: null`: there is no mapping to set a key in.
                example = f"--set '{'.'.join(path)}={{{keys[i + 1]}: ...}}'"
                raise ExperimentError(
                    f"--set {override}: '{'.'.join(path)}' is {yaml.safe_dump(node).splitlines()[0]}, not a section "
                    f"with keys. Set the whole section instead, e.g. {example}."
                )
        if isinstance(node, list):
            node[_override_index(node, keys[-1], override, keys)] = value
        else:
            node[keys[-1]] = value
    return raw


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read, override and validate an experiment file."""
    path = Path(path)
    if path.is_dir():
        raise ExperimentError(f"Experiment path {path} is a directory: give the experiment .yaml file inside it.")
    if not path.is_file():
        raise ExperimentError(f"Experiment file {path} does not exist.")
    text = _read_utf8(path, "experiment file")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ExperimentError(f"{path} is not valid YAML: {error}") from error
    if raw is not None and not isinstance(raw, dict):
        raise ExperimentError(f"{path} must hold a mapping with 'model' and 'tasks', got {type(raw).__name__}.")
    raw = apply_overrides(raw or {}, overrides or [])
    return parse_experiment(raw, base_dir=path.resolve().parent, path=path)
