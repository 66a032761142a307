import pytest
import torch
from conftest import random_batch, tiny_bert_config

from configuration_multitask import MultiTaskConfig
from modeling_multitask import AttentionFusion
from modeling_multitask.fusion import check_task_ids


@pytest.fixture
def fusion():
    torch.manual_seed(0)
    layer = AttentionFusion(tiny_bert_config(), num_tasks=3)
    # Larger weights than the 0.02 init, so that the tasks' weights differ visibly.
    for parameter in layer.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    return layer


def _inputs():
    _, mask = random_batch(batch_size=4, seq_len=7)
    return torch.randn(4, 7, 32), mask


def test_accepts_encoder_config_or_multitask_config():
    tasks = [{"name": "a", "type": "regression"}]
    assert AttentionFusion(MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=tasks), 1).hidden_size == 32
    assert AttentionFusion(tiny_bert_config(), 1).hidden_size == 32


def test_shape_weights_sum_to_one_and_padding_gets_zero(fusion):
    shared, mask = _inputs()
    output = fusion(shared, 1, attention_mask=mask, output_attentions=True)
    assert output.fused_representation.shape == shared.shape
    weights = output.attention_weights
    assert weights.shape == (4, 7)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(4))
    assert torch.all(weights[mask == 0] == 0)
    assert torch.all(weights[mask == 1] > 0)
    torch.testing.assert_close(output.fused_representation, shared * weights.unsqueeze(-1))
    torch.testing.assert_close(fusion(shared, 1, attention_mask=mask), output.fused_representation)


def test_different_tasks_give_different_results(fusion):
    shared, mask = _inputs()
    assert not torch.allclose(fusion(shared, 0, mask), fusion(shared, 2, mask))


def test_per_example_task_ids_match_per_task_calls(fusion):
    shared, mask = _inputs()
    task_ids = torch.tensor([0, 2, 1, 2])
    mixed = fusion(shared, task_ids, mask)
    for row, task in enumerate(task_ids.tolist()):
        torch.testing.assert_close(mixed[row], fusion(shared, task, mask)[row])


def test_fast_form_equals_literal_concatenation(fusion):
    shared, mask = _inputs()
    task = 2
    # The design note, literally: concatenate the task embedding at every token, Linear + Tanh, score, softmax.
    task_embedding = fusion.task_embeddings.weight[task].expand(4, 7, -1)
    concatenated = torch.cat([shared, task_embedding], dim=-1)  # (batch, seq, 2 * hidden)
    scores = fusion.score(torch.tanh(fusion.attention_layer(concatenated))).squeeze(-1)
    scores = scores.masked_fill(mask == 0, float("-inf"))
    literal = shared * torch.softmax(scores, dim=-1).unsqueeze(-1)
    torch.testing.assert_close(fusion(shared, task, mask), literal)


def test_no_mask_means_every_token_counts(fusion):
    shared, _ = _inputs()
    weights = fusion(shared, 0, output_attentions=True).attention_weights
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(4))
    assert torch.all(weights > 0)


def test_every_parameter_gets_a_gradient(fusion):
    shared, mask = _inputs()
    (fusion(shared, torch.tensor([0, 1, 2, 0]), mask) ** 2).sum().backward()
    for name, parameter in fusion.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("bad", [3, -1, torch.tensor([0, 1])])
def test_bad_task_id(fusion, bad):
    shared, mask = _inputs()
    with pytest.raises(ValueError, match="task_id"):
        fusion(shared, bad, mask)


def test_bf16_weights_still_sum_to_one(fusion):
    shared, mask = _inputs()
    weights = fusion.to(torch.bfloat16)(shared.bfloat16(), 1, mask, output_attentions=True).attention_weights
    assert weights.dtype == torch.bfloat16
    torch.testing.assert_close(weights.float().sum(dim=1), torch.ones(4), atol=1e-2, rtol=0)


def test_head_inputs_are_the_pooled_vector_and_the_length_rescaled_tokens(fusion):
    shared, mask = _inputs()
    fused = fusion(shared, 1, mask)
    sequence = fusion(shared, 1, mask, head_input="sequence")
    assert sequence.fused_representation is None
    torch.testing.assert_close(sequence.pooled_representation, fused.sum(dim=1))
    token = fusion(shared, 1, mask, head_input="token", token_context=True)
    lengths = mask.sum(dim=1).float()[:, None, None]
    torch.testing.assert_close(token.fused_representation, fused * lengths)
    torch.testing.assert_close(token.pooled_representation, fused.sum(dim=1))
    assert fusion(shared, 1, mask, head_input="token").pooled_representation is None


def test_uniform_attention_leaves_token_head_inputs_unchanged(fusion):
    torch.nn.init.zeros_(fusion.score.weight)  # where a model's fusion starts
    shared, mask = _inputs()
    token = fusion(shared, 0, mask, head_input="token").fused_representation
    torch.testing.assert_close(token, shared * mask[..., None])


def test_unknown_head_input_names_the_choices(fusion):
    shared, mask = _inputs()
    with pytest.raises(ValueError, match="fused, sequence, token"):
        fusion(shared, 0, mask, head_input="pooled")


@pytest.mark.parametrize(
    "task_ids, expected",
    [(2, 2), (torch.tensor(1), 1), (torch.tensor([0, 2, 1, 2]), [0, 2, 1, 2]), ([1, 1, 0, 0], [1, 1, 0, 0])],
)
def test_check_task_ids_normalises(task_ids, expected):
    checked = check_task_ids(task_ids, num_tasks=3, batch_size=4)
    assert checked == expected if isinstance(expected, int) else checked.tolist() == expected


@pytest.mark.parametrize("bad", [3, -1, torch.tensor([0, 3, 1, 1]), torch.tensor([[0, 1, 1, 1]])])
def test_check_task_ids_names_the_range_or_shape(bad):
    with pytest.raises(ValueError, match=r"task_ids must be (in \[0, 3\) for tasks \['a', 'b', 'c'\]|an int or)"):
        check_task_ids(bad, num_tasks=3, batch_size=4, task_names=["a", "b", "c"])
