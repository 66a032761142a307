"""The tables of the docs, rendered from the committed results files, so that the docs cannot drift from them.

    python benchmarks/tables.py           # check: exit 1 and show what differs when a doc does not match the results
    python benchmarks/tables.py --write   # rewrite the docs' tables (and benchmarks/results/**/*.md) from the JSON

A doc holds each generated table between `<!-- table:NAME -->` and `<!-- /table -->`; NAME is a key of `TABLES`.
The `.md` beside each quality results file (`run_quality.py` writes both) is checked the same way. Run `--write`
after adding runs or rerunning `perf.py` or `scale.py`, and commit the docs with the results.
"""

import argparse
import collections
import difflib
import json
import math
import re
import statistics
import sys
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]
for folder in (REPO_ROOT, REPO_ROOT / "benchmarks"):  # the library from this checkout, and the scripts beside us
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

RESULTS = REPO_ROOT / "benchmarks" / "results"
DOCS = [REPO_ROOT / "README.md", REPO_ROOT / "docs" / "RESULTS.md", REPO_ROOT / "docs" / "PERFORMANCE.md"]
MARKER = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)

# (task, metric key in the results, how the docs name the metric)
JOINT_ROWS = [
    ("intent", "accuracy", "accuracy"),
    ("slots", "f1", "slot entity F1"),
    ("intent+slots", "sentence_accuracy", "sentence accuracy"),
]
GLUE_ROWS = [
    ("sst2", "accuracy", "accuracy"),
    ("cola", "mcc", "MCC"),
    ("stsb", "pearson", "Pearson"),
    ("stsb", "spearman", "Spearman"),
    ("stsb", "pearson_spearman", "Pearson/Spearman mean"),
]
SQUAD_ROWS = [("squad", "exact_match", "exact match"), ("squad", "f1", "F1")]
ROWS = {
    "atis": JOINT_ROWS,
    "snips": JOINT_ROWS,
    "glue": GLUE_ROWS,
    "csqa": [("csqa", "accuracy", "accuracy")],
    "squad": SQUAD_ROWS,
    "mixed": [*SQUAD_ROWS, *JOINT_ROWS, ("sst2", "accuracy", "SST-2 accuracy")],
}
# Published numbers (sources: docs/RESULTS.md, "How to read the tables"), on the split each protocol reports.
PUBLISHED = {
    "atis": (
        "JointBERT (BERT-base)",
        {"intent/accuracy": "97.5", "slots/f1": "96.1", "intent+slots/sentence_accuracy": "88.2 (unverified)"},
    ),
    "snips": (
        "JointBERT (BERT-base)",
        {"intent/accuracy": "98.6", "slots/f1": "97.0", "intent+slots/sentence_accuracy": "92.8"},
    ),
    "glue": (
        "DistilBERT / BERT-base",
        {"sst2/accuracy": "91.3 / 92.7", "cola/mcc": "51.3 / 56.3", "stsb/pearson_spearman": "86.9 / 89.0"},
    ),
    # Not comparable: BERT-large on the test set; a 20x larger encoder trained on all of train.
    "csqa": ("BERT-large, test (Talmor et al. 2019)", {"csqa/accuracy": "about 56"}),
    # Not comparable: trained on all 87,599 training questions, these runs on a 3,807-question excerpt.
    "squad": ("BERT-base, full train (Devlin et al. 2019)", {"squad/exact_match": "80.8", "squad/f1": "88.5"}),
    "mixed": ("published (see each benchmark)", {}),
}
VARIANT_NAMES = {"fusion": "fusion", "no_fusion": "no fusion", "single_task": "single task"}
SPLIT_NAMES = {"test": "test", "validation": "dev"}


# ------------------------------------------------------------------------------------------------ reading results


