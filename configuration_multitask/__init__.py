from .configuration_multitask import (
    FUSION_TYPES,
    RESERVED_TASK_NAMES,
    TAG_DECODINGS,
    TASK_TYPES,
    TOKEN_LEVEL_TASK_TYPES,
    MultiTaskConfig,
    check_task_name,
)


__all__ = [
    "MultiTaskConfig",
    "TASK_TYPES",
    "FUSION_TYPES",
    "TOKEN_LEVEL_TASK_TYPES",
    "TAG_DECODINGS",
    "RESERVED_TASK_NAMES",
    "check_task_name",
]
