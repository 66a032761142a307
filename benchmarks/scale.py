"""Hundreds of tasks: what K sequence-level tasks (a few token tasks mixed in) cost per training step, per
checkpoint and per evaluation, against one task, in one run.

    python benchmarks/scale.py [--preset cpu|smoke] [--out benchmarks/results/scale_<preset>.json]
    python benchmarks/scale.py --part data [--preset cpu|smoke]   # the data pipeline: see "data pipeline" below

Prints a markdown table and writes every number as JSON. Each K gets the same random BERT encoder (built from a config
in this script), the same generated text (random words of a generated vocabulary, tokenised by a WordPiece tokenizer
built offline) and the same total number of training examples, split evenly over its K tasks; every 10th task is a
token-classification task. Measured at every K of the preset:

(1) steady-state training samples/s through the real training path: `MultiTaskTrainer` with its `TaskBlockSampler`
    (the default temperature sampling) and `MultiTaskDataCollator`, per-task loss logging every 10 steps, as the CLI
    builds them; as a ratio to K = 1. The Ks' Trainers run in threads that pass a baton (perf.py's `Lockstep`), so
    their steps alternate and step k of each K ran seconds apart; the median of the per-step ratios is reported.
    Target (issue #18): K = 500 at least 0.95x K = 1.
(2) the parts of one training step, timed alone and interleaved over the Ks, to say where a cost that grows with K
    comes from: data (sampler block + collator), `model.train()`, forward + backward, the FLOP count the Trainer
    takes every step (`Trainer.floating_point_ops`: `model.num_parameters(exclude_embeddings=True)`), the
    gradient-norm clip over `model.parameters()`, `AdamW.step()`, `model.zero_grad()`, and the model's task routing
    (`_routes`) alone.
(3) checkpoint size (safetensors bytes) and load time (`AutoModel.from_pretrained(..., trust_remote_code=True)`,
    median of repeats) per K; the growth over K = 1 against the heads' parameter bytes ("the checkpoint grows only by
    the heads"); model build time from the config, without and with AttentionFusion.
(4) evaluation over K tasks with a per-task cap (`MultiTaskTrainer.evaluate` on a dict of K datasets, each cut to
    `eval_examples_per_task`), against the forward passes alone on the same batches: the rest is per-task overhead.

On CPU the torch thread count is fixed by the preset and timing uses the thread's CPU time (as perf.py), except load
time (wall: it reads files). Benchmarks are not assertions: the script reports whether the target is met and exits 0.
"""

import argparse
import dataclasses
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from perf import clock, clock_name, machine, summary, train_in_lockstep  # noqa: E402
from perf_presets import PRESETS as PERF_PRESETS  # noqa: E402
from transformers import AutoModel, BertConfig, BertTokenizer, PrinterCallback, Trainer, TrainingArguments  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from configuration_multitask import MultiTaskConfig  # noqa: E402
from modeling_multitask import MultiTaskModel  # noqa: E402
from modeling_multitask.training.collator import MultiTaskDataCollator  # noqa: E402
from modeling_multitask.training.sampling import TaskBatchStream, TaskBlockSampler  # noqa: E402
from modeling_multitask.training.trainer import FeatureDataset, MultiTaskTrainer, TaskInfo  # noqa: E402


TARGETS = {"train_ratio_at_max_k": 0.95}
TOKEN_TASK_EVERY = 10  # task k is token classification when k % 10 == 9
TAGS = ["O", "B-a", "I-a", "B-b", "I-b"]
LOGGING_STEPS = 10  # the CLI's default: per-task losses are averaged and logged every 10 steps
ENCODER_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size")  # the random BERT


@dataclass
class ScalePreset:
    """
    name (`str`): written into the results.
    hidden_size, num_layers, num_heads, intermediate_size, vocab_size (`int`): the random BERT encoder.
    ks (`tuple[int]`): the task counts compared; the first is the reference (1).
    num_train_examples (`int`): training examples of every K, split evenly over its tasks (so an epoch is as long at
        every K and no K crosses an epoch boundary while measured).
    min_words, max_words (`int`): generated sentences have this many words (one token each), plus [CLS] and [SEP].
    batch_size (`int`): per-device training batch size.
    warmup_steps, measured_steps (`int`): Trainer steps per K dropped, then timed (interleaved over the Ks).
    component_repeats (`int`): repeats of each part of a step in (2).
    eval_examples_per_task, eval_batch_size (`int`): the per-task evaluation cap and batch size of (4).
    load_repeats (`int`): checkpoint loads per K in (3) (median).
    num_threads (`int`): torch CPU threads (1: see perf_presets.py on spin-waiting threads on a shared machine).
    """

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    ks: tuple
    num_train_examples: int
    min_words: int
    max_words: int
    batch_size: int
    warmup_steps: int
    measured_steps: int
    component_repeats: int
    eval_examples_per_task: int
    eval_batch_size: int
    load_repeats: int
    num_threads: int = 1