def load(name: str) -> dict:
    """A results file by its path under benchmarks/results, without `.json` (e.g. `atis`, `tuning/cola_only`)."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def entry(results: dict, variant: str, split: str, task: str, metric: str) -> dict:
    return results["summary"][variant]["metrics"][f"{split}/{task}/{metric}"]


def per_seed(results: dict, variant: str, split: str, task: str, metric: str) -> dict[int, float]:
    """{seed: value in points} of one metric, from the individual runs."""
    return {
        run["seed"]: 100 * run["metrics"][split][task][metric] for run in results["runs"] if run["variant"] == variant
    }


def per_seed_if_scored(results: dict, variant: str, split: str, task: str, metric: str) -> dict[int, float]:
    """`per_seed` over the runs that scored the metric (a results file whose baselines left one task out, say)."""
    runs = [run for run in results["runs"] if metric in run["metrics"].get(split, {}).get(task, {})]
    return per_seed({**results, "runs": runs}, variant, split, task, metric)


def signed(value: float) -> str:
    """`+0.28` / `−0.04`, with the minus sign the prose uses."""
    return f"{value:+.2f}".replace("-", "−")


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


# ------------------------------------------------------------------------------------------------ cells


def full_cell(results: dict, variant: str, split: str, task: str, metric: str, bold: bool = True) -> str:
    """`**mean** ± std (n=k: v1, v2, ...)` over the runs, the values in seed order."""
    seeds = per_seed_if_scored(results, variant, split, task, metric)
    if not seeds:
        return "–"  # e.g. a baseline left to another benchmark's identical run (run_quality.py --single-tasks)
    values = [seeds[seed] for seed in sorted(seeds)]
    mean, std = mean_std(values)
    shown = f"**{mean:.2f}**" if bold else f"{mean:.2f}"
    return f"{shown} ± {std:.2f} (n={len(values)}: {', '.join(f'{value:.2f}' for value in values)})"


def short_cell(e: dict) -> str:
    return f"{e['mean']:.2f} ± {e['std']:.2f} (n={e['n']})"


def row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def header(cells) -> list[str]:
    return [row(cells), "|" + "---|" * len(cells)]


# ------------------------------------------------------------------------------------------------ quality tables


def with_baselines(results: dict, *sources: str) -> dict:
    """`results` with the single-task runs of the results files `sources`: for a try that changed only the multi-task
    model (its architecture or loss weights), whose baselines, which never used it, ran once in the benchmark's file
    (and, for seeds added later, in a file of their own)."""
    runs = [run for run in results["runs"] if run["variant"] != "single_task"]
    for source in sources:
        baselines = [run for run in load(source)["runs"] if run["variant"] == "single_task"]
        if not baselines:
            raise ValueError(f"{source}.json has no single-task runs to be the baselines of {results['benchmark']}.")
        runs += baselines
    scored = collections.Counter(
        (run["variant"], run["seed"], split, task)
        for run in runs
        for split, tasks in run["metrics"].items()
        for task in tasks
    )
    twice = sorted(unit for unit, count in scored.items() if count > 1)
    if twice:  # a cell keeps one value a seed: a seed that ran twice would silently count once
        raise ValueError(f"{', '.join(sources)}: {twice} (variant, seed, split, task) are in more than one run.")
    return {**results, "runs": runs}


def quality_table(name: str, baselines: tuple[str, ...] = ()) -> str:
    """The main table of one benchmark: every variant's mean ± std with each seed, published split first (the
    single-task column from the results files `baselines`, where given)."""
    results = with_baselines(load(name), *baselines) if baselines else load(name)
    name = results["benchmark"]
    published_name, published = PUBLISHED[name]
    variants = [v for v in VARIANT_NAMES if any(run["variant"] == v for run in results["runs"])]
    lines = header(["split", "task", "metric", *(VARIANT_NAMES[v] for v in variants), published_name])
    for split in dict.fromkeys([results["protocol"]["split"], "validation", "test"]):
        for task, metric, label in ROWS[name]:
            if not any(per_seed_if_scored(results, v, split, task, metric) for v in variants):
                continue  # not scored on this split (a mixed benchmark's SQuAD and SST-2 have no test set)
            cells = [full_cell(results, v, split, task, metric) for v in variants]
            reference = published.get(f"{task}/{metric}") if split == results["protocol"]["split"] else None
            lines.append(row([SPLIT_NAMES[split], task, label, *cells, reference or "–"]))
    return "\n".join(lines)


def wall_table(name: str) -> str:
    """Wall time per seed: mean, and the range over seeds (the single-task cell counts every task's model)."""
    results = load(name)
    variants = [v for v in VARIANT_NAMES if v in results["summary"]]
    cells = []
    for variant in variants:
        runs = sorted((r for r in results["runs"] if r["variant"] == variant), key=lambda r: r["seed"])
        minutes = [r["wall_s"] / 60 for r in runs]
        seeds = ", ".join(str(r["seed"]) for r in runs)
        cells.append(f"{statistics.fmean(minutes):.1f} min (seeds {seeds}: {min(minutes):.1f}-{max(minutes):.1f})")
    return "\n".join([*header(["", *(VARIANT_NAMES[v] for v in variants)]), row(["wall time per seed", *cells])])


# Fusion − no fusion, seed by seed: (label, results file, split, task, metric, metric label).
PAIRED_ROWS = [
    ("ATIS", "atis", "test", "intent", "accuracy", "intent accuracy"),
    ("ATIS", "atis", "test", "slots", "f1", "slot F1"),
    ("ATIS", "atis", "test", "intent+slots", "sentence_accuracy", "sentence accuracy"),
    ("ATIS", "atis", "validation", "intent", "accuracy", "intent accuracy"),
    ("ATIS", "atis", "validation", "slots", "f1", "slot F1"),
    ("ATIS", "atis", "validation", "intent+slots", "sentence_accuracy", "sentence accuracy"),
    ("SNIPS", "snips", "test", "intent", "accuracy", "intent accuracy"),
    ("SNIPS", "snips", "test", "slots", "f1", "slot F1"),
    ("SNIPS", "snips", "test", "intent+slots", "sentence_accuracy", "sentence accuracy"),
    ("SNIPS", "snips", "validation", "intent", "accuracy", "intent accuracy"),
    ("SNIPS", "snips", "validation", "slots", "f1", "slot F1"),
    ("SNIPS", "snips", "validation", "intent+slots", "sentence_accuracy", "sentence accuracy"),
    *(
        (label, source, "validation", task, metric, name)
        for label, source in (
            ("GLUE, whole encoder shared", "tuning/glue_shared_encoder"),
            ("GLUE, top 2 layers per task", "glue"),
        )
        for task, metric, name in (
            ("sst2", "accuracy", "SST-2 accuracy"),
            ("cola", "mcc", "CoLA MCC"),
            ("stsb", "pearson_spearman", "STS-B Pearson/Spearman"),
        )
    ),
]


def paired_gaps(results: dict, split: str, task: str, metric: str) -> dict[int, float]:
    fusion = per_seed(results, "fusion", split, task, metric)
    without = per_seed(results, "no_fusion", split, task, metric)
    return {seed: fusion[seed] - without[seed] for seed in sorted(fusion) if seed in without}


def paired_table() -> str:
    """Fusion − no fusion per seed, with the mean gap's 95% t-interval and a paired t-test against zero."""
    from scipy import stats

    max_seeds = 6
    lines = header(
        [
            "benchmark (split)",
            "metric",
            *(f"seed {s}" for s in range(1, max_seeds + 1)),
            "mean ± std of the gap",
            "95% interval of the mean",
            "paired t-test p",
        ]
    )
    for label, source, split, task, metric, name in PAIRED_ROWS:
        gaps = paired_gaps(load(source), split, task, metric)
        values = list(gaps.values())
        mean, std = mean_std(values)
        half = stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))
        p = stats.ttest_1samp(values, 0.0).pvalue
        seeds = [signed(gaps[s]) if s in gaps else "–" for s in range(1, max_seeds + 1)]
        lines.append(
            row(
                [
                    f"{label} ({SPLIT_NAMES[split]})",
                    name,
                    *seeds,
                    f"{signed(mean)} ± {std:.2f} (n={len(values)})",
                    f"[{signed(mean - half)}, {signed(mean + half)}]",
                    f"{p:.2f}",
                ]
            )
        )
    return "\n".join(lines)


