import pytest
import torch
from conftest import TASKS, random_batch, tiny_bert_config
from transformers import AutoModel

from modeling_multitask import MultiTaskConfig, MultiTaskModel


LOGIT_SHAPES = {  # (batch, seq) -> expected logits shape per task
    "intent": lambda b, s: (b, 3),
    "slots": lambda b, s: (b, s, 3),
    "similarity": lambda b, s: (b, 1),
    "topics": lambda b, s: (b, 4),
}


def make_model(encoder_config=None, fusion=True, fresh_fusion=False, token_context=False, **kwargs):
    torch.manual_seed(0)
    config = MultiTaskConfig(
        encoder_config=encoder_config or tiny_bert_config(),
        tasks=TASKS,
        fusion={"type": "attention", "token_context": token_context} if fusion else None,
        **kwargs,
    )
    model = MultiTaskModel(config).eval()
    if fusion and not fresh_fusion:
        # A new fusion layer scores every token zero (and token heads ignore the sentence context); give it weights
        # like a trained one's, so that the tests see token weights that differ between tasks and tokens.
        with torch.no_grad():
            for zero_start in model._zero_start_modules():
                zero_start.weight.normal_(std=1.0)
    return model


# (fusion, token_context) for the tests that run on every model variant
FUSION_VARIANTS = [(True, False), (True, True), (False, False)]


def labels_for(task, batch_size, seq_len, mask, seed=0):
    generator = torch.Generator().manual_seed(seed)
    if task == "intent":
        return torch.randint(0, 3, (batch_size,), generator=generator)
    if task == "slots":
        return torch.randint(0, 3, (batch_size, seq_len), generator=generator).masked_fill(mask == 0, -100)
    if task == "similarity":
        return torch.rand(batch_size, generator=generator) * 5
    return torch.randint(0, 2, (batch_size, 4), generator=generator).float()


@pytest.mark.parametrize("fusion, token_context", FUSION_VARIANTS)
@pytest.mark.parametrize("task_index, task", list(enumerate(LOGIT_SHAPES)))
def test_each_head_shapes_and_loss(encoder_config, fusion, token_context, task_index, task):
    model = make_model(encoder_config, fusion, token_context=token_context)
    input_ids, mask = random_batch()
    without_labels = model(input_ids=input_ids, attention_mask=mask, task_ids=task_index)
    assert without_labels.loss is None
    assert without_labels.logits.shape == LOGIT_SHAPES[task](6, 9)
    assert without_labels.task_ids.tolist() == [task_index] * 6
    labels = labels_for(task, 6, 9, mask)
    with_labels = model(input_ids=input_ids, attention_mask=mask, task_ids=task_index, labels=labels)
    assert torch.isfinite(with_labels.loss)
    torch.testing.assert_close(with_labels.logits, without_labels.logits)


def test_token_labels_minus_100_are_ignored():
    model = make_model()
    input_ids, mask = random_batch()
    labels = labels_for("slots", 6, 9, mask)
    loss = model(input_ids=input_ids, attention_mask=mask, task_ids=1, labels=labels).loss
    changed_ignored = labels.clone()
    logits = model(input_ids=input_ids, attention_mask=mask, task_ids=1).logits
    # Any label under an ignored position can change without changing the loss; all-ignored gives 0, not NaN.
    changed_ignored[:, 0] = -100
    reference = torch.nn.functional.cross_entropy(logits.flatten(0, 1), changed_ignored.flatten(), ignore_index=-100)
    torch.testing.assert_close(
        model(input_ids=input_ids, attention_mask=mask, task_ids=1, labels=changed_ignored).loss, reference
    )
    assert not torch.isclose(loss, reference)
    all_ignored = torch.full_like(labels, -100)
    assert model(input_ids=input_ids, attention_mask=mask, task_ids=1, labels=all_ignored).loss.item() == 0.0


