"""The training CLI end to end on a tiny random encoder and tiny data, and --resume (bad input: test_bad_inputs.py)."""

import json
import re
from pathlib import Path

import pytest
import yaml

from modeling_multitask.training.cli import main
from modeling_multitask.training.experiment import load_experiment


DATA = [
    ("book a flight to boston tomorrow", "book", "O O O O B-city B-date"),
    ("what is the weather in denver", "weather", "O O O O O B-city"),
    ("show me flights to new york", "book", "O O O O B-city I-city"),
    ("will it rain in dallas today", "weather", "O O O O B-city B-date"),
    ("hello", "greet", "O"),
    ("hi please book a flight", "book", "O O O O O"),
]


def write_data(folder: Path) -> None:
    rows = [{"tokens": text.split(), "tags": tags.split(), "intent": intent} for text, intent, tags in DATA]
    for split in ("train", "dev"):
        (folder / f"assistant_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = "sentence1\tsentence2\tscore\n" + "".join(
        f"{a}\t{b}\t{s}\n"
        for a, b, s in [
            ("book a flight", "book flights", 4.5),
            ("hello", "rain today", 0.5),
            ("show me boston", "show me denver", 3.0),
            ("hi", "hello", 4.0),
        ]
    )
    (folder / "pairs.tsv").write_text(pairs)
    conll = "-DOCSTART- O\n\nbook O\nboston B-city\n\nrain O\nin O\nnew B-city\nyork I-city\n\n"
    (folder / "ner.conll").write_text(conll)


def experiment(folder: Path, encoder: Path, **changes) -> dict:
    assistant = {"train": "assistant_train.jsonl", "validation": "assistant_dev.jsonl"}
    raw = {
        "model": {"base_model": str(encoder), "dropout": 0.1, "fusion": {"type": "attention", "hidden_size": 32}},
        "tasks": [
            {
                "name": "intent",
                "type": "sequence_classification",
                "data": assistant,
                "text_column": "tokens",
                "label_column": "intent",
                "max_length": 16,
            },
            {"name": "slots", "type": "token_classification", "data": assistant, "max_length": 16},
            {
                "name": "similarity",
                "type": "regression",
                "data": {"train": "pairs.tsv", "validation": "pairs.tsv"},
                "text_column": "sentence1",
                "text_pair_column": "sentence2",
                "label_column": "score",
            },
            {"name": "ner", "type": "token_classification", "data": {"train": "ner.conll", "validation": "ner.conll"}},
        ],
        "sampling": {"strategy": "temperature", "temperature": 2.0},
        "training": {
            "output_dir": str(folder / "out"),
            "num_train_epochs": 2,
            "per_device_train_batch_size": 2,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "disable_tqdm": True,
            "load_best_model_at_end": True,
        },
    }
    for path, value in changes.items():
        node = raw
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None and isinstance(node, dict):
            node.pop(keys[-1], None)
        else:
            node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
    (folder / "experiment.yaml").write_text(yaml.safe_dump(raw))
    return raw


def test_cli_trains_evaluates_saves_and_resumes(tmp_path, tiny_encoder, capsys):
    write_data(tmp_path)
    experiment(tmp_path, tiny_encoder)
    assert main([str(tmp_path / "experiment.yaml")]) == 0
    output = tmp_path / "out"
    metrics = json.loads((output / "metrics.json").read_text())
    assert set(metrics["validation"]) == {"intent", "slots", "similarity", "ner"}
    assert {"accuracy", "f1", "mcc"} <= set(metrics["validation"]["intent"])
    assert {"pearson", "spearman"} <= set(metrics["validation"]["similarity"])
    assert "intent+slots" in metrics["validation_sentence_accuracy"]
    config = json.loads((output / "config.json").read_text())
    assert config["tasks"][1]["labels"][0] == "O" and "B-city" in config["tasks"][1]["labels"]
    assert config["text_pair_tasks"] == ["similarity"]
    assert (output / "model.safetensors").exists() and (output / "tokenizer.json").exists()
    assert "Per-task metrics" in capsys.readouterr().out
    # load_best_model_at_end picked checkpoints by the combined score of the per-task primary metrics.
    state = json.loads((checkpoints_of(output)[-1] / "trainer_state.json").read_text())
    assert state["best_metric"] is not None
    assert any("eval_combined_score" in entry for entry in state["log_history"])
    # Per-task training losses: the joint intent+slots group logs both at once.
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert any("loss_intent" in entry and "loss_slots" in entry for entry in logged)
    assert any("loss_ner" in entry for entry in logged) and any("loss_similarity" in entry for entry in logged)

    # A rerun refuses to clobber the checkpoints; --resume continues from the last one.
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    assert "--resume" in capsys.readouterr().err
    checkpoints = checkpoints_of(output)
    assert checkpoints
    trainer_state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    assert main([str(tmp_path / "experiment.yaml"), "--resume", "--set", "training.num_train_epochs=3"]) == 0
    resumed_state = json.loads((checkpoints_of(output)[-1] / "trainer_state.json").read_text())
    assert resumed_state["global_step"] > trainer_state["global_step"]
    assert resumed_state["epoch"] == pytest.approx(3.0)