def private_layers_table() -> str:
    """GLUE dev means: whole encoder shared against the top 2 layers per task, and the references."""
    shared, private = load("tuning/glue_shared_encoder"), load("glue")
    cola_only = load("tuning/cola_only")
    metrics = [("sst2", "accuracy"), ("cola", "mcc"), ("stsb", "pearson_spearman")]

    def means(results, variant, bold=False):
        cells = [f"{entry(results, variant, 'validation', t, m)['mean']:.2f}" for t, m in metrics]
        return [f"**{c}**" for c in cells] if bold else cells

    cola = [f"{entry(cola_only, v, 'validation', 'cola', 'mcc')['mean']:.2f}" for v in ("fusion", "no_fusion")]
    n = private["summary"]["fusion"]["metrics"]["validation/cola/mcc"]["n"]
    n_single = private["summary"]["single_task"]["metrics"]["validation/cola/mcc"]["n"]
    return "\n".join(
        [
            *header([f"dev, mean of {n} seeds", "SST-2 acc", "CoLA MCC", "STS-B P/S"]),
            row(["fusion, whole encoder shared", *means(shared, "fusion")]),
            row(["fusion, top 2 layers per task", *means(private, "fusion", bold=True)]),
            row(["no fusion, whole encoder shared", *means(shared, "no_fusion")]),
            row(["no fusion, top 2 layers per task", *means(private, "no_fusion", bold=True)]),
            row(["our model on CoLA alone (`cola.yaml`; fusion / no fusion)", "–", " / ".join(cola), "–"]),
            row([f"single task (`AutoModelFor...`, seed fix; {n_single} seeds)", *means(private, "single_task")]),
        ]
    )


