"""Per-task metrics, computed offline with scikit-learn, SciPy and seqeval.

Each task type has built-in metrics (the first one listed for a task is its *primary* metric, which the combined
score averages, see [`combined_score`]). `evaluate:<module id>` names an `evaluate` module instead; it receives the
same decoded predictions and references as the built-in metrics (see [`metric_inputs`]). Hub modules are resolved
before training starts and fail there with a clear message when the Hub is out of reach.
"""

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from sklearn.metrics import accuracy_score, matthews_corrcoef, mean_squared_error
from sklearn.metrics import f1_score as sk_f1

from ..heads import decode_tags
from .experiment import DEFAULT_METRICS, ExperimentError


MULTI_LABEL_THRESHOLD = 0.5  # a label is predicted when its probability reaches this
# The one place a metric's direction is defined: every metric here is greater-is-better except these errors (and any
# loss). Best-model selection, early stopping and the combined score all follow it.
LOWER_IS_BETTER = frozenset({"mse"})


def greater_is_better(metric: str) -> bool:
    """Whether a higher value of `metric` (a built-in name, or `loss`) is better."""
    return not (metric in LOWER_IS_BETTER or metric.endswith("loss"))


def primary_metric(task_type: str, listed: list[str] | None = None) -> str:
    """The metric a task is judged by (best model, early stopping, benchmark tables): the first built-in metric its
    experiment entry lists, else its type's first default."""
    built_in = [metric for metric in listed or [] if not metric.startswith("evaluate:")]
    return (built_in or DEFAULT_METRICS[task_type])[0]


def combined_score(primary_metrics: list[tuple[str, float]]) -> float:
    """One greater-is-better number over tasks: the mean of each task's primary metric `(name, value)`, negated
    where lower is better (a task scored by mse adds -mse), so `metric_for_best_model="combined_score"` with
    `greater_is_better=True` keeps the model that is better on average."""
    return float(np.mean([value if greater_is_better(name) else -value for name, value in primary_metrics]))


def reduce_logits(
    task_type: str,
    logits: torch.Tensor,
    word_mask: torch.Tensor | None = None,
    labels: list[str] | None = None,
    decoding: str = "argmax",
) -> torch.Tensor:
    """What a task's metrics read from its logits: class ids, probabilities (multi-label), values (regression), or
    tag ids decoded as the task says (`word_mask` and `labels` are needed for `decoding="bio"`)."""
    if task_type == "multi_label_classification":
        return torch.sigmoid(logits.float())
    if task_type == "regression":
        return logits.float().squeeze(-1)
    if task_type == "token_classification":
        return decode_tags(logits, word_mask, labels, decoding)
    return logits.argmax(dim=-1)


def classification_metrics(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    average = "binary" if num_labels == 2 else "macro"
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1": float(sk_f1(labels, predictions, average=average, zero_division=0)),
        "mcc": float(matthews_corrcoef(labels, predictions)),
    }


def binarize(probabilities: np.ndarray, threshold: float = MULTI_LABEL_THRESHOLD) -> np.ndarray:
    """Multi-label 0/1 predictions from probabilities."""
    return (probabilities >= threshold).astype(int)


