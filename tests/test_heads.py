"""Label checks at forward time: every path (one task, a mixed batch padded with -100, joint dict labels) reads a
task's labels through its head, which rejects a wrong shape or an out-of-range value with a `ValueError` naming the
task, the shape or value, and what was expected."""

import pytest
import torch
from conftest import random_batch
from test_modeling import labels_for, make_model, mixed_labels

from modeling_multitask.heads import SequenceClassificationHead, TokenClassificationHead


BATCH, SEQ = 6, 9
INTENT, SLOTS, SIMILARITY, TOPICS = range(4)  # task indices in conftest.TASKS


def forward(task_ids=None, labels=None, batch_size=BATCH):
    model = make_model(fusion=False)
    input_ids, mask = random_batch(batch_size=batch_size, seq_len=SEQ)
    return model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids, labels=labels)


def one_hot_intents():
    return torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3)


def slots_with(value):
    labels = torch.zeros(BATCH, SEQ, dtype=torch.long)
    labels[2, 4] = value
    return labels


@pytest.mark.parametrize(
    "task_ids, labels, match",
    [
        (
            INTENT,
            torch.tensor([0, 1, 2, 3, 0, 1]),
            r"Task 'intent' \(sequence_classification\): label 3 at row 3 is "
            r"not a class id; expected \(6,\) class ids in \[0, 3\)",
        ),
        (INTENT, torch.tensor([0, 1, -1, 2, 0, 1]), r"'intent'.*label -1 at row 2 is not a class id"),
        (
            INTENT,
            one_hot_intents(),
            r"'intent'.*labels have shape \(6, 3\) and row 0 is \[1, 0, 0\]; expected "
            r"\(6,\) class ids .*not one-hot: pass labels.argmax\(-1\)",
        ),
        (INTENT, one_hot_intents().float(), r"'intent'.*labels have shape \(6, 3\)"),
        (INTENT, torch.tensor([0, 1, 2]), r"'intent'.*labels have shape \(3,\); expected \(6,\) class ids"),
        (INTENT, torch.tensor(1), r"'intent'.*labels have shape \(\); expected \(6,\) class ids"),
        (
            SLOTS,
            slots_with(3),
            r"Task 'slots' \(token_classification\): label 3 at position 2, 4 is not a tag id; "
            r"expected \(6, 9\) tag ids in \[0, 3\) or -100",
        ),
        (SLOTS, slots_with(-7), r"'slots'.*label -7 at position 2, 4 is not a tag id"),
        (
            SLOTS,
            torch.zeros(BATCH, SEQ - 2, dtype=torch.long),
            r"'slots'.*labels have shape \(6, 7\); expected "
            r"\(6, 9\) tag ids",
        ),
        (SLOTS, torch.zeros(BATCH, SEQ + 2, dtype=torch.long), r"'slots'.*labels have shape \(6, 11\) and row 0"),
        (SLOTS, torch.zeros(BATCH, dtype=torch.long), r"'slots'.*labels have shape \(6,\); expected \(6, 9\)"),
        (
            SIMILARITY,
            torch.rand(BATCH, 3),
            r"Task 'similarity' \(regression\): labels have shape \(6, 3\) and row 0 "
            r"is .*; expected \(6,\) finite targets, one per example",
        ),
        (
            SIMILARITY,
            torch.tensor([1.0, 2.0, float("nan"), 0.0, 1.0, 2.0]),
            r"'similarity'.*label nan at row 2 is "
            r"not finite",
        ),
        (
            TOPICS,
            torch.ones(BATCH, 3),
            r"Task 'topics' \(multi_label_classification\): labels have shape \(6, 3\); "
            r"expected \(6, 4\) targets in \[0, 1\]",
        ),
        (TOPICS, torch.ones(BATCH, 6), r"'topics'.*labels have shape \(6, 6\) and row 0"),
        (TOPICS, torch.full((BATCH, 4), 2.0), r"'topics'.*label 2.0 at position 0, 0 is outside \[0, 1\]"),
        (TOPICS, torch.ones(BATCH), r"'topics'.*labels have shape \(6,\); expected \(6, 4\)"),
    ],
)
def test_one_task_batch_rejects_bad_labels(task_ids, labels, match):
    with pytest.raises(ValueError, match=match):
        forward(task_ids, labels)


def test_mixed_batch_rejects_an_out_of_range_class_id_and_a_wrong_length_tag_row():
    task_ids = torch.tensor([0, 1, 2, 3, 1, 0])
    input_ids, mask = random_batch(batch_size=BATCH, seq_len=SEQ)
    good = mixed_labels(task_ids, mask)
    forward(task_ids, good)  # the collator's mixed format passes

    bad_intent = good.clone()
    bad_intent[5, 0] = 5.0
    with pytest.raises(ValueError, match=r"'intent'.*label 5.0 at row 1 is not a class id"):
        forward(task_ids, bad_intent)
    half_class = good.clone()
    half_class[0, 0] = 1.5
    with pytest.raises(ValueError, match=r"'intent'.*label 1.5 at row 0 is not a class id"):
        forward(task_ids, half_class)
    # Another task's row may be wider than the sequence (padding after it is -100); a tag beyond the tokens is not.
    too_long = torch.cat([good, torch.full((BATCH, 2), -100.0)], dim=1)
    forward(task_ids, too_long)
    too_long[1, SEQ] = 0.0
    with pytest.raises(ValueError, match=r"'slots'.*labels have shape \(2, 11\) and row 0"):
        forward(task_ids, too_long)


def test_joint_labels_go_through_the_same_checks():
    input_ids, mask = random_batch(batch_size=BATCH, seq_len=SEQ)
    labels = {"intent": labels_for("intent", BATCH, SEQ, mask), "slots": slots_with(9)}
    with pytest.raises(ValueError, match=r"'slots'.*label 9 at position 2, 4 is not a tag id"):
        forward(None, labels)


def test_valid_labels_of_every_accepted_shape_pass_unchanged():
    head = SequenceClassificationHead(8, 3, 0.0, task_name="intent")
    ids = torch.tensor([2, 0, -100])  # -100: ignored by the loss, as in transformers
    assert head.read_labels(ids, 3, 5).tolist() == [2, 0, -100]
    assert head.read_labels(ids[:, None], 3, 5).tolist() == [2, 0, -100]
    mixed = torch.tensor([[2.0, -100.0, -100.0], [0.0, -100.0, -100.0], [1.0, -100.0, -100.0]])
    assert head.read_labels(mixed, 3, 5).tolist() == [2, 0, 1]
    tokens = TokenClassificationHead(8, 3, 0.0, task_name="slots")
    tags = torch.tensor([[-100, 2, 0, -100.0, -100.0]])
    assert tokens.read_labels(tags, 1, 3).tolist() == [[-100, 2, 0]]
    assert tokens.read_labels(tags, 1, 3).dtype == torch.long
