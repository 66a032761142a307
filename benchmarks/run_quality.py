"""Real-data quality benchmark: one shared multi-task model against single-task baselines, on the same data and budget.

    python benchmarks/run_quality.py atis [--seeds 1 2 3] [--variants fusion,no_fusion,single_task] [--epochs 3]
                                         [--set training.learning_rate=1e-4 ...] [--threads 1 | --jobs 2]

BENCHMARK is `atis`, `snips`, `glue`, `squad`, `csqa`, `mixed` (the experiment files next to this script), the path of
any experiment file,
or `smoke`: a tiny random encoder and generated data (`smoke_data.py`), a few seconds per seed, which checks that the
harness runs (its numbers mean nothing; its results go under `--runs-dir`, not to benchmarks/results).
For every seed it trains
  fusion       the multi-task model of the experiment file (AttentionFusion), through `multitask-train`;
  no_fusion    the same with `--set model.fusion=null` (heads read the mean-pooled / token encoder output);
  single_task  one standard transformers model per task (the task type's `transformers_model`:
               `AutoModelForSequenceClassification`, `...ForTokenClassification`, `...ForQuestionAnswering`,
               `...ForMultipleChoice`) + `Trainer` on the same encoder, data, tokenisation, epochs, learning rate,
               batch size and schedule;
and writes `benchmarks/results/<name>.json` (every run, with its metrics, wall time and command) and
`benchmarks/results/<name>.md` (mean ± sample std over seeds of each task's published-protocol metric).
Runs accumulate: a later call with other seeds or variants adds to the results of earlier calls made with the same
settings (a call with different settings starts the results again). Calls for the same benchmark may run at the
same time, e.g. one single-threaded call per core: each run is merged into the files under a lock. `--jobs 2` does
that for you: every (seed, variant) becomes its own single-threaded call, two at a time.

Where `../shared/data` (next to the repository) or a data file of the experiment is absent, it prints why and exits
with status 0 without training anything.
"""

import argparse
import dataclasses
import fcntl
import json
import logging
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers.utils import ModelOutput


REPO_ROOT = Path(__file__).resolve().parents[1]
for folder in (REPO_ROOT, REPO_ROOT / "benchmarks"):  # the library from this checkout, and smoke_data beside us
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from modeling_multitask.training.experiment import Experiment, TaskSpec, load_experiment  # noqa: E402


logger = logging.getLogger("run_quality")

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
BENCHMARKS = {
    name: Path(__file__).resolve().parent / f"{name}.yaml"
    for name in ("atis", "snips", "glue", "squad", "csqa", "mixed")
}
VARIANTS = ("fusion", "no_fusion", "single_task")
DEFAULT_SEEDS = [1, 2, 3]

# The split and metrics each published table uses (README of ../shared/data). A benchmark not listed here (any
# other experiment file) is scored on test where every task has one, else on validation, with each task's primary
# metric (the first of its `metrics`, else the task type's default) or the metrics its type reports
# (`TaskType.reported_metrics`: Pearson and Spearman for regression, exact match and F1 for question answering), and
# sentence accuracy for joint sentence + token groups.
PROTOCOLS = {
    "atis": {
        "split": "test",
        "metrics": [("intent", "accuracy"), ("slots", "f1"), ("intent+slots", "sentence_accuracy")],
    },
    "snips": {
        "split": "test",
        "metrics": [("intent", "accuracy"), ("slots", "f1"), ("intent+slots", "sentence_accuracy")],
    },
    "glue": {
        "split": "validation",
        "metrics": [
            ("sst2", "accuracy"),
            ("cola", "mcc"),
            ("stsb", "pearson"),
            ("stsb", "spearman"),
            ("stsb", "pearson_spearman"),
        ],
    },
}
PUBLISHED = {
    "atis": {
        ("intent", "accuracy"): "97.5 (JointBERT)",
        ("slots", "f1"): "96.1 (JointBERT)",
        ("intent+slots", "sentence_accuracy"): "88.2 (JointBERT)",
    },
    "snips": {
        ("intent", "accuracy"): "98.6 (JointBERT)",
        ("slots", "f1"): "97.0 (JointBERT)",
        ("intent+slots", "sentence_accuracy"): "92.8 (JointBERT)",
    },
    "glue": {
        ("sst2", "accuracy"): "91.3 DistilBERT / 92.7 BERT-base",
        ("cola", "mcc"): "51.3 / 56.3",
        ("stsb", "pearson_spearman"): "86.9 / 89.0",
    },
}