# perf.py's CPU encoder (hidden 256, 6 layers: MiniLM width at DistilBERT depth), taken from its preset, so a step
# costs what it costs there; a few minutes on 2 cores.
CPU_PRESET = ScalePreset(
    name="cpu",
    **{key: getattr(PERF_PRESETS["cpu"], key) for key in ENCODER_FIELDS},
    ks=(1, 10, 100, 500),
    num_train_examples=500 * 32,
    min_words=20,
    max_words=60,
    batch_size=16,
    warmup_steps=3,
    measured_steps=40,
    component_repeats=15,
    eval_examples_per_task=16,
    eval_batch_size=16,
    load_repeats=3,
)


PRESETS = {
    "cpu": CPU_PRESET,
    # A small encoder (hidden 128, 2 layers): a step is short, so any per-step cost that grows with K shows.
    "cpu_small": dataclasses.replace(
        CPU_PRESET, name="cpu_small", hidden_size=128, num_layers=2, intermediate_size=512, measured_steps=60
    ),
    # Seconds: checks that the harness runs (its numbers mean nothing).
    "smoke": ScalePreset(
        name="smoke",
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=37,
        vocab_size=99,
        ks=(1, 3, 12),
        num_train_examples=12 * 8,
        min_words=4,
        max_words=12,
        batch_size=4,
        warmup_steps=1,
        measured_steps=3,
        component_repeats=2,
        eval_examples_per_task=4,
        eval_batch_size=4,
        load_repeats=1,
    ),
}


# ------------------------------------------------------------------------------------------------ generated data


def tokenizer(preset: ScalePreset) -> BertTokenizer:
    """A WordPiece tokenizer over generated words `w0 .. wN`: every generated word is one token."""
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [f"w{i}" for i in range(preset.vocab_size - len(special))]
    return BertTokenizer(vocab={token: i for i, token in enumerate(special + words)}, do_lower_case=True)


def task_specs(k: int) -> list[dict]:
    """K tasks: sequence classification with 2-6 labels, every 10th task token classification over BIO tags."""
    tasks = []
    for index in range(k):
        name = f"task{index:03d}"
        if index % TOKEN_TASK_EVERY == TOKEN_TASK_EVERY - 1:
            tasks.append({"name": name, "type": "token_classification", "labels": list(TAGS)})
        else:
            tasks.append(
                {"name": name, "type": "sequence_classification", "labels": [f"c{c}" for c in range(2 + index % 5)]}
            )
    return tasks


def generate_examples(preset: ScalePreset, tasks: list[dict], per_task: int, seed: int) -> list[list[dict]]:
    """Per task, `per_task` tokenised examples of random words with random labels (what `prepare_data` produces:
    input ids, attention mask, token type ids, labels, task id; token tags on each word's token, -100 elsewhere)."""
    rng = random.Random(seed)
    tok = tokenizer(preset)
    num_words = preset.vocab_size - 5
    groups = []
    for task_index, task in enumerate(tasks):
        texts = [
            " ".join(f"w{rng.randrange(num_words)}" for _ in range(rng.randint(preset.min_words, preset.max_words)))
            for _ in range(per_task)
        ]
        encoded = tok(texts)
        group = []
        for row, text in enumerate(texts):
            feature = {key: encoded[key][row] for key in ("input_ids", "attention_mask", "token_type_ids")}
            if task["type"] == "token_classification":
                tags = [rng.randrange(len(TAGS)) for _ in text.split()]
                feature["labels"] = [-100, *tags, -100]
            else:
                feature["labels"] = rng.randrange(len(task["labels"]))
            feature["task_ids"] = task_index
            group.append(feature)
        groups.append(group)
    return groups


def encoder_config(preset: ScalePreset) -> BertConfig:
    return BertConfig(
        vocab_size=preset.vocab_size,
        hidden_size=preset.hidden_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        intermediate_size=preset.intermediate_size,
        max_position_embeddings=max(128, preset.max_words + 2),
        attn_implementation="sdpa",
    )


def build_model(preset: ScalePreset, k: int, fusion: bool = False) -> MultiTaskModel:
    torch.manual_seed(0)
    config = MultiTaskConfig(
        encoder_config=encoder_config(preset), tasks=task_specs(k), fusion={"type": "attention"} if fusion else None
    )
    return MultiTaskModel(config)


