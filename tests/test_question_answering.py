"""Extractive question answering as a task type: SQuAD scoring by hand, windows over long contexts, the best span
over every window with exact character offsets, and a mixed model (QA + intent) trained through the CLI from the
SQuAD JSON layout and served by the pipeline."""

import csv
import json
import logging

import pytest
import torch
import yaml
from conftest import run_fresh, tiny_bert_config
from tokenizer_families import FAMILIES
from transformers import AutoTokenizer

from configuration_multitask import TASK_TYPES, MultiTaskConfig
from configuration_multitask.task_question_answering import (
    answer_positions,
    decode_answer,
    decode_answers,
    normalize_answer,
    resolve_doc_stride,
    squad_scores,
    window_features,
)
from modeling_multitask import MultiTaskModel, MultiTaskPipeline
from modeling_multitask.predict_cli import main as predict_main
from modeling_multitask.training.cli import main


def test_squad_normalisation_and_scores_by_hand():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    scores = squad_scores(
        {"q1": "Denver Broncos", "q2": "the big red dog", "q3": "Paris", "q4": ""},
        {"q1": ["Denver Broncos", "Broncos"], "q2": ["red dog"], "q3": ["London"], "q4": []},
    )
    # q1: exact (1, F1 1); q2: "big red dog" vs "red dog": precision 2/3, recall 1 -> F1 0.8; q3: 0; q4: unanswerable
    # and answered empty: right.
    assert scores["exact_match"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx((1 + 0.8 + 0 + 1) / 4)
    # The maximum over gold answers: the second gold answer matches exactly.
    assert squad_scores({"q": "broncos"}, {"q": ["Denver Broncos", "the Broncos"]}) == {
        "exact_match": 1.0,
        "f1": 1.0,
    }


def fast_tokenizer(tiny_encoder):
    return AutoTokenizer.from_pretrained(tiny_encoder)


LONG_CONTEXT = (
    "show me flights to boston . " * 6
    + "the cheapest fare is to denver tomorrow morning . "
    + "play music by artist . " * 6
)


def test_windows_cover_a_long_context_and_map_the_answer_back(tiny_encoder):
    tokenizer = fast_tokenizer(tiny_encoder)
    windows = window_features(tokenizer, "which city ?", LONG_CONTEXT, max_length=24, doc_stride=8)
    assert len(windows) > 3  # a context of ~80 tokens in windows of 24 tokens
    start = LONG_CONTEXT.index("denver")
    end = start + len("denver")
    found = [answer_positions(offsets, start, end) for _, offsets in windows]
    inside = [(window, positions) for window, positions in zip(windows, found) if positions != (0, 0)]
    assert inside  # the answer is in at least one window, and where it is, its tokens spell it
    for (_, offsets), (first, last) in inside:
        assert LONG_CONTEXT[offsets[first][0] : offsets[last][1]] == "denver"
    # Every context character is covered by some window.
    covered = {c for _, offsets in windows for o in offsets if o for c in range(*o)}
    assert all(i in covered for i, char in enumerate(LONG_CONTEXT) if not char.isspace())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_answers_map_to_their_tokens_and_back_in_every_tokenizer_family(family):
    """Non-ASCII words and punctuation stuck to the answer, in windows of a context read with a stride: where a window
    holds the answer, its first and last token spell exactly the answer's characters."""
    tokenizer = FAMILIES[family]()
    context = "fly from zürich, tomorrow. " * 4 + "then to são paulo! " + "what flights leave boston? " * 4
    for answer in ("zürich", "são paulo", "boston"):
        start = context.index(answer)
        windows = window_features(tokenizer, "which city ?", context, max_length=24, doc_stride=8)
        found = [(offsets, answer_positions(offsets, start, start + len(answer))) for _, offsets in windows]
        spelled = {context[offsets[first][0] : offsets[last][1]] for offsets, (first, last) in found if first}
        assert spelled == {answer}, (family, answer, spelled)


def test_a_question_that_leaves_windows_no_room_is_an_error_not_a_tokenizer_panic(tiny_encoder):
    """The tokenizer panics (a BaseException) when a window's room for the context is not above doc_stride."""
    tokenizer = fast_tokenizer(tiny_encoder)
    question = "which city do you want to fly to tomorrow morning ?"
    with pytest.raises(ValueError, match="the question takes .* shorten the question, or raise max_length"):
        window_features(tokenizer, question, LONG_CONTEXT, max_length=20, doc_stride=8)
    # A context that fits beside the question needs no windows, whatever doc_stride is.
    assert len(window_features(tokenizer, question, "fly to denver", max_length=20, doc_stride=8)) == 1


def test_the_best_span_over_every_window_wins_with_exact_offsets():
    context = "alpha beta gamma delta"
    offsets_a = [None, (0, 5), (6, 10), None]  # window 1: "alpha beta"
    offsets_b = [None, (6, 10), (11, 16), (17, 22)]  # window 2: "beta gamma delta"
    low = torch.zeros(4)
    start_b, end_b = torch.tensor([0.0, 0.0, 5.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 6.0])
    text, start, end, score = decode_answer(
        [(low, low, offsets_a), (start_b, end_b, offsets_b)], context, max_answer_length=5
    )
    assert (text, start, end) == ("gamma delta", 11, 22) and context[start:end] == text and 0 < score < 1
    # Spans longer than max_answer_length are not considered.
    assert decode_answer([(start_b, end_b, offsets_b)], context, max_answer_length=1)[0] in {"gamma", "delta", "beta"}
    # Unanswerable allowed: a null score far above the best span gives the empty answer.
    null = torch.tensor([20.0, 0.0, 0.0, 0.0])
    assert decode_answer([(null, null, offsets_b)], context, 5, allow_unanswerable=True)[0] == ""


def test_the_n_best_answers_count_a_span_of_overlapping_windows_once():
    """Span scores (start + end logit) by hand: window A gives "beta" 6.5, "alpha beta" 4.5, "alpha" 1; window B
    "gamma delta" 11, "beta gamma delta" 7, "delta" 6, "gamma" 5, and "beta" only 1, so "beta" ranks once, with A's
    score and probability."""
    context = "alpha beta gamma delta"
    offsets_a = [None, (0, 5), (6, 10), None]
    offsets_b = [None, (6, 10), (11, 16), (17, 22)]
    start_a, end_a = torch.tensor([0.0, 1.0, 3.0, 0.0]), torch.tensor([0.0, 0.0, 3.5, 0.0])
    start_b, end_b = torch.tensor([0.0, 1.0, 5.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 6.0])
    windows = [(start_a, end_a, offsets_a), (start_b, end_b, offsets_b)]
    answers = decode_answers(windows, context, max_answer_length=5, count=6)
    assert [text for text, *_ in answers] == [
        "gamma delta",
        "beta gamma delta",
        "beta",
        "delta",
        "gamma",
        "alpha beta",
    ]
    assert all(context[start:end] == text for text, start, end, _ in answers)
    # Each score is a softmax over every window's context tokens (the None offsets stay out), so they fall as the
    # ranks do: "beta" has A's start and end logits, 3 and 3.5.
    starts, ends = torch.cat((start_a[1:3], start_b[1:])), torch.cat((end_a[1:3], end_b[1:]))
    assert answers[2][3] == pytest.approx(float(starts.softmax(0)[1] * ends.softmax(0)[1]))
    assert [score for *_, score in answers] == sorted((score for *_, score in answers), reverse=True)
    assert decode_answers(windows, context, max_answer_length=5, count=2) == answers[:2]
    assert decode_answer(windows, context, max_answer_length=5) == answers[0]


def test_a_weak_window_s_confident_span_does_not_outscore_the_best_answer():
    """Window A is sure of "alpha" (a softmax within A gives it 0.95), window B less sure of "delta" (0.33 within B),
    whose logits are larger: "delta" ranks first, and its score must be the larger one too."""
    context = "alpha beta gamma delta"
    offsets_a, offsets_b = [None, (0, 5), (6, 10)], [None, (11, 16), (17, 22)]
    flat_but_alpha = torch.tensor([0.0, 4.0, -8.0])
    start_b = end_b = torch.tensor([5.0, 5.0, 6.0])
    windows = [(flat_but_alpha, flat_but_alpha, offsets_a), (start_b, end_b, offsets_b)]
    answers = {text: score for text, *_, score in decode_answers(windows, context, 5, count=10)}
    assert next(iter(answers)) == "delta" and answers["delta"] > answers["alpha"]
    assert list(answers.values()) == sorted(answers.values(), reverse=True)


@pytest.mark.parametrize(
    "family, offsets, first, last",
    [
        # SentencePiece (Metaspace) tokens carry the space before a word: "▁in", "▁東京", "▁today."
        ("sentencepiece", [None, (0, 2), (2, 5), (5, 12)], 2, 2),
        # Byte-level BPE may give the space a token of its own: "in", "Ġ", "東京", "Ġtoday", "."
        ("byte-level", [None, (0, 2), (2, 3), (3, 5), (5, 11), (11, 12)], 2, 3),
    ],
)
def test_answers_lose_surrounding_whitespace_and_a_whitespace_span_is_no_answer(family, offsets, first, last):
    context = "in 東京 today."
    start, end = torch.zeros(len(offsets)), torch.zeros(len(offsets))
    start[first], end[last] = 9.0, 9.0  # the best span starts on the space
    assert decode_answer([(start, end, offsets)], context, max_answer_length=5)[:3] == ("東京", 3, 5)
    # A span of whitespace alone (a lone space token, or a zero-width one) is passed over for the next best.
    spaces = [None, (0, 2), (2, 3), (3, 3), (3, 5)]
    logits = torch.tensor([0.0, 0.0, 9.0, 8.0, 1.0])
    assert decode_answer([(logits, logits, spaces)], context, max_answer_length=1)[:3] == ("東京", 3, 5)


def test_qa_head_loss_and_mixed_batches():
    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=[
            {"name": "intent", "type": "sequence_classification", "labels": ["a", "b"]},
            {"name": "qa", "type": "question_answering", "doc_stride": 16},
        ],
    )
    assert config.task("qa").definition is TASK_TYPES["question_answering"] and config.task("qa").doc_stride == 16
    model = MultiTaskModel(config)
    input_ids = torch.randint(5, 80, (4, 12))
    # A mixed batch: class ids and (start, end) positions, padded with -100.
    labels = torch.tensor([[1, -100], [3, 5], [0, -100], [2, 2]], dtype=torch.float)
    output = model(input_ids=input_ids, task_ids=torch.tensor([0, 1, 0, 1]), labels=labels)
    assert torch.isfinite(output.loss) and output.task_logits["qa"].shape == (2, 12, 2)
    with pytest.raises(ValueError, match="not a token position"):
        model(input_ids=input_ids[:1], task_ids=1, labels=torch.tensor([[3, 40]]))
    with pytest.raises(ValueError, match="doc_stride must be a positive integer"):
        MultiTaskConfig(
            encoder_config=tiny_bert_config(), tasks=[{"name": "qa", "type": "question_answering", "doc_stride": 0}]
        )


