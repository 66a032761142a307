"""Sampler, collator and metrics: each against its formula or hand-computed values."""

from collections import Counter

import numpy as np
import pytest
import torch

from modeling_multitask.training import MultiTaskDataCollator, TaskBlockSampler, task_probabilities
from modeling_multitask.training.metrics import (
    classification_metrics,
    multi_label_metrics,
    regression_metrics,
    token_metrics,
)


@pytest.mark.parametrize(
    "strategy, temperature, cap, expected",
    [
        ("proportional", 1.0, None, [100 / 1000, 900 / 1000]),
        ("temperature", 2.0, None, [10 / 40, 30 / 40]),  # sqrt(100)=10, sqrt(900)=30
        ("uniform", 1.0, None, [0.5, 0.5]),
        ("proportional", 1.0, 300, [100 / 400, 300 / 400]),
    ],
)
def test_task_probabilities_follow_the_formula(strategy, temperature, cap, expected):
    assert task_probabilities([100, 900], strategy, temperature, cap) == pytest.approx(expected)


def _blocks(sampler):
    indices = list(sampler)
    return [indices[i : i + sampler.batch_size] for i in range(0, len(indices), sampler.batch_size)]


def _group_of(sampler, index):
    return next(g for g in range(len(sampler.sizes)) if sampler.offsets[g] <= index < sampler.offsets[g + 1])


def test_sampler_blocks_are_single_group_and_frequencies_match_temperature():
    sizes = [100, 900, 400]
    sampler = TaskBlockSampler(sizes, batch_size=4, strategy="temperature", temperature=2.0, seed=0)
    counts = Counter()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        for block in _blocks(sampler):
            groups = {_group_of(sampler, i) for i in block}
            assert len(groups) == 1
            counts[groups.pop()] += 1
    total = sum(counts.values())
    expected = task_probabilities(sizes, "temperature", 2.0)
    for group, probability in enumerate(expected):
        # 30 epochs x 350 steps: the binomial standard error is below 0.005.
        assert counts[group] / total == pytest.approx(probability, abs=0.02)


