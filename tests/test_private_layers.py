"""`task_private_layers`: the encoder's top layers copied per task, the layers below shared."""

import pytest
import torch
from conftest import TASKS, random_batch, tiny_bert_config, tiny_distilbert_config
from transformers import AutoModel, ModernBertConfig, RobertaConfig

from modeling_multitask import MultiTaskConfig, MultiTaskModel


def tiny_roberta_config():
    return RobertaConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=70,
    )  # fmt: skip


ENCODERS = {
    "bert": lambda: tiny_bert_config(num_hidden_layers=3),
    "distilbert": lambda: tiny_distilbert_config(n_layers=3),
    "roberta": tiny_roberta_config,
}


def with_private_layers(tmp_path, encoder_config, private=1, fusion=None):
    torch.manual_seed(3)
    AutoModel.from_config(encoder_config).save_pretrained(tmp_path)
    shared, split = [], []
    for layers, into in ((0, shared), (private, split)):
        torch.manual_seed(0)
        model = MultiTaskModel.from_encoder_pretrained(
            tmp_path, tasks=TASKS, fusion=fusion, task_private_layers=layers
        )
        into.append(model.eval())
    return shared[0], split[0]


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_a_new_model_computes_what_the_fully_shared_one_does(tmp_path, name):
    """Every private copy starts from the pretrained top layer, so before training nothing changes."""
    shared, split = with_private_layers(tmp_path, ENCODERS[name](), private=2)
    stack = split.encoder.get_submodule(split._shared_layers_path)
    assert len(stack) == 1 and set(split.task_layers) == {task["name"] for task in TASKS}
    assert all(len(copies) == 2 for copies in split.task_layers.values())
    input_ids, mask = random_batch()
    for task_index in range(len(TASKS)):
        torch.testing.assert_close(
            split(input_ids=input_ids, attention_mask=mask, task_ids=task_index).logits,
            shared(input_ids=input_ids, attention_mask=mask, task_ids=task_index).logits,
            atol=1e-5,
            rtol=1e-5,
        )


def test_the_copies_are_separate_parameters_that_only_their_task_trains(tmp_path):
    _, model = with_private_layers(tmp_path, tiny_bert_config(num_hidden_layers=3))
    model.train()
    input_ids, mask = random_batch()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    model(input_ids=input_ids, attention_mask=mask, task_ids=0, labels=labels).loss.backward()
    for task, copies in model.task_layers.items():
        grads = [p.grad for p in copies.parameters()]
        if task == "intent":
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads), task
    shared = model.encoder.get_submodule(model._shared_layers_path)
    assert all(p.grad is not None for p in shared.parameters())
    pointers = {p.data_ptr() for copies in model.task_layers.values() for p in copies.parameters()}
    assert len(pointers) == len(TASKS) * len(list(model.task_layers["intent"].parameters()))


def perturb_private_layers(model):
    """Make every task's copies differ, as after training."""
    with torch.no_grad():
        for i, copies in enumerate(model.task_layers.values()):
            for parameter in copies.parameters():
                parameter.add_(0.05 * (i + 1) * torch.randn_like(parameter))


@pytest.mark.parametrize("fusion", [None, {"type": "attention"}])
def test_mixed_and_all_task_batches_match_per_task_batches(tmp_path, fusion):
    _, model = with_private_layers(tmp_path, tiny_bert_config(num_hidden_layers=3), fusion=fusion)
    perturb_private_layers(model)
    input_ids, mask = random_batch(batch_size=8)
    task_ids = torch.tensor([0, 1, 2, 3, 1, 0, 3, 2])
    mixed = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids)
    every_task = model(input_ids=input_ids, attention_mask=mask)
    for task_index, task in enumerate(model.config.task_names):
        rows = (task_ids == task_index).nonzero(as_tuple=True)[0]
        alone = model(input_ids=input_ids[rows], attention_mask=mask[rows], task_ids=task_index).logits
        torch.testing.assert_close(mixed.task_logits[task], alone, atol=1e-5, rtol=1e-5)
        full = model(input_ids=input_ids, attention_mask=mask, task_ids=task_index).logits
        torch.testing.assert_close(every_task.task_logits[task], full, atol=1e-5, rtol=1e-5)
    # the copies differ, so the tasks' representations do too: the private layers are really on the path
    fresh, _ = with_private_layers(tmp_path / "again", tiny_bert_config(num_hidden_layers=3), fusion=fusion)
    assert not torch.allclose(every_task.task_logits["intent"], fresh(input_ids=input_ids, attention_mask=mask)
                              .task_logits["intent"], atol=1e-4)  # fmt: skip


def test_padding_is_masked_in_the_private_layers(tmp_path):
    _, model = with_private_layers(tmp_path, tiny_bert_config(num_hidden_layers=3))
    perturb_private_layers(model)
    input_ids, mask = random_batch(batch_size=3)
    padded = model(input_ids=input_ids, attention_mask=mask, task_ids=1).logits
    for row in range(3):
        length = int(mask[row].sum())
        alone = model(input_ids=input_ids[row : row + 1, :length], task_ids=1).logits
        torch.testing.assert_close(padded[row : row + 1, :length], alone, atol=1e-5, rtol=1e-5)


def test_save_and_load_keep_the_private_layers(tmp_path):
    _, model = with_private_layers(tmp_path / "encoder", tiny_bert_config(num_hidden_layers=3), private=2)
    perturb_private_layers(model)
    model.save_pretrained(tmp_path / "model")
    reloaded = MultiTaskModel.from_pretrained(tmp_path / "model").eval()
    assert reloaded.config.task_private_layers == 2
    input_ids, mask = random_batch()
    for task_index in range(len(TASKS)):
        torch.testing.assert_close(
            reloaded(input_ids=input_ids, attention_mask=mask, task_ids=task_index).logits,
            model(input_ids=input_ids, attention_mask=mask, task_ids=task_index).logits,
        )


@pytest.mark.parametrize(
    "value, match",
    [(-1, "whole number >= 0"), (1.5, "whole number >= 0"), (True, "whole number >= 0"), (3, "at most 2")],
)
def test_config_errors(value, match):
    with pytest.raises(ValueError, match=match):
        MultiTaskConfig(encoder_config=tiny_bert_config(num_hidden_layers=3), tasks=TASKS, task_private_layers=value)


def test_an_encoder_with_a_final_norm_is_refused_with_the_fix():
    encoder = ModernBertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
    )  # fmt: skip
    model = MultiTaskModel(MultiTaskConfig(encoder_config=encoder, tasks=TASKS, task_private_layers=1)).eval()
    input_ids, mask = random_batch()
    with pytest.raises(ValueError, match="final norm.*task_private_layers=0"):
        model(input_ids=input_ids, attention_mask=mask, task_ids=0)


def test_the_model_card_says_which_layers_are_private():
    from modeling_multitask.hub import render_model_card

    def card(private):
        config = MultiTaskConfig(encoder_config=tiny_bert_config(num_hidden_layers=3), tasks=TASKS,
                                 task_private_layers=private)  # fmt: skip
        return render_model_card(config.to_dict()).text

    assert "own copy of the top 2 encoder layers" in card(2)
    assert "own copy" not in card(0)
