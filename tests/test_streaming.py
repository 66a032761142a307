"""Streaming (`data.streaming: true`): a task's train split read and tokenised lazily while training, with the same
features as map mode, disjoint records per data-parallel rank, the same task at every step on every rank, "file,
line N" errors mid-stream, `training.max_steps` required, and `--resume` replaying the stream."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_train_cli import DATA, experiment, write_data

from modeling_multitask.training import data as data_module
from modeling_multitask.training.cli import main
from modeling_multitask.training.data import StreamedFeatures, group_size, prepare_data
from modeling_multitask.training.experiment import ExperimentError, load_experiment


STREAM_ALL = {
    "tasks.0.data.streaming": True,  # intent + slots share this data mapping: one streamed joint group (JSON lines)
    "tasks.2.data.streaming": True,  # similarity: TSV
    "tasks.3.data.streaming": True,  # ner: CoNLL
}
STEPS = {
    "training.max_steps": 6,
    "training.num_train_epochs": None,
    "training.load_best_model_at_end": False,
    "sampling.strategy": "round_robin",  # every group trains within the first steps
}


def _logged_losses(output: str) -> list[dict]:
    """The Trainer's printed training logs that carry per-task losses."""
    logs = [yaml.safe_load(line) for line in output.splitlines() if line.startswith("{'loss'")]
    return [entry for entry in logs if isinstance(entry, dict)]


def _features(row: dict) -> dict:
    """A feature as training reads it: `truncated` absent means False, `scoring` is JSON text ("null": none)."""
    row = dict(row)
    row["truncated"] = bool(row.get("truncated"))
    row["scoring"] = json.loads(row.get("scoring", "null"))
    return row


