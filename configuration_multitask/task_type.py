"""The task-type protocol: one definition per kind of task, asked by everything that handles tasks.

A task type (`sequence_classification`, `token_classification`, ...) is one `TaskType` subclass in a file of its
own (`task_<type>.py`), registered by one line in `task_types.py`. The config, the model, the training data, the
collator, the trainer's evaluation, the pipeline and the model card ask the definition and hold no branch on a type's
name. A definition owns:

- **Schema.** `check_labels` (label names or a count, or none), `settings` with `check_settings` (model-side keys of
  its own, such as a token task's `decoding`, stored in `config.json`), `data_settings` with `check_data_settings`
  (data-side keys of its own, and the rules between them), `text_pair` (whether a second text may be given).
- **Names elsewhere.** `problem_type` (transformers' name for the problem) and `hub_task` (the Hub pipeline tag).
- **Its transformers counterpart** (the benchmarks' single-task baseline). `transformers_model` (the standard
  `AutoModelFor...` class and its `problem_type`), `transformers_config` (its config keyword arguments),
  `transformers_inputs` (one of our single-task batches -> that
  model's keyword arguments) and `transformers_logits` (its outputs -> the logits our head would give).
- **Data.** `default_columns`; `record_columns` (the columns every record must have, each with the setting that names
  it, checked once per file before any label is read); `word_level` (its examples are words, each with a label: such
  tasks are tokenised from word lists, joint with any task on the same examples); `label_value` (a record -> its raw
  label, by default the `label_column` value); `read_label` (one raw label -> label name(s) or value, or a `ValueError`
  saying what is wrong); `label_names` (the names in a read label, to infer the label set); `encode_label` (read label
  -> what a feature stores); `feature_label` (stored label -> the feature's label, aligned to the tokens, plus what
  scoring needs beyond it).
- **Collating.** `encoder_rows` (a feature's encoder inputs: one row, or several), `collate_labels` (one task's
  labels of a batch -> the tensor its head reads) and `label_columns` (where an example's labels sit in a mixed
  batch's `(batch, L)` tensor padded with -100).
- **Head and loss.** `head_input` (`"sequence"`: one pooled vector per example; `"token"`: one vector per token) and
  `build_head`, whose module has `forward`, `read_labels(labels, batch_size, seq_len)` and `loss(logits, labels)`.
- **Metrics.** `metrics`, `Metric`s with their direction (the first is the primary one); `reduce_logits` (logits
  -> what the metrics read, small enough to keep for a whole evaluation set); `compute_metrics`; `metric_inputs`
  (the decoded predictions and references given to `evaluate` modules); `example_correct` (per example, whether the
  prediction is exactly right, for JointBERT's sentence accuracy), or `None`.
- **Predictions.** `predict`: one example's logits -> the pipeline's output for it.
- **Inputs of its own** (optional: types that read more than a text or a text pair). `featurize` (records and their
  encoded labels -> each record's features, e.g. several windows of a long context, each with a `scoring` entry for
  the metrics; a record that lost part of its input or answer to `max_length` marks its first feature
  `"truncated": True`, which `truncation_note` explains in the warning and `truncated_examples` counts), `input_keys` (the keys of the pipeline input it answers, such as `("question", "context")`) and
  `pipeline_features` (one such input and the call's options of the type -> model inputs, one row per window, and
  what `predict` needs, with `"truncated": True` where the input was cut), `pipeline_options` with
  `check_pipeline_option` (call options of its own, such as question answering's `doc_stride`), and
  `pipeline_input_problem` (why one task cannot read an input of those keys, e.g. a multiple-choice task trained on
  five choices given four: the pipeline then sends it to the tasks that can). Left `None`, the type reads text
  through the shared featurisation, as the four original types do.

This file and the definitions are shipped as remote code beside every checkpoint (the config imports them), so they
import only the standard library and torch. The libraries that compute metrics (scikit-learn, SciPy, seqeval) are
needed only when scoring and are imported then, through `training_library`.
"""

import importlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


