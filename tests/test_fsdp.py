"""Sharded training (FSDP) on this CPU-only platform, and a sharded checkpoint loading through remote code.

What runs here, and what cannot (docs/PERFORMANCE.md, "Sharded training (FSDP)"):
- `TrainingArguments(fsdp=...)` on CPU does not shard: accelerate 1.15 (`AcceleratorState.__init__`) turns an FSDP
  plugin into `DistributedType.FSDP` only for accelerator back ends (CUDA, XPU, NPU, ...). With `use_cpu` the type
  stays `MULTI_CPU`, the plugin is dropped without a word, and the Trainer wraps the model in plain DDP
  (`multitask-train ... --set training.fsdp=full_shard` under `torchrun --nproc_per_node 2`: the model reaching
  `compute_loss` is a `DistributedDataParallel`, `trainer.is_fsdp_enabled` is False).
- FSDP2 itself (`torch.distributed.fsdp.fully_shard`, what accelerate uses with `fsdp_version: 2`) runs on CPU with
  gloo. tests/fixtures/fsdp/train_fsdp.py trains the multi-task model with it in 2 processes, gathers the full state
  dict and saves it as a multi-file safetensors checkpoint; this test checks that the parameters were sharded, that
  the losses match one unsharded process on the same global batches, and that the checkpoint loads through
  `AutoModel.from_pretrained(..., trust_remote_code=True)` in a fresh process and predicts what the unsharded run's
  checkpoint predicts.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, random_batch, run_fresh
from test_distributed import environment, finish


REPO = Path(__file__).resolve().parents[1]
SCRIPT = FIXTURES / "fsdp" / "train_fsdp.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The 2-process FSDP run and the 1-process run, started together (one thread each)."""
    folders = {mode: tmp_path_factory.mktemp(mode) for mode in ("fsdp", "single")}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    commands = {
        "fsdp": [*torchrun, str(SCRIPT), str(folders["fsdp"])],
        "single": [sys.executable, str(SCRIPT), str(folders["single"])],
    }
    processes = {
        mode: subprocess.Popen(
            command, cwd=folders[mode], env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for mode, command in commands.items()
    }
    for mode, process in processes.items():
        finish(process, f"the {mode} run")
    return folders


def records(folder: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob("record*.json"))]


def load_fresh(checkpoint: Path, inputs: dict, tmp_path: Path) -> dict:
    """Every task's logits from the checkpoint loaded in a fresh process that cannot import this project."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return run_fresh(checkpoint, inputs, tmp_path)[1]


def test_fsdp_shards_the_parameters_over_both_ranks(runs):
    ranks = records(runs["fsdp"])
    assert [record["world_size"] for record in ranks] == [2, 2]
    assert {record["parameter_class"] for record in ranks} == {"DTensor"}
    full = ranks[0]["full_elements"]
    # Each rank holds about half of every parameter (dim-0 shards; odd sizes round up on rank 0).
    assert sum(record["local_elements"] for record in ranks) == full
    assert all(record["local_elements"] < 0.6 * full for record in ranks)


def test_fsdp_losses_match_one_unsharded_process(runs):
    sharded = records(runs["fsdp"])
    single = records(runs["single"])[0]["losses"]
    assert sharded[0]["losses"] == sharded[1]["losses"]  # averaged over the ranks
    assert sharded[0]["losses"] == pytest.approx(single, rel=1e-4, abs=1e-6)
    assert len(single) == 6


def test_sharded_checkpoint_loads_through_remote_code_and_matches(runs, tmp_path):
    checkpoint = runs["fsdp"] / "checkpoint"
    index = json.loads((checkpoint / "model.safetensors.index.json").read_text())
    shards = sorted(checkpoint.glob("model-*.safetensors"))
    assert len(shards) >= 2 and set(index["weight_map"].values()) == {path.name for path in shards}
    assert not (checkpoint / "model.safetensors").exists()

    input_ids, attention_mask = random_batch()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    from_fsdp = load_fresh(checkpoint, inputs, tmp_path / "fsdp")
    from_single = load_fresh(runs["single"] / "checkpoint", inputs, tmp_path / "single")
    assert sorted(from_fsdp) == ["intent", "slots"]
    for task in from_fsdp:
        torch.testing.assert_close(from_fsdp[task], from_single[task], rtol=1e-4, atol=1e-5)
    # Trained: the checkpoint is not the initial model.
    untrained = load_fresh_initial(inputs)
    assert not torch.allclose(from_fsdp["intent"], untrained["intent"], atol=1e-3)


def load_fresh_initial(inputs: dict) -> dict:
    """The same model before training, in this process (the fixture script's `build_model`)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from train_fsdp import build_model
    finally:
        sys.path.remove(str(SCRIPT.parent))
    model = build_model().eval()
    with torch.no_grad():
        return {name: model(**inputs, task_ids=i).logits for i, name in enumerate(model.config.task_names)}


def test_example_accelerate_fsdp_config_gives_the_fsdp2_plugin_it_documents(monkeypatch):
    # What `accelerate launch --config_file examples/distributed/accelerate_fsdp.yaml` hands the training processes
    # (its environment), and the plugin the Trainer's Accelerator builds from it. FSDP itself needs GPUs (above).
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin, prepare_multi_gpu_env
    from conftest import TASKS, tiny_bert_config

    from modeling_multitask import MultiTaskConfig, MultiTaskModel

    config_file = REPO / "examples" / "distributed" / "accelerate_fsdp.yaml"
    parsed = launch_command_parser().parse_args(["--config_file", str(config_file), "--machine_rank", "1", "train.py"])
    args, _, _ = _validate_launch_command(parsed)
    assert (args.num_machines, args.machine_rank, args.num_processes) == (2, 1, 16)
    environment = prepare_multi_gpu_env(args)
    assert environment["ACCELERATE_USE_FSDP"] == "true"
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    # The layer class it wraps is the one a BERT-encoder multi-task model is made of.
    model = MultiTaskModel(MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS))
    assert set(plugin.transformer_cls_names_to_wrap) <= {type(module).__name__ for module in model.modules()}