QUESTIONS = [
    ("which city ?", "show me flights to boston tomorrow", "boston"),
    ("which city ?", "what is the weather in denver today", "denver"),
    ("which city ?", "book a flight to dallas please", "dallas"),
    ("which artist ?", "play music by artist hello", "hello"),
]


def write_qa_data(folder):
    """The SQuAD JSON layout for training, flat jsonl for validation, and an intent task beside them."""
    paragraphs = [
        {
            "context": context,
            "qas": [
                {
                    "id": f"q{i}",
                    "question": question,
                    "answers": [{"text": answer, "answer_start": context.index(answer)}],
                }
            ],
        }
        for i, (question, context, answer) in enumerate(QUESTIONS)
    ]
    squad = json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]})
    (folder / "train.json").write_text(squad)
    (folder / "dev.json").write_text(squad)
    flat = [
        {"question": q, "context": c, "answers": {"text": [a], "answer_start": [c.index(a)]}} for q, c, a in QUESTIONS
    ]
    (folder / "dev.jsonl").write_text("".join(json.dumps(row) + "\n" for row in flat))
    intents = [{"text": c, "label": "travel" if "flight" in c else "other"} for _, c, _ in QUESTIONS]
    (folder / "intent.jsonl").write_text("".join(json.dumps(row) + "\n" for row in intents))