def test_sampler_is_deterministic_per_seed_and_epoch_and_draws_without_replacement():
    make = lambda seed: TaskBlockSampler([10, 30], batch_size=5, strategy="proportional", seed=seed)  # noqa: E731
    assert list(make(1)) == list(make(1))
    assert list(make(1)) != list(make(2))
    sampler = make(1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert len(first) == len(sampler) == 40
    # Within a group, no example repeats before every example of that group was seen.
    group1 = [i for i in first if i >= 10]
    assert len(set(group1[:30])) == len(group1[:30])


def test_round_robin_alternates_and_replicas_share_each_step():
    sampler = TaskBlockSampler([8, 8], batch_size=2, strategy="round_robin", num_replicas=2)
    blocks = _blocks(sampler)
    groups = [_group_of(sampler, block[0]) for block in blocks]
    # Each step's group is repeated once per rank: rank 0 gets block 2k, rank 1 block 2k+1.
    assert groups == [0, 0, 1, 1, 0, 0, 1, 1]


def test_length_grouping_batches_similar_lengths_and_keeps_every_example():
    lengths = [[(7 * i) % 50 + 1 for i in range(400)], [(3 * i) % 20 + 1 for i in range(200)]]
    grouped = TaskBlockSampler([400, 200], batch_size=8, strategy="proportional", seed=0, lengths=lengths)
    plain = TaskBlockSampler([400, 200], batch_size=8, strategy="proportional", seed=0)

    def padding_waste(sampler):
        waste = 0
        for block in _blocks(sampler):
            group = _group_of(sampler, block[0])
            sizes = [lengths[group][i - sampler.offsets[group]] for i in block]
            waste += sum(max(sizes) - size for size in sizes)
        return waste

    assert padding_waste(grouped) < padding_waste(plain) / 3
    group0 = [i for i in grouped if i < 400]
    assert len(set(group0[:400])) == len(group0[:400])  # still drawn without replacement within a group


def test_sampler_rejects_empty_groups():
    with pytest.raises(ValueError, match="needs examples"):
        TaskBlockSampler([5, 0], batch_size=2)


def test_collator_pads_per_task_type(tiny_tokenizer):
    collator = MultiTaskDataCollator(tiny_tokenizer)
    short, long = tiny_tokenizer("book a flight"), tiny_tokenizer("show me the cheapest flights to boston")
    tokens = collator(
        [
            {**short, "labels": [-100, 1, 0, 0, -100], "task_ids": 1},
            {**long, "labels": [-100] + [0] * (len(long["input_ids"]) - 2) + [-100], "task_ids": 1},
        ]
    )
    seq_len = len(long["input_ids"])
    assert tokens["input_ids"].shape == tokens["labels"].shape == (2, seq_len)
    assert tokens["labels"].dtype == torch.long
    assert tokens["labels"][0, 5:].eq(-100).all() and tokens["attention_mask"][0, 5:].eq(0).all()
    assert tokens["task_ids"] == 1  # one task: a plain int, so the model routes without a device sync

    sequence = collator([{**short, "labels": 2, "task_ids": 0}, {**long, "labels": 0, "task_ids": 0}])
    assert sequence["labels"].tolist() == [2, 0] and sequence["labels"].dtype == torch.long
    regression = collator([{**short, "labels": 1.5, "task_ids": 2}, {**long, "labels": 0.25, "task_ids": 2}])
    assert regression["labels"].dtype == torch.float
    multi = collator(
        [{**short, "labels": [1.0, 0.0, 1.0], "task_ids": 3}, {**long, "labels": [0.0, 0.0, 1.0], "task_ids": 3}]
    )
    assert multi["labels"].shape == (2, 3) and multi["labels"].dtype == torch.float


def test_collator_mixed_and_joint_batches(tiny_tokenizer):
    collator = MultiTaskDataCollator(tiny_tokenizer)
    short, long = tiny_tokenizer("book a flight"), tiny_tokenizer("show me the cheapest flights to boston")
    mixed = collator([{**short, "labels": 2, "task_ids": 0}, {**long, "labels": [1.0, 0.0], "task_ids": 3}])
    assert mixed["task_ids"].tolist() == [0, 3]
    assert mixed["labels"].shape == (2, len(long["input_ids"]))
    assert mixed["labels"][0].tolist()[:2] == [2.0, -100.0] and mixed["labels"][1].tolist()[:3] == [1.0, 0.0, -100.0]
    joint = collator(
        [
            {**short, "labels": {"intent": 1, "slots": [-100, 0, 0, 0, -100]}},
            {**long, "labels": {"intent": 0, "slots": [-100] * len(long["input_ids"])}},
        ]
    )
    assert "task_ids" not in joint
    assert joint["labels"]["intent"].tolist() == [1, 0]
    assert joint["labels"]["slots"].shape == (2, len(long["input_ids"]))


def test_classification_metrics_by_hand():
    predictions, labels = np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])
    metrics = classification_metrics(predictions, labels, num_labels=2)
    # TP=2, FP=1, FN=0, TN=1: F1 = 2*2/(2*2+1) = 0.8; MCC = (2*1-1*0)/sqrt(3*2*1*2) = 2/sqrt(12).
    assert metrics["accuracy"] == 0.75
    assert metrics["f1"] == pytest.approx(0.8)
    assert metrics["mcc"] == pytest.approx(2 / np.sqrt(12))


def test_multi_label_metrics_by_hand():
    probabilities = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.4]])
    labels = np.array([[1, 0, 0], [0, 1, 1]])
    metrics = multi_label_metrics(probabilities, labels)
    # Predicted [[1,0,1],[0,1,0]]: TP=2, FP=1, FN=1 -> micro F1 = 4/6.
    assert metrics["micro_f1"] == pytest.approx(4 / 6)
    assert metrics["subset_accuracy"] == 0.0


def test_regression_metrics_by_hand():
    metrics = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 4.0, 3.0]))
    assert metrics["mse"] == pytest.approx(0.5)
    assert metrics["pearson"] == pytest.approx(0.8)
    assert metrics["spearman"] == pytest.approx(0.8)
    assert regression_metrics(np.ones(3), np.array([1.0, 2.0, 3.0]))["pearson"] == 0.0


