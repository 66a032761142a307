"""MultiTaskPipeline in-process: predictions per task type, batching, offsets, explain view, and bad input."""

import json
import logging

import pytest
import torch
from conftest import TASKS, tiny_bert_config
from transformers import BertConfig, BertModel, pipeline

from configuration_multitask.task_token_classification import group_bio
from modeling_multitask import MultiTaskConfig, MultiTaskModel
from modeling_multitask.hub import CUSTOM_PIPELINE, read_checkpoint_config, save_pipeline_files
from modeling_multitask.predict_cli import main as predict_main


TEXT = "Show me flights to New York tomorrow"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS, fusion={"type": "attention"})
    config.text_pair_tasks = ["similarity"]
    return MultiTaskModel(config).eval()


@pytest.fixture
def pipe(model, tiny_tokenizer):
    return pipeline("multitask", model=model, tokenizer=tiny_tokenizer, device="cpu")


@pytest.fixture
def checkpoint(model, tiny_tokenizer, tmp_path):
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_every_task_from_one_pass_matches_the_model(pipe, model, tiny_tokenizer):
    result = pipe(TEXT)
    assert set(result) == {"intent", "slots", "topics"}  # the pair task "similarity" needs two texts
    with torch.no_grad():
        out = model(**tiny_tokenizer(TEXT, return_tensors="pt"))
    probabilities = out.task_logits["intent"][0].softmax(-1)
    assert result["intent"]["label"] == TASKS[0]["labels"][int(probabilities.argmax())]
    assert result["intent"]["score"] == pytest.approx(probabilities.max().item(), abs=1e-6)
    topic_scores = torch.sigmoid(out.task_logits["topics"][0]).tolist()
    assert list(result["topics"]["scores"].values()) == pytest.approx(topic_scores, abs=1e-6)
    assert result["topics"]["labels"] == [
        label for label, s in zip(TASKS[3]["labels"], topic_scores, strict=True) if s >= 0.5
    ]

    pair = pipe({"text": TEXT, "text_pair": "flights to Boston"})
    assert set(pair) == {"similarity"}
    with torch.no_grad():
        expected = model(**tiny_tokenizer(TEXT, "flights to Boston", return_tensors="pt")).task_logits["similarity"]
    assert pair["similarity"]["value"] == pytest.approx(expected.item(), abs=1e-6)


def test_named_task_top_k_threshold_and_batching(pipe):
    single = pipe(TEXT, task="intent", top_k=3)
    assert single["label"] == single["top_k"][0]["label"]
    assert [entry["score"] for entry in single["top_k"]] == sorted((e["score"] for e in single["top_k"]), reverse=True)
    assert sum(entry["score"] for entry in single["top_k"]) == pytest.approx(1.0, abs=1e-5)
    assert pipe(TEXT, task="topics", threshold=0.0)["labels"] == TASKS[3]["labels"]
    assert pipe(TEXT, task="topics", threshold=1.0)["labels"] == []

    texts = [TEXT, "hello", "what is the cheapest fare from denver to dallas please"]
    one_by_one = [pipe(text, task="slots", return_fusion_weights=True) for text in texts]
    batched = pipe(texts, task="slots", batch_size=3, return_fusion_weights=True)  # padded to the longest
    for alone, together in zip(one_by_one, batched, strict=True):
        assert [e["word"] for e in alone["entities"]] == [e["word"] for e in together["entities"]]
        assert [w["weight"] for w in alone["fusion_weights"]] == pytest.approx(
            [w["weight"] for w in together["fusion_weights"]], abs=1e-5
        )


def _force_slot_tag(model, tag: str):
    head = model.heads["slots"].classifier
    head.weight.data.zero_()
    head.bias.data.fill_(-10.0)
    head.bias.data[TASKS[1]["labels"].index(tag)] = 10.0