IGNORE_INDEX = -100  # label value that pads mixed batches and marks unlabelled tokens (the transformers convention)
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what a feature gives the encoder


@dataclass(frozen=True)
class Metric:
    """A built-in metric of a task type: its name in the results, and which way is better."""

    name: str
    greater_is_better: bool = True


@dataclass(frozen=True)
class TaskView:
    """One task of a `MultiTaskConfig`, read-only and typed: `config.task("slots").labels`.

    `settings` holds the keys the task's type adds (a token task's `decoding`, say); `definition` is the type's
    `TaskType`, which knows what everything else means."""

    name: str
    type: str
    index: int
    labels: tuple[str, ...] | None
    num_labels: int
    loss_weight: float
    settings: dict = field(default_factory=dict, compare=False)
    max_length: int | None = None  # the tokens it was trained with; None: not recorded, the encoder's limit

    @property
    def definition(self) -> "TaskType":
        from .task_types import TASK_TYPES  # the registry imports the definitions, which import this file

        return TASK_TYPES[self.type]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels or ()))

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels or ())}

    def __getattr__(self, key: str):
        # `task.decoding` for `task.settings["decoding"]`: a type's own keys read like the common ones.
        settings = self.__dict__.get("settings") or {}
        if key in settings:
            return settings[key]
        raise AttributeError(f"Task {self.__dict__.get('name')!r} has no attribute or setting {key!r}.")


