"""Performance of the multi-task model against the standard single-task transformers model, side by side in one run.

    python benchmarks/perf.py [--preset cpu|gpu] [--out benchmarks/results/perf_<preset>.json] [--compile]

Prints a markdown table and writes the raw numbers as JSON beside it. Every comparison uses the same random BERT
encoder size, data, batch size and sequence length (see `perf_presets.py`), and is reported as a ratio:

(a) training throughput through the HF Trainer: `MultiTaskModel` (2 tasks, no fusion, `MultiTaskTrainer` with its
    `TaskBlockSampler` and `MultiTaskDataCollator`) against `AutoModelForSequenceClassification` + `Trainer`
    (its default sampler and `DataCollatorWithPadding`). Target: ratio >= 0.97.
(b) the training-step cost of AttentionFusion: the same multi-task run with `fusion={"type": "attention"}`.
    Target: <= 3% extra.
(c) inference of K tasks from one encoder pass (`task_ids=None`) against one single-task model, and against K
    separate single-task models. Target: K tasks in <= 1.1x the time of one.
(d) the data pipeline (TaskBlockSampler + MultiTaskDataCollator through a DataLoader, ragged lengths, dynamic
    padding) against what the model consumes in (a). It must be far above it.
(e) peak training memory against the baseline, each measured in a fresh process. Target: <= 1.05x. On GPU:
    `torch.cuda.max_memory_allocated`. On CPU: the peak of the process's resident set size (RSS, read from
    /proc/self/statm every 2 ms by a thread) minus the RSS just before the model is built (tracemalloc cannot be
    used: it sees Python allocations only, not tensor memory).

Noise control: the three Trainers of (a)/(b) train in threads that pass a baton, so that exactly one runs at a time
and their steps alternate (baseline, multi-task, fusion, then the next cycle in a rotated order). Each full Trainer
iteration (data loading, forward, backward, optimizer) is timed between two step ends (synchronised on GPU); the
first `warmup_steps` are dropped. Step k of each configuration ran within seconds of the others, so ratios are taken
step by step and their median reported with the quartiles. Inference repeats interleave one forward of each
configuration, in a rotating order. On CPU the preset fixes the torch thread count (see `perf_presets.py`).
Benchmarks are not assertions: the script reports whether each target is met and always exits 0 on success.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from perf_presets import PRESETS, Preset  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    BertTokenizer,
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging  # noqa: E402

from configuration_multitask import MultiTaskConfig  # noqa: E402
from modeling_multitask import MultiTaskModel  # noqa: E402
from modeling_multitask.training.collator import MultiTaskDataCollator  # noqa: E402
from modeling_multitask.training.sampling import TaskBlockSampler  # noqa: E402
from modeling_multitask.training.trainer import FeatureDataset, MultiTaskTrainer, TaskInfo  # noqa: E402


TARGETS = {"train_ratio": 0.97, "fusion_overhead": 0.03, "inference_k_over_one": 1.10, "memory_ratio": 1.05}
TRAIN_CONFIGS = ("baseline", "multitask", "multitask_fusion")
TRAIN_TASKS = [
    {"name": "topic", "type": "sequence_classification", "labels": ["a", "b", "c", "d"]},
    {"name": "sentiment", "type": "sequence_classification", "labels": ["negative", "positive"]},
]
INFERENCE_TASKS = [
    {"name": "intent", "type": "sequence_classification", "labels": [f"intent{i}" for i in range(8)]},
    {"name": "slots", "type": "token_classification", "labels": [f"tag{i}" for i in range(9)]},
    {"name": "sentiment", "type": "sequence_classification", "labels": ["negative", "positive"]},
    {"name": "topics", "type": "multi_label_classification", "labels": [f"topic{i}" for i in range(6)]},
    {"name": "similarity", "type": "regression"},
]


# ------------------------------------------------------------------------------------------------ building blocks


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def clock() -> float:
    """Seconds for timing. On GPU: wall time (after a sync). On CPU: the calling thread's CPU time, which leaves out
    the time the OS gives the core to other jobs; with one torch thread and `num_workers=0` every operation of a step
    runs in that thread, so it is the step's compute time, and far less noisy than wall time on a shared machine."""
    if torch.cuda.is_available():
        return time.perf_counter()
    return time.thread_time()