def test_entities_are_character_spans_of_the_original_text(tiny_tokenizer):
    torch.manual_seed(0)
    model = MultiTaskModel(MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS)).eval()
    pipe = pipeline("multitask", model=model, tokenizer=tiny_tokenizer, device="cpu")
    text = "Bookings  to   BOSTON!"  # sub-words (book ##ing ##s), odd spacing and case, punctuation
    _force_slot_tag(model, "B-city")  # every word its own entity
    entities = pipe(text, task="slots")["entities"]
    # A word is a whitespace word, as in training: "BOSTON!" is one, although BERT's tokenizer splits off the "!".
    assert [(e["word"], e["start"], e["end"]) for e in entities] == [
        ("Bookings", 0, 8),
        ("to", 10, 12),
        ("BOSTON!", 15, 22),
    ]
    assert all(text[e["start"] : e["end"]] == e["word"] and e["entity"] == "city" for e in entities)
    _force_slot_tag(model, "I-city")  # one entity over the whole text
    assert [(e["word"], e["start"], e["end"]) for e in pipe(text, task="slots")["entities"]] == [(text, 0, 22)]
    _force_slot_tag(model, "O")
    assert pipe(text, task="slots")["entities"] == []

    # A checkpoint trained on words with punctuation split off reads "BOSTON!" as "BOSTON !".
    model.config.word_splitting = "punctuation"
    _force_slot_tag(model, "B-city")
    entities = pipe(text, task="slots")["entities"]
    assert [(e["word"], e["start"], e["end"]) for e in entities] == [
        ("Bookings", 0, 8),
        ("to", 10, 12),
        ("BOSTON", 15, 21),
        ("!", 21, 22),
    ]


def test_group_bio():
    words = [
        ("B-city", 0.9, 0, 3),
        ("I-city", 0.7, 4, 8),
        ("O", 1.0, 9, 11),
        ("I-date", 0.5, 12, 15),
        ("B-city", 0.8, 16, 18),
        ("B-city", 0.6, 19, 21),
    ]
    text = "new york to mon la sf"
    assert group_bio(words, text) == [
        {"entity": "city", "start": 0, "end": 8, "score": pytest.approx(0.8), "word": "new york"},
        {"entity": "date", "start": 12, "end": 15, "score": 0.5, "word": "mon"},
        {"entity": "city", "start": 16, "end": 18, "score": 0.8, "word": "la"},
        {"entity": "city", "start": 19, "end": 21, "score": 0.6, "word": "sf"},
    ]


def test_fusion_weights_are_the_models(pipe, model, tiny_tokenizer):
    result = pipe(TEXT, return_fusion_weights=True)
    with torch.no_grad():
        out = model(**tiny_tokenizer(TEXT, return_tensors="pt"), output_fusion_weights=True)
    for task in ("intent", "slots", "topics"):
        weights = [entry["weight"] for entry in result[task]["fusion_weights"]]
        assert weights == pytest.approx(out.fusion_weights[task][0].tolist(), abs=1e-5)
        assert [entry["token"] for entry in result[task]["fusion_weights"]] == tiny_tokenizer.convert_ids_to_tokens(
            tiny_tokenizer(TEXT)["input_ids"]
        )


def test_truncation_warns_and_marks_the_result(pipe, caplog):
    with caplog.at_level(logging.WARNING):
        result = pipe(" ".join(["flights"] * 100), task="intent")
    assert result["truncated"] is True
    assert "truncated to 64" in caplog.text


@pytest.mark.parametrize(
    "inputs, kwargs, match",
    [
        (TEXT, {"task": "intnet"}, r"Unknown task 'intnet'.*intent, slots, similarity, topics"),
        ("", {}, "Empty"),
        ("   ", {"task": "intent"}, "Empty"),
        ({"text": TEXT, "text_pair": ""}, {"task": "similarity"}, "Empty"),
        (TEXT, {"task": "similarity"}, "compares two texts but got one"),
        ((TEXT, "hello"), {"task": "intent"}, "reads a single text but got a pair"),
        (42, {}, "Cannot read input 42"),
        (TEXT, {"top_k": 0}, "top_k must be a positive integer"),
        (TEXT, {"threshold": 2}, r"threshold is a probability"),
    ],
)
def test_bad_input_errors(pipe, inputs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe(inputs, **kwargs)


def test_fusion_weights_without_fusion_and_non_multitask_model(tiny_tokenizer):
    plain = MultiTaskModel(MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS[:1])).eval()
    pipe = pipeline("multitask", model=plain, tokenizer=tiny_tokenizer, device="cpu")
    assert set(pipe(TEXT)) == {"intent"}
    with pytest.raises(ValueError, match="needs a model with AttentionFusion"):
        pipe(TEXT, return_fusion_weights=True)
    with pytest.raises(ValueError, match="needs a multi-task model"):
        pipeline("multitask", model=BertModel(tiny_bert_config()), tokenizer=tiny_tokenizer, device="cpu")