def test_loss_weight_scales_the_task_loss():
    model = make_model()
    input_ids, mask = random_batch()
    out = model(input_ids=input_ids, attention_mask=mask, task_ids=2, labels=labels_for("similarity", 6, 9, mask))
    torch.testing.assert_close(out.loss, 0.5 * out.task_losses["similarity"])


def mixed_labels(task_ids, mask):
    """A (batch, seq) float tensor padded with -100: each row holds its own task's labels."""
    rows = []
    for row, task_index in enumerate(task_ids.tolist()):
        task = TASKS[task_index]["name"]
        label = labels_for(task, 1, mask.shape[1], mask[row : row + 1], seed=row)[0].float().reshape(-1)
        rows.append(torch.cat([label, torch.full((mask.shape[1] - label.numel(),), -100.0)]))
    return torch.stack(rows)


@pytest.mark.parametrize("fusion", [True, False])
def test_mixed_batch_matches_per_task_batches(fusion):
    model = make_model(fusion=fusion)
    input_ids, mask = random_batch(batch_size=8)
    task_ids = torch.tensor([0, 1, 2, 3, 1, 0, 3, 2])
    labels = mixed_labels(task_ids, mask)
    mixed = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids, labels=labels)
    assert mixed.logits is None and set(mixed.task_logits) == set(LOGIT_SHAPES)
    expected_loss = 0.0
    for task_index, task in enumerate(LOGIT_SHAPES):
        rows = (task_ids == task_index).nonzero(as_tuple=True)[0]
        alone = model(
            input_ids=input_ids[rows],
            attention_mask=mask[rows],
            task_ids=task_index,
            labels=model.heads[task].read_labels(labels[rows], len(rows), 9),
        )
        torch.testing.assert_close(mixed.task_logits[task], alone.logits, atol=1e-5, rtol=1e-5)
        expected_loss += alone.loss * len(rows) / 8
    torch.testing.assert_close(mixed.loss, expected_loss)


def test_all_tasks_from_one_encoder_pass_match_single_task_calls():
    model = make_model()
    input_ids, mask = random_batch()
    calls = []
    model.encoder.register_forward_hook(lambda *args: calls.append(1))
    every_task = model(input_ids=input_ids, attention_mask=mask, output_fusion_weights=True)
    assert len(calls) == 1 and every_task.logits is None and every_task.task_ids is None
    assert set(every_task.fusion_weights) == set(LOGIT_SHAPES)
    for task_index, task in enumerate(LOGIT_SHAPES):
        single = model(input_ids=input_ids, attention_mask=mask, task_ids=task_index).logits
        torch.testing.assert_close(every_task.task_logits[task], single)


def test_joint_labels_train_two_tasks_on_the_same_examples():
    model = make_model()
    input_ids, mask = random_batch()
    labels = {"intent": labels_for("intent", 6, 9, mask), "slots": labels_for("slots", 6, 9, mask)}
    out = model(input_ids=input_ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.loss, out.task_losses["intent"] + out.task_losses["slots"])


@pytest.mark.parametrize("fusion, token_context", FUSION_VARIANTS)
def test_every_parameter_gets_a_gradient_and_none_is_dead_weight(encoder_config, fusion, token_context):
    model = make_model(encoder_config, fusion, token_context=token_context).train()
    input_ids, mask = random_batch(batch_size=8)
    task_ids = torch.tensor([0, 1, 2, 3, 1, 0, 3, 2])
    model(
        input_ids=input_ids, attention_mask=mask, task_ids=task_ids, labels=mixed_labels(task_ids, mask)
    ).loss.backward()
    for name, parameter in model.named_parameters():
        if name.endswith("token_type_embeddings.weight"):
            continue  # only row 0 is used when no token_type_ids are given; the tensor still gets a gradient
        assert parameter.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    assert getattr(model.encoder, "pooler", None) is None


