"""The task heads, by task type: each is defined with its type in `configuration_multitask/task_<type>.py` (see
`task_type.TaskType`). This module keeps the names it has always exported; the model builds heads through the
task definitions (`config.task(name).definition.build_head`), not through this registry.
"""

from configuration_multitask.task_multi_label_classification import MultiLabelClassificationHead
from configuration_multitask.task_regression import RegressionHead
from configuration_multitask.task_sequence_classification import SequenceClassificationHead
from configuration_multitask.task_token_classification import (
    TokenClassificationHead,
    bio_transitions,
    decode_tags,
    viterbi_decode,
)
from configuration_multitask.task_type import IGNORE_INDEX, LabelReading, SequenceHead
from configuration_multitask.task_types import TASK_TYPES, TaskView


# The head classes of the original four types, as this module has always listed them (kept for user code).
HEAD_REGISTRY = {
    "sequence_classification": SequenceClassificationHead,
    "multi_label_classification": MultiLabelClassificationHead,
    "regression": RegressionHead,
    "token_classification": TokenClassificationHead,
}


def build_head(task: dict, hidden_size: int, dropout: float, token_context: bool = False):
    """The head for one task spec (a `MultiTaskConfig.tasks` entry), as its type's definition builds it."""
    if task["type"] not in TASK_TYPES:
        raise ValueError(f"No head for task type {task['type']!r}. Known types: {', '.join(TASK_TYPES)}.")
    definition = TASK_TYPES[task["type"]]
    settings = {key: task.get(key, default) for key, default in definition.settings.items()}
    labels = None if task.get("labels") is None else tuple(task["labels"])
    view = TaskView(task["name"], task["type"], 0, labels, task["num_labels"], task.get("loss_weight", 1.0), settings)
    return definition.build_head(view, hidden_size, dropout, token_context)


__all__ = [
    "HEAD_REGISTRY",
    "IGNORE_INDEX",
    "LabelReading",
    "MultiLabelClassificationHead",
    "RegressionHead",
    "SequenceClassificationHead",
    "SequenceHead",
    "TokenClassificationHead",
    "bio_transitions",
    "build_head",
    "decode_tags",
    "viterbi_decode",
]