# ------------------------------------------------------------------------------------------------------ data check


def data_files(experiment: Experiment) -> list[Path]:
    """Every local file the experiment reads (label files are read when it is parsed, so they exist already)."""
    paths = []
    for task in experiment.tasks:
        for location in task.data.files.values():
            paths.extend(location.values() if isinstance(location, dict) else [location])
    return paths


def skip_reason(experiment_path: Path, overrides: list[str]) -> str | None:
    """Why this benchmark cannot run here, or None."""
    from modeling_multitask.training.experiment import ExperimentError

    if experiment_path.parent == BENCHMARKS["atis"].parent and not SHARED_DATA.is_dir():
        return f"the benchmark data folder {SHARED_DATA} is absent (see the README of shared/data)."
    try:
        experiment = load_experiment(experiment_path, overrides)
    except ExperimentError as error:  # e.g. a label file under the absent data folder
        if "does not exist" in str(error):
            return str(error)
        raise
    missing = [str(path) for path in data_files(experiment) if not path.is_file()]
    if missing:
        return f"{len(missing)} data file(s) are absent, e.g. {missing[0]}."
    return None


# ---------------------------------------------------------------------------------------------------- multi-task


def multitask_run(
    experiment_path: Path, variant: str, seed: int, overrides: list[str], output_dir: Path, env: dict
) -> dict:
    """Train and evaluate one multi-task variant through the training CLI; its metrics in our record format."""
    command = [
        sys.executable,
        "-m",
        "modeling_multitask.training.cli",
        str(experiment_path),
        "--overwrite",
        "--set",
        f"seed={seed}",
        "--set",
        f"training.output_dir={output_dir}",
    ]
    for override in overrides:
        command += ["--set", override]
    if variant == "no_fusion":
        command += ["--set", "model.fusion=null"]
    log_path = output_dir.with_suffix(".log")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with log_path.open("w") as log:
        completed = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{variant} seed {seed} failed (exit {completed.returncode}); see {log_path}.")
    metrics = record_metrics(json.loads((output_dir / "metrics.json").read_text()))
    return {
        "variant": variant,
        "seed": seed,
        "wall_s": round(wall, 1),
        "metrics": metrics,
        "command": shlex.join(["python" if c == sys.executable else c for c in command]),
        "log": str(log_path),
    }


def record_metrics(raw: dict) -> dict:
    """A multi-task run's `metrics.json` as {split: {task or sentence+token pair: {metric: value}}}."""
    metrics = {}
    for split in ("validation", "test"):
        if split not in raw:
            continue
        metrics[split] = {task: dict(values) for task, values in raw[split].items()}
        for group, value in raw.get(f"{split}_sentence_accuracy", {}).items():
            metrics[split][group] = {"sentence_accuracy": value}
    return metrics


# --------------------------------------------------------------------------------------------------- single task


def single_task_model(task: TaskSpec, encoder_path: str, labels: list[str] | None, seed: int):
    """The baseline's transformers model, its new head drawn from `seed` (as the multi-task runs' heads are); given a
    saved baseline's folder as `encoder_path`, that trained model."""
    import transformers

    set_seed = transformers.set_seed
    set_seed(seed)  # the Trainer seeds only once the model exists: without this every seed starts the same head

    # The task's type names the standard transformers model for it and its config (`TaskType.transformers_model`).
    model_class, _ = task.definition.transformers_model
    return getattr(transformers, model_class).from_pretrained(
        encoder_path, **task.definition.transformers_config(labels)
    )


