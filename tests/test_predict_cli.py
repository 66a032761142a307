"""`multitask-predict` stops on bad input with `error: ...` (as multitask-train and multitask-push do), exit code 2
and no traceback, before a model is loaded or any prediction is made."""

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_hub import make_checkpoint

from modeling_multitask import predict_cli
from modeling_multitask.hub import read_checkpoint_config, save_pipeline_files


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from conftest import fixture_tokenizer

    folder = tmp_path_factory.mktemp("checkpoint")
    make_checkpoint(folder, fixture_tokenizer(), seed=0, accuracy=0.5)
    save_pipeline_files(folder)
    return folder


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _one_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@dataclasses.dataclass
class Case:
    id: str
    match: str
    args: list  # after the checkpoint; "@name" is a path in the test's folder
    checkpoint: str = "@checkpoint"
    files: dict = dataclasses.field(default_factory=dict)  # name in the test's folder -> bytes
    patch: Callable | None = None


CASES = [
    Case("device-bogus", r"--device 'bogus' is not a device: use cpu, cuda", ["hi", "--device", "bogus"]),
    Case(
        "device-cuda-without-cuda",
        "--device cuda: this machine has no CUDA device",
        ["hi", "--device", "cuda"],
        patch=_no_cuda,
    ),
    Case(
        "device-index-past-the-last",
        "--device cuda:3: this machine has 1 CUDA device.s., cuda:0 to cuda:0",
        ["hi", "--device", "cuda:3"],
        patch=_one_cuda_device,
    ),
    Case(
        "html-in-missing-folder",
        r"--html .*nowhere/explain.html: the folder .*nowhere does not exist",
        ["hi", "--html", "@nowhere/explain.html"],
    ),
    Case("html-is-a-folder", "--html .* is a directory: give a file name", ["hi", "--html", "@"]),
    Case(
        "file-not-utf8",
        r"--file .*inputs.jsonl is not UTF-8 text .*save it as UTF-8",
        ["--file", "@inputs.jsonl"],
        files={"inputs.jsonl": json.dumps("caf\xe9", ensure_ascii=False).encode("latin-1") + b"\n"},
    ),
    Case("file-is-a-folder", "--file .* is a directory", ["--file", "@"]),
    Case("file-missing", "--file .*nope.jsonl does not exist", ["--file", "@nope.jsonl"]),
    Case(
        "checkpoint-is-a-file",
        "model.safetensors' is a file, not a checkpoint folder",
        ["hi"],
        checkpoint="@checkpoint/model.safetensors",
    ),
    Case("checkpoint-missing", "does not exist", ["hi"], checkpoint="@missing"),
    Case("unknown-task", "Unknown task 'nope'", ["hi", "--task", "nope"]),
]


def _path(value: str, workspace: Path, checkpoint: Path) -> str:
    if not value.startswith("@"):
        return value
    name = value[1:]
    if name.split("/")[0] == "checkpoint":
        return str(checkpoint / name.removeprefix("checkpoint").lstrip("/"))
    return str(workspace / name)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_predict_cli_bad_input(case, checkpoint, tmp_path, capsys, monkeypatch):
    for name, content in case.files.items():
        (tmp_path / name).write_bytes(content)
    if case.patch is not None:
        case.patch(monkeypatch)
    loaded = []
    real_pipeline = predict_cli.pipeline
    monkeypatch.setattr(predict_cli, "pipeline", lambda *a, **k: loaded.append(1) or real_pipeline(*a, **k))

    argv = [_path(case.checkpoint, tmp_path, checkpoint), *(_path(arg, tmp_path, checkpoint) for arg in case.args)]
    assert predict_cli.main(argv) == 2
    captured = capsys.readouterr()
    # The last line is the error (a loaded model's progress bar may come before it).
    assert captured.err.splitlines()[-1].startswith("error: ") and "Traceback" not in captured.err, captured.err
    assert re.search(case.match, captured.err), captured.err
    assert captured.out == ""  # no prediction printed
    if case.id != "unknown-task":  # the one mistake only the loaded pipeline can see
        assert not loaded, "the model was loaded before the error"
    assert not (tmp_path / "nowhere").exists()


def test_read_checkpoint_config_says_a_file_is_not_a_folder(checkpoint):
    with pytest.raises(ValueError, match="is a file, not a checkpoint folder"):
        read_checkpoint_config(checkpoint / "config.json")
