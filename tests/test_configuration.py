import json

import pytest
from conftest import TASKS, tiny_bert_config, tiny_distilbert_config

from configuration_multitask import TASK_TYPES, MultiTaskConfig
from modeling_multitask import HEAD_REGISTRY


def test_round_trip_through_config_json(tmp_path):
    config = MultiTaskConfig(
        encoder_config=tiny_distilbert_config(),
        tasks=TASKS,
        fusion={"type": "attention", "token_context": True},
        dropout=0.2,
        pooling="mean",
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["encoder_config"]["model_type"] == "distilbert"
    reloaded = MultiTaskConfig.from_pretrained(tmp_path)
    assert type(reloaded.encoder_config) is type(config.encoder_config)
    assert reloaded.tasks == config.tasks
    assert (reloaded.fusion, reloaded.dropout, reloaded.pooling, reloaded.num_tasks) == (
        {"type": "attention", "hidden_size": 32, "token_context": True},
        0.2,
        "mean",
        4,
    )
    # A config.json written before token_context existed loads with it off, as such models were trained.
    saved["fusion"].pop("token_context")
    assert MultiTaskConfig.from_dict(saved).fusion["token_context"] is False


def test_the_encoder_config_is_built_from_its_dict_where_transformers_does_not():
    """transformers 5.17-5.19 has no `SubConfigSpec`: the config builds its encoder's from the saved dict itself, by
    its `model_type` (checked by hand against 5.17: the same predictions as 5.24 from one checkpoint)."""
    from transformers import BertConfig, RobertaConfig

    from configuration_multitask.configuration_multitask import _build_encoder_config

    saved = RobertaConfig(hidden_size=32, num_attention_heads=4, pad_token_id=1).to_dict()
    built = _build_encoder_config(saved)
    assert isinstance(built, RobertaConfig) and (built.hidden_size, built.pad_token_id) == (32, 1)
    assert isinstance(_build_encoder_config(None), BertConfig)
    config = tiny_bert_config()
    assert _build_encoder_config(config) is config


def test_tasks_are_normalised_with_label_maps():
    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=TASKS + [{"name": "anon", "type": "sequence_classification", "num_labels": 2}],
    )
    assert config.task_names == ["intent", "slots", "similarity", "topics", "anon"]
    assert config.task_id2label("slots") == {0: "O", 1: "B-city", 2: "I-city"}
    assert config.task_label2id("intent")["weather"] == 2
    assert config.task_id2label("anon") == {0: "LABEL_0", 1: "LABEL_1"}
    similarity = config.tasks[2]
    assert (similarity["num_labels"], similarity["labels"], similarity["loss_weight"]) == (1, None, 0.5)
    # The training length, where recorded (the experiment's max_length); configs from before it read None.
    assert config.task("similarity").max_length is None and similarity["max_length"] is None
    assert config.num_tasks == 5 and config.fusion is None


def test_the_compatibility_head_registry_lists_what_the_types_build():
    """`modeling_multitask.HEAD_REGISTRY` (kept for user code) names the head class each original type builds."""
    for name, head_class in HEAD_REGISTRY.items():
        labels = None if TASK_TYPES[name].min_labels is None else ["O", "B-x", "I-x"]
        config = MultiTaskConfig(
            encoder_config=tiny_bert_config(), tasks=[{"name": "t", "type": name, "labels": labels}]
        )
        view = config.task("t")
        assert type(view.definition.build_head(view, 32, 0.0)) is head_class


def _task(**overrides):
    return {"name": "intent", "type": "sequence_classification", "labels": ["a", "b"], **overrides}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"tasks": [_task(type="sequence_classificaton")]},
            "unknown type 'sequence_classificaton'.*Did you mean 'sequence_classification'.*Allowed types",
        ),
        ({"tasks": [_task(), _task()]}, r"unique; \['intent'\]"),
        ({"tasks": [_task(name="has space")]}, "invalid name 'has space'"),
        ({"tasks": [_task(name="a.b")]}, "invalid name 'a.b'"),
        ({"tasks": [_task(labels=None)]}, "needs 'labels'.*or an integer 'num_labels' >= 2"),
        ({"tasks": [_task(labels=["a"])]}, "at least 2 labels"),
        ({"tasks": [_task(labels=["a", "a", "b"])]}, r"more than once: \['a'\]"),
        ({"tasks": [_task(num_labels=3)]}, "num_labels=3 disagrees with the 2 names"),
        ({"tasks": [_task(type="regression")]}, "regression task"),
        ({"tasks": [_task(loss_weight=0)]}, "loss_weight must be a positive number"),
        ({"tasks": [_task(max_length="64")]}, "max_length must be an integer >= 4, got '64'"),
        (
            {"tasks": [{"name": "qa", "type": "question_answering", "max_length": 24, "doc_stride": 12}]},
            "doc_stride 12 leaves windows of 24 tokens no room",
        ),
        ({"tasks": [_task(lables=["a"])]}, "unknown key 'lables'.*Did you mean 'labels'"),
        ({"tasks": ["intent"]}, "must be a dict"),
        ({"tasks": [_task()], "num_tasks": 2}, "num_tasks=2 but 1 tasks"),
        ({"tasks": [_task()], "fusion": {"type": "gated"}}, "fusion.type 'gated' is unknown. Allowed: attention"),
        (
            {"tasks": [_task()], "fusion": {"type": "attention", "hidden_size": 768}},
            "fusion.hidden_size is 768 but the encoder \\(bert\\) has hidden size 32",
        ),
        ({"tasks": [_task()], "fusion": {"type": "attention", "hiden_size": 32}}, "Did you mean 'hidden_size'"),
        (
            {"tasks": [_task()], "fusion": {"type": "attention", "token_context": "yes"}},
            "fusion token_context must be true or false, got 'yes'",
        ),
        ({"tasks": [_task()], "dropout": 1.5}, r"dropout must be a number in \[0, 1\)"),
        ({"tasks": [_task()], "pooling": "max"}, "pooling 'max' is unknown"),
    ],
)
def test_config_errors_name_the_problem(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        MultiTaskConfig(encoder_config=tiny_bert_config(), **kwargs)


def test_unknown_task_name_lists_known_ones():
    config = MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS)
    with pytest.raises(KeyError, match="Known tasks: intent, slots, similarity, topics"):
        config.task_index("slot")