@pytest.mark.parametrize("token_context", [False, True])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_new_fusion_starts_from_the_same_seed_model_without_it(pooling, token_context):
    with_fusion = make_model(fusion=True, fresh_fusion=True, pooling=pooling, token_context=token_context)
    without = make_model(fusion=False, pooling=pooling)
    fusion_free_weights = {
        k: v
        for k, v in with_fusion.state_dict().items()
        if not k.startswith("fusion.") and "context_classifier" not in k
    }
    assert fusion_free_weights.keys() == without.state_dict().keys()
    for name, weight in without.state_dict().items():
        torch.testing.assert_close(fusion_free_weights[name], weight, rtol=0, atol=0, msg=name)
    input_ids, mask = random_batch()
    for task_index, task in enumerate(LOGIT_SHAPES):
        fused = with_fusion(input_ids=input_ids, attention_mask=mask, task_ids=task_index, output_fusion_weights=True)
        torch.testing.assert_close(fused.fusion_weights[task], mask / mask.sum(1, keepdim=True))
        plain = without(input_ids=input_ids, attention_mask=mask, task_ids=task_index).logits
        if task == "slots":  # uniform weights are the identity on real tokens (fusion zeroes the padding)
            torch.testing.assert_close(fused.logits[mask.bool()], plain[mask.bool()])
        elif pooling == "mean":  # and mean pooling for sequence heads
            torch.testing.assert_close(fused.logits, plain)
    # Zero scores are a starting point, not a fixed point: the score vector gets a gradient at once.
    with_fusion(
        input_ids=input_ids, attention_mask=mask, task_ids=0, labels=labels_for("intent", 6, 9, mask)
    ).loss.backward()
    assert with_fusion.fusion.score.weight.grad.abs().sum() > 0
    if token_context:  # and so do the sentence-context weights of the token head, through the slot loss
        with_fusion(
            input_ids=input_ids, attention_mask=mask, task_ids=1, labels=labels_for("slots", 6, 9, mask)
        ).loss.backward()
        assert with_fusion.heads["slots"].context_classifier.weight.grad.abs().sum() > 0


def test_token_context_adds_the_tasks_attention_pooled_vector_to_every_token():
    model = make_model(token_context=True)
    input_ids, mask = random_batch()
    out = model(input_ids=input_ids, attention_mask=mask, task_ids=1, output_fusion_weights=True)
    hidden = model.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
    weights = out.fusion_weights["slots"]
    head = model.heads["slots"]
    gated = hidden * (weights * mask.sum(1, keepdim=True)).unsqueeze(-1)
    context = (weights.unsqueeze(-1) * hidden).sum(1)
    expected = head.classifier(gated) + head.context_classifier(context).unsqueeze(1)
    torch.testing.assert_close(out.logits, expected)
    # The context is what lets fusion change a token's label: a per-token gate alone only rescales its logits.
    without_context = head.classifier(gated)
    assert (expected.argmax(-1) != without_context.argmax(-1))[mask.bool()].any()


def test_heads_of_absent_tasks_get_no_gradient():
    model = make_model().train()
    input_ids, mask = random_batch()
    model(
        input_ids=input_ids, attention_mask=mask, task_ids=0, labels=labels_for("intent", 6, 9, mask)
    ).loss.backward()
    assert all(p.grad is None for p in model.heads["slots"].parameters())
    assert all(p.grad is not None for p in model.heads["intent"].parameters())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labels": torch.zeros(6, dtype=torch.long)}, "labels were given without task_ids"),
        ({"task_ids": 7}, r"task_ids must be in \[0, 4\)"),
        ({"task_ids": torch.tensor([0, 1])}, "task_ids must be an int or a \\(batch,\\) tensor"),
        ({"task_ids": 0, "labels": {"intent": torch.zeros(6, dtype=torch.long)}}, "only without task_ids"),
        ({"labels": {"intnet": torch.zeros(6, dtype=torch.long)}}, "Unknown task 'intnet'"),
    ],
)
def test_forward_errors(kwargs, match):
    model = make_model()
    input_ids, mask = random_batch()
    with pytest.raises(ValueError, match=match):
        model(input_ids=input_ids, attention_mask=mask, **kwargs)


def test_model_needs_tasks():
    with pytest.raises(ValueError, match="has no tasks"):
        MultiTaskModel(MultiTaskConfig(encoder_config=tiny_bert_config()))