def test_folder_checks(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint_config(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        read_checkpoint_config(tmp_path / "empty")
    BertConfig(**tiny_bert_config().to_dict()).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="'bert' model, not a multi-task checkpoint"):
        read_checkpoint_config(tmp_path / "bert")
    assert read_checkpoint_config(checkpoint)["model_type"] == "multitask"


def test_saved_pipeline_matches_save_pipeline_files(checkpoint, tiny_tokenizer, tmp_path):
    # A model of its own: saving through the pipeline writes `custom_pipelines` into the model's config.
    model = MultiTaskModel(MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS))
    pipe = pipeline("multitask", model=model, tokenizer=tiny_tokenizer, device="cpu")
    pipe.save_pretrained(tmp_path / "through_pipeline")
    through_pipeline = json.loads((tmp_path / "through_pipeline" / "config.json").read_text())["custom_pipelines"]
    assert through_pipeline == {"multitask": CUSTOM_PIPELINE}
    save_pipeline_files(checkpoint)
    assert json.loads((checkpoint / "config.json").read_text())["custom_pipelines"] == through_pipeline
    assert (checkpoint / "pipeline_multitask.py").read_text() == (
        tmp_path / "through_pipeline" / "pipeline_multitask.py"
    ).read_text()


def test_folder_pipeline_dtype(checkpoint, tmp_path):
    save_pipeline_files(checkpoint)
    pipe = pipeline(model=str(checkpoint), device="cpu", dtype=torch.bfloat16, trust_remote_code=True)
    assert pipe.model.dtype == torch.bfloat16
    assert pipe(TEXT, task="intent")["label"] in TASKS[0]["labels"]


def test_predict_cli_explain_and_html(checkpoint, tmp_path, capsys):
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text(json.dumps("hello") + "\n" + json.dumps({"text": TEXT, "text_pair": "hi"}) + "\n")
    html = tmp_path / "explain.html"
    assert predict_main([str(checkpoint), TEXT, "--file", str(inputs), "--explain", "--html", str(html)]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [record["text"] for record in records] == [TEXT, "hello", TEXT]
    assert set(records[0]["predictions"]) == {"intent", "slots", "topics"}
    assert set(records[2]["predictions"]) == {"similarity"}
    assert "flights" in captured.err and "intent" in captured.err  # the terminal view: tokens x tasks
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    assert page.count("<table>") == 3 and "<th>slots</th>" in page

    assert predict_main([str(checkpoint), TEXT, "--task", "nope"]) == 2
    assert "Unknown task 'nope'" in capsys.readouterr().err
    assert predict_main([str(tmp_path), TEXT]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_predict_cli_explain_notes_each_input_without_token_weights(tiny_tokenizer, tmp_path, capsys):
    """Question-answering and multiple-choice inputs are read as encoder rows of their own, with no token weights:
    --explain and --html say so for each of them, after its prediction, and still explain the texts around them."""
    tasks = [
        TASKS[0],
        {"name": "qa", "type": "question_answering", "doc_stride": 8},
        {"name": "choice", "type": "multiple_choice", "num_choices": 2},
    ]
    torch.manual_seed(0)
    config = MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=tasks, fusion={"type": "attention"})
    MultiTaskModel(config).save_pretrained(tmp_path / "checkpoint")
    tiny_tokenizer.save_pretrained(tmp_path / "checkpoint")
    question = {"question": "Where was Zoë born?", "context": "Zoë was born in Kraków."}
    lines = [question, TEXT, {"question": "which city ?", "choices": ["rain", "boston"]}]
    (tmp_path / "inputs.jsonl").write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8"
    )
    html = tmp_path / "explain.html"
    checkpoint, inputs = str(tmp_path / "checkpoint"), str(tmp_path / "inputs.jsonl")
    assert predict_main([checkpoint, "--file", inputs, "--explain", "--html", str(html)]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [set(record["predictions"]) for record in records] == [{"qa"}, {"intent"}, {"choice"}]
    assert "fusion_weights" in records[1]["predictions"]["intent"]
    assert f"# {json.dumps(question, ensure_ascii=False)}\n(no token weights: --explain shows" in captured.err
    assert "this input goes to choice as encoder rows of their own" in captured.err
    page = html.read_text()
    assert page.count("<table>") == 1 and page.count("<p>no token weights: ") == 2

    (tmp_path / "inputs.jsonl").write_text(json.dumps(question) + "\n")
    assert predict_main([checkpoint, "--file", inputs, "--task", "qa", "--explain"]) == 0
    assert "this input goes to qa as encoder rows" in capsys.readouterr().err
