"""Configuration of the multi-task model: one shared encoder, one head per task, optional AttentionFusion.

This file is shipped as remote code next to every checkpoint, so it imports nothing but torch and transformers.
"""

import difflib
import re

from torch import nn
from transformers import AutoConfig, PreTrainedConfig


try:  # transformers >= 5.20 builds a declared sub-config from its dict itself
    from transformers.configuration_utils import SubConfigSpec
except ImportError:  # 5.17-5.19: the config builds it (`_build_encoder_config`)
    SubConfigSpec = None

from .task_token_classification import TAG_DECODINGS
from .task_types import TASK_TYPES, TaskView


# Every task type, and everything it means, is defined in one place: its `task_<type>.py` file, registered in
# `task_types.py` (shipped beside this file as remote code). The config validates each task through its definition.
TOKEN_LEVEL_TASK_TYPES = frozenset(name for name, definition in TASK_TYPES.items() if definition.head_input == "token")
FUSION_TYPES = ("attention",)
POOLING_TYPES = ("cls", "mean")
# What a word is, for training and the pipeline alike (see `featurization.WORD_SPLITTERS`, which implements them).
WORD_SPLITTINGS = ("whitespace", "punctuation")

_COMMON_TASK_KEYS = ("name", "type", "labels", "num_labels", "loss_weight", "max_length")
_FUSION_KEYS = ("type", "hidden_size", "token_context")
_TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# Task names key `nn.ModuleDict`s (heads, private layers), which refuse a key that is one of their attributes
# (`type`, `train`, `update`, `keys`, `to`, ...), and dicts of per-task values: such names are reserved.
RESERVED_TASK_NAMES = frozenset(name for name in {*dir(nn.ModuleDict()), *dir(dict)} if _TASK_NAME.match(name))


def _nearest(key: str, allowed) -> str:
    """A 'did you mean' suffix for an unknown key, or an empty string."""
    match = difflib.get_close_matches(key, list(allowed), n=1)
    return f" Did you mean {match[0]!r}?" if match else ""


def check_task_name(name, where: str) -> None:
    """Raise `ValueError` unless `name` can key the model's modules and prefix its metric keys."""
    if not isinstance(name, str) or not _TASK_NAME.match(name):
        raise ValueError(
            f"{where} has invalid name {name!r}: use a letter followed by letters, digits, '_' or '-' "
            "(the name becomes a module key and a metric prefix, so no dots or spaces)."
        )
    if name in RESERVED_TASK_NAMES:
        raise ValueError(
            f"{where} has name {name!r}, which clashes with the attribute {name!r} of the per-task module and "
            f"value dictionaries (torch.nn.ModuleDict / dict). Rename the task, e.g. {name + '_task'!r}."
        )


def check_unique_task_names(names: list[str]) -> None:
    """Task names key the heads and the metrics: each may appear once."""
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"Task names must be unique; {duplicates} appear more than once.")


def check_task_spec(spec, index: int, labels_known: bool = True) -> dict:
    """Validate one task spec (a `MultiTaskConfig.tasks` entry) and return it in canonical form: name, type,
    labels, num_labels, loss_weight, max_length, and the keys its type adds (see `task_types`). The experiment reader
    calls it too, with `labels_known=False` before the data has given the label names: every rule lives here."""
    if not isinstance(spec, dict):
        raise TypeError(f"tasks[{index}] must be a dict with 'name' and 'type', got {type(spec).__name__}.")
    name = spec.get("name")
    check_task_name(name, f"tasks[{index}]")
    if spec.get("type") not in TASK_TYPES:
        kind = spec.get("type")
        raise ValueError(
            f"Task {name!r} has unknown type {kind!r}.{_nearest(str(kind), TASK_TYPES)} "
            f"Allowed types: {', '.join(TASK_TYPES)}."
        )
    definition = TASK_TYPES[spec["type"]]
    allowed = (*_COMMON_TASK_KEYS, *definition.settings)
    for key in spec:
        if key in allowed:
            continue
        owners = [other for other, kind in TASK_TYPES.items() if key in kind.settings]
        if owners:
            raise ValueError(f"Task {name!r} ({definition.name}): '{key}' is for {' and '.join(owners)} tasks only.")
        raise ValueError(
            f"tasks[{index}] has unknown key {key!r}.{_nearest(key, allowed)} Allowed keys: {', '.join(allowed)}."
        )
    labels, num_labels = spec.get("labels"), spec.get("num_labels")
    if labels_known or labels is not None or num_labels is not None:
        labels = definition.check_labels(name, labels, num_labels)
    loss_weight = spec.get("loss_weight", 1.0)
    if isinstance(loss_weight, bool) or not isinstance(loss_weight, (int, float)) or not loss_weight > 0:
        raise ValueError(f"Task {name!r}: loss_weight must be a positive number, got {loss_weight!r}.")
    max_length = spec.get("max_length")  # None: not recorded (checkpoints from before the key), the encoder's limit
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 4):
        raise ValueError(f"Task {name!r}: max_length must be an integer >= 4, got {max_length!r}.")
    return {
        "name": name,
        "type": definition.name,
        "labels": labels,
        "num_labels": definition.num_outputs(labels) if labels_known or labels is not None else None,
        "loss_weight": float(loss_weight),
        "max_length": max_length,
        **definition.check_settings(name, spec, labels),
    }