def test_mean_pooling_ignores_padding():
    model = make_model(fusion=False, pooling="mean")
    input_ids, mask = random_batch()
    logits = model(input_ids=input_ids, attention_mask=mask, task_ids=0).logits
    padded_differently = input_ids.masked_fill(mask == 0, 7)
    torch.testing.assert_close(model(input_ids=padded_differently, attention_mask=mask, task_ids=0).logits, logits)


@pytest.mark.parametrize("token_context", [False, True])
def test_save_and_load_give_identical_outputs(tmp_path, encoder_config, token_context):
    model = make_model(encoder_config, token_context=token_context)
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, MultiTaskModel)
    input_ids, mask = random_batch()
    for task_index in range(4):
        torch.testing.assert_close(
            reloaded(input_ids=input_ids, attention_mask=mask, task_ids=task_index).logits,
            model(input_ids=input_ids, attention_mask=mask, task_ids=task_index).logits,
        )


def test_from_encoder_pretrained_loads_the_encoder_weights(tmp_path, encoder_config):
    torch.manual_seed(1)
    AutoModel.from_config(encoder_config).save_pretrained(tmp_path)
    encoder = AutoModel.from_pretrained(tmp_path)
    model = MultiTaskModel.from_encoder_pretrained(tmp_path, tasks=TASKS, fusion={"type": "attention"}, dropout=0.2)
    assert model.config.dropout == 0.2 and model.fusion is not None
    word_embeddings = model.get_input_embeddings().weight
    torch.testing.assert_close(word_embeddings, encoder.get_input_embeddings().weight)
    assert getattr(model.encoder, "pooler", None) is None
    assert model.config.encoder_config.model_type == encoder_config.model_type


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_attention_implementations_agree(tmp_path, attn_implementation):
    make_model().save_pretrained(tmp_path)
    reference = MultiTaskModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    model = MultiTaskModel.from_pretrained(tmp_path, attn_implementation=attn_implementation).eval()
    assert model.config.encoder_config._attn_implementation == attn_implementation
    input_ids, mask = random_batch()
    torch.testing.assert_close(
        model(input_ids=input_ids, attention_mask=mask, task_ids=1).logits,
        reference(input_ids=input_ids, attention_mask=mask, task_ids=1).logits,
        atol=1e-5,
        rtol=1e-4,
    )


def test_dtype_loads_bfloat16(tmp_path):
    make_model().save_pretrained(tmp_path)
    model = MultiTaskModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    input_ids, mask = random_batch()
    assert model(input_ids=input_ids, attention_mask=mask, task_ids=0).logits.dtype == torch.bfloat16


def test_activation_checkpointing_gives_the_same_gradients():
    input_ids, mask = random_batch()
    labels = labels_for("slots", 6, 9, mask)
    gradients = []
    for checkpointing in (False, True):
        model = make_model(dropout=0.0)
        model.train()
        if checkpointing:  # transformers renamed gradient checkpointing in 5.20; the library supports both
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()
            assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
        model(input_ids=input_ids, attention_mask=mask, task_ids=1, labels=labels).loss.backward()
        gradients.append(model.encoder.embeddings.word_embeddings.weight.grad.clone())
    # Dropout in the encoder draws the same random numbers in the recomputation, so gradients agree.
    torch.testing.assert_close(gradients[0], gradients[1])


def test_single_task_forward_compiles_without_graph_breaks():
    model = make_model()
    input_ids, mask = random_batch()
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # fullgraph: any graph break raises
    for task_index, task in enumerate(LOGIT_SHAPES):
        labels = labels_for(task, 6, 9, mask)
        out = compiled(input_ids=input_ids, attention_mask=mask, task_ids=task_index, labels=labels)
        expected = model(input_ids=input_ids, attention_mask=mask, task_ids=task_index, labels=labels)
        torch.testing.assert_close(out.logits, expected.logits)
        torch.testing.assert_close(out.loss, expected.loss)
