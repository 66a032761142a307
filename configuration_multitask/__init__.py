from .configuration_multitask import (
    FUSION_TYPES,
    RESERVED_TASK_NAMES,
    TAG_DECODINGS,
    TASK_TYPES,
    TOKEN_LEVEL_TASK_TYPES,
    WORD_SPLITTINGS,
    MultiTaskConfig,
    check_task_name,
)


__all__ = [
    "MultiTaskConfig",
    "TASK_TYPES",
    "FUSION_TYPES",
    "TOKEN_LEVEL_TASK_TYPES",
    "TAG_DECODINGS",
    "WORD_SPLITTINGS",
    "RESERVED_TASK_NAMES",
    "check_task_name",
]
