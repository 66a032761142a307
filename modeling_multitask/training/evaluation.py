"""Scoring a model on an experiment's evaluation splits: the one evaluation the training CLI, re-scoring and the
benchmarks share.

`evaluate_model` runs [`MultiTaskTrainer.evaluate`] on every task's validation and test data (where given), with the
experiment's metrics and tag decoding, and returns per-task metrics, the combined score and JointBERT's sentence
accuracy. It takes any model that `MultiTaskTrainer` can evaluate: a `MultiTaskModel`, or a transformers single-task
model (`AutoModelFor...`) for one task, which is how the benchmarks score their single-task baselines.
"""

import tempfile
from pathlib import Path

from transformers import AutoTokenizer

from ..hub import type_summary
from .collator import MultiTaskDataCollator
from .data import PreparedData, prepare_data
from .experiment import TRAINING_DEFAULTS, Experiment, ExperimentError
from .metrics import examples_correct, load_evaluate_metric
from .trainer import FeatureDataset, MultiTaskTrainer, TaskInfo


SPLITS = ("validation", "test")


def evaluation_settings(experiment: Experiment, labels: dict | None = None) -> list[TaskInfo]:
    """What evaluating each task needs; `labels` (task -> label names, known once the data is read) fills them in.
    `evaluate:` metrics load here, so an unreachable one fails before training."""
    task_infos = [
        TaskInfo(task.name, task.type, None, list(task.metrics or []), settings=dict(task.settings))
        for task in experiment.tasks
    ]
    for info in task_infos:
        info.extra_metrics = {m: load_evaluate_metric(m) for m in info.metrics if m.startswith("evaluate:")}
        info.metrics = [m for m in info.metrics if not m.startswith("evaluate:")]
        if labels is not None:
            info.labels = labels[info.name]
    return task_infos


def per_task(metrics: dict[str, float], prefix: str, task_names: list[str]) -> dict[str, dict[str, float]]:
    """`{task: {metric: value}}` from the Trainer's flat `<prefix>_<task>_<metric>` keys."""
    table = {}
    # By the longest task name a key starts with: `eval_ner_fine_f1` is ner_fine's f1, not ner's "fine_f1".
    by_length = sorted(task_names, key=len, reverse=True)
    for key, value in metrics.items():
        name = next((name for name in by_length if key.startswith(f"{prefix}_{name}_")), None)
        if name is not None:
            table.setdefault(name, {})[key[len(f"{prefix}_{name}_") :]] = value
    return {name: table[name] for name in task_names if table.get(name)}


def jointly_judged(group) -> list[str]:
    """The tasks of a group trained jointly on the same examples (ATIS's intent and slots) whose type judges an example
    right or wrong as a whole (`TaskType.example_correct`): what JointBERT's sentence accuracy combines, when two or
    more. Regression and multi-label tasks are left out."""
    judged = [task.name for task in group.tasks if task.definition.example_correct is not None]
    return judged if len(judged) >= 2 else []


def joint_sentence_accuracy(trainer: MultiTaskTrainer, prepared: PreparedData) -> dict[str, float]:
    """For each group's jointly judged tasks (see [`jointly_judged`]): JointBERT's sentence accuracy, the share of
    examples that all of them get exactly right, from the last evaluation's predictions, named `<task>+<task>`."""
    results = {}
    scored = trainer.last_eval_predictions
    infos = {task.name: task for task in trainer.tasks}
    for group in prepared.groups:
        judged = jointly_judged(group)
        if judged and all(name in scored and name in infos for name in judged):
            results["+".join(judged)] = examples_correct([(infos[name].view, *scored[name]) for name in judged])
    return results


def evaluation_data(prepared: PreparedData, split: str, names: list[str], cap: int | None = None) -> dict:
    """`{task: dataset}` of one evaluation split, each task cut to its first `cap` examples
    (`sampling.eval_max_examples_per_task`: with hundreds of tasks, evaluation stays affordable)."""
    return {
        name: FeatureDataset(_first(features, cap) if cap else features)
        for name, features in getattr(prepared, split).items()
        if name in names
    }


