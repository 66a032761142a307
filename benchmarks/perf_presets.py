"""Size presets for `benchmarks/perf.py`: one CPU preset that finishes in a few minutes on 2 cores, one GPU preset.

Every measurement of a run uses the same preset: same random encoder, data, batch size and sequence length for the
multi-task model and for the single-task transformers baseline.
"""

from dataclasses import dataclass, field


@dataclass
class Preset:
    """
    name (`str`): the preset's name, written into the results.
    hidden_size, num_layers, num_heads, intermediate_size, vocab_size (`int`): the random BERT encoder.
    batch_size (`int`): per-device training batch size (inference uses `inference_batch_size`).
    seq_len (`int`): every training example has exactly this many tokens, so baseline and candidate see the same
        shapes; the data-pipeline measurement uses ragged lengths up to it instead.
    num_train_examples (`int`): examples per training set (the multi-task set splits them over two tasks).
    warmup_steps, measured_steps (`int`): Trainer steps per configuration dropped at the start, and then timed (the
        configurations' steps are interleaved one by one).
    inference_batch_size, inference_repeats (`int`): one-pass inference measurement (median over repeats).
    num_inference_tasks (`int`): K, the tasks predicted from one encoder pass.
    memory_steps (`int`): training steps run in the fresh process that measures peak memory.
    bf16 (`bool`): mixed precision (GPU only).
    dataloader_num_workers (`int`): Trainer data-loader workers.
    optim (`str`): the Trainer's optimizer name.
    extra_args (`dict`): more `TrainingArguments` for both baseline and candidate.
    num_threads (`int`, *optional*): torch CPU threads. On a CPU shared with other jobs, OpenMP threads that spin
        while waiting for a busy core made a step up to 6x slower with 2 threads than with 1 on the 2-core machine.
    """

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    batch_size: int
    seq_len: int
    num_train_examples: int
    warmup_steps: int
    measured_steps: int
    inference_batch_size: int
    inference_repeats: int
    num_inference_tasks: int = 4
    memory_steps: int = 6
    bf16: bool = False
    dataloader_num_workers: int = 0
    optim: str = "adamw_torch"
    extra_args: dict = field(default_factory=dict)
    num_threads: int | None = None


PRESETS = {
    # MiniLM-like width on 6 layers (the DistilBERT depth, so the fusion layer's share of a step is the same as in the
    # GPU preset), with a short sequence and a small vocabulary so that one step takes a fraction of a second on 2
    # CPU cores.
    "cpu": Preset(
        name="cpu",
        hidden_size=256,
        num_layers=6,
        num_heads=4,
        intermediate_size=1024,
        vocab_size=8192,
        batch_size=16,
        seq_len=64,
        num_train_examples=16 * 64,
        num_threads=1,
        warmup_steps=2,
        measured_steps=60,
        inference_batch_size=16,
        inference_repeats=15,
        memory_steps=4,
    ),
    # A few seconds: checks that the harness runs (its numbers mean nothing).
    "smoke": Preset(
        name="smoke",
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=37,
        vocab_size=99,
        batch_size=8,
        seq_len=16,
        num_train_examples=8 * 16,
        warmup_steps=1,
        measured_steps=4,
        inference_batch_size=8,
        inference_repeats=3,
        memory_steps=2,
        num_threads=1,
    ),
    # DistilBERT size (hidden 768, 6 layers, 12 heads, FFN 3072, its vocabulary), the GPU setting: batch 256,
    # length 128, bf16, fused AdamW, 4 loader workers.
    "gpu": Preset(
        name="gpu",
        hidden_size=768,
        num_layers=6,
        num_heads=12,
        intermediate_size=3072,
        vocab_size=30522,
        batch_size=256,
        seq_len=128,
        num_train_examples=256 * 128,
        warmup_steps=10,
        measured_steps=50,
        inference_batch_size=256,
        inference_repeats=30,
        memory_steps=10,
        bf16=True,
        dataloader_num_workers=4,
        optim="adamw_torch_fused",
        extra_args={"tf32": True},
    ),
}
