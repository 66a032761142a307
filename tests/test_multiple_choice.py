"""Multiple choice as a task type: choices flattened into the batch and scored together, CommonsenseQA's nested JSON
and SWAG-style choice columns, a mixed model (choices + intent) trained through the CLI and served by the pipeline."""

import csv
import json
import logging
import re

import pytest
import torch
import yaml
from conftest import run_fresh, tiny_bert_config
from transformers import AutoTokenizer

from configuration_multitask import MultiTaskConfig
from modeling_multitask import MultiTaskModel, MultiTaskPipeline
from modeling_multitask.training.cli import main
from modeling_multitask.training.collator import MultiTaskDataCollator
from modeling_multitask.training.data import prepare_data
from modeling_multitask.training.experiment import ExperimentError, load_experiment


def test_choices_are_rows_of_one_batch_and_one_softmax(tiny_encoder):
    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=[
            {"name": "intent", "type": "sequence_classification", "labels": ["a", "b"]},
            {"name": "choice", "type": "multiple_choice", "num_choices": 3},
        ],
        fusion={"type": "attention"},
    )
    model = MultiTaskModel(config)
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    pairs = tokenizer(["what is good"] * 3, ["rain", "music", "flights"])
    features = [
        {**tokenizer("book a flight"), "labels": 1, "task_ids": 0},
        {**{key: pairs[key] for key in ("input_ids", "attention_mask", "token_type_ids")}, "labels": 2, "task_ids": 1},
        {**tokenizer("hello"), "labels": 0, "task_ids": 0},
    ]
    collator = MultiTaskDataCollator(
        tokenizer, task_types=["sequence_classification", "multiple_choice"], task_names=["intent", "choice"]
    )
    batch = collator(features)
    # 1 + 3 + 1 encoder rows; the choice example's label on its first row, -100 on the two others.
    assert batch["input_ids"].shape[0] == 5 and batch["task_ids"].tolist() == [0, 1, 1, 1, 0]
    assert batch["labels"][:, 0].tolist() == [1, 2, -100, -100, 0]
    output = model(**batch)
    assert torch.isfinite(output.loss) and output.task_logits["choice"].shape == (1, 3)

    alone = collator([features[1], features[1]])  # a one-task batch: labels (examples,)
    assert alone["labels"].tolist() == [2, 2] and alone["input_ids"].shape[0] == 6
    assert model(**alone).logits.shape == (2, 3)
    # transformers' AutoModelForMultipleChoice layout, (examples, num_choices, seq), reads as the same rows: the same
    # scores and loss, with a task id per example or per batch.
    model.eval()
    flat = model(**alone)
    grouped = {key: alone[key].view(2, 3, -1) for key in ("input_ids", "attention_mask", "token_type_ids")}
    for task_ids in (1, torch.tensor([1, 1])):
        output = model(**grouped, task_ids=task_ids, labels=alone["labels"])
        torch.testing.assert_close(output.logits, flat.logits)
        torch.testing.assert_close(output.loss, flat.loss)
    with pytest.raises(ValueError, match="not a multiple of num_choices=3"):
        model(input_ids=alone["input_ids"][:4], task_ids=1)
    with pytest.raises(ValueError, match="needs num_choices"):
        MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=[{"name": "c", "type": "multiple_choice"}])


QUESTIONS = [
    ("where do you fly", ["rain", "boston", "music"], "B"),
    ("what do you play", ["music", "fare", "rain"], "A"),
    ("what falls from the sky", ["song", "city", "rain"], "C"),
    ("what takes you to denver", ["a flight", "a song", "a star"], "A"),
]


def write_csqa(folder):
    """CommonsenseQA's layout: {"answerKey", "question": {"stem", "choices": [{"label", "text"}]}}."""
    rows = [
        {
            "id": f"q{i}",
            "answerKey": key,
            "question": {"stem": stem, "choices": [{"label": "ABC"[j], "text": t} for j, t in enumerate(choices)]},
        }
        for i, (stem, choices, key) in enumerate(QUESTIONS)
    ]
    (folder / "csqa.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    intents = [
        {"text": stem, "label": "travel" if "fly" in stem or "denver" in stem else "other"} for stem, _, _ in QUESTIONS
    ]
    (folder / "intent.jsonl").write_text("".join(json.dumps(row) + "\n" for row in intents))


def csqa_experiment(folder, encoder):
    raw = {
        "model": {"base_model": str(encoder), "fusion": {"type": "attention"}},
        "tasks": [
            {
                "name": "csqa",
                "type": "multiple_choice",
                "num_choices": 3,
                "data": {"train": "csqa.jsonl", "validation": "csqa.jsonl"},
                "text_column": "question.stem",
                "choices_column": "question.choices",
                "label_column": "answerKey",
                "max_length": 16,
            },
            {
                "name": "intent",
                "type": "sequence_classification",
                "data": {"train": "intent.jsonl", "validation": "intent.jsonl"},
            },
        ],
        "training": {
            "output_dir": str(folder / "out"),
            "num_train_epochs": 2,
            "per_device_train_batch_size": 2,
            "learning_rate": 1e-3,
            "disable_tqdm": True,
        },
    }
    (folder / "experiment.yaml").write_text(yaml.safe_dump(raw))
    return raw