def test_streamed_tasks_train_through_the_cli(tmp_path, tiny_encoder, capsys):
    write_data(tmp_path)
    experiment(tmp_path, tiny_encoder, **STREAM_ALL, **STEPS)
    assert main([str(tmp_path / "experiment.yaml")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["validation"]) == {"intent", "slots", "similarity", "ner"}  # evaluation stays map mode
    losses = _logged_losses(capsys.readouterr().out)
    assert len(losses) == 6  # max_steps, logged every step
    assert {"loss_intent", "loss_slots", "loss_similarity", "loss_ner"} <= {key for entry in losses for key in entry}


def test_a_streamed_task_trains_beside_map_mode_tasks(tmp_path, tiny_encoder, capsys):
    write_data(tmp_path)
    experiment(tmp_path, tiny_encoder, **{"tasks.0.data.streaming": True}, **STEPS)  # similarity, ner: map mode
    assert main([str(tmp_path / "experiment.yaml")]) == 0
    trained = {key for entry in _logged_losses(capsys.readouterr().out) for key in entry}
    assert {"loss_intent", "loss_slots", "loss_similarity", "loss_ner"} <= trained


def test_streamed_features_equal_map_mode_features(tmp_path, tiny_encoder, tiny_tokenizer, monkeypatch):
    """Example for example, across several batches (4 records each), for JSON lines (a joint group), TSV (text pairs,
    float labels) and CoNLL (token labels); one task truncated (max_length 5)."""
    monkeypatch.setattr(data_module, "BATCH_SIZE", 4)
    write_data(tmp_path)
    rows = [{"tokens": text.split(), "tags": tags.split(), "intent": intent} for text, intent, tags in DATA * 3]
    (tmp_path / "assistant_train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    experiment(tmp_path, tiny_encoder, **{"tasks.3.max_length": 5}, **STEPS)
    mapped = prepare_data(load_experiment(tmp_path / "experiment.yaml"), tiny_tokenizer)
    experiment(tmp_path, tiny_encoder, **{"tasks.3.max_length": 5}, **STREAM_ALL, **STEPS)
    streamed = prepare_data(load_experiment(tmp_path / "experiment.yaml"), tiny_tokenizer)

    assert streamed.labels == mapped.labels  # inferred by one pass over the streamed files
    assert mapped.train.keys() == streamed.train.keys() == {"intent+slots", "similarity", "ner"}
    for name, features in streamed.train.items():
        assert isinstance(features, StreamedFeatures)
        expected = [_features(row) for row in mapped.train[name]]
        assert features.num_examples == len(expected)
        assert [_features(row) for row in features.examples()] == expected, name
    assert any(row["truncated"] for row in map(_features, mapped.train["ner"]))
    assert len(mapped.train["intent+slots"]) == 18


def test_a_second_run_reads_the_streams_size_and_labels_from_the_cache(
    tmp_path, tiny_encoder, tiny_tokenizer, monkeypatch
):
    write_data(tmp_path)
    experiment(tmp_path, tiny_encoder, **STREAM_ALL, **STEPS)
    first = prepare_data(load_experiment(tmp_path / "experiment.yaml"), tiny_tokenizer)
    assert first.cache_hits == []
    monkeypatch.setattr(data_module, "_checked_labels", lambda *args: pytest.fail("the stream was read again"))
    second = prepare_data(load_experiment(tmp_path / "experiment.yaml"), tiny_tokenizer)
    assert second.cache_hits == ["intent+slots", "similarity", "ner"]
    assert second.labels == first.labels
    assert [group_size(second.train[name]) for name in second.train] == [6, 4, 2]


class _Built(Exception):
    """Raised in place of training, carrying the trainer the CLI built."""


def _rank_trainer(folder: Path, tokenizer, monkeypatch):
    """The MultiTaskTrainer the CLI builds for the experiment in `folder` (stopped before training), and its data."""
    from modeling_multitask.training import cli

    def stop(trainer, *args, **kwargs):
        raise _Built(trainer)

    monkeypatch.setattr(cli.MultiTaskTrainer, "train", stop)
    with pytest.raises(_Built) as built:
        cli.run(load_experiment(folder / "experiment.yaml"))
    return built.value.args[0], prepare_data(load_experiment(folder / "experiment.yaml"), tokenizer)


def _group_of(batch: dict) -> tuple:
    # A joint group's batch carries a label dict and no task ids; a single task's batch carries its task id.
    return tuple(sorted(batch["labels"])) if isinstance(batch["labels"], dict) else (int(batch["task_ids"]),)


def test_two_ranks_read_disjoint_records_and_train_the_same_group_at_every_step(
    tmp_path, tiny_encoder, tiny_tokenizer, monkeypatch
):
    write_data(tmp_path)
    # intent + slots streamed (6 records), similarity (4) and ner (2) in map mode.
    experiment(tmp_path, tiny_encoder, **{"tasks.0.data.streaming": True, **STEPS, "sampling.strategy": "uniform"})
    trainer, prepared = _rank_trainer(tmp_path, tiny_tokenizer, monkeypatch)
    stream = prepared.train["intent+slots"]

    lines = {rank: [line for rows in stream.rows.shard(rank, 2).batches() for line in rows.lines] for rank in (0, 1)}
    assert lines == {0: [1, 3, 5], 1: [2, 4, 6]}
    alone = sorted(row["input_ids"] for row in stream.examples())
    assert sorted(row["input_ids"] for rank in (0, 1) for row in stream.examples(rank, 2)) == alone

    loaders = [iter(trainer.streaming_dataloader(rank, 2)) for rank in (0, 1)]
    steps = [[next(loader) for _ in range(20)] for loader in loaders]
    groups = [[_group_of(batch) for batch in rank_steps] for rank_steps in steps]
    assert groups[0] == groups[1]
    assert {("intent", "slots"), (2,), (3,)} <= set(groups[0])  # uniform: every group within 20 steps
    for step_0, step_1 in zip(*steps):
        assert step_0["input_ids"].shape[0] == step_1["input_ids"].shape[0] == 2
        ids = [{tuple(row.tolist()) for row in step["input_ids"]} for step in (step_0, step_1)]
        if _group_of(step_0) != (3,):  # ner has 2 sentences for the step's 4 places: both ranks see both
            # Disjoint examples: intent+slots from each rank's records, similarity's 4 pairs split 2 + 2.
            assert not ids[0] & ids[1]


def test_a_bad_row_mid_stream_names_its_file_and_line(tmp_path, tiny_encoder, capsys, monkeypatch):
    """With the labels and the size given, nothing reads the stream before training: the bad label on line 23 is
    found while training, and reported as a data error (exit code 2) naming the file and the line; so is a missing
    column."""
    monkeypatch.setattr(data_module, "BATCH_SIZE", 4)
    write_data(tmp_path)
    rows = [{"tokens": text.split(), "tags": tags.split(), "intent": intent} for text, intent, tags in DATA * 5]
    rows[22]["intent"] = "dance"
    (tmp_path / "assistant_train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    experiment(
        tmp_path,
        tiny_encoder,
        **{
            "tasks.0.data.streaming": True,
            "tasks.0.data.num_examples": 30,
            "tasks.0.labels": ["book", "weather", "greet"],
            "tasks.1.labels": ["O", "B-city", "I-city", "B-date"],
        },
        **{**STEPS, "training.max_steps": 40, "sampling.strategy": "proportional"},
    )
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    captured = capsys.readouterr()
    assert _logged_losses(captured.out)  # training had started
    assert "assistant_train.jsonl, line 23: label 'dance' of task 'intent'" in captured.err
    # A record without a column the task reads is a data error too, not a KeyError out of training.
    del rows[22]["intent"]
    (tmp_path / "assistant_train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    assert "assistant_train.jsonl, line 23: missing column 'intent' (label_column)." in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"training.max_steps": None}, r"tasks\[0\] \(intent\)\.data\.streaming is true, so training\.max_steps"),
        ({"training.max_steps": -1}, r"training\.max_steps is required"),
        ({"sampling.group_by_length": True}, r"group_by_length"),
        ({"tasks.0.data.streaming": "yes"}, r"data\.streaming must be true or false, got 'yes'"),
        ({"tasks.2.data.num_examples": 4}, r"tasks\[2\] \(similarity\)\.data\.num_examples is read only for a stream"),
        ({"tasks.0.data.num_examples": 0}, r"num_examples must be a positive integer"),
    ],
)
def test_stream_settings_are_checked_when_the_experiment_is_read(tmp_path, tiny_encoder, changes, match):
    write_data(tmp_path)
    experiment(tmp_path, tiny_encoder, **{"tasks.0.data.streaming": True, **STEPS, **changes})
    with pytest.raises(ExperimentError, match=match):
        load_experiment(tmp_path / "experiment.yaml")


def test_a_hub_stream_needs_its_size_and_labels(tmp_path, tiny_encoder):
    write_data(tmp_path)
    hub = {"dataset": "org/assistant", "streaming": True}
    experiment(tmp_path, tiny_encoder, **{"tasks.3.data": hub, **STEPS})
    with pytest.raises(ExperimentError, match=r"cannot be counted before training; give its train size"):
        load_experiment(tmp_path / "experiment.yaml")
    experiment(tmp_path, tiny_encoder, **{"tasks.3.data": {**hub, "num_examples": 100}, **STEPS})
    with pytest.raises(ExperimentError, match=r"streams the Hub dataset 'org/assistant'.*list them in the task's"):
        load_experiment(tmp_path / "experiment.yaml")


def test_a_hub_dataset_streams_with_its_size_and_labels_given(tmp_path, tiny_encoder, capsys):
    """`load_dataset(..., streaming=True)`, here on a local folder (the Hub is out of reach): trains, and its rows are
    numbered for errors."""
    write_data(tmp_path)
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "train.jsonl").write_text((tmp_path / "assistant_train.jsonl").read_text())
    data = {"dataset": str(hub), "splits": {"train": "train"}, "streaming": True, "num_examples": 6}
    experiment(
        tmp_path,
        tiny_encoder,
        **{"tasks.0.data": data, "tasks.1.data": data, "tasks.0.labels": ["book", "weather", "greet"]},
        **{"tasks.1.labels": ["O", "B-city", "I-city", "B-date"], **STEPS},
    )
    assert main([str(tmp_path / "experiment.yaml")]) == 0
    trained = {key for entry in _logged_losses(capsys.readouterr().out) for key in entry}
    assert {"loss_intent", "loss_slots"} <= trained
    stream = data_module.stream_split(load_experiment(tmp_path / "experiment.yaml").tasks[0].data, "train")
    assert [rows.where(0) for rows in stream.shard(1, 2).batches(2)] == [
        f"{hub}[train], row 2",
        f"{hub}[train], row 6",
    ]