def checkpoints_of(folder: Path) -> list[Path]:
    return sorted(folder.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))


def test_yaml_exponent_without_a_dot_is_read_as_a_number(tmp_path, tiny_encoder):
    # YAML 1.1 reads `1e-4` as a string; TrainingArguments would take it and fail only when the optimizer is built.
    write_data(tmp_path)
    experiment(tmp_path, tiny_encoder, **{"training.load_best_model_at_end": None})  # the CLI sets its strategies
    path = tmp_path / "experiment.yaml"
    path.write_text(path.read_text().replace("learning_rate: 0.001", "learning_rate: 1e-4"))
    assert yaml.safe_load(path.read_text())["training"]["learning_rate"] == "1e-4"
    assert load_experiment(path).training_arguments().learning_rate == 1e-4
    overridden = load_experiment(path, ["training.learning_rate=3e-5", "training.per_device_train_batch_size=4"])
    assert overridden.training_arguments().learning_rate == 3e-5
    assert overridden.training_arguments().per_device_train_batch_size == 4


def test_unseen_validation_labels_error_or_map_to_unk(tmp_path, tiny_encoder, capsys):
    write_data(tmp_path)
    rows = [{"tokens": ["bye", "now"], "tags": ["O", "O"], "intent": "farewell"}]
    (tmp_path / "assistant_dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    experiment(tmp_path, tiny_encoder, **{"training.num_train_epochs": 1, "training.load_best_model_at_end": False})
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    assert re.search(r"assistant_dev.jsonl, line 1: label 'farewell'.*unseen_labels: unk", capsys.readouterr().err)
    experiment(
        tmp_path,
        tiny_encoder,
        **{"training.num_train_epochs": 1, "training.load_best_model_at_end": False, "tasks.0.unseen_labels": "unk"},
    )
    assert main([str(tmp_path / "experiment.yaml")]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["tasks"][0]["labels"][-1] == "UNK"


def test_evaluate_metrics_fail_early_with_a_clear_error(tmp_path, tiny_encoder, capsys, monkeypatch):
    import evaluate

    def offline(module_id):
        raise ConnectionError("Hub unreachable")

    monkeypatch.setattr(evaluate, "load", offline)
    write_data(tmp_path)
    experiment(tmp_path, tiny_encoder, **{"tasks.0.metrics": ["accuracy", "evaluate:accuracy"]})
    assert main([str(tmp_path / "experiment.yaml")]) == 2
    error = capsys.readouterr().err
    assert "Could not load evaluate metric 'accuracy'" in error and "built-in metrics" in error


def test_eval_max_examples_per_task_caps_every_tasks_evaluation(tmp_path, tiny_encoder):
    """With hundreds of tasks, evaluation is capped per task: each task is scored on its first N examples."""
    from transformers import AutoTokenizer

    from modeling_multitask import MultiTaskModel
    from modeling_multitask.training.cli import build_model
    from modeling_multitask.training.data import prepare_data
    from modeling_multitask.training.evaluation import evaluate_model

    write_data(tmp_path)
    experiment(
        tmp_path, tiny_encoder, **{"sampling.eval_max_examples_per_task": 2, "training.load_best_model_at_end": None}
    )
    parsed = load_experiment(tmp_path / "experiment.yaml")
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    prepared = prepare_data(parsed, tokenizer)
    model = build_model(parsed, str(tiny_encoder), prepared)
    assert isinstance(model, MultiTaskModel)
    _, trainer = evaluate_model(model, tokenizer, parsed, prepared, splits=("validation",))
    assert {name: len(gold) for name, (_, gold) in trainer.last_eval_predictions.items()} == {
        "intent": 2,
        "slots": 2,
        "similarity": 2,
        "ner": 2,
    }
    assert len(prepared.validation["intent"]) == 6  # the data itself is whole; only its evaluation is capped
    with pytest.raises(Exception, match="eval_max_examples_per_task must be a positive integer"):
        experiment(tmp_path, tiny_encoder, **{"sampling.eval_max_examples_per_task": 0})
        load_experiment(tmp_path / "experiment.yaml")
