from .configuration_multitask import (
    FUSION_TYPES,
    RESERVED_TASK_NAMES,
    TAG_DECODINGS,
    TASK_TYPES,
    TOKEN_LEVEL_TASK_TYPES,
    WORD_SPLITTINGS,
    MultiTaskConfig,
    TaskView,
    check_model_settings,
    check_task_name,
    check_task_spec,
    check_unique_task_names,
)
from .task_type import Metric, TaskType
from .task_types import task_type


__all__ = [
    "MultiTaskConfig",
    "Metric",
    "TaskType",
    "TaskView",
    "TASK_TYPES",
    "FUSION_TYPES",
    "TOKEN_LEVEL_TASK_TYPES",
    "TAG_DECODINGS",
    "WORD_SPLITTINGS",
    "RESERVED_TASK_NAMES",
    "check_model_settings",
    "check_task_name",
    "check_task_spec",
    "check_unique_task_names",
    "task_type",
]
