"""The Arrow data pipeline against the in-memory one it replaced: the same features for every example of an
experiment, first run and cached run.

    python benchmarks/compare_pipelines.py benchmarks/atis.yaml [--before 6036902] [--base-model PATH]

Loads `modeling_multitask/training/data.py` as it was at commit `--before` (the last one before the Arrow pipeline)
from this repository's git history, prepares the experiment's data with it and with the current `prepare_data` (twice:
the second run reads the data cache, in a temporary folder), and compares label names, truncation counts and, for
every example of every split, `input_ids`, `attention_mask`, `token_type_ids`, `labels` (joint groups: per task),
`task_ids` and `truncated`. Prints one JSON line and exits 1 on the first difference. The encoder is not loaded, only
its tokenizer (`--base-model` replaces the experiment's, e.g. the pip-installed all-MiniLM-L6-v2 is found by itself).
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from transformers import AutoTokenizer  # noqa: E402

from modeling_multitask.training.cli import check_base_model  # noqa: E402
from modeling_multitask.training.experiment import load_experiment  # noqa: E402


BEFORE = "6036902"  # the last commit with the in-memory pipeline
FEATURE_KEYS = ("input_ids", "attention_mask", "token_type_ids", "labels", "task_ids")


def load_before(commit: str):
    """`data.py` at `commit`, as the module `modeling_multitask.training._data_before` (its relative imports resolve
    in the current package)."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{commit}:modeling_multitask/training/data.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="data_before_")) / "data_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("modeling_multitask.training._data_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def differences(before, after) -> list[str]:
    """Where two `PreparedData` differ (empty when they agree)."""
    found = []
    if before.labels != after.labels:
        found.append(f"labels: {before.labels} != {after.labels}")
    if before.truncated != after.truncated:
        found.append(f"truncated counts: {before.truncated} != {after.truncated}")
    for split in ("train", "validation", "test"):
        old, new = getattr(before, split), getattr(after, split)
        if set(old) != set(new):
            found.append(f"{split}: groups/tasks {sorted(old)} != {sorted(new)}")
            continue
        for name, features in old.items():
            if len(features) != len(new[name]):
                found.append(f"{split} {name}: {len(features)} != {len(new[name])} examples")
                continue
            for index, (x, y) in enumerate(zip(features, new[name])):
                keys = [key for key in FEATURE_KEYS if x.get(key) != y.get(key)]
                if bool(x.get("truncated")) != bool(y.get("truncated")):
                    keys.append("truncated")
                if keys:
                    found.append(f"{split} {name} example {index}: {', '.join(keys)} differ")
                    break
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("--before", default=BEFORE, help=f"the commit of the in-memory pipeline (default {BEFORE})")
    parser.add_argument("--base-model", help="the tokenizer's folder or Hub id (default: the experiment's)")
    args = parser.parse_args(argv)
    experiment = load_experiment(args.experiment)
    if args.base_model:
        experiment.model.base_model = args.base_model
    encoder_path, _ = check_base_model(experiment)
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    before_module = load_before(args.before)
    from modeling_multitask.training import data

    os.environ["MULTITASK_CACHE"] = tempfile.mkdtemp(prefix="compare_cache_")
    seconds = {}
    started = time.perf_counter()
    before = before_module.prepare_data(experiment, tokenizer)
    seconds["before"] = time.perf_counter() - started
    runs = {}
    for run in ("first", "cached"):
        started = time.perf_counter()
        runs[run] = data.prepare_data(experiment, tokenizer)
        seconds[f"arrow_{run}"] = time.perf_counter() - started
    found = {run: differences(before, prepared) for run, prepared in runs.items()}
    report = {
        "experiment": args.experiment,
        "before": args.before,
        "examples": {split: {n: len(f) for n, f in getattr(before, split).items()} for split in ("train", "validation", "test")},
        "identical": not any(found.values()),
        "differences": found,
        "cache_hits": runs["cached"].cache_hits,
        "seconds": {key: round(value, 2) for key, value in seconds.items()},
    }  # fmt: skip
    print(json.dumps(report))
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
