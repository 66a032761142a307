"""Shared fixtures: tiny random encoders (the sizes of transformers' BertModelTester) and a tiny tokenizer."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, BertConfig, BertTokenizer, DistilBertConfig


FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

PROJECT_PACKAGES = ("configuration_multitask", "modeling_multitask")
# Opens the scripts run with `python -I` by the remote-code tests: this project's packages cannot be imported there,
# so only the copies shipped inside a checkpoint or Hub repo can be used.
BLOCK_PROJECT_IMPORTS = f"""
import sys
class _BlockProject:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {PROJECT_PACKAGES!r}:
            raise ImportError("project package " + name + " must not be importable here")
sys.meta_path.insert(0, _BlockProject())
"""

TASKS = [
    {"name": "intent", "type": "sequence_classification", "labels": ["greet", "book", "weather"]},
    {"name": "slots", "type": "token_classification", "labels": ["O", "B-city", "I-city"]},
    {"name": "similarity", "type": "regression", "loss_weight": 0.5},
    {"name": "topics", "type": "multi_label_classification", "labels": ["travel", "music", "food", "sport"]},
]


def tiny_bert_config(**kwargs) -> BertConfig:
    defaults = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    return BertConfig(**{**defaults, **kwargs})


def tiny_distilbert_config(**kwargs) -> DistilBertConfig:
    defaults = dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64)
    return DistilBertConfig(**{**defaults, **kwargs})


ENCODER_CONFIGS = {"bert": tiny_bert_config, "distilbert": tiny_distilbert_config}


@pytest.fixture(params=sorted(ENCODER_CONFIGS))
def encoder_config(request):
    return ENCODER_CONFIGS[request.param]()


def fixture_tokenizer() -> BertTokenizer:
    """A WordPiece tokenizer over the tiny vocabulary in `tests/fixtures/vocab.txt`."""
    vocab = {token: i for i, token in enumerate((FIXTURES / "vocab.txt").read_text().split())}
    return BertTokenizer(vocab=vocab, do_lower_case=True)


@pytest.fixture
def tiny_tokenizer():
    return fixture_tokenizer()


def save_tiny_encoder(folder: Path, weights: bool = True, tokenizer: bool = True) -> Path:
    """A `base_model` folder: a tiny random BERT (64 positions) and the fixture tokenizer; leave either out to make
    a broken one."""
    if weights:
        AutoModel.from_config(tiny_bert_config()).save_pretrained(folder)
    else:
        tiny_bert_config().save_pretrained(folder)
    if tokenizer:
        fixture_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A tiny random BERT encoder folder with its tokenizer, for training through the CLI."""
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


def random_batch(batch_size=6, seq_len=9, vocab_size=99, seed=0):
    """Random ids with ragged padding: example i has seq_len - (i % 3) real tokens."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab_size, (batch_size, seq_len), generator=generator)
    attention_mask = torch.ones(batch_size, seq_len, dtype=torch.long)
    for i in range(batch_size):
        attention_mask[i, seq_len - (i % 3) :] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    return input_ids, attention_mask


# Runs in `python -I`: our packages are blocked outright, so only the checkpoint's own copies can be used.
FRESH_LOAD = (
    BLOCK_PROJECT_IMPORTS
    + """
import sys, json
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
checkpoint, inputs = sys.argv[1], torch.load(sys.argv[2])
config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=True)
model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
import os
has_tokenizer = os.path.exists(os.path.join(checkpoint, "tokenizer_config.json"))
tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=True) if has_tokenizer else None
assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
outputs = {}
with torch.no_grad():
    for task in range(config.num_tasks):
        outputs[config.tasks[task]["name"]] = model(**inputs, task_ids=task).logits
torch.save(outputs, sys.argv[3])
tokens = tokenizer.tokenize("Show me flights to Boston") if tokenizer else None
print(json.dumps({"class": type(model).__name__, "tokens": tokens}))
"""
)


def run_fresh(checkpoint: Path, inputs: dict, tmp_path: Path) -> tuple[dict, dict]:
    torch.save(inputs, tmp_path / "inputs.pt")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            FRESH_LOAD,
            str(checkpoint),
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "outputs.pt"),
        ],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), torch.load(tmp_path / "outputs.pt")


@pytest.fixture(autouse=True)
def _own_data_cache(tmp_path_factory, monkeypatch):
    """Each test gets an empty data cache (`$MULTITASK_CACHE`, inherited by the CLI subprocesses it starts): one test's
    cached features never stand in for another's tokenising (their warnings, their counted `tokenize` calls)."""
    monkeypatch.setenv("MULTITASK_CACHE", str(tmp_path_factory.mktemp("data-cache")))
