"""`MultiTaskTrainer`: the HF Trainer with task sampling, per-task losses in the logs and per-task evaluation.

Only what differs from `transformers.Trainer` is overridden: the train sampler (one task group per batch) and the
examples it draws per epoch (for throughput), the train data loader when some task streams (`streaming_dataloader`), the loss (to record each task's loss), `log` (to report them), and
`evaluate` (each task scored as itself, plus the combined score). Evaluation data is a dict of task name -> dataset,
so metrics come back as `eval_<task>_<metric>`.
"""

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import DataLoader, Dataset, IterableDataset
from transformers import EvalPrediction, Trainer
from transformers.trainer_utils import speed_metrics

from configuration_multitask import TaskView

from .collator import MultiTaskDataCollator
from .data import scoring_column
from .metrics import combined_score, primary_metric, score_task, task_view
from .sampling import TaskBatchStream, TaskBlockSampler


logger = logging.getLogger(__name__)


class FeatureDataset(Dataset):
    """Tokenised features as a torch Dataset: a list of feature dicts, or a `datasets.Dataset` of them (what
    `prepare_data` returns: memory-mapped Arrow, a row read as a dict when the data loader asks for it)."""

    def __init__(self, features):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]

    def scoring(self) -> list:
        """Each example's `scoring` entry (`None` where it has none), in order."""
        return scoring_column(self.features)


class StreamedTrainData(IterableDataset):
    """The train data of a run where some task group streams (`data.streaming: true`): per group, in the order of
    `group_sizes`, its map-mode features (a `FeatureDataset`) or its stream (a `data.StreamedFeatures`).

    An `IterableDataset`, so the Trainer counts training in `max_steps`, not epochs. Only
    [`MultiTaskTrainer.streaming_dataloader`] reads it: each rank's batches need the rank."""

    def __init__(self, groups: list):
        self.groups = groups

    def __iter__(self):
        raise TypeError("StreamedTrainData is read through MultiTaskTrainer.streaming_dataloader(rank, world_size).")