def test_token_metrics_are_entity_level():
    id2label = {0: "O", 1: "B-city", 2: "I-city"}
    # Sentence: [CLS] new york to boston [SEP] with sub-token padding -100; gold entities: "new york", "boston".
    labels = np.array([[-100, 1, 2, 0, 1, -100]])
    predictions = np.array([[0, 1, 0, 0, 1, 0]])  # "new" alone (wrong span), "boston" right
    metrics = token_metrics(predictions, labels, id2label)
    assert metrics["precision"] == pytest.approx(0.5)
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["accuracy"] == pytest.approx(3 / 4)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_token_labels_are_padded_on_the_tokenizers_padding_side(tiny_tokenizer, padding_side):
    tiny_tokenizer.padding_side = padding_side
    collator = MultiTaskDataCollator(tiny_tokenizer)
    short, long = tiny_tokenizer("book a flight"), tiny_tokenizer("show me the cheapest flights to boston")
    tags = [-100, 1, 0, 2, -100]  # one per token of `short`, as `data.tokenize` aligns them
    long_tags = [-100] + [0] * (len(long["input_ids"]) - 2) + [-100]
    pad = [-100] * (len(long["input_ids"]) - len(tags))
    expected_row = pad + tags if padding_side == "left" else tags + pad

    one_task = collator([{**short, "labels": tags, "task_ids": 1}, {**long, "labels": long_tags, "task_ids": 1}])
    assert one_task["labels"][0].tolist() == expected_row
    # Each tag sits on its token: the labelled positions are real tokens, at the same offset from the first one.
    assert one_task["attention_mask"][one_task["labels"] != -100].eq(1).all()

    mixed = collator([{**short, "labels": tags, "task_ids": 1}, {**long, "labels": 2, "task_ids": 0}])
    assert mixed["labels"][0].tolist() == [float(tag) for tag in expected_row]
    assert mixed["labels"][1].tolist()[:2] == [2.0, -100.0]  # sentence labels stay in column 0, where heads read

    joint = collator(
        [{**short, "labels": {"intent": 1, "slots": tags}}, {**long, "labels": {"intent": 0, "slots": long_tags}}]
    )
    assert joint["labels"]["slots"][0].tolist() == expected_row


def test_per_step_shortcuts_match_the_trainer(tmp_path, tiny_tokenizer):
    """The trainer lists parameters and counts them once instead of every step (a walk over every module with many
    tasks): the clip, the FLOP count and the training mode come out as `transformers.Trainer` computes them."""
    from conftest import tiny_bert_config
    from transformers import Trainer, TrainingArguments

    from configuration_multitask import MultiTaskConfig
    from modeling_multitask import MultiTaskModel
    from modeling_multitask.training.trainer import MultiTaskTrainer, TaskInfo

    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=[{"name": f"t{i}", "type": "sequence_classification", "labels": ["a", "b"]} for i in range(3)],
    )
    model = MultiTaskModel(config)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_grad_norm=0.01)
    trainer = MultiTaskTrainer(
        model=model,
        args=args,
        group_sizes=[1],
        tasks=[TaskInfo(f"t{i}", "sequence_classification", ["a", "b"]) for i in range(3)],
    )
    inputs = {"input_ids": torch.ones(2, 5, dtype=torch.long)}
    assert trainer.floating_point_ops(inputs) == Trainer.floating_point_ops(trainer, inputs) > 0

    batch = {**tiny_tokenizer(["book a flight", "hello"], padding=True, return_tensors="pt"), "task_ids": 1}
    batch["labels"] = torch.tensor([0, 1])
    model.eval()
    model.encoder.train()  # a mixed state: the first step must still walk every module
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train; here the step is called alone
    trainer.training_step(model, batch)
    assert all(module.training for module in model.modules())
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    norm = trainer._clip_grad_norm(model)  # the norm before clipping, as torch computes it over every gradient
    assert grads.norm() > 0.01 and torch.allclose(norm, grads.norm())
    clipped = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert torch.allclose(clipped.norm(), torch.tensor(0.01), rtol=1e-3)

    walks = []
    model.heads["t0"].train = lambda mode=True: (
        walks.append(mode) or type(model.heads["t0"]).train(model.heads["t0"], mode)
    )
    trainer.training_step(model, batch)
    assert walks == []  # already in training mode: no walk over the modules
    model.eval()
    trainer.training_step(model, batch)  # top-level eval mode: walks again
    assert walks == [False, True]
    assert all(module.training for module in model.modules())
    assert "train" not in vars(model)  # the shortcut is undone after each step
    assert next(model.parameters()).grad is not None
    model.zero_grad()  # while training: over the parameters listed once, with the same effect
    assert all(p.grad is None for p in model.parameters())