def check_model_settings(
    encoder_config=None,
    *,
    dropout=0.1,
    pooling="cls",
    fusion=None,
    task_private_layers=0,
    word_splitting="whitespace",
) -> dict:
    """Validate the model-wide settings (an experiment file's `model:` section) and return them in canonical form; the
    fusion gets its `hidden_size` from the encoder when left out. Every message starts with the key it is about.

    The config checks them with its encoder; the experiment reader calls this before any encoder is loaded
    (`encoder_config=None`: the fusion size and the private-layer depth wait), the training CLI once it has read the
    encoder's config: one rule, one place."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}.")
    if pooling not in POOLING_TYPES:
        raise ValueError(f"pooling {pooling!r} is unknown. Allowed: {', '.join(POOLING_TYPES)}.")
    if word_splitting not in WORD_SPLITTINGS:
        raise ValueError(
            f"word_splitting {word_splitting!r} is unknown.{_nearest(str(word_splitting), WORD_SPLITTINGS)} Allowed: "
            f"{', '.join(WORD_SPLITTINGS)} (whitespace: a word is what spaces separate, as in the data formats; "
            "punctuation: punctuation is split off words too, for data tokenised that way, e.g. CoNLL)."
        )
    private = task_private_layers
    if isinstance(private, bool) or not isinstance(private, int) or private < 0:
        raise ValueError(
            f"task_private_layers must be a whole number >= 0 (0 shares the whole encoder), got {private!r}."
        )
    depth = getattr(encoder_config, "num_hidden_layers", None)
    if private and depth is not None and private >= depth:
        raise ValueError(
            f"task_private_layers={private} leaves nothing shared: the encoder ({encoder_config.model_type}) has "
            f"{depth} layers, so use at most {depth - 1}."
        )
    if fusion is not None:
        fusion = _check_fusion(fusion, encoder_config)
    return {
        "dropout": dropout,
        "pooling": pooling,
        "fusion": fusion,
        "task_private_layers": private,
        "word_splitting": word_splitting,
    }


def _check_fusion(fusion, encoder_config) -> dict:
    if not isinstance(fusion, dict):
        raise ValueError(f"fusion must be a mapping like {{type: attention}}, got {fusion!r}.")
    unknown = [key for key in fusion if key not in _FUSION_KEYS]
    if unknown:
        raise ValueError(
            f"fusion has unknown key {unknown[0]!r}.{_nearest(str(unknown[0]), _FUSION_KEYS)} "
            f"Allowed keys: {', '.join(_FUSION_KEYS)}."
        )
    if fusion.get("type") not in FUSION_TYPES:
        kind = fusion.get("type")
        raise ValueError(
            f"fusion.type {kind!r} is unknown.{_nearest(str(kind), FUSION_TYPES)} Allowed: {', '.join(FUSION_TYPES)}."
        )
    encoder_size = getattr(encoder_config, "hidden_size", None)
    hidden_size = fusion.get("hidden_size", encoder_size)
    if encoder_size is not None and hidden_size != encoder_size:
        raise ValueError(
            f"fusion.hidden_size is {hidden_size} but the encoder ({encoder_config.model_type}) has hidden size "
            f"{encoder_size}: set fusion.hidden_size to {encoder_size} or leave it out."
        )
    token_context = fusion.get("token_context", False)
    if not isinstance(token_context, bool):
        raise ValueError(f"fusion token_context must be true or false, got {token_context!r}.")
    checked = {"type": fusion["type"], "token_context": token_context}
    return checked if hidden_size is None else {"type": fusion["type"], "hidden_size": hidden_size, **checked}


def _build_encoder_config(encoder_config) -> PreTrainedConfig:
    """The encoder's config from its saved dict (by its `model_type`), as transformers >= 5.20 builds a declared
    sub-config; `None` is a default BERT config, as there."""
    if isinstance(encoder_config, PreTrainedConfig):
        return encoder_config
    values = dict(encoder_config or {})
    return AutoConfig.for_model(values.pop("model_type", "bert"), **values)


class MultiTaskConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MultiTaskModel`]: a shared pretrained encoder, one head per task, and an optional
    AttentionFusion layer that turns the shared representation into a task-specific one.

    Everything the model's shape and loss depend on lives here and round-trips through `config.json`.

    Args:
        encoder_config (`PreTrainedConfig` or `dict`):
            Configuration of the shared encoder, any `AutoModel` text encoder (BERT, DistilBERT, RoBERTa, MiniLM, ...).
            A dict needs a `model_type`. Left out, it is a full-size BERT.
        tasks (`list[dict]`, *optional*):
            One spec per task, each a dict with `name`, `type` (a registered task type: `sequence_classification`,
            `multi_label_classification`, `regression`, `token_classification`; see `task_types.TASK_TYPES`), the label
            names `labels` or their count `num_labels` (as the type needs: none for regression), an optional positive
            `loss_weight` (defaults to 1.0), the `max_length` in tokens the task was trained with (training records
            it; the pipeline windows question-answering contexts and encodes multiple-choice pairs at it, as
            evaluation did; `None`: the encoder's limit), and the keys the type adds, such as a token task's
            `decoding`: `"argmax"` (default, each token's most likely tag) or `"bio"` (the most likely tag sequence in
            which `I-X` follows only `B-X` or `I-X`, for IOB2 tag sets). Each type's definition validates its specs
            (`check_task_spec`); read them back through typed views, `config.task("slots").labels`. Pair inputs (two
            texts) are ordinary sequence-level tasks.
        num_tasks (`int`, *optional*):
            The number of tasks; filled in from `tasks`, and an error if it disagrees with them.
        fusion (`dict`, *optional*):
            `None` for no fusion, or `{"type": "attention", "hidden_size": H}` to add [`AttentionFusion`]. `H` must
            equal the encoder's hidden size; left out, it is filled in from the encoder. With `"token_context": True`
            (default `False`), token-level heads also read their task's attention-pooled sentence vector next to
            each token, so a slot tagger sees what the whole sentence is about (see [`MultiTaskModel`]).
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout applied in the task heads.
        text_pair_tasks (`list[str]`, *optional*):
            Names of the sequence-level tasks whose input is a pair of texts (what pipelines expect as input).
        pooling (`str`, *optional*, defaults to `"cls"`):
            How sequence-level heads summarise the tokens when there is no fusion: `"cls"` (first token) or `"mean"`
            (mean over real tokens, the pooling sentence-transformers encoders were trained with). With fusion, the
            attention weights pool the tokens instead.
        task_private_layers (`int`, *optional*, defaults to 0):
            How many of the encoder's top layers each task gets a private copy of. The layers below stay shared;
            each copy starts from the pretrained layer and trains on its task alone, so tasks that pull the shared
            representation different ways (sentence similarity vs grammaticality, say) need not share the top of
            the encoder. 0 shares the whole encoder. Needs an encoder whose output is its last layer's output
            (post-norm encoders: BERT, RoBERTa, DistilBERT, MiniLM, ELECTRA, ...).
        word_splitting (`str`, *optional*, defaults to `"whitespace"`):
            What a word is, in training and in the pipeline alike: `"whitespace"` (what spaces separate, as the data
            formats define it; `"Boston!"` is one word), or `"punctuation"` (each punctuation character is a word of
            its own as well, for data tokenised with punctuation split off, as CoNLL was: the pipeline then reads a
            user's `"Boston!"` as `"Boston !"`). The encoder always reads the words joined by single spaces.

    Example:

    ```python
    >>> from transformers import BertConfig
    >>> from configuration_multitask import MultiTaskConfig

    >>> encoder = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                      intermediate_size=37)
    >>> config = MultiTaskConfig(
    ...     encoder_config=encoder,
    ...     tasks=[
    ...         {"name": "intent", "type": "sequence_classification", "labels": ["greet", "bye"]},
    ...         {"name": "slots", "type": "token_classification", "labels": ["O", "B-city", "I-city"]},
    ...     ],
    ...     fusion={"type": "attention"},
    ... )
    >>> config.num_tasks, config.fusion["hidden_size"], config.task_id2label("slots")[1]
    (2, 32, 'B-city')
    ```
    """

    model_type = "multitask"
    if SubConfigSpec is not None:
        sub_configs_defaults = {"encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}
    else:
        sub_configs = {"encoder_config": AutoConfig}
    # Output fields the Trainer must not treat as predictions during evaluation.
    keys_to_ignore_at_inference = ["task_logits", "task_losses", "hidden_states", "attentions", "fusion_weights"]

    encoder_config: PreTrainedConfig | dict | None = None
    tasks: list | None = None
    num_tasks: int | None = None
    fusion: dict | None = None
    dropout: float = 0.1
    pooling: str = "cls"
    text_pair_tasks: list | None = None
    task_private_layers: int = 0
    word_splitting: str = "whitespace"

    def __post_init__(self, **kwargs):
        if SubConfigSpec is None:
            self.encoder_config = _build_encoder_config(self.encoder_config)
        super().__post_init__(**kwargs)
        self.tasks = [check_task_spec(spec, i) for i, spec in enumerate(self.tasks or [])]
        check_unique_task_names([task["name"] for task in self.tasks])
        if self.num_tasks is not None and self.num_tasks != len(self.tasks):
            raise ValueError(
                f"num_tasks={self.num_tasks} but {len(self.tasks)} tasks are listed; drop num_tasks or make them match."
            )
        self.num_tasks = len(self.tasks)
        self.fusion = check_model_settings(
            self.encoder_config,
            dropout=self.dropout,
            pooling=self.pooling,
            fusion=self.fusion,
            task_private_layers=self.task_private_layers,
            word_splitting=self.word_splitting,
        )["fusion"]
        self.text_pair_tasks = list(self.text_pair_tasks or [])
        for name in self.text_pair_tasks:
            if name not in self.task_names or not self.task(name).definition.text_pair:
                raise ValueError(
                    f"text_pair_tasks names {name!r}, which is not a task of this config that reads a text pair "
                    f"({', '.join(self.task_names)})."
                )

    @property
    def hidden_size(self) -> int:
        """The shared encoder's hidden size (what the fusion layer and the heads read)."""
        return self.encoder_config.hidden_size

    @property
    def initializer_range(self) -> float:
        return getattr(self.encoder_config, "initializer_range", 0.02)

    @property
    def task_names(self) -> list[str]:
        return [task["name"] for task in self.tasks]

    def task_index(self, name: str) -> int:
        """The integer id of task `name` (what `task_ids` holds)."""
        names = self.task_names
        if name not in names:
            raise KeyError(f"Unknown task {name!r}. Known tasks: {', '.join(names)}.")
        return names.index(name)

    def task(self, name_or_index: str | int) -> TaskView:
        """A read-only, typed view of one task, by name or id: `config.task("slots").labels`, `.definition` (what its
        type means), `.settings` (its type's own keys, such as `decoding`)."""
        index = name_or_index if isinstance(name_or_index, int) else self.task_index(name_or_index)
        spec = self.tasks[index]
        settings = {key: spec[key] for key in TASK_TYPES[spec["type"]].settings}
        labels = None if spec["labels"] is None else tuple(spec["labels"])
        return TaskView(
            spec["name"],
            spec["type"],
            index,
            labels,
            spec["num_labels"],
            spec["loss_weight"],
            settings,
            max_length=spec["max_length"],
        )

    @property
    def task_views(self) -> list[TaskView]:
        """Every task as a [`TaskView`], in id order."""
        return [self.task(index) for index in range(len(self.tasks))]

    def task_id2label(self, name: str) -> dict[int, str]:
        """`{label id: label name}` of one task (empty for regression)."""
        return self.task(name).id2label

    def task_label2id(self, name: str) -> dict[str, int]:
        return self.task(name).label2id


__all__ = [
    "MultiTaskConfig",
    "TaskView",
    "check_task_name",
    "check_model_settings",
    "check_task_spec",
    "check_unique_task_names",
    "RESERVED_TASK_NAMES",
    "TASK_TYPES",
    "TOKEN_LEVEL_TASK_TYPES",
    "FUSION_TYPES",
    "TAG_DECODINGS",
    "WORD_SPLITTINGS",
]
