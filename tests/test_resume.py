"""An interrupted run resumes from its last checkpoint and ends exactly where the uninterrupted run ends.

The interruption is a real `kill -9` of the training process, in the middle of an epoch after the first one, a few
steps after a checkpoint was saved: the resumed run must replay those steps and give bit-identical weights and
metrics (on CPU, where training is deterministic for a seed).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_train_cli import experiment, write_data

import modeling_multitask.training.data as data_module
from modeling_multitask.training import cli


KILL_AT_STEP = 10
# Runs the training CLI with a callback that SIGKILLs the process once step KILL_AT_STEP has been taken.
KILLED_RUN = f"""
import os, signal, sys
from transformers import TrainerCallback
from modeling_multitask.training import cli, trainer

class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == {KILL_AT_STEP}:
            os.kill(os.getpid(), signal.SIGKILL)

original_init = trainer.MultiTaskTrainer.__init__
def init_with_kill(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    self.add_callback(KillAt())
trainer.MultiTaskTrainer.__init__ = init_with_kill
sys.exit(cli.main(sys.argv[1:]))
"""


def train(folder: Path, *arguments: str, script: list[str] | None = None) -> subprocess.CompletedProcess:
    command = script or ["-m", "modeling_multitask.training.cli"]
    return subprocess.run(
        [sys.executable, *command, str(folder / "experiment.yaml"), *arguments],
        cwd=folder,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_resume_after_kill_9_reproduces_the_uninterrupted_run(tmp_path, tiny_encoder):
    runs = {}
    for name in ("uninterrupted", "killed"):
        folder = tmp_path / name
        folder.mkdir()
        write_data(folder)
        experiment(
            folder,
            tiny_encoder,
            **{
                "training.num_train_epochs": 3,
                "training.save_strategy": "steps",
                "training.save_steps": 4,
                "training.eval_strategy": "no",
                "training.load_best_model_at_end": False,
                "training.save_total_limit": None,
            },
        )
        runs[name] = folder

    done = train(runs["uninterrupted"])
    assert done.returncode == 0, done.stderr[-3000:]

    killed = train(runs["killed"], script=["-c", KILLED_RUN])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    output = runs["killed"] / "out"
    assert not (output / "model.safetensors").exists()
    saved = sorted(int(path.name.split("-")[1]) for path in output.glob("checkpoint-*"))
    assert saved and saved[-1] < KILL_AT_STEP  # steps after the last checkpoint were lost and must be replayed
    state = json.loads((output / f"checkpoint-{saved[-1]}" / "trainer_state.json").read_text())
    steps_per_epoch = state["max_steps"] / 3
    assert saved[-1] > steps_per_epoch and saved[-1] % steps_per_epoch  # mid-epoch, after the first epoch

    resumed = train(runs["killed"], "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"checkpoint-{saved[-1]}" in resumed.stderr + resumed.stdout

    expected = load_file(runs["uninterrupted"] / "out" / "model.safetensors")
    actual = load_file(output / "model.safetensors")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    scores = {name: scores_of(folder / "out" / "metrics.json") for name, folder in runs.items()}
    assert scores["killed"] == scores["uninterrupted"]


def scores_of(metrics_file: Path) -> dict:
    """Validation scores per task, without the timings (which differ between any two runs)."""
    timing = ("runtime", "samples_per_second", "steps_per_second")
    validation = json.loads(metrics_file.read_text())["validation"]
    return {task: {k: v for k, v in values.items() if k not in timing} for task, values in validation.items()}


# ------------------------------------------------------------------------------ a checkpoint --resume cannot continue


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_encoder) -> Path:
    """A tiny CLI run with one checkpoint per epoch, to copy and then change."""
    folder = tmp_path_factory.mktemp("finished")
    write_data(folder)
    experiment(folder, tiny_encoder, **{"training.num_train_epochs": 1, "training.load_best_model_at_end": None})
    assert cli.main([str(folder / "experiment.yaml")]) == 0
    return folder


def _copy_of(run: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    raw = yaml.safe_load((folder / "experiment.yaml").read_text())
    raw["training"]["output_dir"] = str(folder / "out")
    (folder / "experiment.yaml").write_text(yaml.safe_dump(raw))
    return folder


def _breaks_tasks(folder: Path) -> None:
    raw = yaml.safe_load((folder / "experiment.yaml").read_text())
    del raw["tasks"][3]  # ner dropped: a head fewer
    (folder / "experiment.yaml").write_text(yaml.safe_dump(raw))


def _breaks_listed_labels(folder: Path) -> None:
    raw = yaml.safe_load((folder / "experiment.yaml").read_text())
    raw["tasks"][0]["labels"] = ["book", "greet", "weather", "farewell"]
    (folder / "experiment.yaml").write_text(yaml.safe_dump(raw))


def _changes_max_length(folder: Path) -> None:
    raw = yaml.safe_load((folder / "experiment.yaml").read_text())
    raw["tasks"][0]["max_length"] = 12  # the data would be read at another length than the run began with
    (folder / "experiment.yaml").write_text(yaml.safe_dump(raw))


def _breaks_data_labels(folder: Path) -> None:
    row = {"tokens": ["bye"], "tags": ["O"], "intent": "farewell"}
    with (folder / "assistant_train.jsonl").open("a") as data:
        data.write(json.dumps(row) + "\n")


def _breaks_trainer_state(folder: Path) -> None:
    for checkpoint in (folder / "out").glob("checkpoint-*"):
        (checkpoint / "trainer_state.json").write_text('{"global_step": 3,')


def _removes_trainer_state(folder: Path) -> None:
    for checkpoint in (folder / "out").glob("checkpoint-*"):
        (checkpoint / "trainer_state.json").unlink()


@pytest.mark.parametrize(
    ("breaks", "match", "tokenises"),
    [
        (_breaks_tasks, r"was trained for another model .*tasks \[intent .*ner \(token_classification\)\] there", 0),
        (_breaks_listed_labels, r"task 'intent' labels \['book', 'greet', 'weather'\] there", 0),
        (_changes_max_length, r"task 'intent' max_length 16 there, 12 here", 0),
        (_breaks_data_labels, r"labels \['book', 'greet', 'weather'\] for task 'intent', but the data now gives", 1),
        (_breaks_trainer_state, r"checkpoint-\d+ is damaged \(JSONDecodeError", 0),
        (_removes_trainer_state, r"checkpoint-\d+ is incomplete \(trainer_state.json is missing\)", 0),
    ],
    ids=[
        "tasks-changed",
        "listed-labels-changed",
        "max-length-changed",
        "data-labels-changed",
        "corrupt-state",
        "missing-state",
    ],
)
def test_resume_refuses_a_checkpoint_it_cannot_continue(
    breaks, match, tokenises, finished_run, tmp_path, capsys, monkeypatch
):
    folder = _copy_of(finished_run, tmp_path)
    breaks(folder)
    before = {path: path.read_bytes() for path in (folder / "out").rglob("*") if path.is_file()}
    tokenised = []
    real_tokenize = data_module.tokenize
    monkeypatch.setattr(data_module, "tokenize", lambda *a, **k: tokenised.append(1) or real_tokenize(*a, **k))
    capsys.readouterr()

    assert cli.main([str(folder / "experiment.yaml"), "--resume"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --resume: ") and "Traceback" not in error, error
    assert re.search(match, error), error
    assert str(folder / "out" / "checkpoint-") in error and "--overwrite" in error, error
    # Changed labels are known only once the data is read; everything else fails before any tokenising.
    assert bool(tokenised) == bool(tokenises)
    assert {path: path.read_bytes() for path in (folder / "out").rglob("*") if path.is_file()} == before
