"""An interrupted run resumes from its last checkpoint and ends exactly where the uninterrupted run ends.

The interruption is a real `kill -9` of the training process, in the middle of an epoch after the first one, a few
steps after a checkpoint was saved: the resumed run must replay those steps and give bit-identical weights and
metrics (on CPU, where training is deterministic for a seed).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from test_train_cli import experiment, write_data


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
