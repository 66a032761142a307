"""Is one trained model better than another, or is the gap within the noise of the evaluation set? A paired bootstrap.

    python benchmarks/paired_bootstrap.py runs/benchmarks/glue/fusion_s1 runs/benchmarks/glue/no_fusion_s1 \\
        benchmarks/glue.yaml [--split validation] [--resamples 1000]

Both checkpoints predict the same split of the experiment, with its own data, metrics and decoding (the
library's `evaluate_model`). The examples are then drawn with replacement, the same rows for both models, and each draw's
metric difference (A − B) is kept: its 95% percentile interval shows how far the gap between two fixed models moves
with the choice of evaluation examples alone. A gap whose interval straddles zero is not evidence that either model
is better. The last column is the share of examples on which the two models' predictions differ (for classification
and token tasks): how much two runs disagree even where their scores agree.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap


REPO_ROOT = Path(__file__).resolve().parents[1]
for folder in (REPO_ROOT, REPO_ROOT / "benchmarks"):  # the library from this checkout, and the scripts beside us
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from fusion_weights import load_checkpoint  # noqa: E402

from modeling_multitask.training.data import prepare_data  # noqa: E402
from modeling_multitask.training.evaluation import evaluate_model  # noqa: E402
from modeling_multitask.training.experiment import load_experiment  # noqa: E402
from modeling_multitask.training.metrics import compute_task_metrics, primary_metric  # noqa: E402


def disagreement(task_type: str, a: np.ndarray, b: np.ndarray, gold: np.ndarray) -> float | None:
    """The share of examples whose predictions differ (any real token, for token tasks); None where predictions are
    continuous (regression, multi-label probabilities)."""
    if task_type == "sequence_classification":
        return float(np.mean(a != b))
    if task_type == "token_classification":
        return float(np.mean(np.any((a != b) & (gold != -100), axis=1)))
    return None


def compare(task, labels_names, a, b, gold, resamples: int, seed: int) -> dict:
    scores_a = compute_task_metrics(task.type, a, gold, labels_names)
    name = primary_metric(task.type, task.metrics)

    def metric(predictions, rows):
        return compute_task_metrics(task.type, predictions[rows], gold[rows], labels_names)[name]

    result = bootstrap(
        (np.arange(len(gold)),),
        lambda rows: metric(a, rows) - metric(b, rows),
        vectorized=False,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return {
        "metric": name,
        "a": scores_a[name],
        "b": compute_task_metrics(task.type, b, gold, labels_names)[name],
        "low": float(low),
        "high": float(high),
        "disagreement": disagreement(task.type, a, b, gold),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint_a")
    parser.add_argument("checkpoint_b")
    parser.add_argument("experiment")
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    model_a, tokenizer = load_checkpoint(args.checkpoint_a)
    model_b, _ = load_checkpoint(args.checkpoint_b)
    if model_a.config.tasks != model_b.config.tasks:
        print(
            f"error: {args.checkpoint_a} and {args.checkpoint_b} have different tasks or label lists "
            f"({model_a.config.task_names} vs {model_b.config.task_names}); compare two models of one experiment.",
            file=sys.stderr,
        )
        return 2
    experiment = load_experiment(Path(args.experiment))
    prepared = prepare_data(experiment, tokenizer)  # both models share the encoder's tokenizer (checked above)
    # Each model's predictions on the split, from the library's evaluation (its metrics and tag decoding).
    _, evaluated_a = evaluate_model(model_a, tokenizer, experiment, prepared, splits=(args.split,))
    _, evaluated_b = evaluate_model(model_b, tokenizer, experiment, prepared, splits=(args.split,))

    print(f"A = {args.checkpoint_a}, B = {args.checkpoint_b}: {args.split} split of {args.experiment}")
    print(f"{args.resamples} paired bootstrap resamples of the examples; 95% percentile interval of A − B")
    print("| task | metric | A | B | A − B | 95% interval | predictions differ |")
    print("|---|---|---|---|---|---|---|")
    for task in experiment.tasks:
        if task.name not in evaluated_a.last_eval_predictions:
            continue
        a, gold = evaluated_a.last_eval_predictions[task.name]
        b, _ = evaluated_b.last_eval_predictions[task.name]
        row = compare(task, prepared.labels[task.name], a, b, gold, args.resamples, args.seed)
        scale = 1 if row["metric"] == "mse" else 100
        differ = "–" if row["disagreement"] is None else f"{row['disagreement'] * 100:.1f}%"
        print(
            f"| {task.name} | {row['metric']} | {row['a'] * scale:.2f} | {row['b'] * scale:.2f} | "
            f"{(row['a'] - row['b']) * scale:+.2f} | [{row['low'] * scale:+.2f}, {row['high'] * scale:+.2f}] | "
            f"{differ} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
