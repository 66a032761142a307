from .configuration_multitask import (
    FUSION_TYPES,
    TAG_DECODINGS,
    TASK_TYPES,
    TOKEN_LEVEL_TASK_TYPES,
    WORD_SPLITTINGS,
    MultiTaskConfig,
)


__all__ = [
    "MultiTaskConfig",
    "TASK_TYPES",
    "FUSION_TYPES",
    "TOKEN_LEVEL_TASK_TYPES",
    "TAG_DECODINGS",
    "WORD_SPLITTINGS",
]
