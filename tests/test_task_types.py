"""The task-type protocol: every registered type keeps the contract, and a new type plugs in through its definition
and one registry entry alone (no other module knows type names)."""

import numpy as np
import pytest
import torch
from conftest import fixture_tokenizer, tiny_bert_config
from torch.nn import functional as F

from configuration_multitask import TASK_TYPES, Metric, MultiTaskConfig, TaskType
from configuration_multitask.task_type import SequenceHead
from modeling_multitask import MultiTaskModel, MultiTaskPipeline
from modeling_multitask.training.collator import MultiTaskDataCollator
from modeling_multitask.training.metrics import combined_score, greater_is_better, score_task


@pytest.mark.parametrize("name", sorted(TASK_TYPES))
def test_every_type_keeps_the_contract(name):
    definition = TASK_TYPES[name]
    assert definition.name == name and definition.problem_type and definition.hub_task
    assert definition.head_input in ("sequence", "token")
    assert definition.metrics and all(isinstance(metric, Metric) for metric in definition.metrics)
    labels = None if definition.min_labels is None else ["O", "B-x", "I-x"][: max(definition.min_labels, 3)]
    required = {key: 2 for key, default in definition.settings.items() if default is None}  # e.g. num_choices
    spec = {"name": "t", "type": name, "labels": labels, **required}
    config = MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=[spec])
    view = config.task("t")
    assert view.definition is definition and view.num_labels == definition.num_outputs(labels)
    head = definition.build_head(view, 32, 0.0)
    assert callable(head.read_labels) and callable(head.loss)


def test_task_views_are_typed_and_read_only():
    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=[
            {"name": "intent", "type": "sequence_classification", "labels": ["a", "b"]},
            {"name": "slots", "type": "token_classification", "labels": ["O", "B-x", "I-x"], "decoding": "bio"},
        ],
    )
    slots = config.task("slots")
    assert (slots.index, slots.labels, slots.decoding, slots.settings) == (
        1,
        ("O", "B-x", "I-x"),
        "bio",
        {"decoding": "bio"},
    )
    assert config.task(0).name == "intent" and [view.name for view in config.task_views] == ["intent", "slots"]
    with pytest.raises(AttributeError):
        slots.labels = ("O",)
    with pytest.raises(AttributeError, match="no attribute or setting 'decoding'"):
        getattr(config.task("intent"), "decoding")  # noqa: B009
    assert isinstance(config.to_dict()["tasks"][1], dict)  # config.json stays plain JSON


class CountHead(SequenceHead):
    """A toy head: the log of a count, Poisson loss."""

    task_type = "count"

    def __init__(self, hidden_size, dropout, task_name):
        super().__init__(hidden_size, 1, dropout, task_name)

    def read_labels(self, labels, batch_size, seq_len):
        return self._one_value_per_example(labels, batch_size, f"({batch_size},) counts").float()

    def loss(self, logits, labels):
        return F.poisson_nll_loss(logits.float().squeeze(-1), labels)


class Count(TaskType):
    """A type no module has heard of: counts, scored by mean absolute error (lower is better)."""

    name = "count"
    problem_type = "regression"
    hub_task = "text-classification"
    min_labels = None
    metrics = (Metric("mae", greater_is_better=False),)

    def read_label(self, value, options):
        return int(value)

    def encode_label(self, raw, to_id, num_labels, words=None):
        return float(raw)

    def collate_labels(self, labels, seq_len, padding_side):
        return torch.tensor(labels, dtype=torch.float)

    def build_head(self, task, hidden_size, dropout, token_context=False):
        return CountHead(hidden_size, dropout, task.name)

    def reduce_logits(self, task, logits, labels):
        return logits.float().squeeze(-1).exp()

    def compute_metrics(self, task, predictions, labels, scoring=None):
        return {"mae": float(np.abs(predictions - labels).mean())}

    def predict(self, task, logits, example, options):
        return {"count": round(float(logits.reshape(-1)[0].exp()))}


def test_a_new_type_plugs_in_through_its_definition_alone(monkeypatch):
    monkeypatch.setitem(TASK_TYPES, "count", Count())
    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=[
            {"name": "intent", "type": "sequence_classification", "labels": ["a", "b"]},
            {"name": "words", "type": "count"},
        ],
    )
    model = MultiTaskModel(config).eval()
    assert isinstance(model.heads["words"], CountHead)

    tokenizer = fixture_tokenizer()
    collator = MultiTaskDataCollator(
        tokenizer, task_types=["sequence_classification", "count"], task_names=["intent", "words"]
    )
    texts = ["book a flight", "what is the weather", "hello there", "book it"]
    features = [
        {**tokenizer(text), "labels": label, "task_ids": task}
        for text, label, task in zip(texts, [1, 4.0, 0, 2.0], [0, 1, 0, 1])
    ]
    batch = collator(features)  # a mixed batch: class ids and counts side by side
    assert batch["labels"].shape[0] == 4 and batch["labels"][1, 0] == 4.0
    output = model(**batch)
    assert torch.isfinite(output.loss) and set(output.task_losses) == {"intent", "words"}

    words = model.config.task("words")
    metrics = score_task(words, np.array([1.0, 3.0]), np.array([2.0, 3.0]))
    assert metrics == {"mae": 0.5}
    # Its metric's direction reaches best-model selection and the combined score: 1.0 accuracy and 0.5 mae -> 0.25.
    assert greater_is_better("mae") is False
    assert combined_score([("accuracy", 1.0), ("mae", 0.5)]) == 0.25

    pipe = MultiTaskPipeline(model=model, tokenizer=tokenizer_fast(tokenizer))
    prediction = pipe("book a flight")
    assert set(prediction) == {"intent", "words"} and isinstance(prediction["words"]["count"], int)


def tokenizer_fast(tokenizer):
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=tokenizer.vocab, do_lower_case=True)