def cola_alone_table() -> str:
    cola_only, shared = load("tuning/cola_only"), load("tuning/glue_shared_encoder")
    single = entry(load("glue"), "single_task", "validation", "cola", "mcc")
    cells = {
        "alone": [full_cell(cola_only, v, "validation", "cola", "mcc", bold=False) for v in ("fusion", "no_fusion")],
        "mix": [
            f"{e['mean']:.2f} ± {e['std']:.2f} (n={e['n']})"
            for e in (entry(shared, v, "validation", "cola", "mcc") for v in ("fusion", "no_fusion"))
        ],
    }
    return "\n".join(
        [
            *header(["CoLA dev MCC", "fusion", "no fusion"]),
            row(["our model, CoLA alone (`benchmarks/cola.yaml`)", *cells["alone"]]),
            row(["our model, in the GLUE mix, whole encoder shared", *cells["mix"]]),
            row(
                [
                    "`AutoModelForSequenceClassification`, CoLA alone",
                    f"26.11 ± 0.99 (n=3, same head every seed; historical: git history of `glue.json`); "
                    f"with the seed fix {short_cell(single)}",
                    "",
                ]
            ),
        ]
    )


def cola_partners_table() -> str:
    """CoLA dev MCC with fusion, on two-task mixes, beside CoLA alone and the full mix (shared encoder)."""
    sources = [
        ("CoLA alone (`cola.yaml`)", "tuning/cola_only", False),
        ("SST-2 + CoLA", "tuning/glue_sst2_cola", True),
        ("CoLA + STS-B", "tuning/glue_cola_stsb", True),
    ]
    lines = header(["CoLA dev MCC, fusion", "seed 1", "seed 2", "seed 3", "mean ± std"])
    for label, source, bold in sources:
        seeds = per_seed(load(source), "fusion", "validation", "cola", "mcc")
        mean, std = mean_std([seeds[s] for s in (1, 2, 3)])
        mean_text = f"**{mean:.2f}**" if bold else f"{mean:.2f}"
        lines.append(row([label, *(f"{seeds[s]:.2f}" for s in (1, 2, 3)), f"{mean_text} ± {std:.2f}"]))
    shared = load("tuning/glue_shared_encoder")
    seeds = per_seed(shared, "fusion", "validation", "cola", "mcc")
    all_seeds = entry(shared, "fusion", "validation", "cola", "mcc")
    first = statistics.fmean(seeds[s] for s in (1, 2, 3))
    lines.append(
        row(
            [
                "SST-2 + CoLA + STS-B (`glue.yaml`, whole encoder shared)",
                *(f"{seeds[s]:.2f}" for s in (1, 2, 3)),
                f"{first:.2f} ({all_seeds['n']} seeds: {all_seeds['mean']:.2f})",
            ]
        )
    )
    return "\n".join(lines)


