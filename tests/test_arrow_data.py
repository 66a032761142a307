"""The Arrow data pipeline: features as memory-mapped `datasets.Dataset`s, equal to what `tokenize` builds from the
records, cached by fingerprint, with the "file, line N" errors of the readers past the first batch."""

import json
import os
from pathlib import Path

import datasets
import pytest
from test_train_cli import experiment, write_data

from modeling_multitask.training import data as data_module
from modeling_multitask.training.data import (
    BATCH_SIZE,
    TaskGroup,
    encode_labels,
    example_lengths,
    infer_labels,
    prepare_data,
    read_split,
    scoring_column,
    tokenize,
)
from modeling_multitask.training.experiment import ExperimentError, load_experiment


@pytest.fixture
def assistant(tmp_path, tiny_encoder_folder):
    write_data(tmp_path)
    experiment(tmp_path, tiny_encoder_folder)
    return tmp_path


@pytest.fixture
def tiny_encoder_folder(tmp_path_factory):
    from conftest import save_tiny_encoder

    return save_tiny_encoder(tmp_path_factory.mktemp("encoder"))


def _load(folder: Path, **section):
    raw = json.loads(json.dumps(__import__("yaml").safe_load((folder / "experiment.yaml").read_text())))
    if section:
        raw["data_pipeline"] = section
        (folder / "experiment.yaml").write_text(__import__("yaml").safe_dump(raw))
    return load_experiment(folder / "experiment.yaml")