def training_library(module: str):
    """Import a library that scoring needs (scikit-learn, SciPy, seqeval) when scoring runs: serving a checkpoint
    needs only torch and transformers, and these imports stay out of what transformers checks for remote code."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"Computing metrics needs {module.split('.')[0]}, which is not installed: pip install "
            "'multitask-transformers' (its dependencies include the metric libraries)."
        ) from error


class TaskType:
    """The base of every task-type definition; see the module docstring for the contract.

    Defaults fit a task with one label per example and no settings of its own; a definition overrides what differs.
    """

    name: str = ""
    problem_type: str = ""
    hub_task: str = "text-classification"
    head_input: str = "sequence"
    word_level: bool = False
    text_pair: bool = True
    min_labels: int | None = 2  # fewest label names; None: the type has no label names (regression)
    settings: dict[str, Any] = {}  # model-side keys of this type -> default
    data_settings: dict[str, Any] = {}  # data-side keys of this type -> default
    default_columns: dict[str, str] = {"text_column": "text", "label_column": "label"}
    metrics: tuple[Metric, ...] = ()
    # The metrics a results table reports for this type by default, where one number is not its published protocol
    # (SQuAD reports exact match and F1); `None`: the primary metric.
    reported_metrics: tuple[str, ...] | None = None
    # The standard single-task transformers model for this type and its `problem_type` (the benchmarks' baseline).
    transformers_model: tuple[str, str | None] = ("AutoModelForSequenceClassification", None)

    def __repr__(self) -> str:
        return f"<task type {self.name}>"

    # ------------------------------------------------------------------------------------------------ schema
    def check_labels(self, task: str, labels, num_labels) -> list[str] | None:
        """The label names of a task spec (from `labels`, or `LABEL_<i>` for a bare `num_labels`), or a `ValueError`."""
        if self.min_labels is None:
            if labels is not None or num_labels not in (None, 1):
                raise ValueError(
                    f"Task {task!r} is a {self.name} task: it has one output, so give neither 'labels' nor a "
                    f"'num_labels' other than 1 (got labels={labels!r}, num_labels={num_labels!r})."
                )
            return None
        minimum = self.min_labels
        if labels is None:
            if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < minimum:
                raise ValueError(
                    f"Task {task!r} ({self.name}) needs 'labels' (a list of label names) or an integer "
                    f"'num_labels' >= {minimum}; got num_labels={num_labels!r}."
                )
            return [f"LABEL_{i}" for i in range(num_labels)]
        if not isinstance(labels, (list, tuple)) or not all(isinstance(label, str) for label in labels):
            raise ValueError(f"Task {task!r}: 'labels' must be a list of label names (strings), got {labels!r}.")
        labels = list(labels)
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"Task {task!r} lists labels more than once: {duplicates}. Label names must be unique.")
        if len(labels) < minimum:
            raise ValueError(f"Task {task!r} ({self.name}) needs at least {minimum} labels, got {labels}.")
        if num_labels is not None and num_labels != len(labels):
            raise ValueError(
                f"Task {task!r}: num_labels={num_labels} disagrees with the {len(labels)} names in 'labels'. "
                "Drop 'num_labels' or make them match."
            )
        return labels

    def num_outputs(self, labels: list[str] | None) -> int:
        """The `num_labels` stored for a task with these label names."""
        return 1 if labels is None else len(labels)

    def check_settings(self, task: str, settings: dict, labels: list[str] | None) -> dict:
        """This type's own keys of a task spec with their defaults filled in, or a `ValueError`. `labels` is `None`
        while they are not known yet (an experiment file read before its data); label-dependent checks wait. The
        experiment reader passes the task's `max_length` too, where the file sets it, for rules that involve it."""
        return {key: settings.get(key, default) for key, default in self.settings.items()}

    def check_data_settings(self, given: dict, settings: dict) -> None:
        """Raise `ValueError` where this type's data-side keys, as the experiment file gives them (`given`: only the
        keys it sets), contradict each other or the checked model-side `settings`; the caller adds where."""

    # ------------------------------------------------------------------------------------------------ data
    def record_columns(self, task) -> list[tuple[str, str]]:
        """`(setting, column)` for every column a training record must have: the text (and pair) and label columns,
        and any other column this type reads (a type that reads more adds its own). The data reader checks them once
        per file, so a misspelt name fails before training with the setting to fix and the file's columns."""
        settings = ("text_column", "text_pair_column", "label_column")
        return [(setting, getattr(task, setting)) for setting in settings if getattr(task, setting) is not None]

    def label_value(self, task, record: dict):
        """One record's raw label, before `read_label`: its `label_column` value. A type whose label spans several
        columns (an answer's text and its start) gathers them here, from the columns `record_columns` names."""
        return record[task.label_column]

    def read_label(self, value, options: dict):
        """One example's label from its raw column value: a label name (or names, or a value). `options` holds the
        task's `data_settings`. Raises `ValueError` describing what is wrong; the caller adds where."""
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"empty label {value!r}")
        if isinstance(value, (list, dict, bool)):
            # str() would turn ["a", "b"] into a label named "['a', 'b']" without a word.
            raise ValueError(f"expected one label name, got the {type(value).__name__} {value!r}")
        return value.strip() if isinstance(value, str) else str(value)

    def label_names(self, raw) -> list[str]:
        """The label names in a label read by `read_label` (what label inference collects)."""
        return [raw]

    def sort_labels(self, names: set[str]) -> list[str]:
        """The order of label names inferred from the training data."""
        return sorted(names)

    def encode_label(self, raw, to_id, num_labels: int, words: list[str] | None = None):
        """What a feature stores for a label read by `read_label`; `to_id(name)` maps a name to its id (or raises),
        `words` are the example's words for word-level types. Raises `ValueError` for a label that does not fit."""
        return to_id(raw)

    def feature_label(self, stored, word_ids: list[int | None] | None):
        """`(label, scoring)`: the label of one feature from the stored label and its tokens' word ids (`None` for
        special tokens), and what scoring needs beyond it (or `None`)."""
        return stored, None

    # ------------------------------------------------------------------------------------------------ collating
    def collate_labels(self, labels: list, seq_len: int, padding_side: str) -> torch.Tensor:
        """One task's labels of a batch, as the head reads them."""
        return torch.tensor(labels, dtype=torch.long)

    def encoder_rows(self, feature: dict) -> list[dict]:
        """The encoder inputs of one feature: one row (a type may encode an example as several, e.g. one per choice;
        in a batch of several tasks, each row then carries the task id and the example's labels go with its first
        row)."""
        return [{key: feature[key] for key in ENCODER_INPUTS if key in feature}]

    def label_columns(self, length: int, seq_len: int, padding_side: str) -> slice:
        """Where an example's `length` label values sit in a mixed batch's `(batch, L)` tensor: from column 0."""
        return slice(0, length)

    # ------------------------------------------------------------------------------------------------ head
    def build_head(self, task: TaskView, hidden_size: int, dropout: float, token_context: bool = False) -> nn.Module:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ metrics
    def reduce_logits(self, task: TaskView, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """What the metrics read from a batch's logits (class ids by default)."""
        return logits.argmax(dim=-1)

    def compute_metrics(self, task: TaskView, predictions, labels, scoring=None) -> dict[str, float]:
        raise NotImplementedError

    def metric_inputs(self, task: TaskView, predictions, labels, scoring=None) -> tuple[list, list]:
        """`(predictions, references)` as `evaluate` modules receive them: what the built-in metrics read."""
        return predictions.tolist(), labels.tolist()

    example_correct = None  # or a method (task, predictions, labels) -> per-example booleans

    # ------------------------------------------------------------------------------------------------ own inputs
    featurize = None  # or a method (task spec, records, encoded labels, tokenizer, max_length) -> features per record
    # What a record's first feature marked `"truncated": True` lost to max_length, for the warning that counts them.
    truncation_note = "are longer than max_length and were truncated"
    input_keys: tuple[str, ...] | None = None  # the keys of the pipeline inputs it answers (None: text, text pair)
    pipeline_features = None  # or a method (task, inputs, tokenizer, max_length, options) -> (model inputs, example)
    pipeline_options: tuple[str, ...] = ()  # call options of its own (question answering's doc_stride, say)

    def check_pipeline_option(self, name: str, value) -> None:
        """Raise a `ValueError` naming the problem if `value` is not a valid value of the option `name`."""

    def pipeline_input_problem(self, task: TaskView, inputs: dict) -> str | None:
        """Why this task cannot read a pipeline input that has its `input_keys` (a multiple-choice task trained on five
        choices given four, say), or `None`. The pipeline sends an input to every task that can read it."""
        return None

    def pipeline_example(self, task: dict) -> str:
        """A pipeline input for a task of this type (its `config.json` entry), as Python source: the model card's
        usage example for a type with `input_keys`."""
        return '"your text here"'

    # ------------------------------------------------------------------------------------------------ baseline
    def transformers_config(self, labels: list[str] | None) -> dict:
        """The config keyword arguments of `transformers_model` for a task with these label names."""
        settings = {"num_labels": self.num_outputs(labels)}
        if self.transformers_model[1] is not None:
            settings["problem_type"] = self.transformers_model[1]
        if labels is not None:
            settings.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
        return settings

    def transformers_inputs(self, task: TaskView, batch: dict) -> dict:
        """The keyword arguments of `transformers_model` for one of our collated single-task batches (no
        `task_ids`): the batch itself where that model reads our layout, `labels` included."""
        return batch

    def transformers_logits(self, task: TaskView, outputs) -> torch.Tensor:
        """The logits our head gives (what `reduce_logits` reads) from `transformers_model`'s outputs."""
        return outputs.logits

    # ------------------------------------------------------------------------------------------------ serving
    def predict(self, task: TaskView, logits: torch.Tensor, example: dict, options: dict) -> dict:
        """The pipeline's output for one example from its logits. For text inputs the batch dimension is removed and
        `example` holds `text`, `words` (character spans), `word_ids` and `length` (real tokens); for a type with
        `pipeline_features`, `logits` has one row per row it made and `example` is what it returned. `options` holds
        the call's options."""
        raise NotImplementedError


def require_texts(inputs: dict, keys: tuple[str, ...]) -> None:
    """Raise a `ValueError` unless every one of `keys` of a pipeline input is a non-blank string (as the training data
    must be: an empty context would otherwise be answered with an empty span)."""
    for key in keys:
        value = inputs.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"Empty or non-string {key} {value!r}: every input needs some text to predict from.")


