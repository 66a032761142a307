"""The main job on the embedded default: train, report per-task metrics, save, reload in a fresh process, predict.

    python scripts/run_default.py [--set training.num_train_epochs=2 ...]

1. trains examples/default/experiment.yaml (intent + slots jointly, and sentiment, on all-MiniLM-L6-v2 with
   AttentionFusion) through the `multitask-train` CLI, which prints per-task metrics and saves the checkpoint;
2. starts a fresh `python -I` process in another directory, where this project cannot be imported, that loads the
   checkpoint with `AutoModel.from_pretrained(..., trust_remote_code=True)` and, through the multi-task pipeline
   shipped in the checkpoint, predicts every task for a few new sentences from one encoder pass per sentence.
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
from transformers import AutoModel, pipeline

checkpoint, sentences = sys.argv[1], json.loads(sys.argv[2])
model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
print(f"reloaded {type(model).__module__}.{type(model).__name__} with tasks {model.config.task_names}")
# The multi-task pipeline ships inside the checkpoint too: every task from one encoder pass per sentence.
predict = pipeline(model=checkpoint, trust_remote_code=True)
for sentence, prediction in zip(sentences, predict(sentences)):
    shown = {"text": sentence}
    for task, result in prediction.items():
        if "entities" in result:
            shown[task] = [f"{e['word']}={e['entity']}" for e in result["entities"]]
        elif "label" in result:
            shown[task] = f"{result['label']} ({result['score']:.2f})"
        else:
            shown[task] = result
    print(json.dumps(shown))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="experiment overrides")
    parser.add_argument("--output-dir", default=str(ROOT / "runs" / "default"))
    args = parser.parse_args(argv)

    from modeling_multitask.training.cli import main as train

    print(f"== 1. training {EXPERIMENT.relative_to(ROOT)}", flush=True)
    code = train(
        [
            str(EXPERIMENT),
            "--overwrite",
            "--set",
            f"training.output_dir={args.output_dir}",
            *sum((["--set", override] for override in args.set), []),
        ]
    )
    if code != 0:
        return code

    print("\n== 2. reloading the checkpoint in a fresh process (AutoModel, trust_remote_code=True)", flush=True)
    with tempfile.TemporaryDirectory() as elsewhere:
        result = subprocess.run(
            [
                sys.executable,
                "-I",
                "-c",
                RELOAD_AND_PREDICT,
                str(Path(args.output_dir).resolve()),
                json.dumps(NEW_SENTENCES),
            ],
            cwd=elsewhere,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
    print(result.stdout, end="")
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
