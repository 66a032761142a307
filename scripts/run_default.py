"""The main job on the embedded default: train, report per-task metrics, save, reload in a fresh process, predict.

    python scripts/run_default.py [--set training.num_train_epochs=2 ...]

1. trains examples/default/experiment.yaml (intent + slots jointly, and sentiment, on all-MiniLM-L6-v2 with
   AttentionFusion) through the `multitask-train` CLI, which prints per-task metrics and saves the checkpoint;
2. starts a fresh `python -I` process in another directory, where this project cannot be imported, that loads the
   checkpoint with `AutoModel.from_pretrained(..., trust_remote_code=True)` and predicts every task for a few new
   sentences from one encoder pass per sentence.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "examples" / "default" / "experiment.yaml"
NEW_SENTENCES = [
    "book a flight from lisbon to tokyo on friday",
    "will it rain in oslo tomorrow",
    "play karma police by radiohead",
    "what a wonderful museum to be honest",
    "the hotel was a real letdown, again",
]

# Runs in a fresh interpreter: only torch and transformers, plus the code shipped inside the checkpoint.
RELOAD_AND_PREDICT = r"""
import json, sys
import torch
from transformers import AutoModel, AutoTokenizer

checkpoint, sentences = sys.argv[1], json.loads(sys.argv[2])
model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=True)
print(f"reloaded {type(model).__module__}.{type(model).__name__} with tasks {model.config.task_names}")
for sentence in sentences:
    words = sentence.split()
    inputs = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).task_logits  # every task from one encoder pass
    result = {"text": sentence}
    for task in model.config.tasks:
        names = model.config.task_id2label(task["name"])
        scores = logits[task["name"]][0]
        if task["type"] == "token_classification":
            ids, seen, tags = scores.argmax(-1).tolist(), set(), []
            for position, word in enumerate(inputs.word_ids(0)):
                if word is not None and word not in seen:
                    seen.add(word)
                    tags.append(names[ids[position]])
            result[task["name"]] = " ".join(f"{w}/{t}" if t != "O" else w for w, t in zip(words, tags))
        elif task["type"] == "sequence_classification":
            probabilities = scores.softmax(-1)
            result[task["name"]] = f"{names[int(probabilities.argmax())]} ({probabilities.max():.2f})"
        else:
            result[task["name"]] = scores.tolist()
    print(json.dumps(result))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="experiment overrides")
    parser.add_argument("--output-dir", default=str(ROOT / "runs" / "default"))
    args = parser.parse_args(argv)

    from modeling_multitask.training.cli import main as train

    print(f"== 1. training {EXPERIMENT.relative_to(ROOT)}", flush=True)
    code = train([str(EXPERIMENT), "--overwrite", "--set", f"training.output_dir={args.output_dir}", *sum(
        (["--set", override] for override in args.set), [])])
    if code != 0:
        return code

    print("\n== 2. reloading the checkpoint in a fresh process (AutoModel, trust_remote_code=True)", flush=True)
    with tempfile.TemporaryDirectory() as elsewhere:
        result = subprocess.run(
            [sys.executable, "-I", "-c", RELOAD_AND_PREDICT, str(Path(args.output_dir).resolve()),
             json.dumps(NEW_SENTENCES)],
            cwd=elsewhere, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
    print(result.stdout, end="")
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