def clock_name() -> str:
    return "wall time (CUDA-synchronised)" if torch.cuda.is_available() else "thread CPU time (time.thread_time)"


def encoder_config(preset: Preset) -> BertConfig:
    return BertConfig(
        vocab_size=preset.vocab_size,
        hidden_size=preset.hidden_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        intermediate_size=preset.intermediate_size,
        max_position_embeddings=max(512, preset.seq_len),
        attn_implementation="sdpa",
    )


def tokenizer(preset: Preset) -> BertTokenizer:
    """A tokenizer with the preset's vocabulary size; only its padding is used."""
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate(special + [f"w{i}" for i in range(preset.vocab_size - len(special))])}
    return BertTokenizer(vocab=vocab, do_lower_case=True)


def random_ids(generator: torch.Generator, preset: Preset, length: int) -> list[int]:
    body = torch.randint(5, preset.vocab_size, (length - 2,), generator=generator).tolist()
    return [2] + body + [3]  # [CLS] ... [SEP]


def fixed_length_features(preset: Preset, num_labels: list[int], seed: int = 0) -> list[list[dict]]:
    """Per task, `num_train_examples / len(num_labels)` examples of exactly `seq_len` tokens with random labels."""
    generator = torch.Generator().manual_seed(seed)
    per_task = preset.num_train_examples // len(num_labels)
    groups = []
    for task_index, labels in enumerate(num_labels):
        groups.append(
            [
                {
                    "input_ids": random_ids(generator, preset, preset.seq_len),
                    "attention_mask": [1] * preset.seq_len,
                    "labels": int(torch.randint(labels, (1,), generator=generator)),
                    "task_ids": task_index,
                }
                for _ in range(per_task)
            ]
        )
    return groups


def multitask_model(preset: Preset, tasks: list[dict], fusion: bool) -> MultiTaskModel:
    torch.manual_seed(0)
    config = MultiTaskConfig(
        encoder_config=encoder_config(preset), tasks=tasks, fusion={"type": "attention"} if fusion else None
    )
    return MultiTaskModel(config)


def baseline_model(preset: Preset, num_labels: int, token_level: bool = False, problem_type: str | None = None):
    torch.manual_seed(0)
    config = encoder_config(preset)
    config.num_labels = num_labels
    if problem_type:
        config.problem_type = problem_type
    auto = AutoModelForTokenClassification if token_level else AutoModelForSequenceClassification
    return auto.from_config(config, attn_implementation="sdpa")


def training_args(preset: Preset, output_dir: str, max_steps: int, compile_model: bool) -> TrainingArguments:
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=preset.batch_size,
        max_steps=max_steps,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        optim=preset.optim,
        bf16=preset.bf16,
        dataloader_num_workers=preset.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        label_names=["labels"],
        seed=0,
        use_cpu=not torch.cuda.is_available(),
        torch_compile=compile_model,
        **preset.extra_args,
    )


class Lockstep:
    """A baton passed between Trainers running in threads: one training step at a time, in an order that rotates
    every cycle, so that the configurations' steps alternate seconds apart and slow load drifts hit them alike."""

    def __init__(self, names):
        self.order = list(names)
        self.position = 0
        self.failed = False
        self.condition = threading.Condition()

    def wait(self, name: str) -> None:
        with self.condition:
            if not self.condition.wait_for(lambda: self.failed or self.order[self.position] == name, timeout=3600):
                raise TimeoutError(f"lockstep: {name} waited an hour for its turn")
            if self.failed:
                raise RuntimeError("lockstep: another configuration failed")

    def _advance(self) -> None:
        if self.position >= len(self.order):
            self.order = self.order[1:] + self.order[:1]  # next cycle starts with the next configuration
            self.position = 0
        self.condition.notify_all()

    def done(self, name: str) -> None:
        with self.condition:
            self.position += 1
            self._advance()

    def leave(self, name: str, failed: bool = False) -> None:
        with self.condition:
            if name in self.order:
                index = self.order.index(name)
                self.order.pop(index)
                if index < self.position:
                    self.position -= 1
            self.failed = self.failed or failed
            if self.order:
                self._advance()
            else:
                self.condition.notify_all()


