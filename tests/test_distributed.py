"""Data-parallel training: the `multitask-train` CLI under `torchrun --nproc_per_node 2` on CPU (gloo).

One 2-process run and one 1-process run of the same tiny experiment (tests/fixtures/ddp: a random 2-layer BERT, two
tasks on different data, so every step trains one task and the other head gets no gradient) are compared:
- every rank trains the same task at every step, and the two ranks' blocks of a step together are exactly the
  1-process run's batch of that step (TaskBlockSampler repeats each step's group for every rank; the data loader
  hands rank r the r-th block);
- the losses of every step and the final validation metrics match the 1-process run.

Why the tolerance can be tight: with per-device batch 4 on 2 ranks against batch 8 on one, dropout off, and data
whose examples all have 6 one-token words (no padding; the same number of labelled tokens on each rank), the
all-reduced mean of the two ranks' mean losses *is* the 1-process mean loss. The runs differ only by float32
summation order (~1e-7 relative per operation): over the 24 Adam steps at lr 1e-3 the losses differed by at most
3e-7 relative here, so 1e-4 leaves a wide margin for other CPUs' kernels while a real fault (a rank training another
task, a shard missing, gradients not averaged, heads initialised differently: 5e-3 at step 0, 7e-2 later) fails it.
Metrics came out identical; they may differ by one validation example (1/16), in case a prediction sits on a
decision boundary.

Also here: DDP with a different task on each rank (each head without gradient on one rank), and the world size
under `torchrun` and `accelerate launch` on a CPU-only machine (the CLI turns on `use_cpu` there by itself).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, tiny_bert_config
from transformers import BertModel, BertTokenizer


REPO = Path(__file__).resolve().parents[1]
DDP_FIXTURES = FIXTURES / "ddp"
TIMEOUT = 300  # seconds: a hang fails the test instead of blocking the run


@pytest.fixture(scope="module")
def tiny_base_model(tmp_path_factory) -> Path:
    """A random tiny BERT (no dropout) and the fixture tokenizer, saved as a local base model."""
    path = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    BertModel(tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).save_pretrained(path)
    vocab = {token: i for i, token in enumerate((FIXTURES / "vocab.txt").read_text().split())}
    BertTokenizer(vocab=vocab, do_lower_case=True).save_pretrained(path)
    return path


def environment(**extra) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


def launch(nproc: int, base_model: Path, workdir: Path) -> subprocess.Popen:
    """Start the CLI in `nproc` processes (torchrun) or in one plain process."""
    record_dir = workdir / "record"
    record_dir.mkdir(parents=True)
    script = [
        str(DDP_FIXTURES / "run_cli.py"),
        str(DDP_FIXTURES / "experiment.yaml"),
        "--set",
        f"model.base_model={base_model}",
        "--set",
        f"training.output_dir={workdir / 'output'}",
        "--set",
        f"training.per_device_train_batch_size={8 // nproc}",
    ]
    command = [*torchrun(nproc), *script] if nproc > 1 else [sys.executable, *script]
    return subprocess.Popen(
        command,
        cwd=workdir,
        env=environment(DDP_RECORD_DIR=str(record_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen, what: str) -> str:
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{what} did not finish in {TIMEOUT} s (hang?). Output:\n{output[-4000:]}")
    assert process.returncode == 0, f"{what} failed with exit code {process.returncode}:\n{output[-4000:]}"
    return output


def step_losses(record: dict) -> list[float]:
    return [entry["loss"] for entry in record["log_history"] if "loss" in entry]


@pytest.fixture(scope="module")
def runs(tiny_base_model, tmp_path_factory):
    """The 2-process and the 1-process run, started together (each process uses one thread)."""
    workdirs = {n: tmp_path_factory.mktemp(f"ddp{n}") for n in (2, 1)}
    processes = {n: launch(n, tiny_base_model, workdirs[n]) for n in (2, 1)}
    outputs = {n: finish(processes[n], f"the {n}-process run") for n in (2, 1)}
    records = {}
    for n, workdir in workdirs.items():
        records[n] = [json.loads((workdir / "record" / f"rank{rank}.json").read_text()) for rank in range(n)]
    metrics = {n: json.loads((workdir / "output" / "metrics.json").read_text()) for n, workdir in workdirs.items()}
    return {"records": records, "metrics": metrics, "outputs": outputs}


def test_both_ranks_ran_distributed(runs):
    ranks = runs["records"][2]
    assert [record["world_size"] for record in ranks] == [2, 2]
    assert runs["records"][1][0]["world_size"] == 1
    assert len(ranks[0]["steps"]) == len(ranks[1]["steps"]) == len(runs["records"][1][0]["steps"]) == 24


def test_every_rank_trains_the_same_task_at_each_step(runs):
    rank0, rank1 = (record["steps"] for record in runs["records"][2])
    for step0, step1 in zip(rank0, rank1):
        assert step0["step"] == step1["step"]
        assert len(step0["task_ids"]) == 1, f"a mixed batch at step {step0['step']}"
        assert step0["task_ids"] == step1["task_ids"], f"ranks trained different tasks at step {step0['step']}"
    # Both tasks were trained, so each head went without gradient at some steps (the DDP unused-parameter case).
    assert {step["task_ids"][0] for step in rank0} == {0, 1}


def test_the_ranks_blocks_make_the_single_process_batch(runs):
    rank0, rank1 = (record["steps"] for record in runs["records"][2])
    single = runs["records"][1][0]["steps"]
    for step0, step1, one in zip(rank0, rank1, single):
        assert step0["task_ids"] == one["task_ids"]
        assert step0["input_ids"] + step1["input_ids"] == one["input_ids"], f"step {one['step']}"


def test_losses_match_the_single_process_run(runs):
    two = step_losses(runs["records"][2][0])
    one = step_losses(runs["records"][1][0])
    assert len(two) == len(one) == 24
    assert two == pytest.approx(one, rel=1e-4, abs=1e-6)
    assert two[-1] < two[0]  # it trained
    assert runs["metrics"][2]["train"]["train_loss"] == pytest.approx(
        runs["metrics"][1]["train"]["train_loss"], rel=1e-3
    )


def test_validation_metrics_match_the_single_process_run(runs):
    two, one = runs["metrics"][2]["validation"], runs["metrics"][1]["validation"]
    assert set(two) == set(one) == {"intent", "slots"}
    for task in one:
        for metric in ("accuracy", "f1"):
            assert two[task][metric] == pytest.approx(one[task][metric], abs=1 / 16 + 1e-9), (task, metric)
        assert two[task]["loss"] == pytest.approx(one[task]["loss"], rel=1e-3)


def test_a_head_without_gradient_on_one_rank_neither_hangs_nor_desynchronises(tmp_path):
    # Rank r trains task r only (as a mixed-task sampler could do): each head has no gradient on the other rank.
    process = subprocess.Popen(
        [*torchrun(2), str(DDP_FIXTURES / "uneven_heads.py")],
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = finish(process, "torchrun of uneven_heads.py")
    results = [json.loads(line) for line in output.replace("}{", "}\n{").splitlines() if line.startswith('{"rank"')]
    assert sorted(result["rank"] for result in results) == [0, 1], output[-2000:]
    for result in results:
        assert all(result["same_gradients"]) and result["same_weights"]
        # Both heads got the averaged gradient on both ranks, although each was used on one rank only.
        assert all(norms["intent"] > 0 and norms["slots"] > 0 for norms in result["head_gradient_norms"])


def world_sizes(launcher: list[str], workdir: Path) -> list[int]:
    """The world size each launched process would train with, as `multitask-train` sets the Trainer up."""
    command = [
        *launcher,
        str(DDP_FIXTURES / "world_size.py"),
        str(DDP_FIXTURES / "experiment.yaml"),
        "model.base_model=unused",
        f"training.output_dir={workdir}",
    ]
    process = subprocess.Popen(
        command, cwd=workdir, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = finish(process, " ".join(launcher[:4]))
    return [
        json.loads(line)["world_size"]
        for line in output.replace("}{", "}\n{").splitlines()
        if line.startswith('{"rank"')
    ]


def test_accelerate_launch_trains_data_parallel_on_cpu(tmp_path):
    # `accelerate launch --cpu --num_processes 2` starts a single process (accelerate's simple launcher); on a CPU-only
    # machine, the multi-process launcher is `--multi_gpu` (the CLI then trains with use_cpu on every process).
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    assert world_sizes(launcher, tmp_path) == [2, 2]


def test_cli_trains_data_parallel_on_cpu_under_torchrun(tmp_path):
    # Without use_cpu, accelerate would set up no data parallelism on a machine without CUDA: each process would
    # train the whole run alone, all writing the same output_dir.
    assert world_sizes(torchrun(2), tmp_path) == [2, 2]


# ------------------------------------------------------------------------------------------------ multi-node launch

EXAMPLES = REPO / "examples" / "distributed"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_node_world_sizes(launchers: list[list[str]], tmp_path: Path) -> list[int]:
    """Start one launcher per "machine" (both on this one), and the world size every process reports."""
    processes = []
    for node, launcher in enumerate(launchers):
        workdir = tmp_path / f"node{node}"
        workdir.mkdir()
        command = [
            *launcher,
            str(DDP_FIXTURES / "world_size.py"),
            str(DDP_FIXTURES / "experiment.yaml"),
            "model.base_model=unused",
            f"training.output_dir={workdir}",
        ]
        processes.append(
            subprocess.Popen(
                command, cwd=workdir, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = [finish(process, f"node {node}") for node, process in enumerate(processes)]
    return sorted(
        json.loads(line)["world_size"]
        for output in outputs
        for line in output.replace("}{", "}\n{").splitlines()
        if line.startswith('{"rank"')
    )


def test_torchrun_multi_node_launch_as_documented(tmp_path):
    # docs/PERFORMANCE.md's command, with two "nodes" on this machine: c10d rendezvous at the first node's address.
    port = free_port()
    launchers = [
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=2",
            "--nproc_per_node=1",
            f"--node_rank={rank}",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint=127.0.0.1:{port}",
            "--rdzv_id=multitask-test",
        ]
        for rank in (0, 1)
    ]
    assert two_node_world_sizes(launchers, tmp_path) == [2, 2]


def test_accelerate_multi_node_example_config_launches(tmp_path):
    # examples/distributed/accelerate_multinode.yaml as written, but both "machines" here, one process each.
    port = free_port()
    launchers = [
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(EXAMPLES / "accelerate_multinode.yaml"),
            "--machine_rank",
            str(rank),
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            str(port),
            "--num_processes",
            "2",
        ]
        for rank in (0, 1)
    ]
    assert two_node_world_sizes(launchers, tmp_path) == [2, 2]