def qa_experiment(folder, encoder, **qa):
    raw = {
        "model": {"base_model": str(encoder), "fusion": {"type": "attention"}},
        "tasks": [
            {
                "name": "qa",
                "type": "question_answering",
                "data": {"train": "train.json", "validation": "dev.json", "format": "squad"},
                "max_length": 24,
                "doc_stride": 8,
                **qa,
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
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-3,
            "disable_tqdm": True,
        },
    }
    (folder / "experiment.yaml").write_text(yaml.safe_dump(raw))
    return raw


def test_mixed_model_with_qa_trains_scores_and_serves(tmp_path, tiny_encoder, capsys):
    write_qa_data(tmp_path)
    qa_experiment(tmp_path, tiny_encoder)
    assert main([str(tmp_path / "experiment.yaml")]) == 0

    output = tmp_path / "out"
    metrics = json.loads((output / "metrics.json").read_text())
    assert {"f1", "exact_match"} <= set(metrics["validation"]["qa"]) and "accuracy" in metrics["validation"]["intent"]
    assert 0 <= metrics["validation"]["qa"]["f1"] <= 1
    config = json.loads((output / "config.json").read_text())
    assert config["tasks"][0]["type"] == "question_answering" and config["tasks"][0]["doc_stride"] == 8
    # What each task was trained with: intent's default 128, lowered to the tiny encoder's 64 positions.
    assert [task["max_length"] for task in config["tasks"]] == [24, 64]
    assert metrics["primary_metrics"] == {"qa": "f1", "intent": "accuracy"}
    assert metrics["validation_summary"]["question_answering"]["metric"] == "f1"
    card = (output / "README.md").read_text()
    assert "question-answering" in card

    model = MultiTaskModel.from_pretrained(output).eval()
    pipe = MultiTaskPipeline(model=model, tokenizer=AutoTokenizer.from_pretrained(output))
    answer = pipe({"question": "which city ?", "context": LONG_CONTEXT})
    assert set(answer) == {"qa"}  # only the task that reads a question and a context
    qa = answer["qa"]
    assert set(qa) == {"answer", "score", "start", "end"} and LONG_CONTEXT[qa["start"] : qa["end"]] == qa["answer"]
    # The pipeline windows the context as evaluation did: at the task's training max_length (24), not the encoder's
    # limit (512), unless the call asks for another length.
    windows = pipe.preprocess({"question": "which city ?", "context": LONG_CONTEXT})["own"]["qa"][0]["input_ids"]
    assert windows.shape[1] == 24 and windows.shape[0] > 1
    wide = pipe.preprocess({"question": "which city ?", "context": LONG_CONTEXT}, max_length=64)["own"]["qa"][0]
    assert wide["input_ids"].shape[0] < windows.shape[0] and wide["input_ids"].shape[1] <= 64
    # A question too long for those windows says where their length comes from and how to change it.
    question = "which city do the flights from denver to boston on monday stop in on the way ?"
    with pytest.raises(ValueError, match="Task 'qa': the question takes .* training length unless the call sets"):
        pipe({"question": question, "context": LONG_CONTEXT})
    assert set(pipe({"question": question, "context": LONG_CONTEXT}, max_length=64)) == {"qa"}
    assert set(pipe("book a flight to boston")) == {"intent"}  # text inputs go to the text tasks
    # The card's usage examples run as written: one per input shape, each answered by the tasks that read it.
    examples = [line.split("  #")[0] for line in card.splitlines() if line.startswith("pipe(")]
    answered = [set(eval(example, {"pipe": pipe})) for example in examples]  # noqa: S307 (the card's own code)
    assert {"qa"} in answered and {"intent"} in answered
    with pytest.raises(ValueError, match="Cannot read input with keys"):
        pipe({"question": "which city ?"})

    # multitask-predict reads the same inputs from a JSON lines file, beside plain texts, batched.
    lines = [
        {"question": "which city ?", "context": LONG_CONTEXT},
        "book a flight",
        {"question": "who", "context": "hi"},
    ]
    (tmp_path / "inputs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    capsys.readouterr()  # the training logs
    assert predict_main([str(output), "--file", str(tmp_path / "inputs.jsonl")]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [set(record["predictions"]) for record in printed] == [{"qa"}, {"intent"}, {"qa"}]
    assert printed[0]["predictions"]["qa"] == qa

    # Loads through AutoModel where only torch and transformers are importable, with the same outputs.
    inputs = dict(AutoTokenizer.from_pretrained(output)("which city ?", "fly to denver", return_tensors="pt"))
    _, fresh = run_fresh(output, inputs, tmp_path)
    with torch.no_grad():
        assert torch.allclose(fresh["qa"], model(**inputs, task_ids=0).logits, atol=1e-6)


def test_squad_files_are_told_apart_from_json_lines_by_their_layout(tmp_path, tiny_encoder):
    """A published SQuAD .json needs no `format:`, and may sit beside a flat jsonl split of the same task."""
    from modeling_multitask.training.data import prepare_data
    from modeling_multitask.training.experiment import load_experiment

    write_qa_data(tmp_path)
    pretty = json.dumps(json.loads((tmp_path / "train.json").read_text()), indent=2)  # as published: several lines
    (tmp_path / "train.json").write_text(pretty)
    raw = qa_experiment(tmp_path, tiny_encoder)
    raw["tasks"][0]["data"] = {"train": "train.json", "validation": "dev.jsonl"}
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    prepared = prepare_data(load_experiment(tmp_path / "experiment.yaml"), AutoTokenizer.from_pretrained(tiny_encoder))
    assert len(prepared.validation["qa"]) >= len(QUESTIONS)
    # Every window knows its question (numbered by its line in the file), whichever batch it was tokenised in.
    scoring = [json.loads(feature["scoring"]) for feature in prepared.validation["qa"]]
    assert {entry["example"] for entry in scoring} == set(range(1, len(QUESTIONS) + 1))
    assert sum(1 for feature in prepared.train[prepared.groups[0].name] if feature["labels"] != [0, 0]) >= len(
        QUESTIONS
    )


def test_flat_jsonl_and_bad_answers_fail_with_the_line(tmp_path, tiny_encoder, capsys):
    write_qa_data(tmp_path)
    raw = qa_experiment(tmp_path, tiny_encoder)
    raw["tasks"][0]["data"] = {"train": "dev.jsonl"}  # flat jsonl with SQuAD's dict of lists
    bad = {"question": "which city ?", "context": "fly to boston", "answers": [{"text": "boston", "answer_start": 2}]}
    with (tmp_path / "dev.jsonl").open("a") as handle:
        handle.write(json.dumps(bad) + "\n")
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    error = capsys.readouterr().err
    assert "dev.jsonl, line 5: answer 'boston' is not at character 2 of the context" in error, error


def test_answers_that_cannot_be_spans_and_csv_answers(tmp_path, tiny_encoder, capsys, caplog):
    """An answer without text and a question too long for a window stop the run with the line; a CSV (with a byte-order
    mark and quoted fields) gives its answers as JSON text."""
    from modeling_multitask.training.data import prepare_data
    from modeling_multitask.training.experiment import load_experiment

    write_qa_data(tmp_path)
    raw = qa_experiment(tmp_path, tiny_encoder)
    raw["tasks"][0]["data"] = {"train": "train.csv"}
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    # A list of answers, or one answer without its list.
    rows = [(q, c, json.dumps([{"text": a, "answer_start": c.index(a)}])) for q, c, a in QUESTIONS[:-1]]
    rows += [(q, c, json.dumps({"text": a, "answer_start": c.index(a)})) for q, c, a in QUESTIONS[-1:]]
    with (tmp_path / "train.csv").open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerows([("question", "context", "answers"), *rows])
    prepared = prepare_data(load_experiment(tmp_path / "experiment.yaml"), AutoTokenizer.from_pretrained(tiny_encoder))
    assert sum(feature["labels"] != [0, 0] for feature in prepared.train[prepared.groups[0].name]) >= len(QUESTIONS)
    assert prepared.truncated["train"]["qa"] == 0

    # An answer longer than a window's room for the context can be learned from no window: counted and warned.
    long_answer = " ".join(["fly to boston and back to denver"] * 4)  # 28 words, a window holds 24 tokens
    with (tmp_path / "train.csv").open("w", encoding="utf-8-sig", newline="") as handle:
        long_row = ("which trip ?", long_answer + " please", json.dumps([{"text": long_answer, "answer_start": 0}]))
        csv.writer(handle).writerows([("question", "context", "answers"), *rows, long_row])
    with caplog.at_level(logging.WARNING):
        prepared = prepare_data(
            load_experiment(tmp_path / "experiment.yaml"), AutoTokenizer.from_pretrained(tiny_encoder)
        )
    assert prepared.truncated["train"]["qa"] == 1
    assert "1 of 5 examples have an answer that no window of max_length tokens holds whole" in caplog.text

    bad = {
        "which city ?,fly to boston,boston": "line 6: expected the answers as a list of {'text', 'answer_start'}, got "
        "the text 'boston'; in a CSV or TSV file, write them as JSON",
        'which city ?,fly to boston,"[{""text"": """", ""answer_start"": 0}]"': "line 6: answer {'text': '', "
        "'answer_start': 0} has no text; an unanswerable question has no answers (an empty list, with "
        "allow_unanswerable: true)",
        "which city is it that you want to fly to tomorrow morning or evening ?,"
        + "fly to boston . " * 10
        + ',"[{""text"": ""boston"", ""answer_start"": 7}]"': "line 6: the question takes",
    }
    for line, message in bad.items():
        with (tmp_path / "train.csv").open("w", encoding="utf-8-sig", newline="") as handle:
            csv.writer(handle).writerows([("question", "context", "answers"), *rows])
            handle.write(line + "\n")
        assert main([str(tmp_path / "experiment.yaml")]) == 2
        error = capsys.readouterr().err
        assert f"train.csv, {message}" in error, error


def test_flat_answer_text_and_start_columns_as_kaggle_ships_them(tmp_path, tiny_encoder, capsys):
    """One answer a row, its text and its character start in columns of their own (`answer_start_column`, the chaii
    layout), in a CSV with a byte-order mark: each window's label maps back to the answer's exact characters, non-ASCII
    words included; a row without text is a question with no answer; a wrong start names its line, a misspelt start
    column the setting and the file's columns."""
    from modeling_multitask.training.data import prepare_data, scoring_column
    from modeling_multitask.training.experiment import load_experiment

    write_qa_data(tmp_path)
    raw = qa_experiment(tmp_path, tiny_encoder, label_column="answer_text", answer_start_column="answer_start")
    raw["tasks"][0]["data"] = {"train": "train.csv"}
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    examples = [
        *QUESTIONS,
        ("wohin führt die brücke ?", "die brücke über den fluß führt nach zürich , sagt er .", "zürich"),
    ]
    header = ("id", "context", "question", "answer_text", "answer_start", "language")

    def write(rows, extra=()):
        with (tmp_path / "train.csv").open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
            writer.writerows([header, *rows, *extra])

    rows = [(f"q{i}", c, q, a, c.index(a), "en") for i, (q, c, a) in enumerate(examples)]
    write(rows)
    prepared = prepare_data(load_experiment(tmp_path / "experiment.yaml"), AutoTokenizer.from_pretrained(tiny_encoder))
    features = prepared.train[prepared.groups[0].name]
    found = []
    for feature, scoring in zip(features, scoring_column(features)):
        start, end = feature["labels"]
        if (start, end) != (0, 0):
            offsets, context = scoring["offsets"], scoring["context"]
            found.append((context[offsets[start][0] : offsets[end][1]], scoring["answers"]))
    assert sorted(found) == sorted((answer, [answer]) for _, _, answer in examples)

    write(rows, [("q9", "fly to boston", "which city ?", "", "", "en")])
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    assert "train.csv, line 7: no answer: set allow_unanswerable: true" in capsys.readouterr().err
    for extra, message in {
        ("q9", "fly to boston", "which city ?", "boston", "0", "en"): "line 7: answer 'boston' is not at character 0",
        ("q9", "fly to boston", "which city ?", "boston", "seven", "en"): "line 7: answer 'boston' needs a character "
        "offset 'answer_start' >= 0, got 'seven'",
    }.items():
        write(rows, [extra])
        assert main([str(tmp_path / "experiment.yaml")]) == 2
        error = capsys.readouterr().err
        assert f"train.csv, {message}" in error, error
    raw["tasks"][0]["answer_start_column"] = "start"
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    error = capsys.readouterr().err
    assert "column 'start' does not exist in " in error and "(the task's answer_start_column)" in error, error
    assert "Available columns: id, context, question, answer_text, answer_start, language." in error


def test_pipeline_refuses_an_empty_question_or_context(tiny_encoder):
    """As training does, and as the pipeline does for texts: no empty span is made up for an empty or missing
    context (a `None` context was read as a single text)."""
    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=[
            {"name": "qa", "type": "question_answering", "doc_stride": 8},
            {"name": "choice", "type": "multiple_choice", "num_choices": 2},
        ],
    )
    pipe = MultiTaskPipeline(model=MultiTaskModel(config).eval(), tokenizer=fast_tokenizer(tiny_encoder))
    assert set(pipe({"question": "which city ?", "context": "fly to boston"})) == {"qa"}
    with pytest.raises(ValueError, match=r"No task of this model reads text; pass a dict with its task's keys \(qa: "):
        pipe("fly to boston")
    for inputs, key in (
        ({"question": "which city ?", "context": ""}, "context"),
        ({"question": "which city ?", "context": None}, "context"),
        ({"question": " ", "context": "fly to boston"}, "question"),
        ({"question": "", "choices": ["rain", "music"]}, "question"),
    ):
        with pytest.raises(ValueError, match=f"Empty or non-string {key} "):
            pipe(inputs)


def test_pipeline_takes_inputs_as_keywords_like_transformers_question_answering_pipeline(tiny_encoder):
    """`pipe(question=..., context=...)` answers as the dict does, lists under each key are a batch, and a question
    with `choices=` goes to multiple choice; call options still apply."""
    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=[
            {"name": "qa", "type": "question_answering", "doc_stride": 8},
            {"name": "choice", "type": "multiple_choice", "num_choices": 2},
        ],
    )
    torch.manual_seed(0)
    pipe = MultiTaskPipeline(model=MultiTaskModel(config).eval(), tokenizer=fast_tokenizer(tiny_encoder))
    questions, contexts = ["which city ?", "when ?"], ["fly to boston on monday", "leave at noon from denver"]
    single = pipe({"question": questions[0], "context": contexts[0]})
    assert pipe(question=questions[0], context=contexts[0]) == single
    assert pipe(question=questions, context=contexts) == [
        pipe({"question": question, "context": context}) for question, context in zip(questions, contexts)
    ]
    assert pipe(question=questions[0], context=contexts[0], top_k=2)["qa"]["top_k"][0] == single["qa"]
    choices = [["rain", "boston"], ["noon", "music"]]
    assert pipe(question=questions[0], choices=choices[0]) == pipe({"question": questions[0], "choices": choices[0]})
    assert [set(result) for result in pipe(question=questions, choices=choices)] == [{"choice"}, {"choice"}]
    # One value under a key is shared by the batch: one context for several questions.
    assert pipe(question=questions, context=contexts[0]) == [
        pipe({"question": question, "context": contexts[0]}) for question in questions
    ]
    assert pipe(question=[], context=[]) == [] and pipe([]) == []
    with pytest.raises(ValueError, match="needs lists of one length; got question: 2, context: 3 items"):
        pipe(question=questions, context=[*contexts, "fly"])
    with pytest.raises(ValueError, match=r"^No input: .*text=..., text_pair=..., or question=..., context=..., or q"):
        pipe()
    with pytest.raises(ValueError, match=r"Unknown argument 'contxt': this model reads inputs text=..., text_pair="):
        pipe(question=questions[0], contxt=contexts[0])
    text_only = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=[{"name": "intent", "type": "sequence_classification", "labels": ["a", "b"]}],
    )
    pipe = MultiTaskPipeline(model=MultiTaskModel(text_only).eval(), tokenizer=fast_tokenizer(tiny_encoder))
    assert set(pipe(text="fly to boston")) == {"intent"}
    with pytest.raises(ValueError, match=r"No input this model reads \(got \['context', 'question'\]\): .* text="):
        pipe(question=questions[0], context=contexts[0])