def test_missing_max_steps_fails_in_the_cli_before_training(tmp_path, tiny_encoder, capsys):
    write_data(tmp_path)
    experiment(tmp_path, tiny_encoder, **{"tasks.0.data.streaming": True})
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    captured = capsys.readouterr()
    assert "error: tasks[0] (intent).data.streaming is true, so training.max_steps is required" in captured.err
    assert not _logged_losses(captured.out) and not (tmp_path / "out").exists()


def test_resume_replays_the_stream_and_ends_where_the_uninterrupted_run_ends(tmp_path, tiny_encoder):
    """`--resume` from a checkpoint at step 3 of 6: the Trainer reads and drops the 3 batches trained before it
    (streams are re-read from their start) and trains steps 4-6 on the same batches as the uninterrupted run."""
    settings = {
        **STREAM_ALL,
        **STEPS,
        "sampling.strategy": "temperature",
        "training.save_steps": 3,
        "training.eval_strategy": "no",
        "training.save_total_limit": None,
    }
    runs = {}
    for name in ("uninterrupted", "resumed"):
        folder = tmp_path / name
        folder.mkdir()
        write_data(folder)
        experiment(folder, tiny_encoder, **settings)
        runs[name] = folder
    assert main([str(runs["uninterrupted"] / "experiment.yaml")]) == 0
    # The interrupted run: trained to step 3 (its checkpoint is the uninterrupted run's), then resumed.
    (runs["resumed"] / "out").mkdir()
    source = runs["uninterrupted"] / "out" / "checkpoint-3"
    target = runs["resumed"] / "out" / "checkpoint-3"
    target.mkdir()
    for file in source.iterdir():
        target.joinpath(file.name).write_bytes(file.read_bytes())
    assert main([str(runs["resumed"] / "experiment.yaml"), "--resume"]) == 0

    weights = [load_file(folder / "out" / "model.safetensors") for folder in runs.values()]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
