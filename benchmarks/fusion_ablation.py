"""Does a trained model need its learned fusion weights? Scores with them, and with uniform weights in their place.

    python benchmarks/fusion_ablation.py runs/benchmarks/glue/fusion_s1 benchmarks/glue.yaml [--split validation]

Uniform weights (1 / length on every real token) turn AttentionFusion into mean pooling for sequence heads and into
the identity for token heads, so the difference between the two columns is what the learned weights add at inference
time. The data, metrics and scoring are the experiment file's own, through the library's `evaluate_model`.
"""

import argparse
import sys
from pathlib import Path

import torch


REPO_ROOT = Path(__file__).resolve().parents[1]
for folder in (REPO_ROOT, REPO_ROOT / "benchmarks"):  # the library from this checkout, and fusion_weights beside us
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from fusion_weights import load_fusion_model  # noqa: E402

from modeling_multitask.training.data import prepare_data  # noqa: E402
from modeling_multitask.training.evaluation import evaluate_model  # noqa: E402
from modeling_multitask.training.experiment import load_experiment  # noqa: E402
from modeling_multitask.training.metrics import primary_metric  # noqa: E402


def uniform_weights(hidden, task_id, attention_mask=None, projected_tokens=None):
    mask = (
        torch.ones(hidden.shape[:2], dtype=hidden.dtype) if attention_mask is None else attention_mask.to(hidden.dtype)
    )
    return mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("experiment")
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    args = parser.parse_args(argv)

    model, tokenizer = load_fusion_model(args.checkpoint)
    experiment = load_experiment(Path(args.experiment))
    prepared = prepare_data(experiment, tokenizer)
    # The library's evaluation (metrics, decoding, truncation rule) with the learned weights, then with uniform ones.
    learned, _ = evaluate_model(model, tokenizer, experiment, prepared, splits=(args.split,))
    model.fusion.attention_weights = uniform_weights
    uniform, _ = evaluate_model(model, tokenizer, experiment, prepared, splits=(args.split,))

    print(f"{args.checkpoint}, {args.split} split of {args.experiment}")
    print("| task | metric | learned weights | uniform weights | learned − uniform |")
    print("|---|---|---|---|---|")
    for task in experiment.tasks:
        if task.name not in learned.get(args.split, {}):
            continue
        metric = primary_metric(task.type, task.metrics)
        with_learned, with_uniform = learned[args.split][task.name][metric], uniform[args.split][task.name][metric]
        scale = 1 if metric == "mse" else 100
        print(
            f"| {task.name} | {metric} | {with_learned * scale:.2f} | {with_uniform * scale:.2f} | "
            f"{(with_learned - with_uniform) * scale:+.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