@dataclass
class BaselineOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class TransformersBaseline(torch.nn.Module):
    """A standard single-task transformers model (`TaskType.transformers_model`) fed our batches: the task's definition
    turns a batch into that model's inputs (`transformers_inputs`) and its outputs into the logits our head gives
    (`transformers_logits`), so one collator, Trainer and evaluation serve the baseline and the multi-task model."""

    def __init__(self, model, task):
        super().__init__()
        self.model, self.task, self.config = model, task, model.config

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, task_ids=None):
        # The arguments are named, as the Trainer reads the batch keys a model takes from its signature.
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        batch = {key: value for key, value in batch.items() if value is not None}
        if labels is not None:
            batch["labels"] = labels
        definition = self.task.definition  # a transformers model takes no task_ids: it has one task
        outputs = self.model(**definition.transformers_inputs(self.task, batch))
        return BaselineOutput(loss=outputs.loss, logits=definition.transformers_logits(self.task, outputs))


def single_task_run(
    experiment: Experiment, task: TaskSpec, seed: int, output_dir: Path, checkpoint: Path | None = None
) -> tuple[dict, dict]:
    """One task with a standard transformers model and Trainer, on the data and tokenisation of our pipeline.

    The budget matches the multi-task run's: same epochs, learning rate, batch size, warm-up and weight decay; where
    `sampling.max_examples_per_task` caps an epoch of the multi-task run, the baseline's epoch is capped the same way
    (as many steps, drawn from the whole train set). Returns (record, predictions per split for sentence accuracy).
    """
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    from modeling_multitask.training.cli import check_base_model
    from modeling_multitask.training.collator import MultiTaskDataCollator
    from modeling_multitask.training.data import prepare_data
    from modeling_multitask.training.evaluation import SPLITS, evaluate_model
    from modeling_multitask.training.experiment import TRAINING_DEFAULTS
    from modeling_multitask.training.metrics import task_view
    from modeling_multitask.training.trainer import FeatureDataset

    start = time.time()
    alone = dataclasses.replace(experiment, tasks=[task], seed=seed)
    encoder_path, _ = check_base_model(alone)
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    prepared = prepare_data(alone, tokenizer)
    train = FeatureDataset(prepared.train[task.name])
    settings = {
        **TRAINING_DEFAULTS,
        **experiment.training,
        "output_dir": str(output_dir),
        "seed": seed,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "load_best_model_at_end": False,
    }
    cap = experiment.sampling.max_examples_per_task
    if cap and cap < len(train):
        batch = settings.get("per_device_train_batch_size", 8)
        settings["max_steps"] = math.ceil(cap / batch) * math.ceil(float(settings["num_train_epochs"]))
    if experiment.sampling.group_by_length:
        # The same padding saving as the multi-task run's length-grouped batches, so wall times compare.
        # (transformers 5.2x spells it train_sampling_strategy; earlier releases had a group_by_length flag.)
        fields = {field.name for field in dataclasses.fields(TrainingArguments)}
        if "train_sampling_strategy" in fields:
            settings["train_sampling_strategy"] = "group_by_length"
        else:
            settings["group_by_length"] = True
    # Batches as the multi-task model gets them (padded per batch, labels shaped by the task type); the baseline
    # wrapper hands them to the transformers model in its own layout.
    args = experiment.training_arguments(**settings)
    collator = MultiTaskDataCollator(tokenizer, task_types=[task.type], task_names=[task.name])
    labels = prepared.labels[task.name]
    view = task_view(task.type, labels, task.name, **task.settings)
    # Re-scoring a saved baseline (`checkpoint`): the same model class and evaluation, no training.
    model = TransformersBaseline(single_task_model(task, str(checkpoint or encoder_path), labels, seed), view)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator, processing_class=tokenizer)
    if checkpoint is None:
        trainer.train()
        # To output_dir, as a transformers checkpoint, so that a later change of scoring can re-score it (--rescore).
        model.model.save_pretrained(output_dir)

    # Scored by the library's own evaluation, as the multi-task runs are (the task's metrics, tag decoding and
    # truncation rule apply to the baseline too), so the comparison isolates sharing the encoder.
    metrics, predictions = {}, {}
    for split in SPLITS:
        results, evaluator = evaluate_model(trainer.model.eval(), tokenizer, alone, prepared, splits=(split,))
        if split in results:
            metrics[split] = results[split]
            predictions[split] = (*evaluator.last_eval_predictions[task.name], labels)
    record = {
        "variant": "single_task",
        "task": task.name,
        "seed": seed,
        "wall_s": round(time.time() - start, 1),
        "metrics": metrics,
    }
    return record, predictions


