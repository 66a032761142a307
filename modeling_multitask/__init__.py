"""The multi-task model library: the public API of the model side.

`MultiTaskModel` and friends are shipped as remote code with every checkpoint (the flat files in this folder);
this `__init__` is not shipped, so it may register the classes with the Auto API for in-process use.
"""

from transformers import AutoConfig, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from configuration_multitask import MultiTaskConfig

from .fusion import AttentionFusion, AttentionFusionOutput
from .heads import HEAD_REGISTRY, build_head
from .modeling_multitask import MultiTaskModel, MultiTaskModelOutput, MultiTaskPreTrainedModel
from .pipeline_multitask import PIPELINE_TASK, MultiTaskPipeline


# save_pretrained writes `auto_map` and copies the defining files for the registered classes.
MultiTaskConfig.register_for_auto_class()
MultiTaskModel.register_for_auto_class("AutoModel")
# In this process, AutoConfig/AutoModel resolve "multitask" checkpoints without trust_remote_code.
AutoConfig.register(MultiTaskConfig.model_type, MultiTaskConfig, exist_ok=True)
AutoModel.register(MultiTaskConfig, MultiTaskModel, exist_ok=True)
# The inference pipeline: `pipeline("multitask", model=...)` here; checkpoints name it in config.json.
PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=MultiTaskPipeline, pt_model=AutoModel, type="text")

__all__ = [
    "AttentionFusion",
    "AttentionFusionOutput",
    "HEAD_REGISTRY",
    "MultiTaskConfig",
    "MultiTaskModel",
    "MultiTaskModelOutput",
    "MultiTaskPipeline",
    "MultiTaskPreTrainedModel",
    "build_head",
]