def test_mixed_model_with_multiple_choice_trains_scores_and_serves(tmp_path, tiny_encoder):
    write_csqa(tmp_path)
    csqa_experiment(tmp_path, tiny_encoder)
    assert main([str(tmp_path / "experiment.yaml")]) == 0
    output = tmp_path / "out"
    metrics = json.loads((output / "metrics.json").read_text())
    assert 0 <= metrics["validation"]["csqa"]["accuracy"] <= 1 and "accuracy" in metrics["validation"]["intent"]
    assert "multiple-choice" in (output / "README.md").read_text()

    model = MultiTaskModel.from_pretrained(output).eval()
    tokenizer = AutoTokenizer.from_pretrained(output)
    pipe = MultiTaskPipeline(model=model, tokenizer=tokenizer)
    choices = ["music", "a flight", "rain"]
    result = pipe({"question": "what takes you to denver", "choices": choices})["csqa"]
    assert result["answer"] == choices[result["index"]] and [s["choice"] for s in result["scores"]] == choices
    assert sum(s["score"] for s in result["scores"]) == pytest.approx(1.0) and set(pipe("hello")) == {"intent"}
    # Each (question, choice) pair is read at the task's training max_length (16), as evaluation read it.
    long_question = {"question": "what takes you from boston to denver on monday morning " * 3, "choices": choices}
    assert pipe.preprocess(long_question)["own"]["csqa"][0]["input_ids"].shape == (3, 16)
    assert pipe.preprocess(long_question, max_length=40)["own"]["csqa"][0]["input_ids"].shape[1] > 16

    # Loads through AutoModel where only torch and transformers are importable, with the same choice scores.
    encoded = tokenizer(["what is good"] * 3, choices, padding=True, return_tensors="pt")
    _, fresh = run_fresh(output, dict(encoded), tmp_path)
    with torch.no_grad():
        assert torch.allclose(fresh["csqa"], model(**encoded, task_ids=0).logits, atol=1e-6)


