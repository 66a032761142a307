"""The `smoke` benchmark of `run_quality.py`: a tiny random BERT and generated data, so the whole benchmark runs in
seconds anywhere (no download, no ../shared/data). Its numbers mean nothing; it checks that the harness still runs.

    python benchmarks/run_quality.py smoke --seeds 1

Three tasks, as the real benchmarks have: intent + slots trained jointly on the same sentences (ATIS/SNIPS, with
sentence accuracy), and a sentence-pair regression on its own data (GLUE's STS-B).
"""

import json
import random
from pathlib import Path

import yaml


CITIES = ["boston", "denver", "dallas", "oslo", "lisbon", "new york"]
DAYS = ["today", "tomorrow", "friday"]
TEMPLATES = {  # intent: sentence templates; {city} and {day} become slots
    "book": ["book a flight to {city} {day}", "show me flights to {city}"],
    "weather": ["what is the weather in {city}", "will it rain in {city} {day}"],
    "greet": ["hello", "hi there"],
}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPLIT_SIZES = {"train": 48, "dev": 12, "test": 12}


def tagged_sentence(rng: random.Random) -> dict:
    """One generated sentence: its words, their BIO tags and its intent."""
    intent = rng.choice(sorted(TEMPLATES))
    words, tags = [], []
    for word in rng.choice(TEMPLATES[intent]).split():
        if word in ("{city}", "{day}"):
            kind = word[1:-1]
            value = (rng.choice(CITIES) if kind == "city" else rng.choice(DAYS)).split()
            words += value
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(value) - 1)
        else:
            words.append(word)
            tags.append("O")
    return {"tokens": words, "tags": tags, "intent": intent}


def sentence_pair(rng: random.Random) -> dict:
    """Two generated sentences and a similarity score in 0-5 (higher when they share the intent)."""
    first, second = tagged_sentence(rng), tagged_sentence(rng)
    score = 4.0 if first["intent"] == second["intent"] else 1.0
    return {
        "sentence1": " ".join(first["tokens"]),
        "sentence2": " ".join(second["tokens"]),
        "score": score + rng.uniform(-0.5, 0.5),
    }


def vocabulary() -> list[str]:
    words = {word for templates in TEMPLATES.values() for template in templates for word in template.split()}
    words |= {word for value in CITIES + DAYS for word in value.split()}
    return SPECIAL_TOKENS + sorted(words - {"{city}", "{day}"})


def write_encoder(folder: Path) -> None:
    """A random BERT of the test suite's tiny size (transformers' BertModelTester) and a word-level vocabulary."""
    import torch
    from transformers import AutoModel, BertConfig, BertTokenizer

    vocab = vocabulary()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    AutoModel.from_config(config).save_pretrained(folder)
    BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True).save_pretrained(folder)


def write_smoke_experiment(folder: Path) -> Path:
    """Writes the encoder, the data and `smoke.yaml` into `folder`; returns the experiment file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_encoder(folder / "encoder")
    rng = random.Random(0)
    for split, size in SPLIT_SIZES.items():
        rows = [tagged_sentence(rng) for _ in range(size)]
        (folder / f"assistant_{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        pairs = [sentence_pair(rng) for _ in range(size)]
        (folder / f"pairs_{split}.jsonl").write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    assistant = {split: f"assistant_{name}.jsonl" for split, name in (("train", "train"), ("validation", "dev"))}
    assistant["test"] = "assistant_test.jsonl"
    pairs = {"train": "pairs_train.jsonl", "validation": "pairs_dev.jsonl", "test": "pairs_test.jsonl"}
    experiment = {
        "model": {"base_model": "encoder", "fusion": {"type": "attention"}},
        "tasks": [
            {
                "name": "intent",
                "type": "sequence_classification",
                "data": assistant,
                "text_column": "tokens",
                "label_column": "intent",
            },
            {
                "name": "slots",
                "type": "token_classification",
                "data": assistant,
                "label_column": "tags",
                "decoding": "bio",
            },
            {
                "name": "similarity",
                "type": "regression",
                "data": pairs,
                "text_column": "sentence1",
                "text_pair_column": "sentence2",
                "label_column": "score",
            },
        ],
        "training": {
            "output_dir": "unused",  # run_quality.py gives every run its own folder
            "num_train_epochs": 1,
            "per_device_train_batch_size": 8,
            "learning_rate": 1e-3,
            "disable_tqdm": True,
            "report_to": "none",
        },
    }
    path = folder / "smoke.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path
