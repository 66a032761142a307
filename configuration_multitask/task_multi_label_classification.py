"""`multi_label_classification`: any number of labels per example, from a set of names.

Data: a list of names, or one string joined by `label_separator` (default `|`). Head: dense + tanh + linear on the
pooled vector, binary cross-entropy per label. A label is predicted when its sigmoid reaches the threshold (0.5, or
the pipeline's `threshold=`). Metrics: micro and macro F1, subset accuracy. Prediction: `{"labels", "scores"}`.
"""

import numpy as np
import torch
from torch.nn import functional as F

from .task_type import Metric, SequenceHead, TaskType, any_set, first_value, training_library


THRESHOLD = 0.5  # a label is predicted when its probability reaches this


class MultiLabelClassificationHead(SequenceHead):
    """Multi-label classification: logits `(batch, num_labels)`, labels `(batch, num_labels)` of 0/1."""

    task_type = "multi_label_classification"

    def read_labels(self, labels, batch_size, seq_len):
        expected = f"({batch_size}, {self.num_labels}) targets in [0, 1]"
        self._check_batch(labels, batch_size, expected)
        if labels.dim() != 2 or labels.shape[1] < self.num_labels:
            raise self._error(f"labels have shape {tuple(labels.shape)}; expected {expected}.")
        self._check_padding(labels[:, self.num_labels :], labels, expected)
        targets = labels[:, : self.num_labels]
        invalid = ~((targets >= 0) & (targets <= 1))  # NaN fails both comparisons
        if any_set(invalid):
            raise self._error(f"label {first_value(invalid, targets)} is outside [0, 1]; expected {expected}.")
        return targets.float()

    def loss(self, logits, labels):
        return F.binary_cross_entropy_with_logits(logits.float(), labels)


def binarize(probabilities: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Multi-label 0/1 predictions from probabilities."""
    return (probabilities >= threshold).astype(int)


def multi_label_metrics(probabilities: np.ndarray, labels: np.ndarray, threshold: float = THRESHOLD) -> dict:
    metrics = training_library("sklearn.metrics")
    predicted = binarize(probabilities, threshold)
    labels = labels.astype(int)
    return {
        "micro_f1": float(metrics.f1_score(labels, predicted, average="micro", zero_division=0)),
        "macro_f1": float(metrics.f1_score(labels, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float(metrics.accuracy_score(labels, predicted)),
    }


class MultiLabelClassification(TaskType):
    name = "multi_label_classification"
    problem_type = "multi_label_classification"
    transformers_model = ("AutoModelForSequenceClassification", "multi_label_classification")
    min_labels = 1
    data_settings = {"label_separator": "|"}
    metrics = (Metric("micro_f1"), Metric("macro_f1"), Metric("subset_accuracy"))

    def read_label(self, value, options):
        if isinstance(value, str):
            return [part.strip() for part in value.split(options.get("label_separator") or "|") if part.strip()]
        if isinstance(value, list) and all(
            isinstance(item, (str, int)) and not isinstance(item, bool) for item in value
        ):
            return [str(item) for item in value]
        raise ValueError(
            f"multi-label value {value!r} must be a list of label names or a string joined by label_separator "
            "(default '|')"
        )

    def label_names(self, raw):
        return raw

    def encode_label(self, raw, to_id, num_labels, words=None):
        hot = [0.0] * num_labels
        for name in raw:
            hot[to_id(name)] = 1.0
        return hot

    def collate_labels(self, labels, seq_len, padding_side):
        return torch.tensor(labels, dtype=torch.float)

    def build_head(self, task, hidden_size, dropout, token_context=False):
        return MultiLabelClassificationHead(hidden_size, task.num_labels, dropout, task_name=task.name)

    def reduce_logits(self, task, logits, labels):
        return torch.sigmoid(logits.float())

    def compute_metrics(self, task, predictions, labels, scoring=None):
        return multi_label_metrics(predictions, labels)

    def metric_inputs(self, task, predictions, labels, scoring=None):
        return binarize(predictions).tolist(), labels.astype(int).tolist()

    def predict(self, task, logits, example, options):
        threshold = options.get("threshold")
        threshold = THRESHOLD if threshold is None else threshold
        scores = torch.sigmoid(logits.float()).tolist()
        return {
            "labels": [label for label, score in zip(task.labels, scores, strict=True) if score >= threshold],
            "scores": dict(zip(task.labels, scores, strict=True)),
        }


__all__ = ["MultiLabelClassification", "MultiLabelClassificationHead", "binarize", "multi_label_metrics"]
