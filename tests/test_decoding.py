"""Tag decoding of token-level tasks: per-token argmax, or the best IOB2-valid sequence (`decoding: bio`)."""

import itertools
import json

import pytest
import torch
from conftest import TASKS, tiny_bert_config
from transformers import pipeline

from modeling_multitask import MultiTaskConfig, MultiTaskModel
from modeling_multitask.heads import bio_transitions, decode_tags, viterbi_decode
from modeling_multitask.training.experiment import ExperimentError, parse_experiment
from modeling_multitask.training.metrics import reduce_logits


LABELS = ["O", "B-city", "I-city", "B-date", "I-date", "UNK"]


def _is_valid(tags: list[str]) -> bool:
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous not in (f"B-{tag[2:]}", tag):
            return False
        previous = tag
    return True


def test_bio_transitions_by_hand():
    allowed = bio_transitions(LABELS)
    assert allowed.shape == (len(LABELS) + 1, len(LABELS))
    i_city = LABELS.index("I-city")
    # I-city only after B-city or I-city; never first (the last row is the sentence start).
    assert [LABELS[i] for i in allowed[:-1, i_city].nonzero().flatten().tolist()] == ["B-city", "I-city"]
    assert not allowed[-1, i_city]
    for tag in ("O", "B-city", "B-date", "UNK"):  # no constraint on anything else
        assert allowed[:, LABELS.index(tag)].all()


def test_viterbi_is_the_best_valid_sequence_by_brute_force():
    generator = torch.Generator().manual_seed(0)
    allowed = bio_transitions(LABELS)
    for _ in range(30):
        logits = torch.randn(2, 6, len(LABELS), generator=generator) * 3
        word_mask = torch.rand(2, 6, generator=generator) > 0.3
        decoded = viterbi_decode(logits, word_mask, allowed)
        for row in range(2):
            positions = word_mask[row].nonzero().flatten().tolist()
            log_probs = logits[row].log_softmax(-1)
            best = max(
                (
                    p
                    for p in itertools.product(range(len(LABELS)), repeat=len(positions))
                    if _is_valid([LABELS[t] for t in p])
                ),
                key=lambda p: sum(log_probs[pos, t].item() for pos, t in zip(positions, p)),
            )
            assert decoded[row, positions].tolist() == list(best)
            others = [i for i in range(6) if i not in positions]  # positions without a label keep their argmax
            assert decoded[row, others].tolist() == logits[row, others].argmax(-1).tolist()


def test_bio_decoding_repairs_a_stray_inside_tag_and_keeps_valid_argmax():
    def logits_for(tags, runner_up):
        logits = torch.full((1, len(tags), len(LABELS)), -5.0)
        for position, (tag, second) in enumerate(zip(tags, runner_up, strict=True)):
            logits[0, position, LABELS.index(tag)] = 3.0
            logits[0, position, LABELS.index(second)] = 2.0
        return logits

    mask = torch.ones(1, 3, dtype=torch.bool)
    # "to new york": the argmax opens the city with I-city, an invalid IOB2 sequence; the best valid one takes the
    # runner-up B-city there and leaves the rest as it was.
    stray = logits_for(["O", "I-city", "I-city"], ["B-date", "B-city", "O"])
    assert [LABELS[t] for t in decode_tags(stray, mask, LABELS, "bio")[0]] == ["O", "B-city", "I-city"]
    assert [LABELS[t] for t in decode_tags(stray, mask, LABELS, "argmax")[0]] == ["O", "I-city", "I-city"]
    valid = logits_for(["B-city", "I-city", "B-date"], ["O", "O", "O"])
    assert torch.equal(decode_tags(valid, mask, LABELS, "bio"), valid.argmax(-1))


def test_decode_tags_errors():
    logits = torch.zeros(1, 2, len(LABELS))
    with pytest.raises(ValueError, match="needs word_mask"):
        decode_tags(logits, None, LABELS, "bio")
    with pytest.raises(ValueError, match="use 'argmax' or 'bio'"):
        decode_tags(logits, None, LABELS, "crf")