def test_pipeline_ignores_keys_no_task_reads_as_transformers_pipelines_do(tmp_path, tiny_encoder, capsys):
    """A SQuAD-like line keeps its `id` and gold `answers`: the keys no task of the model reads play no part in
    routing, and an input that still fits no task names them (a typo such as `contxt` shows). Keywords are call
    arguments: an unknown one stays an error."""
    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=[
            {"name": "qa", "type": "question_answering", "doc_stride": 8},
            {"name": "choice", "type": "multiple_choice", "num_choices": 2},
            {"name": "intent", "type": "sequence_classification", "labels": ["a", "b"]},
        ],
    )
    torch.manual_seed(0)
    model = MultiTaskModel(config).eval()
    pipe = MultiTaskPipeline(model=model, tokenizer=fast_tokenizer(tiny_encoder))
    squad = {"id": "x1", "question": "which city ?", "context": "fly to boston", "answers": {"text": ["boston"]}}
    assert pipe(squad) == pipe({"question": squad["question"], "context": squad["context"]})
    assert set(pipe({"question": "which city ?", "choices": ["rain", "boston"], "label": 1})) == {"choice"}
    assert pipe({"text": "fly to boston", "id": 7}) == pipe("fly to boston")
    batched = pipe([{"text": "fly to boston", "id": 7}, squad, "hello"], batch_size=2)
    assert [set(result) for result in batched] == [{"intent"}, {"qa"}, {"intent"}]
    with pytest.raises(ValueError, match=r"keys \['contxt', 'question'\] \(no task of this model reads 'contxt'\): "):
        pipe({"question": "which city ?", "contxt": "fly to boston"})
    with pytest.raises(ValueError, match=r"keys \['id'\] \(no task of this model reads 'id'\) for task 'qa': "):
        pipe({"id": "x1"}, task="qa")
    with pytest.raises(ValueError, match="Unknown argument 'id'"):
        pipe(question="which city ?", context="fly to boston", id="x1")

    model.save_pretrained(tmp_path / "checkpoint")
    fast_tokenizer(tiny_encoder).save_pretrained(tmp_path / "checkpoint")
    (tmp_path / "inputs.jsonl").write_text(json.dumps(squad) + "\n")
    capsys.readouterr()
    assert predict_main([str(tmp_path / "checkpoint"), "--file", str(tmp_path / "inputs.jsonl")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["id"] == "x1" and record["predictions"] == {"qa": pipe(squad)["qa"]}


def test_doc_stride_follows_max_length_when_left_out(tmp_path, tiny_encoder):
    """A QA task that sets neither doc_stride nor max_length trains (the old fixed default of 128 stopped every such
    run: windows of at most 128 tokens cannot share 128); a doc_stride that cannot fit its max_length is an error when
    the experiment is read, before any data."""
    from modeling_multitask.training.data import prepare_data
    from modeling_multitask.training.experiment import ExperimentError, load_experiment

    assert resolve_doc_stride({"doc_stride": None}, 384) == 128  # transformers' run_qa default, where it fits
    assert resolve_doc_stride({"doc_stride": None}, 128) == 32
    assert resolve_doc_stride({"doc_stride": 16}, 128) == 16

    write_qa_data(tmp_path)
    raw = qa_experiment(tmp_path, tiny_encoder)
    del raw["tasks"][0]["doc_stride"], raw["tasks"][0]["max_length"]
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    experiment = load_experiment(tmp_path / "experiment.yaml")
    prepared = prepare_data(experiment, AutoTokenizer.from_pretrained(tiny_encoder))
    assert sum(feature["labels"] != [0, 0] for feature in prepared.train[prepared.groups[0].name]) >= len(QUESTIONS)

    raw["tasks"][0].update(max_length=24, doc_stride=12)
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ExperimentError, match=r"tasks\[0\] \(qa\): doc_stride 12 leaves windows of 24 tokens"):
        load_experiment(tmp_path / "experiment.yaml")


def test_pipeline_windows_fit_a_roberta_whose_tokenizer_sets_no_limit():
    """A RoBERTa numbers positions from padding_idx + 1, so it embeds 2 fewer tokens than max_position_embeddings; a
    tokenizer built without `model_max_length` leaves the encoder's limit as the only bound on a window. The pipeline
    windows a long context by that limit as training counts it (it indexed past the position embeddings before)."""
    from transformers import RobertaConfig

    tokenizer = FAMILIES["byte_level_bpe"]()
    assert tokenizer.model_max_length > 10**6  # no limit of its own
    encoder_config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=40, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    config = MultiTaskConfig(
        encoder_config=encoder_config, tasks=[{"name": "qa", "type": "question_answering", "doc_stride": 8}]
    )
    torch.manual_seed(0)
    pipe = MultiTaskPipeline(model=MultiTaskModel(config).eval(), tokenizer=tokenizer)
    context = "from o'hare to new-york at 3pm, please. " * 12  # ~150 tokens: several windows of 38
    prediction = pipe({"question": "what flights leave boston?", "context": context})["qa"]
    assert prediction["answer"] and context[prediction["start"] : prediction["end"]] == prediction["answer"]
    # top_k: the best answers over every window, each span once, the first the answer itself.
    best = pipe({"question": "what flights leave boston?", "context": context}, top_k=4)["qa"]
    assert {key: best[key] for key in prediction} == prediction and best["top_k"][0] == prediction
    spans = [(answer["start"], answer["end"]) for answer in best["top_k"]]
    assert len(spans) == 4 and len(set(spans)) == 4
    assert all(context[answer["start"] : answer["end"]] == answer["answer"] for answer in best["top_k"])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_answers_are_widened_to_whole_words_unless_the_call_says_otherwise(family):
    """As transformers' pipeline does by default (`align_to_words`): a span that starts or ends inside a word of
    several pieces answers with the whole word, as the tokenizer's pre-tokenizer splits words; with
    `align_to_words=False` it is the raw span that evaluation scores."""
    tokenizer = FAMILIES[family]()
    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(), tasks=[{"name": "qa", "type": "question_answering", "doc_stride": 4}]
    )
    task, definition = config.task("qa"), TASK_TYPES["question_answering"]
    context = "fly from zürich, tomorrow. then to são paulo! what flights leave boston? " * 2
    model_inputs, example = definition.pipeline_features(
        task, {"question": "which city ?", "context": context}, tokenizer, 24
    )
    # A piece inside a word of several pieces, in some window.
    window, token = next(
        (w, i)
        for w, (offsets, words) in enumerate(zip(example["offsets"], example["word_offsets"]))
        for i, (piece, word) in enumerate(zip(offsets, words))
        if piece is not None and piece != word and context[slice(*piece)].strip()
    )
    logits = torch.zeros(*model_inputs["input_ids"].shape, 2)
    logits[window, token] = 20.0  # that piece alone is by far the best span
    raw = definition.predict(task, logits, example, {"align_to_words": False})
    aligned = definition.predict(task, logits, example, {})
    assert raw["answer"] == context[slice(*example["offsets"][window][token])].strip()
    assert raw["answer"] in aligned["answer"] and len(raw["answer"]) < len(aligned["answer"])
    assert context[aligned["start"] : aligned["end"]] == aligned["answer"]
    # Whole words: nothing but the space (or the context's ends) or punctuation on either side of the answer.
    before, after = context[aligned["start"] - 1 : aligned["start"]], context[aligned["end"] : aligned["end"] + 1]
    assert not before.isalnum() and not after.isalnum(), (family, aligned)
    assert aligned["answer"].strip(",.!?") in {"fly", "from", "zürich", "tomorrow", "then", "to", "são", "paulo"} | {
        "what", "flights", "leave", "boston"
    }  # fmt: skip


