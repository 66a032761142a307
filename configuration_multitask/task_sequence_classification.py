"""`sequence_classification`: one label per example (or per text pair), from a set of names.

Head: dense + tanh + linear on the pooled vector, cross-entropy loss. Metrics: accuracy, F1 (binary for two labels,
macro otherwise), Matthews correlation. Prediction: `{"label", "score"}`, plus `"top_k"` when asked for more.
"""

import numpy as np
from torch.nn import functional as F

from .task_type import Metric, SequenceHead, TaskType, TaskView, any_set, first_value, not_a_class_id, training_library


class SequenceClassificationHead(SequenceHead):
    """Single-label classification: logits `(batch, num_labels)`, labels `(batch,)` class ids."""

    task_type = "sequence_classification"

    def read_labels(self, labels, batch_size, seq_len):
        expected = f"({batch_size},) class ids in [0, {self.num_labels}) (not one-hot: pass labels.argmax(-1))"
        ids = self._one_value_per_example(labels, batch_size, expected)
        invalid = not_a_class_id(ids, self.num_labels)
        if any_set(invalid):
            raise self._error(f"label {first_value(invalid, ids)} is not a class id; expected {expected}.")
        return ids.long()

    def loss(self, logits, labels):
        return F.cross_entropy(logits.float(), labels)


def classification_metrics(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    metrics = training_library("sklearn.metrics")
    average = "binary" if num_labels == 2 else "macro"
    return {
        "accuracy": float(metrics.accuracy_score(labels, predictions)),
        "f1": float(metrics.f1_score(labels, predictions, average=average, zero_division=0)),
        "mcc": float(metrics.matthews_corrcoef(labels, predictions)),
    }


class SequenceClassification(TaskType):
    name = "sequence_classification"
    problem_type = "single_label_classification"
    transformers_model = ("AutoModelForSequenceClassification", "single_label_classification")
    metrics = (Metric("accuracy"), Metric("f1"), Metric("mcc"))

    def build_head(self, task, hidden_size, dropout, token_context=False):
        return SequenceClassificationHead(hidden_size, task.num_labels, dropout, task_name=task.name)

    def compute_metrics(self, task, predictions, labels, scoring=None):
        return classification_metrics(predictions, labels, task.num_labels)

    def example_correct(self, task: TaskView, predictions, labels) -> list[bool]:
        return [bool(p == g) for p, g in zip(predictions, labels, strict=True)]

    def predict(self, task, logits, example, options):
        probabilities = logits.float().softmax(-1)
        order = probabilities.argsort(descending=True).tolist()
        result = {"label": task.labels[order[0]], "score": probabilities[order[0]].item()}
        top_k = options.get("top_k") or 1
        if top_k > 1:
            result["top_k"] = [{"label": task.labels[i], "score": probabilities[i].item()} for i in order[:top_k]]
        return result


__all__ = ["SequenceClassification", "SequenceClassificationHead", "classification_metrics"]
