"""Per-task metrics: the combined score, metric direction, `evaluate:` modules, and the scoring entry points.

What a task type's metrics are, which way each is better, and how they are computed is defined by the type (see
`configuration_multitask.task_type.TaskType`); the first metric listed for a task is its *primary* metric, which the
combined score averages (see [`combined_score`]). `evaluate:<module id>` names an `evaluate` module instead; it
receives the same decoded predictions and references as the built-in metrics (`TaskType.metric_inputs`). Hub
modules are resolved before training starts and fail there with a clear message when the Hub is out of reach.
"""

import numpy as np
import torch

from configuration_multitask import TASK_TYPES, TaskView
from configuration_multitask.task_multi_label_classification import THRESHOLD as MULTI_LABEL_THRESHOLD  # noqa: F401
from configuration_multitask.task_multi_label_classification import binarize, multi_label_metrics  # noqa: F401
from configuration_multitask.task_regression import regression_metrics  # noqa: F401
from configuration_multitask.task_sequence_classification import classification_metrics  # noqa: F401
from configuration_multitask.task_token_classification import (  # noqa: F401
    entity_report,
    tag_sequences,
    token_metrics,
)

from .experiment import DEFAULT_METRICS, ExperimentError


# The metrics where lower is better, as the task types define them (and any loss). Best-model selection, early
# stopping and the combined score all follow it.
LOWER_IS_BETTER = frozenset(
    metric.name for kind in TASK_TYPES.values() for metric in kind.metrics if not metric.greater_is_better
)


def greater_is_better(metric: str) -> bool:
    """Whether a higher value of `metric` (a built-in name, or `loss`) is better, as the registered types say."""
    lower = {metric.name for kind in TASK_TYPES.values() for metric in kind.metrics if not metric.greater_is_better}
    return not (metric in lower or metric.endswith("loss"))


def primary_metric(task_type: str, listed: list[str] | None = None) -> str:
    """The metric a task is judged by (best model, early stopping, benchmark tables): the first built-in metric its
    experiment entry lists, else its type's first metric."""
    built_in = [metric for metric in listed or [] if not metric.startswith("evaluate:")]
    return (built_in or DEFAULT_METRICS[task_type])[0]


def combined_score(primary_metrics: list[tuple[str, float]]) -> float:
    """One greater-is-better number over tasks: the mean of each task's primary metric `(name, value)`, negated
    where lower is better (a task scored by mse adds -mse), so `metric_for_best_model="combined_score"` with
    `greater_is_better=True` keeps the model that is better on average."""
    return float(np.mean([value if greater_is_better(name) else -value for name, value in primary_metrics]))


def task_view(task_type: str, labels: list | None = None, name: str = "task", **settings) -> TaskView:
    """A [`TaskView`] for scoring outside a model config (a benchmark's single-task baseline, say)."""
    definition = TASK_TYPES[task_type]
    settings = {key: settings.get(key, default) for key, default in definition.settings.items()}
    labels = None if labels is None else tuple(labels)
    return TaskView(name, task_type, 0, labels, definition.num_outputs(labels), 1.0, settings)


def reduce_logits(
    task_type: str,
    logits: torch.Tensor,
    word_mask: torch.Tensor | None = None,
    labels: list[str] | None = None,
    decoding: str = "argmax",
) -> torch.Tensor:
    """What a task's metrics read from its logits, as its type reduces them (`TaskType.reduce_logits`). `word_mask`
    marks the labelled positions of a token task (what `decoding="bio"` decodes)."""
    view = task_view(task_type, labels, decoding=decoding)
    label_ids = None if word_mask is None else torch.where(word_mask.bool(), 0, -100)
    return view.definition.reduce_logits(view, logits, label_ids)


def metric_inputs(
    task_type: str, predictions: np.ndarray, labels: np.ndarray, labels_names: list | None, unscored_tags=None
) -> tuple[list, list]:
    """`(predictions, references)` decoded as the built-in metrics read them, for `evaluate` modules."""
    view = task_view(task_type, labels_names)
    return view.definition.metric_inputs(view, predictions, labels, unscored_tags)


