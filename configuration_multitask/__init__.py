from .configuration_multitask import MultiTaskConfig, TASK_TYPES, FUSION_TYPES, TOKEN_LEVEL_TASK_TYPES

__all__ = ["MultiTaskConfig", "TASK_TYPES", "FUSION_TYPES", "TOKEN_LEVEL_TASK_TYPES"]