def merged_baselines(earlier: dict, new: dict) -> dict:
    """One seed's baseline record from an earlier call's and a new call's (`--single-tasks`): the new call's tasks
    replace the earlier ones' metrics and wall times, the others stay."""
    wall = {**earlier["per_task_wall_s"], **new["per_task_wall_s"]}
    retrained = set(new["per_task_wall_s"])
    metrics = {
        # A joint group's sentence accuracy pairs two models: stale once one of them is trained again without it.
        split: {key: value for key, value in tasks.items() if not (set(key.split("+")) & retrained and "+" in key)}
        for split, tasks in earlier["metrics"].items()
    }
    for split, tasks in new["metrics"].items():
        metrics.setdefault(split, {}).update(tasks)
    return {**new, "metrics": metrics, "per_task_wall_s": wall, "wall_s": round(sum(wall.values()), 1)}


def joint_groups(experiment: Experiment) -> list[list[str]]:
    """The tasks JointBERT's sentence accuracy combines, per group trained jointly (see `evaluation.jointly_judged`)."""
    from modeling_multitask.training.data import group_tasks
    from modeling_multitask.training.evaluation import jointly_judged

    return [judged for group in group_tasks(experiment) if (judged := jointly_judged(group))]


def single_task_seed(
    experiment: Experiment, seed: int, run_dir: Path, rescore: bool = False, only: list[str] | None = None
) -> dict:
    """Every task alone (or the tasks named in `only`) for one seed, merged into one record; sentence accuracy pairs
    the two separate models. With `rescore`, the saved models of an earlier call are scored again instead of trained."""
    from modeling_multitask.training.metrics import examples_correct, task_view

    merged = {"variant": "single_task", "seed": seed, "wall_s": 0.0, "metrics": {}, "per_task_wall_s": {}}
    predictions = {}
    for task in experiment.tasks:
        if only is not None and task.name not in only:
            continue
        folder = run_dir / f"single_{task.name}_s{seed}"
        record, predictions[task.name] = single_task_run(experiment, task, seed, folder, folder if rescore else None)
        merged["wall_s"] += record["wall_s"]
        merged["per_task_wall_s"][task.name] = record["wall_s"]
        for split, values in record["metrics"].items():
            merged["metrics"].setdefault(split, {}).update(values)
        logger.info("single_task %s seed %d: %s", task.name, seed, json.dumps(record["metrics"]))
    tasks = {task.name: task for task in experiment.tasks}
    for judged in joint_groups(experiment):
        if not all(name in predictions for name in judged):
            continue  # a joint group's sentence accuracy needs both of its baselines from the same call
        for split in predictions[judged[0]]:
            scored = []
            for name in judged:
                predicted, gold, label_names = predictions[name][split]
                scored.append(
                    (task_view(tasks[name].type, label_names, name, **tasks[name].settings), predicted, gold)
                )
            merged["metrics"][split]["+".join(judged)] = {"sentence_accuracy": examples_correct(scored)}
    merged["wall_s"] = round(merged["wall_s"], 1)
    return merged


