"""Does a trained model need its learned fusion weights? Scores with them, and with uniform weights in their place.

    python benchmarks/fusion_ablation.py runs/benchmarks/glue/fusion_s1 benchmarks/glue.yaml [--split validation]

Uniform weights (1 / length on every real token) turn AttentionFusion into mean pooling for sequence heads and into
the identity for token heads, so the difference between the two columns is what the learned weights add at inference
time. The data and metrics are the experiment file's own (`prepare_data`, `compute_task_metrics`).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


REPO_ROOT = Path(__file__).resolve().parents[1]
for folder in (REPO_ROOT, REPO_ROOT / "benchmarks"):  # the library from this checkout, and fusion_weights beside us
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from fusion_weights import load_fusion_model  # noqa: E402

from modeling_multitask.training.collator import MultiTaskDataCollator  # noqa: E402
from modeling_multitask.training.data import prepare_data  # noqa: E402
from modeling_multitask.training.experiment import load_experiment  # noqa: E402
from modeling_multitask.training.metrics import compute_task_metrics, reduce_logits  # noqa: E402


def uniform_weights(hidden, task_id, attention_mask=None, projected_tokens=None):
    mask = (
        torch.ones(hidden.shape[:2], dtype=hidden.dtype) if attention_mask is None else attention_mask.to(hidden.dtype)
    )
    return mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0)


def pad(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate per-batch (batch, seq) arrays of different seq lengths, padding with -100."""
    width = max(a.shape[1] for a in arrays)
    return np.concatenate([np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-100) for a in arrays])


def predict(model, features: list[dict], task, collator, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The model's reduced predictions (ids, probabilities or values) for one task's features, and the gold labels;
    token-level arrays are padded with -100 to the longest example."""
    index = model.config.task_names.index(task.name)
    label_names = model.config.tasks[index]["labels"]
    predictions, gold = [], []
    for start in range(0, len(features), batch_size):
        batch = collator(features[start : start + batch_size])
        labels = batch.pop("labels")
        labels = labels[task.name] if isinstance(labels, dict) else labels
        batch["task_ids"] = index
        with torch.no_grad():
            logits = model(**batch).task_logits[task.name]
        # Tags are decoded as the experiment file says (a checkpoint can be rescored with another decoding).
        predictions.append(reduce_logits(task.type, logits, labels != -100, label_names, task.decoding).numpy())
        gold.append(labels.numpy())
    if task.is_token_level:
        return pad(predictions), pad(gold)
    return np.concatenate(predictions), np.concatenate(gold)


def score(model, features: list[dict], task, labels_names, collator) -> dict[str, float]:
    return compute_task_metrics(task.type, *predict(model, features, task, collator), labels_names)


def headline_metric(task, metrics: dict[str, float]) -> str:
    """The metric a task is judged by: the first one its experiment entry lists, else the first one computed."""
    return task.metrics[0] if task.metrics else next(iter(metrics))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("experiment")
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    args = parser.parse_args(argv)

    model, tokenizer = load_fusion_model(args.checkpoint)
    experiment = load_experiment(Path(args.experiment))
    prepared = prepare_data(experiment, tokenizer)
    collator = MultiTaskDataCollator(tokenizer)

    print(f"{args.checkpoint}, {args.split} split of {args.experiment}")
    print("| task | metric | learned weights | uniform weights | learned − uniform |")
    print("|---|---|---|---|---|")
    learned_weights = model.fusion.attention_weights
    for task in experiment.tasks:
        features = getattr(prepared, args.split).get(task.name)
        if not features:
            continue
        model.fusion.attention_weights = learned_weights
        learned = score(model, features, task, prepared.labels[task.name], collator)
        model.fusion.attention_weights = uniform_weights
        uniform = score(model, features, task, prepared.labels[task.name], collator)
        metric = headline_metric(task, learned)
        scale = 1 if metric == "mse" else 100
        print(
            f"| {task.name} | {metric} | {learned[metric] * scale:.2f} | {uniform[metric] * scale:.2f} | "
            f"{(learned[metric] - uniform[metric]) * scale:+.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