def _counting_tokenize(monkeypatch) -> list:
    calls = []
    real = data_module.tokenize
    monkeypatch.setattr(data_module, "tokenize", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_features_are_arrow_and_equal_to_tokenize_on_the_records(assistant, tiny_tokenizer):
    exp = _load(assistant)
    prepared = prepare_data(exp, tiny_tokenizer)
    indices = {task.name: i for i, task in enumerate(exp.tasks)}
    for task in exp.tasks[2:]:  # similarity (text pairs, float labels) and ner (CoNLL, token labels)
        features = prepared.train[task.name]
        assert isinstance(features, datasets.Dataset)
        rows = read_split(task.data, "train")
        labels = infer_labels(task, rows)
        assert prepared.labels[task.name] == labels
        expected = tokenize(
            TaskGroup([task], task.data), rows, tiny_tokenizer, {task.name: encode_labels(task, rows, labels, "train")},
            indices, joint=False,
        )  # fmt: skip
        assert [dict(row) for row in features] == expected
        assert example_lengths(features) == [len(feature["input_ids"]) for feature in expected]
    # intent + slots read the same file: one joint group, its labels a struct per example.
    joint = prepared.train["intent+slots"]
    assert set(joint[0]["labels"]) == {"intent", "slots"} and "task_ids" not in joint.column_names
    assert isinstance(joint[0]["labels"]["slots"], list) and isinstance(joint[0]["labels"]["intent"], int)


def test_a_second_run_reads_the_cached_features_and_tokenises_nothing(assistant, tiny_tokenizer, monkeypatch):
    first = prepare_data(_load(assistant), tiny_tokenizer)
    assert first.cache_hits == []
    calls = _counting_tokenize(monkeypatch)
    second = prepare_data(_load(assistant), tiny_tokenizer)
    assert not calls
    assert sorted(second.cache_hits) == sorted(group.name for group in second.groups)
    assert second.labels == first.labels and second.truncated == first.truncated
    for name in first.train:
        assert second.train[name].to_list() == first.train[name].to_list()
    assert Path(os.environ["MULTITASK_CACHE"], "features").is_dir()

    # A changed file (size and modification time) is read and tokenised again; the other groups stay cached.
    with (assistant / "pairs.tsv").open("a") as handle:
        handle.write("good morning\thello\t3.5\n")
    third = prepare_data(_load(assistant), tiny_tokenizer)
    assert "similarity" not in third.cache_hits and "ner" in third.cache_hits
    assert len(third.train["similarity"]) == len(first.train["similarity"]) + 1


def test_other_settings_or_tokenizer_miss_the_cache(assistant, tiny_tokenizer, monkeypatch):
    prepare_data(_load(assistant), tiny_tokenizer)
    exp = _load(assistant)
    exp.tasks[3].max_length = 8  # ner
    assert "ner" not in prepare_data(exp, tiny_tokenizer).cache_hits
    tiny_tokenizer.add_tokens(["boston"])
    assert prepare_data(_load(assistant), tiny_tokenizer).cache_hits == []


def test_cache_off_leaves_nothing_in_the_cache_and_cache_dir_moves_it(assistant, tiny_tokenizer):
    prepare_data(_load(assistant, cache=False), tiny_tokenizer)
    assert not any(Path(os.environ["MULTITASK_CACHE"]).iterdir())
    again = prepare_data(_load(assistant, cache=False), tiny_tokenizer)
    assert again.cache_hits == []
    prepare_data(_load(assistant, cache_dir="features-here"), tiny_tokenizer)
    assert (assistant / "features-here" / "features").is_dir()


def test_truncation_warnings_are_logged_again_from_the_cache(assistant, tiny_tokenizer, caplog):
    exp = _load(assistant)
    exp.tasks[3].max_length = 4  # ner: "rain in new york" takes 6 tokens
    prepare_data(exp, tiny_tokenizer)
    first = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    caplog.clear()
    cached = prepare_data(exp, tiny_tokenizer)
    assert "ner" in cached.cache_hits
    assert [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()] == first != []
    assert cached.truncated["train"]["ner"] == 1
    ner = cached.train["ner"]
    assert ner.column_names.count("truncated") == 1 and sum(ner["truncated"]) == 1
    # "new york", cut off: its gold tags (B-city, I-city) are kept for scoring.
    labels = cached.labels["ner"]
    assert [tags for tags in scoring_column(ner) if tags] == [[labels.index("B-city"), labels.index("I-city")]]


def test_a_bad_row_past_the_first_batch_names_its_line(tmp_path, tiny_encoder_folder, tiny_tokenizer, monkeypatch):
    write_data(tmp_path)
    rows = [{"tokens": ["hello"], "tags": ["O"], "intent": "greet"}] * (BATCH_SIZE + 500)
    rows[BATCH_SIZE + 200] = {"tokens": ["hello"], "tags": ["O"], "intent": ["greet", "book"]}
    (tmp_path / "assistant_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    experiment(tmp_path, tiny_encoder_folder)
    calls = _counting_tokenize(monkeypatch)
    with pytest.raises(ExperimentError, match=rf"assistant_train.jsonl, line {BATCH_SIZE + 201}: "):
        prepare_data(_load(tmp_path), tiny_tokenizer)
    assert not calls, "data was tokenised before the error"


@pytest.mark.parametrize(
    "section, match",
    [
        ({"cache": "yes"}, r"data_pipeline.cache must be true or false, got 'yes'"),
        ({"num_proc": 0}, r"data_pipeline.num_proc must be a whole number >= 1 .* got 0"),
        ({"cache_dir": ""}, r"data_pipeline.cache_dir must be a folder path"),
        ({"cache_dir": "pairs.tsv"}, r"data_pipeline.cache_dir .*pairs.tsv is an existing file"),
        ({"chache": True}, r"Unknown key 'data_pipeline.chache'. Did you mean 'cache'"),
    ],
)
def test_data_pipeline_settings_are_checked_when_the_experiment_is_read(assistant, section, match):
    with pytest.raises(ExperimentError, match=match):
        _load(assistant, **section)


def test_evaluate_is_optional_and_its_absence_says_how_to_install_it(monkeypatch):
    import sys

    from modeling_multitask.training.metrics import load_evaluate_metric

    monkeypatch.setitem(sys.modules, "evaluate", None)  # as if not installed: `import evaluate` raises ImportError
    with pytest.raises(ExperimentError, match=r"'evaluate:accuracy' needs the evaluate library.*\[evaluate\]"):
        load_evaluate_metric("evaluate:accuracy")


def test_tokenising_in_several_processes_gives_the_same_features(tmp_path, tiny_encoder_folder, tiny_tokenizer):
    write_data(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "assistant_train.jsonl").read_text().splitlines()]
    many = [rows[i % len(rows)] for i in range(2 * BATCH_SIZE + 100)]
    (tmp_path / "assistant_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in many))
    experiment(tmp_path, tiny_encoder_folder)
    one = prepare_data(_load(tmp_path, cache=False), tiny_tokenizer)
    two = prepare_data(_load(tmp_path, cache=False, num_proc=2), tiny_tokenizer)
    assert len(two.train["intent+slots"]) == len(many)
    assert two.train["intent+slots"].to_list() == one.train["intent+slots"].to_list()


def test_a_damaged_cache_entry_is_built_again(assistant, tiny_tokenizer, caplog):
    first = prepare_data(_load(assistant), tiny_tokenizer)
    for arrow in Path(os.environ["MULTITASK_CACHE"], "features").glob("*/train*.arrow"):
        arrow.unlink()
    again = prepare_data(_load(assistant), tiny_tokenizer)
    assert again.cache_hits == [] and "damaged data cache entry" in caplog.text
    assert again.train["ner"].to_list() == first.train["ner"].to_list()