def task_error(task: str, task_type: str, problem: str) -> ValueError:
    return ValueError(f"Task {task!r} ({task_type}): {problem}")


def any_set(mask: torch.Tensor) -> bool:
    """Whether any entry of `mask` is set. One host sync on an accelerator (once per head per step); skipped while
    torch.compile traces the model, where reading a value would break the graph (shapes are still checked)."""
    if torch.compiler.is_compiling():
        return False
    return bool(mask.any())


def not_a_class_id(ids: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Where `ids` (long, or float in a mixed batch) hold neither a class id in [0, num_labels) nor -100."""
    invalid = (ids < 0) | (ids >= num_labels)
    if ids.is_floating_point():
        invalid = invalid | (ids != ids.round())  # NaN compares unequal to itself, so it is caught here too
    return invalid & (ids != IGNORE_INDEX)


def first_value(mask: torch.Tensor, values: torch.Tensor) -> str:
    """`<value> at row i` (or `at position i, j`) for the first set entry of `mask`; only on the error path."""
    position = tuple(int(i) for i in mask.nonzero()[0])
    return (
        f"{values[position].item()} at {'row' if len(position) == 1 else 'position'} {', '.join(map(str, position))}"
    )


class LabelReading:
    """Shared by every head: errors that name the task, and the split of a `(batch, L)` tensor into this head's
    labels and the -100 padding of a mixed batch after them."""

    task_name = "task"
    task_type = "task"

    def _error(self, problem: str) -> ValueError:
        return task_error(self.task_name, self.task_type, problem)

    def _check_batch(self, labels: torch.Tensor, batch_size: int, expected: str) -> None:
        if labels.dim() == 0 or labels.shape[0] != batch_size:
            raise self._error(f"labels have shape {tuple(labels.shape)}; expected {expected} for this batch.")

    def _check_padding(self, padding: torch.Tensor, labels: torch.Tensor, expected: str) -> None:
        """`padding`, the columns after this head's labels, must be -100 (a mixed batch's padding): anything else
        means the labels have another shape than this head's (one-hot class ids, several regression targets)."""
        if padding.numel() and any_set(padding != IGNORE_INDEX):
            row = int((padding != IGNORE_INDEX).any(1).nonzero()[0])
            raise self._error(
                f"labels have shape {tuple(labels.shape)} and row {row} is {labels[row].tolist()}; expected "
                f"{expected} (a mixed batch's rows may only add -100 padding after them)."
            )