def head_parameters(model: MultiTaskModel) -> int:
    return sum(p.numel() for p in model.heads.parameters())


# ------------------------------------------------------------------------------------------------ (1) training


def training_args(preset: ScalePreset, output_dir: str) -> TrainingArguments:
    """The CLI's defaults where they matter per step (learning rate, max_grad_norm 1.0, per-task loss logging every
    10 steps), a constant schedule, no saving or evaluation while timed."""
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=preset.batch_size,
        per_device_eval_batch_size=preset.eval_batch_size,
        max_steps=preset.warmup_steps + preset.measured_steps,
        learning_rate=5e-5,
        lr_scheduler_type="constant",
        logging_strategy="steps",
        logging_steps=LOGGING_STEPS,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        label_names=["labels"],
        seed=0,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=torch.cuda.is_available(),
    )


class WalkingTrainer(MultiTaskTrainer):
    """`MultiTaskTrainer` with `transformers.Trainer`'s own per-step calls, which walk every module or parameter
    (`model.train()`, the FLOP count, the gradient clip, `model.zero_grad()`): the baseline the shortcuts are
    measured against, in the same run."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        return Trainer.training_step(self, model, inputs, num_items_in_batch)

    def floating_point_ops(self, inputs):
        return Trainer.floating_point_ops(self, inputs)

    def _clip_grad_norm(self, model):
        return Trainer._clip_grad_norm(self, model)


def build_trainer(
    preset: ScalePreset,
    k: int,
    output_dir: str,
    eval_groups: list[list[dict]] | None = None,
    trainer_class: type = MultiTaskTrainer,
):
    tasks = task_specs(k)
    groups = generate_examples(preset, tasks, max(1, preset.num_train_examples // k), seed=k)
    trainer = trainer_class(
        model=build_model(preset, k),
        args=training_args(preset, output_dir),
        train_dataset=torch.utils.data.ConcatDataset([FeatureDataset(group) for group in groups]),
        eval_dataset={task["name"]: FeatureDataset(g) for task, g in zip(tasks, eval_groups)} if eval_groups else None,
        data_collator=MultiTaskDataCollator(tokenizer(preset)),
        group_sizes=[len(group) for group in groups],
        tasks=[TaskInfo(task["name"], task["type"], task["labels"]) for task in tasks],
    )
    trainer.remove_callback(PrinterCallback)  # the logs (K per-task losses) are built, not printed
    return trainer


def measure_training(preset: ScalePreset, workdir: str) -> dict:
    """(1): seconds per Trainer iteration at every K, the Ks' steps interleaved in lockstep."""
    names = [f"k{k}" for k in preset.ks]
    trainers = {name: build_trainer(preset, k, f"{workdir}/train_{name}") for name, k in zip(names, preset.ks)}
    # The largest K once more, with transformers' per-step walks over every module (what MultiTaskTrainer avoids).
    walking = f"k{preset.ks[-1]}_walking"
    trainers[walking] = build_trainer(
        preset, preset.ks[-1], f"{workdir}/train_{walking}", trainer_class=WalkingTrainer
    )
    names = [*names, walking]
    seconds = train_in_lockstep(trainers, preset.warmup_steps)
    reference = names[0]
    results = {}

    def measured(name: str) -> dict:
        ratios = [r / s for r, s in zip(seconds[reference], seconds[name])]  # samples/s of K over K = 1
        return {
            "samples_per_second": summary([preset.batch_size / t for t in seconds[name]]),
            "step_ms": summary([1e3 * t for t in seconds[name]]),
            "ratio_to_k1": summary(ratios),
        }

    results = {str(k): measured(name) for name, k in zip(names, preset.ks)}
    return {
        "by_k": results,
        "max_k_with_trainer_walks": measured(walking),
        "measured_steps": len(seconds[reference]),
        "logging_steps": LOGGING_STEPS,
    }


# ------------------------------------------------------------------------------------------------ (2) step parts