def decoding_table() -> str:
    """bio − argmax slot scores per seed: the same checkpoints, scored both ways (argmax in results/history)."""
    lines = header(["benchmark", "split", "metric", "fusion", "no fusion"])
    for split in ("validation", "test"):
        for label, name in (("ATIS", "atis"), ("SNIPS", "snips")):
            metrics = [("slots", "f1", "slot F1")]
            if split == "validation":
                metrics.append(("intent+slots", "sentence_accuracy", "sentence accuracy"))
            bio, argmax = load(name), load(f"history/{name}_argmax")
            for task, metric, metric_name in metrics:
                cells = []
                for variant in ("fusion", "no_fusion"):
                    new = per_seed(bio, variant, split, task, metric)
                    old = per_seed(argmax, variant, split, task, metric)
                    changes = [new[s] - old[s] for s in sorted(new)]
                    cells.append(", ".join(map(signed, changes)) + f" (mean {signed(statistics.fmean(changes))})")
                lines.append(row([label, SPLIT_NAMES[split], metric_name, *cells]))
    return "\n".join(lines)


def tuning_table() -> str:
    """The dev tries against the kept settings, seed 1 of fusion (argmax decoding, as they were made)."""
    kept_snips, kept_atis = load("history/snips_argmax"), load("history/atis_argmax")
    tries = [
        ("SNIPS", "learning rate 1e-4", "tuning/snips_lr1e-4", "worse slots"),
        ("SNIPS", "learning rate 1.5e-4 (kept)", None, "best of the three"),
        ("SNIPS", "learning rate 2.5e-4", "tuning/snips_lr2.5e-4", "worse slots"),
        ("SNIPS", "`fusion.token_context: true` (lr 1.5e-4)", "tuning/snips_ctx", "no change on dev: not adopted"),
        ("ATIS", "`fusion.token_context: true` (lr 1.5e-4)", "tuning/atis_ctx", "worse: not adopted"),
    ]
    lines = header(
        ["benchmark", "try (fusion, seed 1)", "dev intent acc", "dev slot F1", "dev sentence acc", "verdict"]
    )
    for benchmark, label, source, verdict in tries:
        kept = kept_snips if benchmark == "SNIPS" else kept_atis
        results = kept if source is None else load(source)
        cells = []
        for task, metric, _ in JOINT_ROWS:
            value = per_seed(results, "fusion", "validation", task, metric)[1]
            cell = f"{value:.2f}"
            if benchmark == "ATIS":
                cell += f" (kept: {per_seed(kept, 'fusion', 'validation', task, metric)[1]:.2f})"
            cells.append(cell)
        lines.append(row([benchmark, label, *cells, verdict]))
    return "\n".join(lines)


def mixed_tries_table() -> str:
    """The mixed benchmark's tries at ATIS's gap: each model's gap to the single-task baseline of the same seed and
    budget (the QA baseline is squad.yaml's single-task run, which has no 3-epoch counterpart), and fusion − no fusion
    paired by seed where a try has both."""
    # QA's one-epoch baseline is squad.yaml's single-task run: the same run (see docs/RESULTS.md). Seeds 4 and 5 of
    # both ran later, into files of their own.
    one_epoch = ("mixed", "squad", "tuning/mixed_baselines_s45", "tuning/squad_baselines_s45")
    tries = [  # (budget and model, results file, the files of its single-task baselines)
        ("1 epoch (`mixed.yaml`)", "mixed", one_epoch),
        ("1 epoch, top 2 encoder layers private to each task", "tuning/mixed_private2", one_epoch),
        ("1 epoch, top 2 layers private, slot loss weight 2", "tuning/mixed_private2_slotw2", one_epoch),
        ("1 epoch, top 2 layers private, slot loss weight 3", "tuning/mixed_private2_slotw3", one_epoch),
        ("3 epochs (`--epochs 3`)", "tuning/mixed_3ep", ("tuning/mixed_3ep",)),
    ]
    columns = [
        ("validation", "squad", "exact_match", "dev QA EM"),
        ("validation", "squad", "f1", "dev QA F1"),
        ("test", "intent", "accuracy", "test intent acc"),
        ("test", "slots", "f1", "test slot F1"),
        ("validation", "sst2", "accuracy", "dev SST-2 acc"),
    ]

    def cell(gaps: dict[int, float], ours: dict[int, float]) -> str:
        if not gaps:
            return f"{statistics.fmean(ours.values()):.2f} (no baseline)"
        if len(gaps) == 1:
            return signed(*gaps.values())
        return f"{signed(statistics.fmean(gaps.values()))} ({', '.join(signed(gaps[seed]) for seed in sorted(gaps))})"

    lines = header(["budget and model", "variant", "seeds", *(name for *_, name in columns)])
    for label, source, baseline_sources in tries:
        results = load(source)
        baseline = with_baselines(results, *baseline_sources)
        for variant in ("fusion", "no_fusion"):
            seeds = sorted(run["seed"] for run in results["runs"] if run["variant"] == variant)
            if not seeds:
                continue
            cells = []
            for split, task, metric, _ in columns:
                ours = per_seed(results, variant, split, task, metric)
                base = per_seed_if_scored(baseline, "single_task", split, task, metric)
                cells.append(cell({seed: ours[seed] - base[seed] for seed in seeds if seed in base}, ours))
            lines.append(row([label, VARIANT_NAMES[variant], ", ".join(map(str, seeds)), *cells]))
        paired = [paired_gaps(results, split, task, metric) for split, task, metric, _ in columns]
        if paired[0]:
            seeds = ", ".join(map(str, sorted(paired[0])))
            lines.append(row([label, "fusion − no fusion", seeds, *(cell(gaps, {}) for gaps in paired)]))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ performance