# --------------------------------------------------------------------------------------------------------- tables


def protocol(name: str, experiment: Experiment) -> dict:
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    from modeling_multitask.training.metrics import primary_metric

    split = (
        "test"
        if all("test" in task.data.files or "test" in task.data.splits for task in experiment.tasks)
        else "validation"
    )
    metrics = []
    for task in experiment.tasks:
        reported = task.definition.reported_metrics or [primary_metric(task.type, task.metrics)]
        metrics += [(task.name, metric) for metric in reported]
    metrics += [("+".join(judged), "sentence_accuracy") for judged in joint_groups(experiment)]
    return {"split": split, "metrics": metrics}


def summarise(runs: list[dict], spec: dict, variants) -> dict:
    """Mean, sample std, min and max over seeds, in points (x100, MSE excepted), per variant and metric."""
    table = {}
    for variant in variants:
        chosen = [run for run in runs if run["variant"] == variant]
        if not chosen:
            continue
        rows = {}
        for split in ("validation", "test"):
            for task, metric in spec["metrics"]:
                values = [run["metrics"].get(split, {}).get(task, {}).get(metric) for run in chosen]
                values = [v * (1 if metric == "mse" else 100) for v in values if v is not None]
                if values:
                    rows[f"{split}/{task}/{metric}"] = {
                        "mean": statistics.fmean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "min": min(values),
                        "max": max(values),
                        "n": len(values),
                        "values": values,
                    }
        table[variant] = {
            "seeds": sorted(run["seed"] for run in chosen),
            "metrics": rows,
            "wall_s_mean": statistics.fmean(run["wall_s"] for run in chosen),
        }
    return table


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "–"
    spread = f" ± {entry['std']:.2f}" if entry["n"] > 1 else ""
    return f"{entry['mean']:.2f}{spread} (n={entry['n']})"