def _first(features, count: int):
    """The first `count` features: of an Arrow `datasets.Dataset` (`select`), or of a list."""
    if hasattr(features, "select"):
        return features.select(range(min(count, len(features))))
    return features[:count]


def evaluate_splits(
    trainer: MultiTaskTrainer, prepared: PreparedData, names: list[str], splits=SPLITS, cap: int | None = None
) -> dict:
    """Every task's metrics on each of `splits` the data has (each task's first `cap` examples, when given), their
    combined score and sentence accuracy."""
    results = {}
    # Each task's primary metric, and per task type a summary of it (mean, lowest and highest task): what a reader
    # of a many-task run looks at first, and what the model card shows.
    primaries = {task.name: task.primary_metric for task in trainer.tasks if task.name in names}
    tasks = [{"name": task.name, "type": task.type} for task in trainer.tasks if task.name in names]
    for split in splits:
        data = evaluation_data(prepared, split, names, cap)
        if not data:
            continue
        trainer.last_eval_predictions.clear()  # this split's predictions only
        split_metrics = trainer.evaluate(data, metric_key_prefix=split)
        results[split] = per_task(split_metrics, split, names)
        results[f"{split}_summary"] = type_summary(results[split], tasks, primaries)
        if f"{split}_combined_score" in split_metrics:
            results[f"{split}_combined_score"] = split_metrics[f"{split}_combined_score"]
        accuracy = joint_sentence_accuracy(trainer, prepared)
        if accuracy:
            results[f"{split}_sentence_accuracy"] = accuracy
    if results:
        results["primary_metrics"] = primaries
    return results


def evaluate_model(
    model, tokenizer, experiment: Experiment, prepared: PreparedData, splits=SPLITS
) -> tuple[dict, MultiTaskTrainer]:
    """Score `model` on the experiment's `splits` under its evaluation settings (metrics, tag decoding, batch size).

    `model` predicts every task of `experiment` (a `MultiTaskModel`), or its one task (a single-task transformers
    model, with `experiment` cut to that task). Returns the results, as `metrics.json` holds them, and the trainer,
    whose `last_eval_predictions` holds the last split's predictions and gold labels per task.
    """
    names = [task.name for task in experiment.tasks]
    with tempfile.TemporaryDirectory() as scratch:
        settings = {**TRAINING_DEFAULTS, **experiment.training, "output_dir": scratch, "report_to": "none"}
        trainer = MultiTaskTrainer(
            model=model,
            args=experiment.training_arguments(**settings),
            data_collator=MultiTaskDataCollator(
                tokenizer, task_types=[t.type for t in experiment.tasks], task_names=names
            ),
            processing_class=tokenizer,
            group_sizes=[],
            tasks=evaluation_settings(experiment, prepared.labels),
        )
        cap = experiment.sampling.eval_max_examples_per_task
        return evaluate_splits(trainer, prepared, names, splits, cap), trainer


def evaluate_checkpoint(experiment: Experiment, checkpoint: Path | str) -> dict:
    """Score a trained checkpoint as the training CLI does after training, under the experiment's current evaluation
    settings (data splits, metrics, tag decoding): how a finished run is re-scored when only its scoring changes."""
    from modeling_multitask import MultiTaskModel

    checkpoint = Path(checkpoint)
    model = MultiTaskModel.from_pretrained(checkpoint).eval()
    names = [task.name for task in experiment.tasks]
    if model.config.task_names != names:
        raise ExperimentError(
            f"{checkpoint} has tasks {model.config.task_names}, but the experiment lists {names}: score a checkpoint "
            "with the experiment file it was trained from."
        )
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    prepared = prepare_data(experiment, tokenizer)
    for name in names:
        trained = model.config.task(name).labels
        if prepared.labels[name] != (None if trained is None else list(trained)):
            raise ExperimentError(f"{checkpoint}: task {name!r} was trained with other labels than the data's.")
    results, _ = evaluate_model(model, tokenizer, experiment, prepared)
    return {**results, "truncated_examples": prepared.truncated}