class SequenceHead(LabelReading, nn.Module):
    """Dropout -> Linear -> tanh -> dropout -> Linear on a pooled `(batch, hidden)` vector (as RoBERTa's head)."""

    is_token_level = False

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, task_name: str = "task"):
        super().__init__()
        self.num_labels = num_labels
        self.task_name = task_name
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out_proj(self.dropout(hidden))  # (batch, num_labels)

    def read_labels(self, labels: torch.Tensor, batch_size: int, seq_len: int) -> torch.Tensor:
        """This head's labels from its natural shape or from a mixed batch's `(batch, L)` tensor padded with -100;
        labels of another shape or out of range raise a `ValueError` naming the task."""
        raise NotImplementedError

    def _one_value_per_example(self, labels: torch.Tensor, batch_size: int, expected: str) -> torch.Tensor:
        """`(batch,)` labels, from `(batch,)`, `(batch, 1)` or a mixed batch's `(batch, L)` padded with -100."""
        self._check_batch(labels, batch_size, expected)
        if labels.dim() > 2:
            raise self._error(f"labels have shape {tuple(labels.shape)}; expected {expected}.")
        if labels.dim() == 2:
            self._check_padding(labels[:, 1:], labels, expected)
            return labels[:, 0]
        return labels

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


__all__ = [
    "ENCODER_INPUTS",
    "IGNORE_INDEX",
    "LabelReading",
    "Metric",
    "SequenceHead",
    "TaskType",
    "TaskView",
    "any_set",
    "first_value",
    "not_a_class_id",
    "task_error",
    "training_library",
]