def test_choice_columns_and_answers_that_do_not_fit(tmp_path, tiny_encoder, capsys):
    with (tmp_path / "swag.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["context", "ending0", "ending1", "label"])
        writer.writerow(["book a flight", "to boston", "with music", "0"])
        writer.writerow(["play a song", "by artist", "to denver", "0"])
    raw = {
        "model": {"base_model": str(tiny_encoder)},
        "tasks": [
            {
                "name": "swag",
                "type": "multiple_choice",
                "num_choices": 2,
                "data": {"train": "swag.csv"},
                "text_column": "context",
                "choice_columns": ["ending0", "ending1"],
            }
        ],
        "training": {"output_dir": str(tmp_path / "out")},
    }
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    prepared = prepare_data(load_experiment(tmp_path / "experiment.yaml"), AutoTokenizer.from_pretrained(tiny_encoder))
    feature = prepared.train["swag"][0]
    assert len(feature["input_ids"]) == 2 and feature["labels"] == 0
    assert prepared.truncated == {"train": {"swag": 0}}
    # An answer index written as a float (pandas, for an integer column with gaps) is that index; 1.5 is none.
    rows = (tmp_path / "swag.csv").read_text().splitlines()
    (tmp_path / "swag.csv").write_text("\n".join([*rows[:-1], "play a song,by artist,to denver,1.0"]) + "\n")
    prepared = prepare_data(load_experiment(tmp_path / "experiment.yaml"), AutoTokenizer.from_pretrained(tiny_encoder))
    assert [feature["labels"] for feature in prepared.train["swag"]] == [0, 1]
    (tmp_path / "swag.csv").write_text("\n".join([*rows[:-1], "play a song,by artist,to denver,1.5"]) + "\n")
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    assert "answer '1.5' is not a choice index" in capsys.readouterr().err
    (tmp_path / "swag.csv").write_text("\n".join(rows) + "\n")

    with (tmp_path / "swag.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(["hello", "a", "b", "5"])
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    assert "swag.csv, line 4: answer index 5 is outside [0, 2)" in capsys.readouterr().err
    # Choices without labels: the answer must be an index, and the error says so (it listed "[None, None]").
    rows = (tmp_path / "swag.csv").read_text().splitlines()
    (tmp_path / "swag.csv").write_text("\n".join([*rows[:-1], "hello,a,b,to boston"]) + "\n")
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    error = capsys.readouterr().err
    assert (
        "swag.csv, line 4: answer 'to boston' is not a choice index, and the choices have no labels: give the "
        in error
    )
    assert "None" not in error
    # An empty cell for a choice is a lost value, not an option to score.
    (tmp_path / "swag.csv").write_text("\n".join([*rows[:-1], "hello,a,,0"]) + "\n")
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    assert "swag.csv, line 4: " in (error := capsys.readouterr().err)
    assert "choice 1 (counting from 0) has no text" in error
    # A misspelt choice column fails on the file's header, naming the setting to fix and the columns there are.
    for choice_columns, named in (
        (["ending0", "ending_1"], "column 'ending_1' does not exist in "),
        (None, "column 'choices' does not exist in "),  # no choice_columns: one list column, `choices` by default
    ):
        task = {**raw["tasks"][0], "choice_columns": choice_columns}
        (tmp_path / "experiment.yaml").write_text(yaml.safe_dump({**raw, "tasks": [task]}))
        assert main([str(tmp_path / "experiment.yaml")]) == 2
        error = capsys.readouterr().err
        assert named in error and "Available columns: context, ending0, ending1, label." in error, error
    assert "(the task's choices_column)" in error
    # Settings that contradict each other fail when the experiment is read, before any data: both ways of giving the
    # choices (one of them would be ignored without a word), or a column count that is not num_choices.
    for settings, message in (
        ({"choices_column": "options"}, "give the choices either as one list column (choices_column) or as one"),
        ({"choice_columns": ["ending0"]}, "choice_columns names 1 columns, but num_choices is 2"),
    ):
        (tmp_path / "experiment.yaml").write_text(yaml.safe_dump({**raw, "tasks": [{**raw["tasks"][0], **settings}]}))
        with pytest.raises(ExperimentError, match=r"tasks\[0\] \(swag\): " + re.escape(message)):
            load_experiment(tmp_path / "experiment.yaml")


def test_pairs_cut_at_max_length_are_counted_warned_and_flagged(tmp_path, tiny_encoder, caplog):
    """A question and choice longer than max_length together are cut, in training (counted in `truncated_examples`,
    with a warning) and in the pipeline (flagged `truncated`, as a cut text's predictions are)."""
    with (tmp_path / "swag.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [
                ["context", "ending0", "ending1", "label"],
                ["book a flight to boston tomorrow morning please", "with music", "to denver", "1"],
                ["play a song", "by artist", "to denver", "0"],
            ]
        )
    task = {"name": "swag", "type": "multiple_choice", "num_choices": 2, "data": {"train": "swag.csv"}}
    task |= {"text_column": "context", "choice_columns": ["ending0", "ending1"], "max_length": 8}
    raw = {"model": {"base_model": str(tiny_encoder)}, "tasks": [task], "training": {"output_dir": "out"}}
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    with caplog.at_level(logging.WARNING):
        prepared = prepare_data(load_experiment(tmp_path / "experiment.yaml"), tokenizer)
    assert prepared.truncated == {"train": {"swag": 1}}
    assert "1 of 2 examples have a question and choice longer than max_length together" in caplog.text
    assert all(len(row) <= 8 for row in prepared.train["swag"][0]["input_ids"])

    served = {"name": "swag", "type": "multiple_choice", "num_choices": 2, "max_length": 8}  # as training records it
    config = MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=[served])
    pipe = MultiTaskPipeline(model=MultiTaskModel(config).eval(), tokenizer=tokenizer)
    short = {"question": "play a song", "choices": ["by artist", "to denver"]}
    assert "truncated" not in pipe(short)["swag"]
    with caplog.at_level(logging.WARNING):
        cut = pipe({**short, "question": "book a flight to boston tomorrow morning please"})["swag"]
    assert cut["truncated"] is True and "input cut to 8 tokens" in caplog.text
    longer = {**short, "question": "book a flight to boston tomorrow morning"}
    assert "truncated" not in pipe(longer, max_length=32)["swag"] and set(cut) >= {"answer", "scores"}


def test_pipeline_sends_a_question_to_the_choice_tasks_with_its_number_of_choices(tiny_encoder):
    """A model with a 3-choice and a 4-choice task (and a text task): each question goes to the task trained on as many
    choices as it has; one that no task fits names every task's count."""
    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=[
            {"name": "three", "type": "multiple_choice", "num_choices": 3},
            {"name": "four", "type": "multiple_choice", "num_choices": 4},
            {"name": "intent", "type": "sequence_classification", "labels": ["a", "b"]},
        ],
    )
    pipe = MultiTaskPipeline(
        model=MultiTaskModel(config).eval(), tokenizer=AutoTokenizer.from_pretrained(tiny_encoder)
    )
    three = pipe({"question": "where do you fly", "choices": ["rain", "boston", "music"]})
    four = pipe({"question": "where do you fly", "choices": ["rain", "boston", "music", "fare"]})
    assert set(three) == {"three"} and len(three["three"]["scores"]) == 3
    assert set(four) == {"four"} and len(four["four"]["scores"]) == 4
    batched = pipe(["hello", {"question": "q", "choices": ["a", "b", "c", "d"]}], batch_size=2)
    assert [set(result) for result in batched] == [{"intent"}, {"four"}]
    with pytest.raises(
        ValueError, match="'three' was trained on 3 choices per question, got 2.*'four' was trained on 4"
    ):
        pipe({"question": "q", "choices": ["a", "b"]})
    with pytest.raises(ValueError, match="'three' was trained on 3 choices per question, got 4"):
        pipe({"question": "q", "choices": ["a", "b", "c", "d"]}, task="three")
    with pytest.raises(ValueError, match="choice 2 .counting from 0. has no text"):
        pipe({"question": "q", "choices": ["a", "b", "  "]}, task="three")