def markdown(name: str, spec: dict, summary: dict, settings: dict, commands: list[str]) -> str:
    variants = [v for v in VARIANTS if v in summary]
    lines = [
        f"# {name}: quality benchmark",
        "",
        f"Metric split: **{spec['split']}** (the published protocol). Cells: mean ± sample std over seeds, in "
        "points; n = number of seeds.",
        "",
    ]
    header = ["task", "metric"] + variants
    if "fusion" in summary and "single_task" in summary:
        header.append("fusion − single")
    if "fusion" in summary and "no_fusion" in summary:
        header.append("fusion − no fusion")
    header.append("published")
    for split in dict.fromkeys([spec["split"], "validation", "test"]):
        if not any(key.startswith(f"{split}/") for table in summary.values() for key in table["metrics"]):
            continue  # a split no run was scored on (GLUE has no labelled test set); a mixed benchmark shows both
        lines += [f"## {split}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for task, metric in spec["metrics"]:
            key = f"{split}/{task}/{metric}"
            entries = {v: summary[v]["metrics"].get(key) for v in variants}
            row = [task, metric] + [_cell(entries[v]) for v in variants]
            for a, b in (("fusion", "single_task"), ("fusion", "no_fusion")):
                if a in summary and b in summary:
                    row.append(f"{entries[a]['mean'] - entries[b]['mean']:+.2f}" if entries[a] and entries[b] else "–")
            row.append(PUBLISHED.get(name, {}).get((task, metric), "–") if split == spec["split"] else "–")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Runs", "", "| variant | seeds | mean wall time per seed |", "|---|---|---|"]
    for variant in variants:
        lines.append(
            f"| {variant} | {', '.join(map(str, summary[variant]['seeds']))} | "
            f"{summary[variant]['wall_s_mean'] / 60:.1f} min |"
        )
    lines += ["", "Settings: `" + json.dumps(settings) + "`", "", "Commands:", ""]
    lines += [f"    {command}" for command in commands]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------- main


def scoring_settings(experiment: Experiment) -> dict:
    """What turns a trained model's outputs into the reported numbers, beyond the defaults: the token tasks' tag
    decoding where it is not argmax. A change here can re-score saved runs (`--rescore`) instead of training them."""
    return {task.name: task.decoding for task in experiment.tasks if task.is_token_level and task.decoding != "argmax"}


def same_settings(old: dict | None, new: dict, training_only: bool = False, same_model: bool = True) -> bool:
    """Whether runs made under `old` settings can share a table with runs made under `new` ones (`training_only`:
    whether they trained the same models, however they were scored; `same_model=False`: whether they could, the
    multi-task model's architecture aside, which is what the single-task baselines need).

    `output_dir` does not count (every run goes to its own --runs-dir folder), nor do sampling fields that only one
    side knows (a field added to `SamplingSpec` later, at its default, leaves earlier runs comparable).
    """
    if old is None or old.get("experiment") != new["experiment"] or old.get("overrides") != new["overrides"]:
        return False
    if not training_only and old.get("decoding", {}) != new.get("decoding", {}):
        return False
    if same_model and old.get("model", {}) != new.get("model", {}):
        return False
    drop = {"output_dir"}
    if {k: v for k, v in old["training"].items() if k not in drop} != {
        k: v for k, v in new["training"].items() if k not in drop
    }:
        return False
    shared = set(old["sampling"]) & set(new["sampling"])
    return all(old["sampling"][key] == new["sampling"][key] for key in shared)


def code_version() -> str:
    """The checkout's commit, with '+dirty' when tracked files differ from it (the runs record what code made them)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        # The results files are what runs write, not code that makes them.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", help=f"{', '.join(BENCHMARKS)}, smoke, or the path of an experiment file")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help=f"default: {' '.join(map(str, DEFAULT_SEEDS))} (with --rescore: every recorded seed)",
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--epochs", type=float, default=None, help="training.num_train_epochs for every variant")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an experiment override for every variant (repeatable), as in multitask-train",
    )
    parser.add_argument(
        "--results-dir",
        default=None,
        help="where <name>.json and <name>.md go (default: benchmarks/results; for smoke: RUNS_DIR/smoke/results)",
    )
    parser.add_argument(
        "--runs-dir", default=str(REPO_ROOT / "runs" / "benchmarks"), help="where checkpoints and logs go"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch/OpenMP threads (1 is fastest on a busy 2-core machine)"
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="score the saved models of the recorded runs again under the experiment's current scoring "
        "(e.g. a new tag decoding), without training; runs not re-scored leave the table",
    )
    parser.add_argument(
        "--single-tasks",
        default=None,
        metavar="TASK,TASK",
        help="train the single_task baselines of these tasks only (comma-separated); their metrics are merged into "
        "the seed's recorded baseline run, so a benchmark's baselines may be trained a few tasks at a time",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train this many (seed, variant) runs at once, each in its own single-threaded process "
        "(2 on a 2-core machine)",
    )
    return parser


def run_in_parallel(args, variants: list[str], results_dir: Path, run_dir: Path) -> None:
    """Each (seed, variant) as a single-threaded call of this script, `args.jobs` at a time; they merge their runs
    into the same results files. The single-task units (one model per task) go first, as they take longest."""
    units = sorted(
        ((seed, variant) for seed in args.seeds for variant in variants),
        key=lambda unit: (unit[1] != "single_task", args.seeds.index(unit[0])),
    )
    shared = [
        *(f"--set={override}" for override in args.set),
        *([f"--epochs={args.epochs:g}"] if args.epochs else []),
        *([f"--single-tasks={args.single_tasks}"] if args.single_tasks else []),
        f"--results-dir={results_dir}",
        f"--runs-dir={run_dir.parent}",
        "--threads=1",
    ]
    run_dir.mkdir(parents=True, exist_ok=True)

    def run(unit: tuple[int, str]) -> int:
        seed, variant = unit
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            args.benchmark,
            "--seeds",
            str(seed),
            "--variants",
            variant,
            *shared,
        ]
        with (run_dir / f"run_quality_{variant}_s{seed}.log").open("w") as log:
            return subprocess.run(command, cwd=Path.cwd(), stdout=log, stderr=subprocess.STDOUT).returncode

    with ThreadPoolExecutor(args.jobs) as pool:
        codes = list(pool.map(run, units))
    failed = [f"{variant} seed {seed}" for (seed, variant), code in zip(units, codes) if code != 0]
    if failed:
        raise RuntimeError(f"{', '.join(failed)} failed; see the run_quality_*.log files in {run_dir}.")


def rescore(args, variants, experiment, settings, invocation, json_path, run_dir, record_run) -> int:
    """Re-score the recorded runs' saved models under the current scoring settings; each keeps its training record
    (command, wall time, code) and gains `scored` (the scoring, code and command of this call)."""
    from modeling_multitask.training.evaluation import evaluate_checkpoint

    previous = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if not same_settings(previous.get("settings"), settings, training_only=True):
        print(
            f"error: {json_path} holds no runs trained with these settings; train them (without --rescore).",
            file=sys.stderr,
        )
        return 2
    chosen = [
        run
        for run in previous["runs"]
        if run["variant"] in variants and (args.seeds is None or run["seed"] in args.seeds)
    ]
    if not chosen:
        print(f"error: no recorded {', '.join(variants)} run in {json_path} to re-score.", file=sys.stderr)
        return 2
    version = code_version()
    for old in chosen:
        logger.info("re-scoring %s seed %d", old["variant"], old["seed"])
        if old["variant"] == "single_task":
            # The tasks it has baselines of (`--single-tasks` may have left some to another benchmark's runs).
            trained = list(old.get("per_task_wall_s") or [task.name for task in experiment.tasks])
            metrics = single_task_seed(experiment, old["seed"], run_dir, rescore=True, only=trained)["metrics"]
        else:
            metrics = record_metrics(evaluate_checkpoint(experiment, run_dir / f"{old['variant']}_s{old['seed']}"))
        scored = {"decoding": settings.get("decoding", {}), "code": version, "command": invocation}
        record_run({**old, "metrics": metrics, "scored": scored}, earlier_commands=previous["commands"])
    print(json_path.with_suffix(".md").read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seeds is None and not args.rescore:
        args.seeds = DEFAULT_SEEDS
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if args.benchmark == "smoke":
        from smoke_data import write_smoke_experiment

        smoke_dir = Path(args.runs_dir) / "smoke"
        if args.results_dir is None:
            args.results_dir = str(smoke_dir / "results")
        # Parallel calls (--jobs) get the written file, so that they do not all write it again at once.
        args.benchmark = str(write_smoke_experiment(smoke_dir / "experiment"))
    if args.results_dir is None:
        args.results_dir = str(Path(__file__).resolve().parent / "results")
    experiment_path = BENCHMARKS.get(args.benchmark, Path(args.benchmark)).resolve()
    name = args.benchmark if args.benchmark in BENCHMARKS else experiment_path.stem
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}.", file=sys.stderr)
        return 2
    overrides = list(args.set) + ([f"training.num_train_epochs={args.epochs:g}"] if args.epochs else [])

    reason = skip_reason(experiment_path, overrides)
    if reason:
        print(f"SKIPPED {name}: {reason}")
        return 0
    experiment = load_experiment(experiment_path, overrides)
    single_tasks = None
    if args.single_tasks is not None:
        single_tasks = [name.strip() for name in args.single_tasks.split(",") if name.strip()]
        unknown = [name for name in single_tasks if name not in {task.name for task in experiment.tasks}]
        if unknown or not single_tasks:
            names = ", ".join(task.name for task in experiment.tasks)
            print(
                f"error: --single-tasks {args.single_tasks!r} names no task or unknown ones {unknown}; the tasks: {names}.",
                file=sys.stderr,
            )
            return 2

    env = dict(os.environ)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)

    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{name}.json"
    settings = {
        "experiment": str(experiment_path.relative_to(REPO_ROOT))
        if experiment_path.is_relative_to(REPO_ROOT)
        else str(experiment_path),
        "overrides": overrides,
        "training": experiment.training,
        "sampling": dataclasses.asdict(experiment.sampling),
    }
    decoding = scoring_settings(experiment)
    if decoding:  # left out at the defaults, so results files written before decoding existed still match
        settings["decoding"] = decoding
    # Likewise, and left out at the defaults: a differently built or weighted multi-task model must not share a table
    # (a loss weight in the experiment file, not a --set, would leave no other trace).
    private = experiment.model.task_private_layers
    model = {"task_private_layers": private} if private else {}
    loss_weights = {task.name: task.loss_weight for task in experiment.tasks if task.loss_weight != 1.0}
    if loss_weights:
        model["loss_weights"] = loss_weights
    if model:
        settings["model"] = model
    invocation = "python benchmarks/run_quality.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    spec = protocol(name, experiment)
    run_dir = Path(args.runs_dir) / name

    def record_run(record: dict, earlier_commands: list[str] = ()) -> None:
        """Add one run to the results files. Read-merge-write under a lock, so several calls for the same benchmark
        (one per core, say) can run at once without losing each other's runs."""
        import platform

        import torch
        import transformers

        with json_path.with_suffix(".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            previous = json.loads(json_path.read_text()) if json_path.is_file() else {}
            runs, commands = [], list(earlier_commands)
            if same_settings(previous.get("settings"), settings):
                runs, commands = previous["runs"], previous["commands"]
            elif same_settings(previous.get("settings"), settings, same_model=False):
                # Only the multi-task architecture changed: the single-task baselines never used it, so they stay.
                runs = [r for r in previous["runs"] if r["variant"] == "single_task"]
                commands = list(dict.fromkeys(r["command"] for r in runs))
            if invocation not in commands:
                commands.append(invocation)
            same = [r for r in runs if (r["variant"], r["seed"]) == (record["variant"], record["seed"])]
            if same and record["variant"] == "single_task" and "per_task_wall_s" in same[0]:
                record = merged_baselines(same[0], record)
            runs = [r for r in runs if (r["variant"], r["seed"]) != (record["variant"], record["seed"])] + [record]
            summary = summarise(runs, spec, VARIANTS)
            environment = {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "cpu_count": os.cpu_count(),
                "threads": args.threads or torch.get_num_threads(),
            }
            json_path.write_text(
                json.dumps(
                    {
                        "benchmark": name,
                        "settings": settings,
                        "protocol": spec,
                        "environment": environment,
                        "commands": commands,
                        "summary": summary,
                        "runs": runs,
                    },
                    indent=2,
                )
            )
            (results_dir / f"{name}.md").write_text(markdown(name, spec, summary, settings, commands))

    if args.rescore:
        return rescore(args, variants, experiment, settings, invocation, json_path, run_dir, record_run)
    if args.jobs > 1:
        run_in_parallel(args, variants, results_dir, run_dir)
        print((results_dir / f"{name}.md").read_text())
        return 0
    for seed in args.seeds:
        for variant in variants:
            logger.info("%s: %s, seed %d", name, variant, seed)
            version = code_version()  # before the run: the code it starts with
            if variant == "single_task":
                record = single_task_seed(experiment, seed, run_dir, only=single_tasks)
                record["command"] = invocation
            else:
                record = multitask_run(experiment_path, variant, seed, overrides, run_dir / f"{variant}_s{seed}", env)
            record["code"] = version
            record_run(record)  # after every run, so an interrupted benchmark keeps what it measured
            logger.info(
                "%s seed %d done in %.0f s: %s",
                variant,
                seed,
                record["wall_s"],
                json.dumps(record["metrics"].get(spec["split"], {})),
            )
    print((results_dir / f"{name}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
