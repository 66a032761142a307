"""`regression`: one number per example (or per text pair), such as a similarity score.

Head: dense + tanh + linear to one output, mean squared error. Metrics: the mean of Pearson and Spearman
correlation (primary), each of them, and the mean squared error (lower is better). Prediction: `{"value"}`.
"""

import math

import numpy as np
import torch
from torch.nn import functional as F

from .task_type import Metric, SequenceHead, TaskType, any_set, first_value, training_library


class RegressionHead(SequenceHead):
    """Regression: logits `(batch, 1)`, labels `(batch,)` floats."""

    task_type = "regression"

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, task_name: str = "task"):
        super().__init__(hidden_size, 1, dropout, task_name)

    def read_labels(self, labels, batch_size, seq_len):
        expected = f"({batch_size},) finite targets, one per example"
        values = self._one_value_per_example(labels, batch_size, expected).float()
        invalid = ~torch.isfinite(values)
        if any_set(invalid):
            raise self._error(f"label {first_value(invalid, values)} is not finite; expected {expected}.")
        return values

    def loss(self, logits, labels):
        return F.mse_loss(logits.float().squeeze(-1), labels)


def regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    stats = training_library("scipy.stats")
    predictions, labels = predictions.reshape(-1), labels.reshape(-1)
    constant = np.ptp(predictions) == 0 or np.ptp(labels) == 0
    pearson = 0.0 if constant else float(stats.pearsonr(predictions, labels)[0])
    spearman = 0.0 if constant else float(stats.spearmanr(predictions, labels)[0])
    return {
        "pearson_spearman": (pearson + spearman) / 2,
        "pearson": pearson,
        "spearman": spearman,
        "mse": float(np.mean((labels - predictions) ** 2)),
    }


class Regression(TaskType):
    name = "regression"
    problem_type = "regression"
    transformers_model = ("AutoModelForSequenceClassification", "regression")
    min_labels = None
    metrics = (Metric("pearson_spearman"), Metric("pearson"), Metric("spearman"), Metric("mse", False))
    reported_metrics = ("pearson", "spearman")

    def read_label(self, value, options):
        try:
            target = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"regression label {value!r} is not a number") from None
        if isinstance(value, bool) or not math.isfinite(target):
            # One NaN target makes the loss NaN and, through it, every weight.
            raise ValueError(f"regression label {value!r} is not a finite number: fix or drop the example")
        return target

    def label_names(self, raw):
        return []

    def encode_label(self, raw, to_id, num_labels, words=None):
        return raw

    def collate_labels(self, labels, seq_len, padding_side):
        return torch.tensor(labels, dtype=torch.float)

    def build_head(self, task, hidden_size, dropout, token_context=False):
        return RegressionHead(hidden_size, 1, dropout, task_name=task.name)

    def reduce_logits(self, task, logits, labels):
        return logits.float().squeeze(-1)

    def compute_metrics(self, task, predictions, labels, scoring=None):
        return regression_metrics(predictions, labels)

    def predict(self, task, logits, example, options):
        return {"value": logits.reshape(-1)[0].item()}


__all__ = ["Regression", "RegressionHead", "regression_metrics"]
