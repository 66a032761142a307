"""MultiTaskModel: one shared pretrained encoder, one head per task, optional AttentionFusion.

Shipped as remote code next to every checkpoint: imports only torch, transformers and its flat sibling files.
"""

import copy
import inspect
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_multitask import MultiTaskConfig
from .fusion import AttentionFusion, check_task_ids


logger = logging.get_logger(__name__)


@dataclass
class MultiTaskModelOutput(ModelOutput):
    """
    Output of [`MultiTaskModel`].

    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
        The mean over examples of each example's task loss times its task's `loss_weight` (for joint labels, the
        weighted sum over the labelled tasks).
    logits (`torch.FloatTensor`, *optional*, set when the batch is one task):
        `(batch, num_labels)` for sequence and multi-label classification, `(batch, 1)` for regression,
        `(batch, seq, num_labels)` for token classification.
    task_ids (`torch.LongTensor` of shape `(batch,)`, *optional*):
        The task of each example (absent when every task was predicted for every example). Kept for API
        compatibility; the trainer knows each evaluated task from its dataset and does not read it.
    task_logits (`dict[str, torch.FloatTensor]`, *optional*):
        Logits per task name, for the examples of that task in batch order (every example in the all-tasks mode).
    task_losses (`dict[str, torch.FloatTensor]`, *optional*):
        The unweighted loss of each task in the batch.
    fusion_weights (`dict[str, torch.FloatTensor]`, *optional*, with `output_fusion_weights=True` and fusion on):
        The AttentionFusion token weights `(examples, seq)` per task name.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        The encoder's hidden states, with `output_hidden_states=True` (the shared layers only, with
        `config.task_private_layers`).
    attentions (`tuple(torch.FloatTensor)`, *optional*):
        The encoder's attention maps, with `output_attentions=True`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    task_ids: torch.LongTensor | None = None
    task_logits: dict | None = None
    task_losses: dict | None = None
    fusion_weights: dict | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@dataclass
class _Route:
    """One task to run in a forward pass: its index and the batch rows it owns (`None` for every row)."""

    task_index: int
    rows: torch.Tensor | None
    labels: torch.Tensor | None
    loss_scale: float  # the fraction of the batch this task owns, so mixed batches average over examples


class MultiTaskPreTrainedModel(PreTrainedModel):
    """Ties [`MultiTaskConfig`] to the model classes and declares what the shared encoder supports."""

    config_class = MultiTaskConfig
    base_model_prefix = "multitask"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # forward() takes no **kwargs: the Trainer divides the loss by the gradient-accumulation steps itself.
    accepts_loss_kwargs = False

    def _init_weights(self, module):
        if id(module) in self._zero_start_ids():
            init.zeros_(module.weight)
            return
        super()._init_weights(module)

    def _zero_start_ids(self) -> frozenset[int]:
        """`id`s of `_zero_start_modules`, computed once per fusion layer and head set: `_init_weights` runs for every
        module, and rebuilding the list over K heads each time made building a model O(K^2)."""
        key = (id(getattr(self, "fusion", None)), id(getattr(self, "heads", None)))
        cached = self.__dict__.get("_zero_start_cache")
        if cached is None or cached[0] != key:
            cached = (key, frozenset(id(module) for module in self._zero_start_modules()))
            self.__dict__["_zero_start_cache"] = cached
        return cached[1]

    def _zero_start_modules(self) -> list[nn.Module]:
        """What fusion adds that starts at exactly zero, so a new fusion model computes what the model without it
        does: the scores (fusion starts as mean pooling for sequence heads and the identity for token heads) and the
        token heads' sentence-context weights. They leave zero only as far as the task gradient pushes them."""
        fusion = getattr(self, "fusion", None)
        if fusion is None:
            return []
        heads = getattr(self, "heads", {})
        contexts = [head.context_classifier for head in heads.values() if getattr(head, "context_classifier", None)]
        return [fusion.score, *contexts]