def benchmark_table(name: str, render) -> str:
    """A benchmark script's table of the results file `name`, as the script prints it (`render`), with the run's
    provenance: command, wall time, date, versions and the file."""
    results = load(name)
    machine = results["machine"]
    stamp = results["timestamp"].replace("T", " ")[:16]
    provenance = (
        f"Command: `{results['command']}` ({results['wall_seconds']:.0f} s), {stamp} UTC; Python "
        f"{machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}. "
        f"Results file: `benchmarks/results/{name}.json`."
    )
    return provenance + "\n\n" + render(results)


def perf_table(preset: str = "cpu") -> str:
    from perf import markdown

    return benchmark_table(f"perf_{preset}", markdown)


def scale_table(preset: str = "cpu") -> str:
    from scale import markdown

    return benchmark_table(f"scale_{preset}", markdown)


def scale_data_table(preset: str = "cpu") -> str:
    """The data-pipeline table of `scale.py --part data`."""
    from scale import data_markdown

    return benchmark_table(f"scale_data_{preset}", data_markdown)


# ------------------------------------------------------------------------------------------------ README


def readme_results() -> str:
    """The README's headline table: the fusion model's means over seeds, and its gaps to single task and no fusion."""
    rows = [
        ("ATIS test", "atis", "test", "intent", "accuracy", "intent accuracy"),
        ("ATIS test", "atis", "test", "slots", "f1", "slot F1"),
        ("SNIPS test", "snips", "test", "intent", "accuracy", "intent accuracy"),
        ("SNIPS test", "snips", "test", "slots", "f1", "slot F1"),
        ("GLUE dev", "glue", "validation", "sst2", "accuracy", "SST-2 accuracy"),
        ("GLUE dev", "glue", "validation", "cola", "mcc", "CoLA MCC"),
        ("GLUE dev", "glue", "validation", "stsb", "pearson_spearman", "STS-B Pearson/Spearman"),
    ]
    published_header = "published (ATIS, SNIPS: JointBERT, BERT-base; GLUE: DistilBERT / BERT-base)"
    lines = header(["benchmark", "metric", "fusion", "fusion − single task", "fusion − no fusion", published_header])
    for label, name, split, task, metric, metric_name in rows:
        results = load(name)
        fusion = entry(results, "fusion", split, task, metric)
        gaps = [
            signed(fusion["mean"] - entry(results, v, split, task, metric)["mean"])
            for v in ("single_task", "no_fusion")
        ]
        reference = PUBLISHED[name][1][f"{task}/{metric}"]
        lines.append(
            row([f"{label} ({fusion['n']} seeds)", metric_name, short_cell(fusion).split(" (")[0], *gaps, reference])
        )
    return "\n".join(lines)