def test_reduce_logits_decodes_token_tasks_as_told():
    logits = torch.full((1, 2, len(LABELS)), -5.0)
    logits[0, :, LABELS.index("I-date")] = 3.0
    logits[0, :, LABELS.index("B-date")] = 2.0
    mask = torch.tensor([[True, True]])
    assert reduce_logits("token_classification", logits).tolist() == [[4, 4]]
    assert reduce_logits("token_classification", logits, mask, LABELS, "bio").tolist() == [[3, 4]]


# ----------------------------------------------------------------------------------------------- config and model


def _tasks(decoding=None, labels=("O", "B-city", "I-city")):
    slots = {"name": "slots", "type": "token_classification", "labels": list(labels)}
    if decoding is not None:
        slots["decoding"] = decoding
    return [TASKS[0], slots]


def test_config_decoding_defaults_validates_and_round_trips(tmp_path):
    config = MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=_tasks())
    assert config.tasks[1]["decoding"] == "argmax" and "decoding" not in config.tasks[0]
    config = MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=_tasks("bio"))
    config.save_pretrained(tmp_path)
    assert MultiTaskConfig.from_pretrained(tmp_path).tasks[1]["decoding"] == "bio"

    # A config.json written before decoding existed loads with the argmax it was trained and scored with.
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["tasks"][1]["decoding"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert MultiTaskConfig.from_pretrained(tmp_path).tasks[1]["decoding"] == "argmax"


@pytest.mark.parametrize(
    ("tasks", "match"),
    [
        (_tasks("viterbi"), "decoding 'viterbi' is unknown"),
        (_tasks("bio", labels=("O", "PER", "LOC")), "needs labels that start with 'I-'"),
        ([{**TASKS[0], "decoding": "bio"}], "for token_classification tasks only"),
    ],
)
def test_config_decoding_errors(tasks, match):
    with pytest.raises(ValueError, match=match):
        MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=tasks)


def test_experiment_decoding_errors(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"tokens": ["a"], "tags": ["O"], "label": "x"}\n')

    def experiment(**task):
        return {"model": {"base_model": "x"}, "tasks": [{"name": "t", "data": {"train": "train.jsonl"}, **task}]}

    parsed = parse_experiment(experiment(type="token_classification", decoding="bio"), tmp_path)
    assert parsed.tasks[0].decoding == "bio"
    with pytest.raises(ExperimentError, match=r"decoding 'bi' is unknown\. Did you mean 'bio'\?"):
        parse_experiment(experiment(type="token_classification", decoding="bi"), tmp_path)
    with pytest.raises(ExperimentError, match="for token_classification tasks only"):
        parse_experiment(experiment(type="sequence_classification", decoding="bio"), tmp_path)


def test_model_and_pipeline_follow_the_task_decoding(tiny_tokenizer):
    text = "Bookings  to   BOSTON!"  # four words
    entities = {}
    for decoding in ("argmax", "bio"):
        torch.manual_seed(0)
        model = MultiTaskModel(MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=_tasks(decoding))).eval()
        head = model.heads["slots"].classifier
        head.weight.data.zero_()
        head.bias.data.copy_(torch.tensor([8.0, -10.0, 10.0]))  # O, B-city, I-city: I-city everywhere by argmax
        pipe = pipeline("multitask", model=model, tokenizer=tiny_tokenizer, device="cpu")
        entities[decoding] = pipe(text, task="slots")["entities"]

        logits = model(**tiny_tokenizer(text, return_tensors="pt"), task_ids=1).task_logits["slots"]
        with pytest.raises(ValueError, match="not token-level"):
            model.decode_token_labels("intent", logits, torch.ones(logits.shape[:2], dtype=torch.bool))
    # argmax: one city entity over the whole text; bio: I-city cannot open a sentence or follow O, and a B-city at
    # -20 log-probability costs more than O (-2.1) on every word, so no entity at all.
    assert [(e["entity"], e["word"]) for e in entities["argmax"]] == [("city", text)]
    assert entities["bio"] == []