def multi_label_metrics(
    probabilities: np.ndarray, labels: np.ndarray, threshold: float = MULTI_LABEL_THRESHOLD
) -> dict[str, float]:
    predicted = binarize(probabilities, threshold)
    labels = labels.astype(int)
    return {
        "micro_f1": float(sk_f1(labels, predicted, average="micro", zero_division=0)),
        "macro_f1": float(sk_f1(labels, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(labels, predicted)),
    }


def regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    predictions, labels = predictions.reshape(-1), labels.reshape(-1)
    constant = np.ptp(predictions) == 0 or np.ptp(labels) == 0
    pearson = 0.0 if constant else float(pearsonr(predictions, labels)[0])
    spearman = 0.0 if constant else float(spearmanr(predictions, labels)[0])
    return {
        "pearson_spearman": (pearson + spearman) / 2,
        "pearson": pearson,
        "spearman": spearman,
        "mse": float(mean_squared_error(labels, predictions)),
    }


def tag_sequences(predictions: np.ndarray, labels: np.ndarray, id2label: dict[int, str], unscored=None):
    """Gold and predicted tag strings per sentence, keeping only labelled positions (first sub-tokens).

    `unscored` (one list of gold tag ids per sentence) holds the tags of words the model never saw (cut by
    max_length): they end the gold sentence and are predicted "O", so entities past the cut count as misses."""
    gold, predicted = [], []
    for index, (prediction_row, label_row) in enumerate(zip(predictions, labels)):
        keep = label_row != -100
        unseen = [id2label[int(i)] for i in (unscored[index] if unscored is not None else [])]
        gold.append([id2label[int(i)] for i in label_row[keep]] + unseen)
        predicted.append([id2label[int(i)] for i in prediction_row[keep]] + ["O"] * len(unseen))
    return gold, predicted


def sentence_accuracy(
    sentence_predictions: np.ndarray,
    sentence_gold: np.ndarray,
    tag_predictions: np.ndarray,
    tag_gold: np.ndarray,
    id2tag: dict[int, str],
) -> float:
    """JointBERT's sentence accuracy: the share of examples whose sentence label and every tag are right. The tag
    arrays are `(examples, seq)` with -100 where no word starts; the examples are in the same order for both tasks."""
    gold, predicted = tag_sequences(tag_predictions, tag_gold, id2tag)
    correct = [
        label == gold_label and tags == gold_tags
        for label, gold_label, tags, gold_tags in zip(sentence_predictions, sentence_gold, predicted, gold)
    ]
    return float(np.mean(correct))


def token_metrics(
    predictions: np.ndarray, labels: np.ndarray, id2label: dict[int, str], unscored=None
) -> dict[str, float]:
    """Entity-level precision/recall/F1 (seqeval, conlleval-compatible) and tag accuracy, against the full gold
    sentences (see `tag_sequences` for `unscored`)."""
    gold, predicted = tag_sequences(predictions, labels, id2label, unscored)
    flat_gold = [tag for sentence in gold for tag in sentence]
    flat_predicted = [tag for sentence in predicted for tag in sentence]
    return {
        "f1": float(f1_score(gold, predicted, zero_division=0)),
        "precision": float(precision_score(gold, predicted, zero_division=0)),
        "recall": float(recall_score(gold, predicted, zero_division=0)),
        "accuracy": float(accuracy_score(flat_gold, flat_predicted)) if flat_gold else 0.0,
    }


def entity_report(predictions: np.ndarray, labels: np.ndarray, id2label: dict[int, str]) -> str:
    gold, predicted = tag_sequences(predictions, labels, id2label)
    return classification_report(gold, predicted, zero_division=0)


def load_evaluate_metric(name: str):
    """An `evaluate` module for a metric spelled `evaluate:<id>`; raises ExperimentError when it can't be loaded."""
    module_id = name.split(":", 1)[1]
    try:
        import evaluate

        return evaluate.load(module_id)
    except Exception as error:  # evaluate raises connection, file and import errors alike
        raise ExperimentError(
            f"Could not load evaluate metric '{module_id}' ({type(error).__name__}: {error}). "
            "evaluate modules live on the Hugging Face Hub; offline, use the built-in metrics: "
            + "; ".join(f"{t}: {', '.join(m)}" for t, m in DEFAULT_METRICS.items())
        ) from error


def metric_inputs(
    task_type: str, predictions: np.ndarray, labels: np.ndarray, labels_names: list | None, unscored_tags=None
) -> tuple[list, list]:
    """`(predictions, references)` decoded as the built-in metrics read them, for `evaluate` modules: tag strings per
    sentence without the -100 positions (what seqeval reads) for token tasks, 0/1 vectors after the threshold for
    multi-label tasks, class ids for classification, values for regression. Token tasks' `unscored_tags` count as
    predicted "O" (see `tag_sequences`)."""
    if task_type == "token_classification":
        gold, predicted = tag_sequences(predictions, labels, dict(enumerate(labels_names)), unscored_tags)
        return predicted, gold
    if task_type == "multi_label_classification":
        return binarize(predictions).tolist(), labels.astype(int).tolist()
    return predictions.tolist(), labels.tolist()


def compute_task_metrics(
    task_type: str,
    predictions: np.ndarray,
    labels: np.ndarray,
    labels_names: list | None,
    extra_metrics: dict | None = None,
    unscored_tags: list | None = None,
) -> dict[str, float]:
    """All built-in metrics of one task (predictions already reduced: ids, probabilities or values); token tasks also
    score `unscored_tags`, the gold tags past each sentence's truncation, as predicted "O"."""
    if task_type == "sequence_classification":
        metrics = classification_metrics(predictions, labels, len(labels_names))
    elif task_type == "multi_label_classification":
        metrics = multi_label_metrics(predictions, labels)
    elif task_type == "regression":
        metrics = regression_metrics(predictions, labels)
    else:
        metrics = token_metrics(predictions, labels, dict(enumerate(labels_names)), unscored_tags)
    if extra_metrics:
        decoded, references = metric_inputs(task_type, predictions, labels, labels_names, unscored_tags)
    for name, module in (extra_metrics or {}).items():
        result = module.compute(predictions=decoded, references=references)
        metrics.update(_numbers(name.split(":", 1)[1], result))
    return metrics


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