@dataclass
class TaskInfo:
    """What evaluation needs to know about a task."""

    name: str
    type: str
    labels: list[str] | None
    metrics: list[str] = field(default_factory=list)  # the first is the primary metric
    extra_metrics: dict = field(default_factory=dict)  # evaluate modules by name
    decoding: str = "argmax"  # token tasks: how logits become tags (see `task_token_classification.decode_tags`)
    settings: dict = field(default_factory=dict)  # the task type's own keys (as in the model config)

    @property
    def primary_metric(self) -> str:
        return primary_metric(self.type, self.metrics)

    @property
    def view(self) -> TaskView:
        """The task as its type's definition reads it."""
        return task_view(self.type, self.labels, self.name, **{"decoding": self.decoding, **self.settings})


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
        self._eval_task: TaskInfo | None = None  # the task `evaluate` is scoring, for the metric hooks
        self._scoring: list | None = None  # what its metrics need beyond the labels, per example (`data.SCORING`)
        # Per-step costs that would grow with the number of tasks (each walks every module or parameter), paid once.
        self._train_mode_set_on = None  # the model a full `train()` walk last put in training mode
        self._parameters: tuple[object, list] | None = None  # (model, its parameters) for gradient clipping
        self._flop_parameters: tuple[object, int] | None = None  # (model, its non-embedding parameter count)
        kwargs.setdefault("compute_metrics", self._compute_metrics)
        kwargs.setdefault("preprocess_logits_for_metrics", self._reduce_logits)
        super().__init__(*args, **kwargs)
        collator = self.data_collator
        if isinstance(collator, MultiTaskDataCollator) and collator.task_types is None and tasks:
            # Each task's labels are collated as its type says, rather than told from their Python values.
            collator.task_types = [task.type for task in tasks]
            collator.task_names = [task.name for task in tasks]

    def _get_train_sampler(self, train_dataset=None):
        return TaskBlockSampler(
            self.group_sizes,
            self._train_batch_size,
            num_replicas=self.args.world_size,
            seed=self.args.seed,
            **self.sampling,
        )

    def get_train_dataloader(self) -> DataLoader:
        if isinstance(self.train_dataset, StreamedTrainData):
            return self.streaming_dataloader(self.args.process_index, self.args.world_size)
        return super().get_train_dataloader()

    def streaming_dataloader(self, rank: int, world_size: int) -> DataLoader:
        """Rank `rank`'s train batches when some task group streams (see `sampling.TaskBatchStream`): each step's
        group drawn with the shared seed, a streamed group's examples from this rank's share of its records.

        Not passed through `accelerator.prepare`: for an `IterableDataset` accelerate would either dispatch every
        batch from rank 0 or wrap it in `IterableDatasetShard`, which makes every rank read the whole stream and keep
        its slice of each global batch; here each rank reads its own records. The Trainer moves the batches to the
        device itself (`_prepare_inputs`)."""
        stream = TaskBatchStream(
            self.train_dataset.groups,
            self.group_sizes,
            self._train_batch_size,
            self._get_collator_with_removed_columns(self.data_collator, description="training"),
            rank=rank,
            world_size=world_size,
            seed=self.args.seed,
            **{key: value for key, value in self.sampling.items() if key != "lengths"},
        )
        # Batches come collated from the stream (batch_size=None). One process: worker processes would each
        # produce the whole stream again.
        if self.args.dataloader_num_workers:
            logger.warning(
                "dataloader_num_workers=%d is not used when a task streams: its batches are read in the training "
                "process.",
                self.args.dataloader_num_workers,
            )
        return DataLoader(stream, batch_size=None, collate_fn=_already_collated, num_workers=0)

    # ------------------------------------------------------------------------------------------ per-step costs
    # With hundreds of tasks a model has thousands of modules and parameters. Trainer walks all of them several times
    # a step (`model.train()`, the FLOP count, gradient clipping); these overrides keep a step as cheap as with one.

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._train_mode_set_on is not model or not model.training:
            model.train()  # the full walk, once per training stretch (evaluation puts the model in eval mode)
            self._train_mode_set_on = model
        # `Trainer.training_step` calls `model.train()` again: already true of every module, so skip the walk.
        model.train = lambda mode=True: model if mode else type(model).train(model, mode)
        # The training loop calls `model.zero_grad()` after each optimizer step: over the listed parameters instead.
        if "zero_grad" not in vars(model):
            parameters = self._parameter_list(model)
            model.zero_grad = lambda set_to_none=True: _zero_grad(parameters, set_to_none)
        try:
            return super().training_step(model, inputs, num_items_in_batch)
        finally:
            del model.train

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:
            for model in {id(m): m for m in (self.model, self.model_wrapped) if m is not None}.values():
                vars(model).pop("zero_grad", None)  # the shortcut lives only while this trainer trains

    def _parameter_list(self, model) -> list:
        """The model's parameters, listed once per model (they do not change while it trains)."""
        if self._parameters is None or self._parameters[0] is not model:
            self._parameters = (model, list(model.parameters()))
        return self._parameters[1]

    def floating_point_ops(self, inputs) -> int:
        """`Trainer.floating_point_ops` (6 x tokens x non-embedding parameters), with the parameter count taken once."""
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if self._flop_parameters is None or self._flop_parameters[0] is not self.model:
            self._flop_parameters = (self.model, self.model.num_parameters(exclude_embeddings=True))
        return 6 * inputs[main_input].numel() * self._flop_parameters[1]

    def _clip_grad_norm(self, model):
        """`Trainer._clip_grad_norm` over the model's parameters listed once (the same clip, without a walk a step)."""
        if self.args.fp16 or self._has_mixed_mesh_grads(model):
            return super()._clip_grad_norm(model)
        return self.accelerator.clip_grad_norm_(self._parameter_list(model), self.args.max_grad_norm)

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

    def num_examples(self, dataloader) -> int:
        """Examples per epoch. For training that is what the task sampler draws (`max_examples_per_task` caps it),
        not the whole concatenated dataset: the Trainer's `train_samples_per_second` counts it every epoch."""
        sampler = _task_block_sampler(dataloader)
        return len(sampler) if sampler is not None else super().num_examples(dataloader)

    # ------------------------------------------------------------------------------------------------ evaluation

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Evaluate each task on its own dataset (a dict of task name -> dataset; a plain dataset for a one-task
        model), knowing which task it scores. Metrics come back as `<prefix>_<task>_<metric>`, as `Trainer.evaluate`
        names them for dict datasets, plus `<prefix>_combined_score` (see `metrics.combined_score`). They are logged
        and handed to the `on_evaluate` callbacks once, all together, so best-model selection and early stopping
        can use the combined score."""
        from_trainer = eval_dataset is None
        datasets = self.eval_dataset if from_trainer else eval_dataset
        if datasets is None:
            raise ValueError("MultiTaskTrainer: evaluation needs an eval_dataset (a dict of task name -> dataset).")
        if not isinstance(datasets, dict):
            if len(self.tasks) != 1:
                raise ValueError(
                    f"MultiTaskTrainer: pass the evaluation data as a dict of task name -> dataset (tasks: "
                    f"{', '.join(task.name for task in self.tasks)}), so each dataset is scored as its task."
                )
            datasets = {self.tasks[0].name: datasets}
            from_trainer = False
        tasks = {task.name: task for task in self.tasks}
        unknown = [name for name in datasets if name not in tasks]
        if unknown:
            raise ValueError(
                f"MultiTaskTrainer: evaluation datasets {unknown} are not tasks; name them after the tasks: "
                f"{', '.join(tasks)}."
            )
        if ignore_keys is None:
            ignore_keys = getattr(self.model.config, "keys_to_ignore_at_inference", [])
        # The task is known from the dataset: the model's echo of task_ids is not gathered.
        ignore_keys = [*ignore_keys, "task_ids"]

        self._memory_tracker.start()
        self._train_mode_set_on = None  # evaluation switches the model to eval mode: the next step walks again
        metrics = {}
        for name, dataset in datasets.items():
            self._eval_task = tasks[name]
            # In evaluation order (the eval sampler is sequential), for `_compute_metrics`.
            self._scoring = dataset.scoring() if isinstance(dataset, FeatureDataset) else None
            try:
                # By name when the dataset is the trainer's own, so persistent eval workers are reused.
                metrics.update(
                    self._evaluate_task(name if from_trainer else dataset, ignore_keys, f"{metric_key_prefix}_{name}")
                )
            finally:
                self._eval_task, self._scoring = None, None
        primaries = [
            (task.primary_metric, metrics[key])
            for task in self.tasks
            if (key := f"{metric_key_prefix}_{task.name}_{task.primary_metric}") in metrics
        ]
        if primaries:
            metrics[f"{metric_key_prefix}_combined_score"] = combined_score(primaries)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        return metrics

    def _evaluate_task(self, dataset, ignore_keys: list[str], metric_key_prefix: str) -> dict[str, float]:
        """One task's metrics and speed, as `Trainer.evaluate` computes them for one dataset, without logging them or
        calling the callbacks (`evaluate` does both once for all tasks)."""
        dataloader = self.get_eval_dataloader(dataset)
        start_time = time.time()
        output = self.evaluation_loop(
            dataloader,
            description="Evaluation",
            prediction_loss_only=True if self.compute_metrics is None else None,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        total_batch_size = self.args.eval_batch_size * self.args.world_size
        if f"{metric_key_prefix}_model_preparation_time" in output.metrics:
            start_time += output.metrics[f"{metric_key_prefix}_model_preparation_time"]
        output.metrics.update(
            speed_metrics(
                metric_key_prefix,
                start_time,
                num_samples=output.num_samples,
                num_steps=math.ceil(output.num_samples / total_batch_size),
            )
        )
        return output.metrics

    def _scored_task(self) -> TaskInfo:
        if self._eval_task is None:
            raise ValueError(
                "MultiTaskTrainer scores predictions in evaluate(), which knows each dataset's task; "
                "call evaluate({task_name: dataset}) rather than predict()."
            )
        return self._eval_task

    def _reduce_logits(self, logits, labels):
        """Keep only what the metrics need (class ids, probabilities or values), so eval memory stays small."""
        task = self._scored_task()
        if isinstance(logits, (tuple, list)):  # extra outputs a caller did not ignore: the logits come first
            logits = logits[0]
        labels = labels[task.name] if isinstance(labels, dict) else labels
        view = task.view
        return view.definition.reduce_logits(view, logits, labels)

    def _compute_metrics(self, prediction: EvalPrediction) -> dict[str, float]:
        task = self._scored_task()
        predictions, labels = np.asarray(prediction.predictions), np.asarray(prediction.label_ids)
        # Kept so that cross-task scores (JointBERT's sentence accuracy) need no second pass over the data.
        self.last_eval_predictions[task.name] = (predictions, labels)
        scoring = self._scoring if len(self._scoring or []) == len(labels) else None
        return score_task(task.view, predictions, labels, task.extra_metrics, scoring)


def _already_collated(batch):
    return batch


def _zero_grad(parameters: list, set_to_none: bool = True) -> None:
    """`nn.Module.zero_grad` over a list of parameters made once."""
    for parameter in parameters:
        if parameter.grad is None:
            continue
        if set_to_none:
            parameter.grad = None
        else:
            parameter.grad.detach_().zero_()


def _task_block_sampler(dataloader) -> TaskBlockSampler | None:
    """The `TaskBlockSampler` behind a (possibly accelerate-wrapped) data loader, if any."""
    candidates = [dataloader]
    for _ in range(4):  # data loader -> batch sampler (-> sharded batch sampler) -> sampler
        next_level = []
        for candidate in candidates:
            if isinstance(candidate, TaskBlockSampler):
                return candidate
            next_level += [getattr(candidate, key, None) for key in ("batch_sampler", "sampler")]
        candidates = [candidate for candidate in next_level if candidate is not None]
    return None