def readme_cost() -> str:
    """The README's cost line, from the CPU preset's results file."""
    results = load("perf_cpu")
    training, inference = results["training"], results["inference"]
    return (
        f"training throughput {training['ratios']['multitask_vs_baseline']['median']:.2f}x the standard single-task "
        f"`AutoModelForSequenceClassification` + Trainer, AttentionFusion "
        f"{training['ratios']['fusion_vs_multitask']['median']:+.1%} per step end to end "
        f"({training['fusion_component']['overhead']:+.1%} for the fusion path timed alone), "
        f"{inference['k']} tasks from one pass in {inference['ratios']['k_tasks_one_pass_over_one_task']:.2f}x "
        f"({inference['ratios']['k_tasks_one_pass_fusion_over_one_task']:.2f}x with fusion) the time of one single-task "
        f"model (`benchmarks/results/perf_cpu.json`)."
    )


TABLES = {
    "atis": lambda: quality_table("atis"),
    "atis-wall": lambda: wall_table("atis"),
    "snips": lambda: quality_table("snips"),
    "snips-wall": lambda: wall_table("snips"),
    "glue": lambda: quality_table("glue"),
    "glue-wall": lambda: wall_table("glue"),
    "csqa": lambda: quality_table("csqa"),
    "csqa-wall": lambda: wall_table("csqa"),
    "squad": lambda: quality_table("squad"),
    "squad-wall": lambda: wall_table("squad"),
    "mixed": lambda: quality_table("mixed"),
    "mixed-wall": lambda: wall_table("mixed"),
    "mixed-tries": mixed_tries_table,
    "mixed-tuned": lambda: quality_table(
        "tuning/mixed_private2_slotw2", baselines=("mixed", "tuning/mixed_baselines_s45")
    ),
    "mixed-tuned-wall": lambda: wall_table("tuning/mixed_private2_slotw2"),
    "glue-private-layers": private_layers_table,
    "cola-alone": cola_alone_table,
    "cola-partners": cola_partners_table,
    "tag-decoding": decoding_table,
    "tuning": tuning_table,
    "paired-per-seed": paired_table,
    "perf-cpu": perf_table,
    "scale-cpu": scale_table,
    "scale-cpu-small": lambda: scale_table("cpu_small"),
    "scale-data-cpu": scale_data_table,
    "readme-results": readme_results,
    "readme-cost": readme_cost,
}


# ------------------------------------------------------------------------------------------------ docs


def render_doc(text: str, path: Path) -> str:
    """`text` with every marked table replaced by its rendering; an unknown table name is an error."""

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise ValueError(f"{path}: unknown table {name!r}; known tables: {', '.join(sorted(TABLES))}.")
        return match[1] + TABLES[name]().strip() + "\n" + match[4]

    return MARKER.sub(replace, text)


def results_markdown(json_path: Path) -> str:
    """The `.md` that run_quality.py writes beside a quality results file."""
    from run_quality import markdown

    record = json.loads(json_path.read_text())
    return markdown(record["benchmark"], record["protocol"], record["summary"], record["settings"], record["commands"])


def expected_files() -> dict[Path, str]:
    """Every generated file with the content the results files give it."""
    expected = {}
    for doc in DOCS:
        expected[doc] = render_doc(doc.read_text(), doc)
    for json_path in sorted(RESULTS.rglob("*.json")):
        # perf_/scale_: benchmark results rendered into the docs; train_: a training run's metrics, quoted by hand
        if not json_path.name.startswith(("perf_", "scale_", "train_")):
            expected[json_path.with_suffix(".md")] = results_markdown(json_path)
    return expected


def shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the docs' tables from the results files")
    args = parser.parse_args(argv)
    stale = []
    for path, content in expected_files().items():
        current = path.read_text() if path.is_file() else ""
        if current == content:
            continue
        if args.write:
            path.write_text(content)
            print(f"wrote {shown(path)}")
        else:
            stale.append(path)
            diff = difflib.unified_diff(
                current.splitlines(), content.splitlines(), shown(path), "rendered", lineterm=""
            )
            print("\n".join(diff))
    if stale:
        names = ", ".join(map(shown, stale))
        print(f"\n{names}: not what the results files give; run `python benchmarks/tables.py --write`.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