def test_pipeline_takes_transformers_question_answering_options(tiny_encoder):
    """`doc_stride`, `max_answer_len` and `align_to_words`, under transformers' names; a bad value names the option,
    and a model without a question-answering task does not list them."""
    config = MultiTaskConfig(
        encoder_config=tiny_bert_config(), tasks=[{"name": "qa", "type": "question_answering", "doc_stride": 8}]
    )
    torch.manual_seed(0)
    pipe = MultiTaskPipeline(model=MultiTaskModel(config).eval(), tokenizer=fast_tokenizer(tiny_encoder))
    inputs = {"question": "which city ?", "context": LONG_CONTEXT}
    definition, task = TASK_TYPES["question_answering"], config.task("qa")
    windows = {
        stride: len(
            definition.pipeline_features(task, inputs, pipe.tokenizer, 24, {"doc_stride": stride})[1]["offsets"]
        )
        for stride in (0, 8)
    }
    assert windows[0] < windows[8]  # windows that share fewer tokens move on faster
    answer = pipe(inputs, doc_stride=0)["qa"]  # the call's stride reaches the windows: one too large is refused below
    assert LONG_CONTEXT[answer["start"] : answer["end"]] == answer["answer"]
    for answer in pipe(inputs, max_answer_len=1, top_k=5, align_to_words=False)["qa"]["top_k"]:
        assert len(pipe.tokenizer(answer["answer"], add_special_tokens=False)["input_ids"]) == 1
    for option, value, message in (
        ("doc_stride", -1, "doc_stride must be an integer >= 0, got -1"),
        ("doc_stride", 12, "doc_stride 12 leaves windows of 24 tokens no room to move on"),
        ("max_answer_len", 0, "max_answer_len must be a positive integer, got 0"),
        ("align_to_words", "yes", "align_to_words is True or False, got 'yes'"),
    ):
        with pytest.raises(ValueError, match=message):
            pipe(inputs, max_length=24, **{option: value})
    with pytest.raises(
        ValueError, match="takes the options task, top_k, threshold, return_fusion_weights, doc_stride"
    ):
        pipe(inputs, handle_impossible_answer=True)
    text_only = MultiTaskConfig(
        encoder_config=tiny_bert_config(),
        tasks=[{"name": "intent", "type": "sequence_classification", "labels": ["a", "b"]}],
    )
    pipe = MultiTaskPipeline(model=MultiTaskModel(text_only).eval(), tokenizer=fast_tokenizer(tiny_encoder))
    with pytest.raises(ValueError, match=r"Unknown argument 'doc_stride'.*return_fusion_weights and max_length\."):
        pipe("fly to boston", doc_stride=8)
