"""`MultiTaskTrainer`: the HF Trainer with task sampling, per-task losses in the logs and per-task evaluation.

Only what differs from `transformers.Trainer` is overridden: the train sampler (one task group per batch), the loss
(to record each task's loss), `log` (to report them), and `evaluate` (to add the combined score). Evaluation data is
a dict of task name -> dataset, so metrics come back as `eval_<task>_<metric>`.
"""

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import Dataset
from transformers import EvalPrediction, Trainer

from .data import UNSCORED_TAGS
from .experiment import DEFAULT_METRICS
from .metrics import compute_task_metrics, reduce_logits
from .sampling import TaskBlockSampler


class FeatureDataset(Dataset):
    """A list of tokenised features (dicts), as a torch Dataset."""

    def __init__(self, features: list[dict]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]


@dataclass
class TaskInfo:
    """What evaluation needs to know about a task."""

    name: str
    type: str
    labels: list[str] | None
    metrics: list[str] = field(default_factory=list)  # the first is the primary metric
    extra_metrics: dict = field(default_factory=dict)  # evaluate modules by name
    decoding: str = "argmax"  # token tasks: how logits become tags (see `heads.decode_tags`)

    @property
    def primary_metric(self) -> str:
        return (self.metrics or DEFAULT_METRICS[self.type])[0]


class MultiTaskTrainer(Trainer):
    """
    Args (beyond `transformers.Trainer`'s):
        group_sizes (`list[int]`): examples per task group, in the order of the concatenated train dataset.
        tasks (`list[TaskInfo]`): per-task evaluation settings, in the model's task order.
        sampling_strategy, temperature, max_examples_per_task: see `sampling.TaskBlockSampler`.
        group_lengths (`list[list[int]]`, *optional*): example lengths per group, to batch similar lengths together.
    """

    def __init__(
        self,
        *args,
        group_sizes: list[int],
        tasks: list[TaskInfo],
        sampling_strategy: str = "temperature",
        temperature: float = 2.0,
        max_examples_per_task: int | None = None,
        group_lengths: list[list[int]] | None = None,
        **kwargs,
    ):
        self.group_sizes = group_sizes
        self.tasks = tasks
        self.sampling = dict(
            strategy=sampling_strategy,
            temperature=temperature,
            max_examples_per_task=max_examples_per_task,
            lengths=group_lengths,
        )
        self._task_loss_sums = defaultdict(float)
        self._task_loss_counts = defaultdict(int)
        self.last_eval_predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # task -> (predictions, labels)
        self._unscored_tags: list[list[int]] | None = None  # of the dataset being evaluated (see `evaluate`)
        kwargs.setdefault("compute_metrics", self._compute_metrics)
        kwargs.setdefault("preprocess_logits_for_metrics", self._reduce_logits)
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        return TaskBlockSampler(
            self.group_sizes,
            self._train_batch_size,
            num_replicas=self.args.world_size,
            seed=self.args.seed,
            **self.sampling,
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training and outputs.task_losses:
            for name, value in outputs.task_losses.items():
                self._task_loss_sums[name] += value.detach().float()
                self._task_loss_counts[name] += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._task_loss_counts:
            for name, count in self._task_loss_counts.items():
                logs[f"loss_{name}"] = round(float(self._task_loss_sums[name]) / count, 4)
            self._task_loss_sums.clear()
            self._task_loss_counts.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------------------------------------ evaluation

    def _reduce_logits(self, outputs, labels):
        """Keep only what the metrics need (class ids, probabilities or values), so eval memory stays small."""
        logits, task_ids = outputs if isinstance(outputs, (tuple, list)) else (outputs, None)
        task = self.tasks[int(task_ids[0])]
        labels = labels[task.name] if isinstance(labels, dict) else labels
        decoding, word_mask = task.decoding, None
        if decoding != "argmax":
            # A token task's labelled positions (-100 elsewhere) are the first sub-token of each word: what gets
            # decoded. Unlabelled data has no such mask here; the pipeline decodes it word by word instead.
            decoding, word_mask = ("argmax", None) if labels is None else (decoding, labels != -100)
        return reduce_logits(task.type, logits, word_mask, task.labels, decoding), task_ids

    def _compute_metrics(self, prediction: EvalPrediction) -> dict[str, float]:
        predictions, task_ids = prediction.predictions
        task = self.tasks[int(np.asarray(task_ids).reshape(-1)[0])]
        predictions, labels = np.asarray(predictions), np.asarray(prediction.label_ids)
        # Kept so that cross-task scores (JointBERT's sentence accuracy) need no second pass over the data.
        self.last_eval_predictions[task.name] = (predictions, labels)
        unscored = self._unscored_tags if len(self._unscored_tags or []) == len(labels) else None
        return compute_task_metrics(task.type, predictions, labels, task.labels, task.extra_metrics, unscored)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        # The dataset scored now (the Trainer evaluates a dict one name or dataset at a time): its token-task gold
        # tags past the truncation, in evaluation order, for `_compute_metrics`.
        current = self.eval_dataset.get(eval_dataset) if isinstance(eval_dataset, str) else eval_dataset
        current = self.eval_dataset if current is None else current
        self._unscored_tags = (
            [feature.get(UNSCORED_TAGS, []) for feature in current.features]
            if isinstance(current, FeatureDataset)
            else None
        )
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        datasets = self.eval_dataset if eval_dataset is None else eval_dataset
        if isinstance(datasets, dict):
            # The mean of each task's primary metric: one number for metric_for_best_model="combined_score".
            primaries = [
                metrics.get(f"{metric_key_prefix}_{task.name}_{task.primary_metric}")
                for task in self.tasks
                if task.name in datasets
            ]
            primaries = [value for value in primaries if value is not None]
            if primaries:
                metrics[f"{metric_key_prefix}_combined_score"] = float(np.mean(primaries))
                self.log({f"{metric_key_prefix}_combined_score": metrics[f"{metric_key_prefix}_combined_score"]})
        return metrics