class MultiTaskModel(MultiTaskPreTrainedModel):
    r"""
    A shared encoder (any `AutoModel` text encoder) with one head per task from `config.tasks`, and an
    [`AttentionFusion`] layer between them when `config.fusion` is set.

    Without fusion, sequence-level heads read the `[CLS]` vector or the mean of the real tokens (`config.pooling`)
    and token heads read the encoder output. With fusion, each task gets its own token weights: sequence-level heads
    read the attention-pooled vector and token heads the length-rescaled fused tokens (see [`AttentionFusion`]).
    A positive per-token gate rescales a linear token head's logits without changing their argmax, so with
    `config.fusion["token_context"]` token heads also read their task's attention-pooled vector next to each token:
    the attention then decides what the sentence context is, and that context can change a token's label.

    Build a new model from pretrained encoder weights with [`~MultiTaskModel.from_encoder_pretrained`]; load a
    trained one with `from_pretrained`, or anywhere with `AutoModel.from_pretrained(path, trust_remote_code=True)`.
    """

    def __init__(self, config: MultiTaskConfig):
        super().__init__(config)
        if not config.tasks:
            raise ValueError("MultiTaskConfig has no tasks: pass tasks=[{'name': ..., 'type': ..., 'labels': ...}].")
        self.encoder = AutoModel.from_config(config.encoder_config)
        _remove_pooler(self.encoder)
        token_context = config.fusion is not None and config.fusion["token_context"]
        # Each task's type builds its head (see `task_type.TaskType`); the model only routes to them.
        self.heads = nn.ModuleDict(
            {
                task.name: task.definition.build_head(task, config.hidden_size, config.dropout, token_context)
                for task in config.task_views
            }
        )
        self.task_layers = None
        if config.task_private_layers:
            self.task_layers = self._split_off_private_layers(self.encoder)
        # Built on a forked random stream and registered last (so `post_init` initializes it last): the encoder and
        # heads then start from the same weights as the same-seed model without fusion, which makes the fusion
        # ablation a paired comparison instead of two unrelated draws.
        self.fusion = None
        if config.fusion is not None:
            with torch.random.fork_rng(devices=[]):
                self.fusion = AttentionFusion(config, config.num_tasks)
        self._encoder_arguments = set(inspect.signature(self.encoder.forward).parameters)
        # Read on every forward: built once, so a step costs the same with 500 tasks as with one.
        self._task_views = tuple(config.task_views)
        self._task_names = tuple(config.task_names)
        self.post_init()

    @classmethod
    def from_encoder_pretrained(
        cls,
        encoder_name_or_path: str,
        tasks: list[dict],
        fusion: dict | None = None,
        dropout: float = 0.1,
        pooling: str = "cls",
        text_pair_tasks: list[str] | None = None,
        task_private_layers: int = 0,
        word_splitting: str = "whitespace",
        **encoder_kwargs,
    ) -> "MultiTaskModel":
        """
        A new multi-task model whose shared encoder holds pretrained weights; the heads and fusion start random.

        Args:
            encoder_name_or_path (`str`): a local model folder or a Hub id, as for `AutoModel.from_pretrained`.
            tasks, fusion, dropout, pooling, text_pair_tasks, task_private_layers, word_splitting: as in
                [`MultiTaskConfig`]; the private copies of the top layers start from the pretrained ones.
            encoder_kwargs: passed to `AutoModel.from_pretrained` (e.g. `attn_implementation`, `revision`).
        """
        encoder = AutoModel.from_pretrained(encoder_name_or_path, **encoder_kwargs)
        config = MultiTaskConfig(
            encoder_config=encoder.config,
            tasks=tasks,
            fusion=fusion,
            dropout=dropout,
            pooling=pooling,
            text_pair_tasks=text_pair_tasks,
            task_private_layers=task_private_layers,
            word_splitting=word_splitting,
        )
        model = cls(config)
        _remove_pooler(encoder)
        if model.task_layers is not None:  # the private copies start from the pretrained top layers
            model.task_layers = model._split_off_private_layers(encoder)
        model.encoder = encoder
        model.config.encoder_config = encoder.config
        return model

    def _split_off_private_layers(self, encoder: nn.Module) -> nn.ModuleDict:
        """Cut the top `config.task_private_layers` layers off `encoder`'s layer stack and return a copy of them for
        every task. The encoder keeps the shared layers below; `forward` runs each task's copies on their output."""
        path, layers = _layer_stack(encoder)
        shared = len(layers) - self.config.task_private_layers  # >= 1: the config checked it against this depth
        parent, name = path.rpartition(".")[::2] if "." in path else ("", path)
        setattr(encoder.get_submodule(parent), name, nn.ModuleList(layers[:shared]))
        self._shared_layers_path = path
        top = layers[shared:]
        return nn.ModuleDict(
            {task: nn.ModuleList(copy.deepcopy(layer) for layer in top) for task in self.config.task_names}
        )

    def push_to_hub(self, repo_id: str, tokenizer=None, **kwargs):
        """Push the model (with `tokenizer`, if given), the multi-task pipeline and a generated model card.

        Replaces transformers' `push_to_hub`, whose generic card would overwrite ours; see `hub.push_model`.
        """
        from .hub import push_model

        return push_model(self, repo_id, tokenizer=tokenizer, **kwargs)

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.encoder.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        task_ids: torch.LongTensor | int | None = None,
        labels: torch.Tensor | dict | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_fusion_weights: bool | None = None,
        return_dict: bool | None = None,
        tasks: list[str] | None = None,
    ) -> MultiTaskModelOutput | tuple:
        r"""
        input_ids (`torch.LongTensor` of shape `(rows, seq)`, *optional*):
            One encoder row per example, or per choice of a multiple-choice example: its `num_choices` choices are
            consecutive rows (the collator's layout, which lets them share a batch with other tasks). The layout of
            transformers' `AutoModelForMultipleChoice`, `(examples, num_choices, seq)`, is read too (and flattened so);
            `attention_mask`, `token_type_ids` and `inputs_embeds` follow `input_ids`' layout.
        task_ids (`int` or `torch.LongTensor` of shape `(batch,)`, *optional*):
            The task of the batch, or of each example (a batch may mix tasks; each example goes through its own
            task's head and loss). Left out, every task that reads text is predicted for every example from one
            encoder pass (a type that encodes its own inputs, such as multiple choice, needs its task id).
        labels (`torch.Tensor` or `dict[str, torch.Tensor]`, *optional*):
            For a batch of one task, that task's labels in their usual shape: `(batch,)` class ids, `(batch,
            num_labels)` 0/1 for multi-label, `(batch,)` floats for regression, `(batch, seq)` token ids with -100
            ignored. For a mixed batch, a `(batch, L)` tensor padded with -100 holding each example's labels in
            those shapes (the task-aware collator builds it). With `task_ids` left out, a dict from task name to
            labels trains several tasks on the same examples in one pass (joint intent and slots, as JointBERT).
        output_fusion_weights (`bool`, *optional*):
            Return the AttentionFusion token weights per task (when fusion is on).
        tasks (`list[str]`, *optional*):
            Without `task_ids` and labels: predict only these tasks (by name) for every example, from one pass.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, task_ids = _flatten_choices(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, task_ids
        )
        encoder_inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "inputs_embeds": inputs_embeds,
            "token_type_ids": token_type_ids,
            "position_ids": position_ids,
        }
        encoder_inputs = {k: v for k, v in encoder_inputs.items() if v is not None and k in self._encoder_arguments}
        # With private top layers, record how the encoder calls its last shared layer (the attention mask in the
        # form this encoder's layers expect, position embeddings, ...) so that the private copies get the same call.
        layer_call = {}
        hooks = []
        if self.task_layers is not None:
            last_shared = self.encoder.get_submodule(self._shared_layers_path)[-1]
            hooks = [
                last_shared.register_forward_pre_hook(
                    lambda module, args, kwargs: layer_call.update(args=args, kwargs=kwargs), with_kwargs=True
                ),
                last_shared.register_forward_hook(lambda module, args, output: layer_call.update(output=output)),
            ]
        try:
            encoder_outputs = self.encoder(
                **encoder_inputs,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
        finally:
            for hook in hooks:
                hook.remove()
        sequence_output = encoder_outputs.last_hidden_state  # (batch, seq, hidden)
        if self.task_layers is not None:
            _check_output_is_last_layer(layer_call, sequence_output, self.config.encoder_config.model_type)
        batch_size, seq_len = sequence_output.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones((batch_size, seq_len), dtype=torch.long, device=sequence_output.device)

        routes, task_ids = self._routes(task_ids, labels, batch_size, sequence_output.device, tasks)
        # Several tasks over the same rows share the fusion's task-independent token projection.
        projected = None
        if self.fusion is not None and self.task_layers is None and len(routes) > 1 and routes[0].rows is None:
            projected = self.fusion.project_tokens(sequence_output)
        task_logits, task_losses, fusion_weights = {}, {}, {}
        loss = None
        for route in routes:
            task = self._task_views[route.task_index]
            head = self.heads[task.name]
            hidden = sequence_output if route.rows is None else sequence_output[route.rows]
            if self.task_layers is not None:
                hidden = self._private_layers_forward(task.name, hidden, layer_call, route.rows)
            mask = attention_mask if route.rows is None else attention_mask[route.rows]
            representation, context, weights = self._task_representation(
                hidden, mask, route.task_index, task.definition.head_input, projected if route.rows is None else None
            )
            logits = head(representation) if context is None else head(representation, context)
            task_logits[task.name] = logits
            if weights is not None and output_fusion_weights:
                fusion_weights[task.name] = weights
            if route.labels is not None:
                task_loss = head.loss(logits, head.read_labels(route.labels, logits.shape[0], seq_len))
                task_losses[task.name] = task_loss
                weighted = task.loss_weight * route.loss_scale * task_loss
                loss = weighted if loss is None else loss + weighted

        output = MultiTaskModelOutput(
            loss=loss,
            logits=next(iter(task_logits.values())) if len(task_logits) == 1 else None,
            task_ids=task_ids,
            task_logits=task_logits,
            task_losses=task_losses or None,
            fusion_weights=fusion_weights or None,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()

    def _private_layers_forward(self, task: str, hidden, layer_call: dict, rows) -> torch.Tensor:
        """Run `task`'s private top layers on the shared output `hidden` (already cut to `rows`), called as the
        encoder called its last shared layer; batch-sized arguments are cut to `rows` too."""
        args, kwargs = layer_call["args"][1:], dict(layer_call["kwargs"])
        if rows is not None:
            batch_size = layer_call["args"][0].shape[0] if layer_call["args"] else kwargs["hidden_states"].shape[0]
            args, kwargs = _select_rows((args, kwargs), rows, batch_size)
        for layer in self.task_layers[task]:
            if "hidden_states" in kwargs:
                kwargs["hidden_states"] = hidden
                output = layer(*args, **kwargs)
            else:
                output = layer(hidden, *args, **kwargs)
            hidden = output[0] if isinstance(output, tuple) else output
        return hidden

    def decode_token_labels(self, task: str, logits: torch.Tensor, word_mask: torch.Tensor) -> torch.LongTensor:
        """Label ids `(batch, seq)` from a token-level task's logits `(batch, seq, num_labels)`, following the task's
        `decoding`: each token's argmax, or for `"bio"` the most likely IOB2-valid tag sequence over the `word_mask`
        positions (the first sub-token of each word: what gets a label), where `I-X` follows only `B-X` or `I-X`."""
        view = self.config.task(task)
        if not hasattr(view.definition, "decode"):
            raise ValueError(f"Task {task!r} is {view.type}, not token-level: its logits are not tags.")
        return view.definition.decode(view, logits, word_mask)

    def _routes(
        self, task_ids, labels, batch_size: int, device, tasks=None
    ) -> tuple[list[_Route], torch.Tensor | None]:
        """Which tasks to run on which rows, with their labels; also the `(batch,)` task ids to report."""
        num_tasks = self.config.num_tasks
        if tasks is not None and (task_ids is not None or labels is not None):
            raise ValueError("tasks= chooses what to predict without task_ids or labels: pass one or the other.")
        if labels is not None and not isinstance(labels, dict):
            _check_label_tensor(labels, "labels")
        if isinstance(labels, dict):
            if task_ids is not None:
                raise ValueError(
                    "Pass labels as a dict of task name -> labels only without task_ids "
                    "(joint training runs every named task on every example)."
                )
            unknown = [name for name in labels if name not in self.config.task_names]
            if unknown:
                raise ValueError(
                    f"Unknown task {unknown[0]!r} in labels: the keys of a labels dict are task names "
                    f"({', '.join(self.config.task_names)})."
                )
            for name, value in labels.items():
                _check_label_tensor(value, f"labels[{name!r}]")
            indices = [self.config.task_index(name) for name in labels]
            return [_Route(i, None, labels[self.config.task_names[i]], 1.0) for i in indices], None

        if task_ids is None:
            if labels is not None and num_tasks > 1:
                raise ValueError(
                    f"labels were given without task_ids, but the model has {num_tasks} tasks "
                    f"({', '.join(self.config.task_names)}): pass task_ids, or labels as a dict."
                )
            if tasks is not None:
                return [_Route(self.config.task_index(name), None, None, 1.0) for name in tasks], None
            if num_tasks > 1:
                # Every task whose type reads the text; a type with inputs of its own needs its rows and task id.
                text = [i for i, view in enumerate(self._task_views) if view.definition.input_keys is None]
                return [_Route(i, None, None, 1.0) for i in text], None
            task_ids = 0

        task_ids = check_task_ids(task_ids, num_tasks, batch_size, device, self._task_names)
        if isinstance(task_ids, int):
            # One task for the whole batch: no data-dependent routing (and no graph break under torch.compile).
            task_tensor = torch.full((batch_size,), task_ids, dtype=torch.long, device=device)
            return [_Route(task_ids, None, labels, 1.0)], task_tensor
        present = torch.unique(task_ids).tolist()
        if len(present) == 1:
            return [_Route(present[0], None, labels, 1.0)], task_ids
        routes = []
        for index in present:
            rows = (task_ids == index).nonzero(as_tuple=True)[0]
            routes.append(_Route(index, rows, None if labels is None else labels[rows], len(rows) / batch_size))
        return routes, task_ids

    def _task_representation(self, hidden, mask, task_index: int, head_input: str, projected=None):
        """What a task's head reads, as its type's `head_input` says (`"sequence"`: one pooled vector per example,
        `"token"`: one per token): `(representation, sentence context or None, fusion weights or None)`."""
        is_token_level = head_input == "token"
        if self.fusion is None:
            if is_token_level:
                return hidden, None, None
            if self.config.pooling == "mean":
                mask_f = mask.unsqueeze(-1).to(hidden.dtype)
                return (hidden * mask_f).sum(1) / mask_f.sum(1).clamp(min=1.0), None, None
            return hidden[:, 0], None, None
        fused = self.fusion(
            hidden,
            task_index,
            mask,
            head_input=head_input,
            token_context=self.config.fusion["token_context"],
            projected_tokens=projected,
        )
        if not is_token_level:
            return fused.pooled_representation, None, fused.attention_weights
        return fused.fused_representation, fused.pooled_representation, fused.attention_weights


def _layer_stack(encoder: nn.Module) -> tuple[str, nn.ModuleList]:
    """The encoder's stack of transformer layers and its path: the first `ModuleList` of `num_hidden_layers`
    modules of one class (`encoder.layer` in BERT and RoBERTa, `transformer.layer` in DistilBERT, `layers` in others)."""
    depth = getattr(encoder.config, "num_hidden_layers", None)
    for path, module in encoder.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth and len({type(m) for m in module}) == 1:
            return path, module
    raise ValueError(
        f"task_private_layers: found no stack of {depth} layers in the {encoder.config.model_type} encoder to split. "
        "Use task_private_layers=0 with this encoder."
    )


def _check_output_is_last_layer(layer_call: dict, sequence_output: torch.Tensor, model_type: str) -> None:
    """Private layers continue from the last shared layer's output; an encoder that transforms it further (a final
    norm, as pre-norm encoders have) would feed them something else, so refuse it rather than compute a wrong model."""
    output = layer_call.get("output")
    output = output[0] if isinstance(output, tuple) else output
    if output is None or not (output is sequence_output or torch.equal(output, sequence_output)):
        raise ValueError(
            f"task_private_layers needs an encoder whose output is its last layer's output, and the {model_type} "
            "encoder transforms it further (a final norm, say). Use task_private_layers=0 with this encoder."
        )


def _flatten_choices(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, task_ids):
    """transformers' multiple-choice layout, `(examples, num_choices, seq)`, as the rows the model reads: each
    example's choices consecutive, `(examples * num_choices, seq)`; a task id per example repeated for its choices.
    Inputs with one row per example pass through unchanged."""
    tokens = input_ids if input_ids is not None else inputs_embeds
    choice_dims = 3 if input_ids is not None else 4  # ids (examples, choices, seq); embeddings add hidden
    if tokens is None or tokens.dim() != choice_dims:
        return input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, task_ids
    examples, choices = tokens.shape[:2]

    def flatten(value, dims):
        return value.flatten(0, 1) if value is not None and value.dim() == dims else value

    if isinstance(task_ids, torch.Tensor) and task_ids.dim() == 1 and task_ids.shape[0] == examples:
        task_ids = task_ids.repeat_interleave(choices)
    return (
        flatten(input_ids, 3),
        flatten(attention_mask, 3),
        flatten(token_type_ids, 3),
        flatten(position_ids, 3),
        flatten(inputs_embeds, 4),
        task_ids,
    )


def _select_rows(value, rows: torch.Tensor, batch_size: int):
    """`value` with every tensor whose first dimension is the batch cut to `rows` (through tuples, lists, dicts)."""
    if torch.is_tensor(value):
        return value[rows] if value.dim() > 0 and value.shape[0] == batch_size else value
    if isinstance(value, (tuple, list)):
        return type(value)(_select_rows(item, rows, batch_size) for item in value)
    if isinstance(value, dict):
        return {key: _select_rows(item, rows, batch_size) for key, item in value.items()}
    return value


def _check_label_tensor(value, what: str) -> None:
    """Labels reach the heads as tensors: anything else (a Python list, say) is refused with the fix."""
    if not torch.is_tensor(value):
        raise ValueError(
            f"{what} must be a torch.Tensor, got {type(value).__name__}: wrap it with torch.tensor(...) (the "
            "task-aware data collator builds them)."
        )


def _remove_pooler(encoder: nn.Module) -> None:
    """Drop the encoder's pooler: nothing reads it, and weights without gradients break data-parallel training."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None


__all__ = ["MultiTaskModel", "MultiTaskModelOutput", "MultiTaskPreTrainedModel"]