class StepTimer(TrainerCallback):
    """Times every full Trainer iteration (data, forward, backward, optimizer) while holding the lockstep baton."""

    def __init__(self, name: str, lockstep: Lockstep):
        self.name = name
        self.lockstep = lockstep
        self.seconds = []
        self.started = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.lockstep.wait(self.name)
        self.started = clock()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        self.seconds.append(clock() - self.started)
        self.lockstep.done(self.name)
        self.lockstep.wait(self.name)
        self.started = clock()

    def on_train_end(self, args, state, control, **kwargs):
        self.lockstep.leave(self.name)


def build_trainer(name: str, preset: Preset, output_dir: str, compile_model: bool):
    """The Trainer of one configuration of (a)/(b)/(e)."""
    max_steps = preset.warmup_steps + preset.measured_steps
    args = training_args(preset, output_dir, max_steps, compile_model)
    groups = fixed_length_features(preset, [len(task["labels"]) for task in TRAIN_TASKS])
    if name == "baseline":
        # The same examples, without task ids: one single-task model, the standard way.
        features = [{k: v for k, v in f.items() if k != "task_ids"} for group in groups for f in group]
        model = baseline_model(preset, num_labels=max(len(task["labels"]) for task in TRAIN_TASKS))
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=FeatureDataset(features),
            data_collator=DataCollatorWithPadding(tokenizer(preset)),
        )
    else:
        model = multitask_model(preset, TRAIN_TASKS, fusion=name == "multitask_fusion")
        infos = [TaskInfo(task["name"], task["type"], task["labels"]) for task in TRAIN_TASKS]
        dataset = torch.utils.data.ConcatDataset([FeatureDataset(group) for group in groups])
        trainer = MultiTaskTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=MultiTaskDataCollator(tokenizer(preset)),
            group_sizes=[len(group) for group in groups],
            tasks=infos,
            sampling_strategy="uniform",
        )
    trainer.remove_callback(PrinterCallback)  # the end-of-training metrics line
    return trainer