def compute_task_metrics(
    task_type: str,
    predictions: np.ndarray,
    labels: np.ndarray,
    labels_names: list | None,
    extra_metrics: dict | None = None,
    unscored_tags: list | None = None,
) -> dict[str, float]:
    """All metrics of one task, from its reduced predictions (`reduce_logits`); see [`score_task`]."""
    return score_task(task_view(task_type, labels_names), predictions, labels, extra_metrics, unscored_tags)


def score_task(
    task: TaskView, predictions: np.ndarray, labels: np.ndarray, extra_metrics: dict | None = None, scoring=None
) -> dict[str, float]:
    """The built-in metrics of `task`'s type and its `evaluate` modules (`extra_metrics`, by name), from its reduced
    predictions; `scoring` is what the type's metrics need beyond the labels (one entry per example)."""
    definition = task.definition
    metrics = definition.compute_metrics(task, predictions, labels, scoring)
    if extra_metrics:
        decoded, references = definition.metric_inputs(task, predictions, labels, scoring)
    for name, module in (extra_metrics or {}).items():
        result = module.compute(predictions=decoded, references=references)
        metrics.update(_numbers(name.split(":", 1)[1], result))
    return metrics


def sentence_accuracy(
    sentence_predictions: np.ndarray,
    sentence_gold: np.ndarray,
    tag_predictions: np.ndarray,
    tag_gold: np.ndarray,
    id2tag: dict[int, str],
) -> float:
    """JointBERT's sentence accuracy: the share of examples whose sentence label and every tag are right. The tag
    arrays are `(examples, seq)` with -100 where no word starts; the examples are in the same order for both tasks."""
    sentence = task_view("sequence_classification", ["_"] * 2)
    tags = task_view("token_classification", [id2tag[i] for i in range(len(id2tag))])
    return examples_correct(
        [
            (sentence, sentence_predictions, sentence_gold),
            (tags, tag_predictions, tag_gold),
        ]
    )


def examples_correct(scored: list[tuple[TaskView, np.ndarray, np.ndarray]]) -> float:
    """The share of examples that every task in `scored` (`(task, predictions, labels)` over the same examples, in
    the same order) gets exactly right, as each task's type judges it (`TaskType.example_correct`)."""
    correct = None
    for task, predictions, labels in scored:
        right = np.asarray(task.definition.example_correct(task, predictions, labels), dtype=bool)
        correct = right if correct is None else correct & right
    return float(np.mean(correct))


def load_evaluate_metric(name: str):
    """An `evaluate` module for a metric spelled `evaluate:<id>`; raises ExperimentError when it can't be loaded."""
    module_id = name.split(":", 1)[1]
    try:
        import evaluate
    except ImportError:
        raise ExperimentError(
            f"Metric '{name}' needs the evaluate library, an optional dependency: pip install "
            "'multitask-transformers[evaluate]' (or evaluate), or use the built-in metrics: "
            + "; ".join(f"{t}: {', '.join(m)}" for t, m in DEFAULT_METRICS.items())
        ) from None
    try:
        return evaluate.load(module_id)
    except Exception as error:  # evaluate raises connection, file and import errors alike
        raise ExperimentError(
            f"Could not load evaluate metric '{module_id}' ({type(error).__name__}: {error}). "
            "evaluate modules live on the Hugging Face Hub; offline, use the built-in metrics: "
            + "; ".join(f"{t}: {', '.join(m)}" for t, m in DEFAULT_METRICS.items())
        ) from error


def _numbers(prefix: str, result: dict) -> dict[str, float]:
    """An `evaluate` result's numbers as flat `<prefix>_<key>` metrics; nested dicts (seqeval's per-entity scores)
    are flattened, other values (lists, strings) left out."""
    flat = {}
    for key, value in result.items():
        if isinstance(value, dict):
            flat.update(_numbers(f"{prefix}_{key}", value))
        elif isinstance(value, (int, float, np.number)):
            flat[f"{prefix}_{key}"] = float(value)
    return flat