class StepParts:
    """The parts of one training step for one K, each timed alone; `run` does one step in the Trainer's order."""

    def __init__(self, preset: ScalePreset, k: int):
        self.model = build_model(preset, k).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=5e-5)
        tasks = task_specs(k)
        groups = generate_examples(preset, tasks, max(1, preset.num_train_examples // k), seed=k)
        self.dataset = torch.utils.data.ConcatDataset([FeatureDataset(group) for group in groups])
        self.sampler = TaskBlockSampler([len(group) for group in groups], preset.batch_size)
        self.indices = iter(self.sampler)
        self.collator = MultiTaskDataCollator(tokenizer(preset))
        self.batch_size = preset.batch_size
        self.seconds = {part: [] for part in PARTS}

    def _timed(self, part: str, function):
        start = clock()
        value = function()
        self.seconds[part].append(clock() - start)
        return value

    def _next_block(self) -> list[int]:
        try:
            return [next(self.indices) for _ in range(self.batch_size)]
        except StopIteration:
            self.indices = iter(self.sampler)
            return [next(self.indices) for _ in range(self.batch_size)]

    def run(self) -> None:
        block = self._timed("sampler_block", self._next_block)
        batch = self._timed("collate", lambda: self.collator([self.dataset[i] for i in block]))
        labels, task_id = batch["labels"], batch["task_ids"]
        self._timed("routing", lambda: self.model._routes(task_id, labels, self.batch_size, torch.device("cpu")))
        self._timed("model_train", self.model.train)
        self._timed("forward_backward", lambda: self.model(**batch).loss.backward())
        # The Trainer adds every step's FLOPs to its total (`Trainer.floating_point_ops`, as it computes them).
        self._timed("floating_point_ops", lambda: 6 * batch["input_ids"].numel() * self.model.num_parameters(True))
        self._timed("clip_grad_norm", lambda: torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0))
        self._timed("optimizer_step", self.optimizer.step)
        self._timed("zero_grad", self.model.zero_grad)


PARTS = (
    "sampler_block",
    "collate",
    "routing",
    "model_train",
    "forward_backward",
    "floating_point_ops",
    "clip_grad_norm",
    "optimizer_step",
    "zero_grad",
)


def measure_step_parts(preset: ScalePreset) -> dict:
    """(2): one step of each K in turn (rotating order), every part timed; medians in milliseconds."""
    parts = {k: StepParts(preset, k) for k in preset.ks}
    for step_parts in parts.values():  # warm-up
        step_parts.run()
        step_parts.seconds = {part: [] for part in PARTS}
    order = list(preset.ks)
    for repeat in range(preset.component_repeats):
        shift = repeat % len(order)
        for k in order[shift:] + order[:shift]:
            parts[k].run()
    by_k = {}
    for k, step_parts in parts.items():
        medians = {part: 1e3 * statistics.median(values) for part, values in step_parts.seconds.items()}
        outside = sum(value for part, value in medians.items() if part not in ("forward_backward", "routing"))
        by_k[str(k)] = {
            "median_ms": medians,
            "parameters": sum(p.numel() for p in step_parts.model.parameters()),
            "parameter_tensors": sum(1 for _ in step_parts.model.parameters()),
            "modules": sum(1 for _ in step_parts.model.modules()),
            "outside_model_ms": outside,
        }
    return {"by_k": by_k, "repeats": preset.component_repeats}


# ------------------------------------------------------------------------------------------------ (3) checkpoints


def measure_checkpoints(preset: ScalePreset, workdir: str) -> dict:
    """(3): safetensors size and AutoModel load time per K; build time without and with fusion."""
    by_k = {}
    for k in preset.ks:
        start = clock()
        model = build_model(preset, k)
        build = clock() - start
        start = clock()
        build_model(preset, k, fusion=True)
        build_fusion = clock() - start
        folder = Path(workdir) / f"checkpoint_k{k}"
        model.save_pretrained(folder)
        weights = sorted(folder.glob("*.safetensors"))
        loads = []
        for _ in range(preset.load_repeats):
            start = time.perf_counter()
            loaded = AutoModel.from_pretrained(folder, trust_remote_code=True)
            loads.append(time.perf_counter() - start)
        assert sorted(loaded.config.task_names) == sorted(model.config.task_names)
        by_k[str(k)] = {
            "safetensors_bytes": sum(path.stat().st_size for path in weights),
            "config_json_bytes": (folder / "config.json").stat().st_size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "head_parameters": head_parameters(model),
            "load_seconds": summary(loads),
            "build_seconds": build,
            "build_seconds_fusion": build_fusion,
        }
        del model, loaded
    reference = by_k[str(preset.ks[0])]
    for values in by_k.values():
        growth = values["safetensors_bytes"] - reference["safetensors_bytes"]
        head_bytes = 4 * (values["head_parameters"] - reference["head_parameters"])  # float32
        values["growth_bytes"] = growth
        values["head_growth_bytes"] = head_bytes
        values["growth_over_head_bytes"] = growth / head_bytes if head_bytes else None
    return {"by_k": by_k, "load_clock": "wall time (time.perf_counter)"}


# ------------------------------------------------------------------------------------------------ (4) evaluation


def measure_evaluation(preset: ScalePreset, workdir: str) -> dict:
    """(4): `MultiTaskTrainer.evaluate` over K capped tasks, against the forward passes alone on the same batches."""
    by_k = {}
    for k in preset.ks:
        tasks = task_specs(k)
        eval_groups = generate_examples(preset, tasks, preset.eval_examples_per_task, seed=10_000 + k)
        trainer = build_trainer(preset, k, f"{workdir}/eval_k{k}", eval_groups)
        start = clock()
        metrics = trainer.evaluate()
        evaluate_seconds = clock() - start
        model, collator = trainer.model.eval(), trainer.data_collator
        start = clock()
        with torch.inference_mode():
            for group in eval_groups:
                for i in range(0, len(group), preset.eval_batch_size):
                    model(**collator(group[i : i + preset.eval_batch_size]))
        forward_seconds = clock() - start
        by_k[str(k)] = {
            "evaluate_seconds": evaluate_seconds,
            "forward_seconds": forward_seconds,
            "overhead_ms_per_task": 1e3 * (evaluate_seconds - forward_seconds) / k,
            "examples": k * preset.eval_examples_per_task,
            "metrics_returned": len(metrics),
        }
    return {"by_k": by_k, "examples_per_task": preset.eval_examples_per_task, "batch_size": preset.eval_batch_size}


# ------------------------------------------------------------------------------------------------ report


def markdown(results: dict) -> str:
    preset, ks = results["preset"], [str(k) for k in results["preset"]["ks"]]
    training, parts = results["training"]["by_k"], results["step_parts"]["by_k"]
    checkpoints, evaluation = results["checkpoints"]["by_k"], results["evaluation"]["by_k"]
    top, target = ks[-1], results["targets"]["train_ratio_at_max_k"]

    def cells(function) -> str:
        return " | ".join(function(k) for k in ks)

    def spread(s: dict, fmt: str) -> str:
        return f"{s['median']:{fmt}} [{s['q1']:{fmt}}, {s['q3']:{fmt}}]"

    ratio = training[top]["ratio_to_k1"]["median"]
    walking = results["training"].get("max_k_with_trainer_walks")
    lines = [
        f"Preset `{preset['name']}`: BERT hidden {preset['hidden_size']}, {preset['num_layers']} layers, batch "
        f"{preset['batch_size']}, {preset['min_words']}-{preset['max_words']} words an example, "
        f"{preset['num_train_examples']} training examples at every K; every {TOKEN_TASK_EVERY}th task token-level. "
        f"Device: {results['machine']['device']}. Timed by {results['clock']}.",
        "",
        "| K tasks | " + " | ".join(ks) + " |",
        "|---|" + "---|" * len(ks),
        "| (1) train samples/s, Trainer: median [quartiles] | "
        + cells(lambda k: spread(training[k]["samples_per_second"], ".1f"))
        + " |",
        "| (1) ratio to K = 1, per step: median [quartiles] | "
        + cells(lambda k: spread(training[k]["ratio_to_k1"], ".3f"))
        + " |",
    ]
    for part in PARTS:
        lines.append(f"| (2) {part} (ms) | " + cells(lambda k, p=part: f"{parts[k]['median_ms'][p]:.2f}") + " |")
    lines += [
        "| (2) step outside the model: data, train(), FLOP count, clip, AdamW, zero_grad (ms) | "
        + cells(lambda k: f"{parts[k]['outside_model_ms']:.2f}")
        + " |",
        "| parameter tensors / modules | "
        + cells(lambda k: f"{parts[k]['parameter_tensors']} / {parts[k]['modules']}")
        + " |",
        "| (3) checkpoint safetensors (MB) | "
        + cells(lambda k: f"{checkpoints[k]['safetensors_bytes'] / 1e6:.2f}")
        + " |",
        "| (3) growth over K = 1 / heads' float32 bytes | "
        + cells(
            lambda k: (
                "-"
                if checkpoints[k]["growth_over_head_bytes"] is None
                else f"{checkpoints[k]['growth_over_head_bytes']:.4f}"
            )
        )
        + " |",
        "| (3) config.json (kB) | " + cells(lambda k: f"{checkpoints[k]['config_json_bytes'] / 1e3:.1f}") + " |",
        "| (3) AutoModel load, remote code (s, wall) | "
        + cells(lambda k: f"{checkpoints[k]['load_seconds']['median']:.2f}")
        + " |",
        "| (3) build from config (s) / with fusion (s) | "
        + cells(lambda k: f"{checkpoints[k]['build_seconds']:.2f} / {checkpoints[k]['build_seconds_fusion']:.2f}")
        + " |",
        f"| (4) evaluate, {results['evaluation']['examples_per_task']} examples per task (s) | "
        + cells(lambda k: f"{evaluation[k]['evaluate_seconds']:.2f}")
        + " |",
        "| (4) forward passes alone (s) | " + cells(lambda k: f"{evaluation[k]['forward_seconds']:.2f}") + " |",
        "| (4) evaluation overhead per task (ms) | "
        + cells(lambda k: f"{evaluation[k]['overhead_ms_per_task']:.1f}")
        + " |",
        "",
        f"Target: training samples/s at K = {top} at least {target}x K = 1: "
        + ("meets" if ratio >= target else "**misses**")
        + f" ({ratio:.3f}, median of {results['training']['measured_steps']} paired steps).",
    ]
    if walking is not None:
        lines.append(
            f"Without MultiTaskTrainer's per-step shortcuts (transformers.Trainer's `model.train()`, FLOP count, clip "
            f"and `zero_grad` walking every module, same run): K = {top} at "
            f"{spread(walking['ratio_to_k1'], '.3f')} of K = 1."
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ data pipeline
#
# `--part data`: what it costs to get from a data file to the first training batch, at growing sizes. Each measurement
# runs in a fresh process (its peak RSS is that process's `ru_maxrss`): read + check + tokenise + the train dataset,
# its sampler and one collated batch, as `cli.run` builds them. One generated jsonl task (random words of the generated
# vocabulary, a random label of 4), the preset's tokenizer; the encoder is never built (this measures the pipeline).
#   map, first run: `prepare_data` with an empty data cache;  map, cached: the same again;
#   in-memory (today's pipeline before the Arrow one): every record read into Python objects and every example
#   tokenised into a list of feature dicts by the same `read_split` / `infer_labels` / `encode_labels` / `tokenize`;
#   streaming (`data.streaming: true`, no num_examples or labels given), first run: the one pass that counts the
#   records and reads their labels, then the first batch of the stream (`TaskBatchStream`), with its own empty data
#   cache (a second run reads the size and labels from there: tests/test_streaming.py).


@dataclass
class DataPreset:
    sizes: tuple  # training examples per measurement
    in_memory_sizes: tuple  # the sizes at which the in-memory pipeline is measured too
    min_words: int
    max_words: int


DATA_PRESETS = {
    "cpu": DataPreset(
        sizes=(10_000, 100_000, 1_000_000), in_memory_sizes=(10_000, 100_000), min_words=8, max_words=24
    ),
    "smoke": DataPreset(sizes=(200, 400), in_memory_sizes=(200,), min_words=4, max_words=12),
}
DATA_TARGETS = {"map_rss_ratio_max": 3.0, "cached_speedup_min": 10.0, "stream_rss_ratio_max": 1.5}


def write_data_task(preset: ScalePreset, data: DataPreset, size: int, folder: Path) -> Path:
    """`size` generated examples as jsonl, and an experiment file training one task on them."""
    rng = random.Random(size)
    num_words = preset.vocab_size - 5
    path = folder / "train.jsonl"
    with path.open("w") as handle:
        for _ in range(size):
            words = " ".join(
                f"w{rng.randrange(num_words)}" for _ in range(rng.randint(data.min_words, data.max_words))
            )
            handle.write(json.dumps({"text": words, "label": f"c{rng.randrange(4)}"}) + "\n")
    tokenizer(preset).save_pretrained(folder / "tokenizer")
    return path


def _data_child(spec: dict) -> dict:
    """One measurement, in this (fresh) process: the pipeline of `spec["mode"]` up to one collated training batch."""
    import resource

    from modeling_multitask.training import data as data_module
    from modeling_multitask.training.experiment import parse_experiment

    started = time.perf_counter()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(spec["tokenizer"])
    streaming = spec["mode"] == "stream"
    raw = {
        "model": {"base_model": spec["tokenizer"]},
        "tasks": [
            {
                "name": "topic",
                "type": "sequence_classification",
                "data": {"train": spec["train"], "streaming": streaming},
            }
        ],
        "data_pipeline": {"cache_dir": spec["cache"]},
        "training": {"max_steps": 10} if streaming else {},
    }
    experiment = parse_experiment(raw)
    collator = MultiTaskDataCollator(tok, task_types=["sequence_classification"])
    if spec["mode"] == "in_memory":
        task = experiment.tasks[0]
        rows = data_module.read_split(task.data, "train")
        labels = data_module.infer_labels(task, rows)
        ids = {task.name: data_module.encode_labels(task, rows, labels, "train")}
        features = data_module.tokenize(
            data_module.TaskGroup([task], task.data), rows, tok, ids, {task.name: 0}, False
        )
        groups, cache_hits = [features], []
    elif streaming:
        prepared = data_module.prepare_data(experiment, tok)
        groups = [prepared.train[group.name] for group in prepared.groups]
        stream = TaskBatchStream(groups, [data_module.group_size(group) for group in groups], 32, collator)
        batch = next(iter(stream))
        groups, cache_hits = None, prepared.cache_hits
    else:
        prepared = data_module.prepare_data(experiment, tok)
        groups, cache_hits = [prepared.train[group.name] for group in prepared.groups], prepared.cache_hits
    if not streaming:
        dataset = torch.utils.data.ConcatDataset([FeatureDataset(group) for group in groups])
        sampler = TaskBlockSampler([len(group) for group in groups], 32)
        indices = [index for index, _ in zip(sampler, range(32))]
        batch = collator([dataset[i] for i in indices])
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cache_hits": cache_hits,
        "batch_shape": list(batch["input_ids"].shape),
    }


def _run_child(spec: dict) -> dict:
    import subprocess

    command = [sys.executable, str(Path(__file__).resolve()), "--data-child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"data measurement {spec['mode']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_data(preset: ScalePreset, data: DataPreset, workdir: str) -> dict:
    by_size = {}
    for size in data.sizes:
        folder = Path(workdir) / f"data_{size}"
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        train = write_data_task(preset, data, size, folder)
        print(f"  {size} examples written ({time.perf_counter() - started:.0f} s)", flush=True)
        spec = {"train": str(train), "tokenizer": str(folder / "tokenizer"), "cache": str(folder / "cache")}
        result = {"map_first": _run_child({**spec, "mode": "map"})}
        result["map_cached"] = _run_child({**spec, "mode": "map"})
        if size in data.in_memory_sizes:
            result["in_memory"] = _run_child({**spec, "mode": "in_memory"})
        result["cached_speedup"] = result["map_first"]["seconds"] / result["map_cached"]["seconds"]
        result["cache_bytes"] = sum(path.stat().st_size for path in (folder / "cache").rglob("*") if path.is_file())
        result["stream_first"] = _run_child({**spec, "mode": "stream", "cache": str(folder / "stream_cache")})
        print(f"  {size}: " + json.dumps(result), flush=True)
        by_size[str(size)] = result
        shutil.rmtree(folder, ignore_errors=True)
    smallest, largest = by_size[str(data.sizes[0])], by_size[str(data.sizes[-1])]
    return {
        "by_size": by_size,
        "map_rss_ratio": largest["map_first"]["peak_rss_mb"] / smallest["map_first"]["peak_rss_mb"],
        "cached_speedup_at_largest": largest["cached_speedup"],
        "stream_rss_ratio": largest["stream_first"]["peak_rss_mb"] / smallest["stream_first"]["peak_rss_mb"],
    }


def data_markdown(results: dict) -> str:
    data = results["data"]
    sizes = list(data["by_size"])
    rows = [
        ("map, first run: start-up (s)", lambda r: f"{r['map_first']['seconds']:.1f}"),
        ("map, cached run: start-up (s)", lambda r: f"{r['map_cached']['seconds']:.2f}"),
        ("map: cached speed-up", lambda r: f"{r['cached_speedup']:.0f}x"),
        ("map, first run: peak RSS (MB)", lambda r: f"{r['map_first']['peak_rss_mb']:.0f}"),
        ("map, cached run: peak RSS (MB)", lambda r: f"{r['map_cached']['peak_rss_mb']:.0f}"),
        ("in-memory (before): start-up (s)", lambda r: f"{r['in_memory']['seconds']:.1f}" if "in_memory" in r else "-"),
        ("in-memory (before): peak RSS (MB)", lambda r: f"{r['in_memory']['peak_rss_mb']:.0f}" if "in_memory" in r else "-"),
        ("data cache on disk (MB)", lambda r: f"{r['cache_bytes'] / 1e6:.0f}"),
        ("streaming, first run: start-up (s)", lambda r: f"{r['stream_first']['seconds']:.1f}" if "stream_first" in r else "-"),
        ("streaming, first run: peak RSS (MB)", lambda r: f"{r['stream_first']['peak_rss_mb']:.0f}" if "stream_first" in r else "-"),
    ]  # fmt: skip
    lines = [
        "| training examples | " + " | ".join(f"{int(s):,}" for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    lines += [f"| {name} | " + " | ".join(cell(data["by_size"][s]) for s in sizes) + " |" for name, cell in rows]
    rss, speedup = data["map_rss_ratio"], data["cached_speedup_at_largest"]
    lines += [
        "",
        f"Peak RSS at {int(sizes[-1]):,} / {int(sizes[0]):,} examples, map mode: {rss:.2f}x (target at most "
        f"{DATA_TARGETS['map_rss_ratio_max']}x: {'meets' if rss <= DATA_TARGETS['map_rss_ratio_max'] else '**misses**'})."
        f" Cached start-up at {int(sizes[-1]):,}: {speedup:.0f}x faster than the first run (target at least "
        f"{DATA_TARGETS['cached_speedup_min']:.0f}x: "
        f"{'meets' if speedup >= DATA_TARGETS['cached_speedup_min'] else '**misses**'}). "
        + _stream_summary(data, sizes),
    ]
    return "\n".join(lines)


def _stream_summary(data: dict, sizes: list[str]) -> str:
    if "stream_rss_ratio" not in data:  # results from before streaming existed
        return "Streaming: not measured in this run."
    ratio, limit = data["stream_rss_ratio"], DATA_TARGETS.get("stream_rss_ratio_max", 1.5)
    return (
        f"Peak RSS at {int(sizes[-1]):,} / {int(sizes[0]):,} examples, streaming: {ratio:.2f}x (target at most "
        f"{limit}x: {'meets' if ratio <= limit else '**misses**'})."
    )


def save_results(results: dict, started: float, render, out: Path) -> int:
    """Stamp a part's results (command, date, wall time, its table from `render`), write them to `out` and print
    the table."""
    results["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    results["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["wall_seconds"] = time.time() - started
    results["table"] = render(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print()
    print(results["table"])
    print(f"\nWrote {out} ({results['wall_seconds']:.0f} s).")
    return 0


def main_data(args) -> int:
    preset, data = PRESETS[args.preset], DATA_PRESETS[args.preset]
    workdir = args.workdir or tempfile.mkdtemp(prefix="scale_data_")
    started = time.time()
    print(f"data pipeline at {data.sizes} examples ...", flush=True)
    results = {
        "preset": {"name": preset.name, "vocab_size": preset.vocab_size, **data.__dict__},
        "machine": machine(),
        "data": measure_data(preset, data, workdir),
        "targets": DATA_TARGETS,
    }
    return save_results(results, started, data_markdown, Path(args.out or RESULTS / f"scale_data_{preset.name}.json"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/scale_<preset>.json)")
    parser.add_argument("--workdir", default=None, help="scratch folder for checkpoints (default: a temp dir)")
    parser.add_argument(
        "--part",
        choices=("k", "data"),
        default="k",
        help="k: many tasks (default); data: the data pipeline's start-up time and peak RSS at growing sizes "
        "(its own results file, scale_data_<preset>.json)",
    )
    parser.add_argument("--data-child", help=argparse.SUPPRESS)  # one data measurement, in a fresh process
    args = parser.parse_args(argv)
    if args.data_child:
        print(json.dumps(_data_child(json.loads(args.data_child))))
        return 0
    if args.part == "data":
        return main_data(args)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the per-checkpoint "Loading weights" bars
    preset = PRESETS[args.preset]
    if preset.ks[0] != 1:
        raise ValueError(f"preset {preset.name}: the first K is the reference and must be 1, got {preset.ks[0]}.")
    threads = torch.get_num_threads()
    if preset.num_threads and not torch.cuda.is_available():
        torch.set_num_threads(preset.num_threads)
    workdir = args.workdir or tempfile.mkdtemp(prefix="scale_")
    started = time.time()
    try:
        machine_info = machine()  # while the preset's thread count is set
        print(
            f"(1) training at K = {preset.ks}, {preset.warmup_steps}+{preset.measured_steps} steps each ...",
            flush=True,
        )
        training = measure_training(preset, workdir)
        print("(2) the parts of a step ...", flush=True)
        step_parts = measure_step_parts(preset)
        print("(3) checkpoints ...", flush=True)
        checkpoints = measure_checkpoints(preset, workdir)
        print("(4) evaluation ...", flush=True)
        evaluation = measure_evaluation(preset, workdir)
    finally:
        torch.set_num_threads(threads)
    results = {
        "preset": {**preset.__dict__, "ks": list(preset.ks)},
        "clock": clock_name(),
        "machine": machine_info,
        "training": training,
        "step_parts": step_parts,
        "checkpoints": checkpoints,
        "evaluation": evaluation,
        "targets": TARGETS,
    }
    return save_results(results, started, markdown, Path(args.out or RESULTS / f"scale_{preset.name}.json"))


if __name__ == "__main__":
    sys.exit(main())