def summary(values: list[float]) -> dict:
    """Median with the interquartile range (robust to the load bursts of a shared machine) and all values."""
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {
        "median": statistics.median(values),
        "q1": quartiles[0],
        "q3": quartiles[2],
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def train_in_lockstep(trainers: dict, warmup_steps: int) -> dict[str, list[float]]:
    """Train every trainer at once, one thread each, their steps interleaved (`Lockstep`: step k of each runs within
    one cycle, so machine noise hits them alike); each one's seconds per step after `warmup_steps`."""
    lockstep = Lockstep(list(trainers))
    timers = {name: StepTimer(name, lockstep) for name in trainers}
    errors = {}

    def train(name):
        trainer = trainers[name]
        trainer.add_callback(timers[name])
        try:
            trainer.train()
        except BaseException as error:  # noqa: B036 - reported below, after every thread has stopped
            errors[name] = error
            lockstep.leave(name, failed=True)

    threads = [threading.Thread(target=train, args=(name,)) for name in trainers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        name, error = next(iter(errors.items()))
        raise RuntimeError(f"training {name} failed: {error!r}") from error
    return {name: timer.seconds[warmup_steps:] for name, timer in timers.items()}


# ------------------------------------------------------------------------------------------------ measurements


def measure_training(preset: Preset, output_dir: str, compile_model: bool) -> dict:
    """(a) and (b): seconds per Trainer iteration, the three configurations' steps interleaved in lockstep."""
    trainers = {name: build_trainer(name, preset, f"{output_dir}/{name}", compile_model) for name in TRAIN_CONFIGS}
    seconds = train_in_lockstep(trainers, preset.warmup_steps)
    # Step k of each configuration ran within one cycle, seconds apart: compare them pairwise.
    per_step = {
        "multitask_vs_baseline": [b / m for b, m in zip(seconds["baseline"], seconds["multitask"])],
        "fusion_vs_multitask": [f / m - 1.0 for f, m in zip(seconds["multitask_fusion"], seconds["multitask"])],
    }
    samples = {name: [preset.batch_size / t for t in values] for name, values in seconds.items()}
    total = {name: len(values) * preset.batch_size / sum(values) for name, values in seconds.items()}
    parameters = {name: sum(p.numel() for p in trainer.model.parameters()) for name, trainer in trainers.items()}
    return {
        "samples_per_second": {name: summary(values) for name, values in samples.items()},
        "samples_per_second_overall": total,
        "ratios": {name: summary(values) for name, values in per_step.items()},
        "ratios_overall": {
            "multitask_vs_baseline": total["multitask"] / total["baseline"],
            "fusion_vs_multitask": total["multitask"] / total["multitask_fusion"] - 1.0,
        },
        "measured_steps": len(seconds["baseline"]),
        "parameters": parameters,
    }


def measure_inference(preset: Preset) -> dict:
    """(c): K tasks from one encoder pass against one single-task model and K separate single-task models."""
    dev = device()
    dtype = torch.bfloat16 if preset.bf16 else None
    tasks = INFERENCE_TASKS[: preset.num_inference_tasks]
    candidates = {
        "multitask_k": multitask_model(preset, tasks, fusion=False),
        "multitask_k_fusion": multitask_model(preset, tasks, fusion=True),
    }
    singles = []
    for task in tasks:
        if task["type"] == "token_classification":
            singles.append(baseline_model(preset, len(task["labels"]), token_level=True))
        elif task["type"] == "regression":
            singles.append(baseline_model(preset, 1, problem_type="regression"))
        elif task["type"] == "multi_label_classification":
            singles.append(baseline_model(preset, len(task["labels"]), problem_type="multi_label_classification"))
        else:
            singles.append(baseline_model(preset, len(task["labels"])))
    for model in [*candidates.values(), *singles]:
        model.to(device=dev, dtype=dtype).eval()

    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(
        5, preset.vocab_size, (preset.inference_batch_size, preset.seq_len), generator=generator
    ).to(dev)
    attention_mask = torch.ones_like(input_ids)
    runs = {
        "single_one": lambda: singles[0](input_ids=input_ids, attention_mask=attention_mask),
        "single_k_separate": lambda: [m(input_ids=input_ids, attention_mask=attention_mask) for m in singles],
    }
    for name, model in candidates.items():
        runs[name] = lambda model=model: model(input_ids=input_ids, attention_mask=attention_mask)
    # Check the candidates really predict every task from one pass.
    with torch.inference_mode():
        output = candidates["multitask_k"](input_ids=input_ids, attention_mask=attention_mask)
    assert sorted(output.task_logits) == sorted(task["name"] for task in tasks)

    seconds = {name: [] for name in runs}
    names = list(runs)
    with torch.inference_mode():
        for name in names:  # warm-up
            runs[name]()
        for repeat in range(preset.inference_repeats):
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                synchronize()
                start = clock()
                runs[name]()
                synchronize()
                seconds[name].append(clock() - start)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    # Ratios within a repeat compare forwards run moments apart: their median is robust to load bursts.
    paired = {
        "k_tasks_one_pass_over_one_task": [m / o for m, o in zip(seconds["multitask_k"], seconds["single_one"])],
        "k_tasks_one_pass_fusion_over_one_task": [
            m / o for m, o in zip(seconds["multitask_k_fusion"], seconds["single_one"])
        ],
        "k_separate_over_one_pass": [k / m for k, m in zip(seconds["single_k_separate"], seconds["multitask_k"])],
    }
    return {
        "k": len(tasks),
        "tasks": [task["type"] for task in tasks],
        "batch_size": preset.inference_batch_size,
        "seconds": {name: summary(values) for name, values in seconds.items()},
        "ratios": {name: statistics.median(values) for name, values in paired.items()},
        "ratio_quartiles": {name: summary(values) for name, values in paired.items()},
        "ratios_of_medians": {
            "k_tasks_one_pass_over_one_task": median["multitask_k"] / median["single_one"],
            "k_tasks_one_pass_fusion_over_one_task": median["multitask_k_fusion"] / median["single_one"],
            "k_separate_over_one_pass": median["single_k_separate"] / median["multitask_k"],
        },
    }


def measure_fusion_component(preset: Preset) -> dict:
    """(b), second estimate: the forward + backward time of the fusion path alone against a whole training step.

    The fusion path is what fusion adds to a step: the task's token weights from the encoder output and the weighted
    pooling, forward and backward (minus the `[CLS]` pooling it replaces). The step is a full forward, backward and
    optimizer step of the multi-task model without fusion, on the same batch. Both are timed alternately; a small
    component timed many times gives a tighter estimate than the difference of two noisy step times."""
    dev = device()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=preset.bf16 and dev.type == "cuda")
    with_fusion = multitask_model(preset, TRAIN_TASKS, fusion=True).to(dev).train()
    without = multitask_model(preset, TRAIN_TASKS, fusion=False).to(dev).train()
    optimizer = torch.optim.AdamW(without.parameters(), lr=1e-4, fused=dev.type == "cuda")
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(5, preset.vocab_size, (preset.batch_size, preset.seq_len), generator=generator).to(dev)
    attention_mask = torch.ones_like(input_ids)
    labels = torch.zeros(preset.batch_size, dtype=torch.long, device=dev)
    hidden = torch.randn(preset.batch_size, preset.seq_len, preset.hidden_size, device=dev, requires_grad=True)

    def step():
        with autocast:
            loss = without(input_ids=input_ids, attention_mask=attention_mask, task_ids=0, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def fusion_path():
        # What the model runs for a sequence head under fusion, through public API: `AttentionFusion.forward` with
        # `head_input="sequence"`, the task's token weights and the attention-pooled vector.
        with autocast:
            pooled = with_fusion.fusion(hidden, 0, attention_mask, head_input="sequence").pooled_representation
        pooled.float().sum().backward()

    def cls_path():
        with autocast:
            pooled = hidden[:, 0]
        pooled.float().sum().backward()

    runs = {"step": step, "fusion_path": fusion_path, "cls_path": cls_path}
    seconds = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(preset.inference_repeats):
        for name, run in runs.items():
            synchronize()
            start = clock()
            run()
            synchronize()
            seconds[name].append(clock() - start)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "seconds": {name: summary(values) for name, values in seconds.items()},
        "overhead": (median["fusion_path"] - median["cls_path"]) / median["step"],
    }


def measure_data_pipeline(preset: Preset, model_samples_per_second: float) -> dict:
    """(d): TaskBlockSampler + MultiTaskDataCollator through a DataLoader on ragged examples (dynamic padding)."""
    generator = torch.Generator().manual_seed(2)
    lengths = torch.randint(8, preset.seq_len + 1, (preset.num_train_examples,), generator=generator).tolist()
    joint, single = [], []
    for i, length in enumerate(lengths):
        ids = random_ids(generator, preset, length)
        if i % 2:
            # A joint group (intent + slots on the same sentence): dict labels with token tags.
            tags = [-100] + torch.randint(9, (length - 2,), generator=generator).tolist() + [-100]
            joint.append(
                {
                    "input_ids": ids,
                    "attention_mask": [1] * length,
                    "labels": {"intent": int(torch.randint(8, (1,), generator=generator)), "slots": tags},
                }
            )
        else:
            single.append(
                {
                    "input_ids": ids,
                    "attention_mask": [1] * length,
                    "labels": int(torch.randint(2, (1,), generator=generator)),
                    "task_ids": 2,
                }
            )
    dataset = torch.utils.data.ConcatDataset([FeatureDataset(joint), FeatureDataset(single)])
    collator = MultiTaskDataCollator(tokenizer(preset))

    def multitask_loader(group_by_length: bool) -> DataLoader:
        group_lengths = [[len(f["input_ids"]) for f in group] for group in (joint, single)]
        sampler = TaskBlockSampler(
            [len(joint), len(single)],
            preset.batch_size,
            strategy="temperature",
            temperature=2.0,
            lengths=group_lengths if group_by_length else None,
        )
        return DataLoader(dataset, batch_size=preset.batch_size, sampler=sampler, collate_fn=collator)

    baseline_features = [{k: v for k, v in f.items() if k != "task_ids"} for f in single + single]
    loaders = {
        "multitask": multitask_loader(group_by_length=False),
        "multitask_group_by_length": multitask_loader(group_by_length=True),
        "baseline": DataLoader(
            FeatureDataset(baseline_features),
            batch_size=preset.batch_size,
            sampler=RandomSampler(baseline_features),
            collate_fn=DataCollatorWithPadding(tokenizer(preset)),
        ),
    }

    def rate(data_loader) -> tuple[float, float]:
        """Samples per second, and the share of real tokens among the padded ones."""
        start, count, real, padded = clock(), 0, 0, 0
        for batch in data_loader:
            count += batch["input_ids"].shape[0]
            real += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
        return count / (clock() - start), real / padded

    rates = {name: [] for name in loaders}
    real_token_share = {}
    for data_loader in loaders.values():  # warm-up
        rate(data_loader)
    for _ in range(3):
        for name, data_loader in loaders.items():
            samples_per_second, real_token_share[name] = rate(data_loader)
            rates[name].append(samples_per_second)
    multitask = statistics.median(rates["multitask"])
    return {
        "samples_per_second": summary(rates["multitask"]),
        "group_by_length_samples_per_second": summary(rates["multitask_group_by_length"]),
        "baseline_collator_samples_per_second": summary(rates["baseline"]),
        "real_token_share": real_token_share,
        "model_samples_per_second": model_samples_per_second,
        "headroom": multitask / model_samples_per_second,
        "note": "one process, num_workers=0; ragged lengths 8..seq_len, half joint intent+slots examples",
    }


class PeakRSS:
    """The peak resident set size of this process, sampled by a thread (bytes)."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self.page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def memory_child(preset: Preset, name: str, output_dir: str) -> dict:
    """Run in a fresh process: the peak memory of `memory_steps` Trainer steps of one configuration."""
    steps_preset = Preset(**{**preset.__dict__, "warmup_steps": 0, "measured_steps": preset.memory_steps})
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        trainer = build_trainer(name, steps_preset, output_dir, compile_model=False)
        trainer.train()
        return {"peak_bytes": torch.cuda.max_memory_allocated() - base, "method": "torch.cuda.max_memory_allocated"}
    rss = PeakRSS()
    before = rss.current()
    with rss:
        trainer = build_trainer(name, steps_preset, output_dir, compile_model=False)
        trainer.train()
    return {
        "peak_bytes": rss.peak - before,
        "method": "peak RSS (sampled every 2 ms) minus RSS before building model and Trainer, fresh process",
    }


def measure_memory(preset_name: str, output_dir: str) -> dict:
    """(e): one fresh process per configuration, so that each peak is its own."""
    results = {}
    for name in TRAIN_CONFIGS:
        command = [
            sys.executable,
            __file__,
            "--preset",
            preset_name,
            "--memory-child",
            name,
            "--workdir",
            f"{output_dir}/memory_{name}",
        ]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"memory child {name} failed:\n{completed.stderr[-3000:]}")
        results[name] = json.loads(completed.stdout.strip().splitlines()[-1])
    base = results["baseline"]["peak_bytes"]
    return {
        "peak_bytes": {name: r["peak_bytes"] for name, r in results.items()},
        "method": results["baseline"]["method"],
        "ratios": {name: r["peak_bytes"] / base for name, r in results.items() if name != "baseline"},
    }


def matmul_peak_flops(dtype: torch.dtype, size: int) -> float:
    """Measured dense matmul FLOP/s on this device (the denominator of MFU)."""
    dev = device()
    a = torch.randn(size, size, device=dev, dtype=dtype)
    b = torch.randn(size, size, device=dev, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(5):
        synchronize()
        start = clock()
        for _ in range(4):
            torch.matmul(a, b)
        synchronize()
        best = min(best, (clock() - start) / 4)
    return 2 * size**3 / best


def training_flops_per_sample(preset: Preset) -> float:
    """6 x non-embedding parameters x tokens for the matmuls, plus the attention scores and sums (12 L s^2 H)."""
    h, layers, s = preset.hidden_size, preset.num_layers, preset.seq_len
    per_layer = 4 * h * h + 2 * h * preset.intermediate_size
    return 6 * layers * per_layer * s + 12 * layers * s * s * h


# ------------------------------------------------------------------------------------------------ report


def verdict(ok: bool) -> str:
    return "meets" if ok else "**misses**"


def markdown(results: dict) -> str:
    training, inference = results["training"], results["inference"]
    data, memory, mfu = results["data_pipeline"], results["memory"], results["mfu"]
    sps = training["samples_per_second"]
    ratio_a = training["ratios"]["multitask_vs_baseline"]
    ratio_b = training["ratios"]["fusion_vs_multitask"]
    component = training["fusion_component"]
    inf = inference["ratios"]
    seconds = inference["seconds"]

    def iqr(name: str) -> str:
        q = inference["ratio_quartiles"][name]
        return f"[{q['q1']:.3f}, {q['q3']:.3f}]"

    def spread(s: dict, fmt: str) -> str:
        return f"{s['median']:{fmt}} [{s['q1']:{fmt}}, {s['q3']:{fmt}}]"

    lines = [
        f"Preset `{results['preset']['name']}`: BERT hidden {results['preset']['hidden_size']}, "
        f"{results['preset']['num_layers']} layers, batch {results['preset']['batch_size']}, "
        f"length {results['preset']['seq_len']}, bf16 {results['preset']['bf16']}, "
        f"compile {results['compile']}. Device: {results['machine']['device']}. Timed by {results['clock']}.",
        "",
        "| measurement | baseline | multi-task | ratio: median [quartiles] | target | result |",
        "|---|---|---|---|---|---|",
        f"| (a) train samples/s, Trainer, no fusion | {spread(sps['baseline'], '.1f')} | "
        f"{spread(sps['multitask'], '.1f')} | {spread(ratio_a, '.3f')} | >= {TARGETS['train_ratio']} | "
        f"{verdict(ratio_a['median'] >= TARGETS['train_ratio'])} |",
        f"| (b) fusion extra step cost, end to end | {spread(sps['multitask'], '.1f')} (no fusion) | "
        f"{spread(sps['multitask_fusion'], '.1f')} (fusion) | {ratio_b['median']:+.1%} "
        f"[{ratio_b['q1']:+.1%}, {ratio_b['q3']:+.1%}] | <= +{TARGETS['fusion_overhead']:.0%} | "
        f"{verdict(ratio_b['median'] <= TARGETS['fusion_overhead'])} |",
        f"| (b) fusion path fwd+bwd alone / training step (ms) | {component['seconds']['step']['median'] * 1e3:.1f} "
        f"(step) | {component['seconds']['fusion_path']['median'] * 1e3:.2f} (fusion path) | "
        f"{component['overhead']:+.1%} | <= +{TARGETS['fusion_overhead']:.0%} | "
        f"{verdict(component['overhead'] <= TARGETS['fusion_overhead'])} |",
        f"| (c) inference, {inference['k']} tasks one pass vs 1 single-task model (ms/batch) | "
        f"{seconds['single_one']['median'] * 1e3:.1f} | {seconds['multitask_k']['median'] * 1e3:.1f} | "
        f"{inf['k_tasks_one_pass_over_one_task']:.3f} {iqr('k_tasks_one_pass_over_one_task')} | "
        f"<= {TARGETS['inference_k_over_one']} | "
        f"{verdict(inf['k_tasks_one_pass_over_one_task'] <= TARGETS['inference_k_over_one'])} |",
        f"| (c) same, with fusion | {seconds['single_one']['median'] * 1e3:.1f} | "
        f"{seconds['multitask_k_fusion']['median'] * 1e3:.1f} | {inf['k_tasks_one_pass_fusion_over_one_task']:.3f} "
        f"{iqr('k_tasks_one_pass_fusion_over_one_task')} | "
        f"<= {TARGETS['inference_k_over_one']} | "
        f"{verdict(inf['k_tasks_one_pass_fusion_over_one_task'] <= TARGETS['inference_k_over_one'])} |",
        f"| (c) {inference['k']} separate single-task models vs one pass (ms/batch) | "
        f"{seconds['single_k_separate']['median'] * 1e3:.1f} | {seconds['multitask_k']['median'] * 1e3:.1f} | "
        f"{inf['k_separate_over_one_pass']:.2f}x faster | - | - |",
        f"| (d) data pipeline samples/s vs model consumption | {data['model_samples_per_second']:.1f} (model) | "
        f"{spread(data['samples_per_second'], '.0f')} | {data['headroom']:.0f}x | far above 1 | "
        f"{verdict(data['headroom'] >= 10)} |",
    ]
    for name, ratio in memory["ratios"].items():
        lines.append(
            f"| (e) peak train memory, {name} (MiB) | {memory['peak_bytes']['baseline'] / 2**20:.1f} | "
            f"{memory['peak_bytes'][name] / 2**20:.1f} | {ratio:.3f} | <= {TARGETS['memory_ratio']} | "
            f"{verdict(ratio <= TARGETS['memory_ratio'])} |"
        )
    lines += [
        "",
        f"MFU (model FLOPs / measured {mfu['dtype']} matmul peak of {mfu['peak_tflops']:.2f} TFLOP/s): "
        + ", ".join(f"{name} {value:.1%}" for name, value in mfu["by_config"].items())
        + ".",
        f"Memory method: {memory['method']}.",
        f"Data pipeline (d): with sampling.group_by_length {data['group_by_length_samples_per_second']['median']:.0f} "
        f"samples/s; DataCollatorWithPadding + RandomSampler (single task) "
        f"{data['baseline_collator_samples_per_second']['median']:.0f} samples/s. Real tokens among padded ones: "
        f"{data['real_token_share']['multitask']:.0%} random blocks, "
        f"{data['real_token_share']['multitask_group_by_length']:.0%} length-grouped.",
    ]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    import transformers

    info["transformers"] = transformers.__version__
    info["device"] = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else (f"CPU ({cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)")
    )
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/perf_<preset>.json)")
    parser.add_argument("--compile", action="store_true", help="train with torch_compile=True (Trainer argument)")
    parser.add_argument("--workdir", default=None, help="scratch folder for Trainer output (default: a temp dir)")
    parser.add_argument("--memory-child", choices=TRAIN_CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    preset = PRESETS[args.preset]
    if preset.num_threads and not torch.cuda.is_available():
        torch.set_num_threads(preset.num_threads)

    import tempfile

    workdir = args.workdir or tempfile.mkdtemp(prefix="perf_")
    if args.memory_child:
        print(json.dumps(memory_child(preset, args.memory_child, workdir)))
        return 0

    if preset.name == "gpu" and not torch.cuda.is_available():
        print("warning: the gpu preset on a machine without CUDA: this will be very slow.", file=sys.stderr)
    started = time.time()
    print(
        f"(a)+(b) training through the Trainer, {preset.warmup_steps}+{preset.measured_steps} interleaved steps per "
        "configuration ...",
        flush=True,
    )
    training = measure_training(preset, workdir, args.compile)
    print("(b) fusion path alone ...", flush=True)
    training["fusion_component"] = measure_fusion_component(preset)
    print("(c) inference ...", flush=True)
    inference = measure_inference(preset)
    print("(d) data pipeline ...", flush=True)
    data = measure_data_pipeline(preset, training["samples_per_second"]["multitask"]["median"])
    print("(e) peak memory, one fresh process per configuration ...", flush=True)
    memory = measure_memory(args.preset, workdir)

    dtype = torch.bfloat16 if preset.bf16 else torch.float32
    peak = matmul_peak_flops(dtype, 8192 if torch.cuda.is_available() else 1024)
    flops = training_flops_per_sample(preset)
    mfu = {
        "dtype": str(dtype).replace("torch.", ""),
        "peak_tflops": peak / 1e12,
        "flops_per_sample": flops,
        "by_config": {name: s["median"] * flops / peak for name, s in training["samples_per_second"].items()},
    }
    results = {
        "preset": preset.__dict__,
        "compile": args.compile,
        "clock": clock_name(),
        "machine": machine(),
        "training": training,
        "inference": inference,
        "data_pipeline": data,
        "memory": memory,
        "mfu": mfu,
        "targets": TARGETS,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "wall_seconds": time.time() - started,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    table = markdown(results)
    results["table"] = table
    out = Path(
        args.out or REPO / "benchmarks" / "results" / f"perf_{preset.name}{'_compile' if args.compile else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print()
    print(table)
    print(f"\nWrote {out} ({results['wall_seconds']:.0f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
