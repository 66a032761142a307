"""The task-aware data collator: dynamic padding per batch, labels shaped by each task's type, and `task_ids`."""

from dataclasses import dataclass

import torch

from configuration_multitask import TASK_TYPES, TaskType
from configuration_multitask.task_type import ENCODER_INPUTS


INPUT_KEYS = ENCODER_INPUTS  # its former name here


@dataclass
class MultiTaskDataCollator:
    """
    Pads a batch to its longest example and builds the labels the model expects:
    - one task: that task's labels in their natural shape (see `MultiTaskModel.forward`), and `task_ids` an int;
    - several tasks mixed in the batch: a `(batch, L)` float tensor, each row its own labels, padded with -100;
    - joint examples (labels given as a dict per task): a dict of per-task label tensors.

    Each task's type shapes its labels (`TaskType.collate_labels`, `TaskType.label_columns`).

    Args:
        tokenizer: pads the model inputs (its padding side and pad token are used).
        pad_to_multiple_of (`int`, *optional*): round the padded length up (tensor-core friendly on GPUs).
        task_types (`list[str]`, *optional*): the type of each task id (`MultiTaskConfig.tasks` order), and
        task_names (`list[str]`, *optional*): their names (for joint labels, given by name). Left out, a label's
            type is told from its Python value, for the four original types only (kept for code that builds the
            collator with a tokenizer alone).
    """

    tokenizer: object
    pad_to_multiple_of: int | None = None
    task_types: list[str] | None = None
    task_names: list[str] | None = None

    def _definition(self, task_id: int | None = None, name: str | None = None, value=None) -> TaskType:
        if self.task_types is not None:
            index = task_id if name is None else self.task_names.index(name)
            return TASK_TYPES[self.task_types[index]]
        return _guess_type(value)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        task_ids = [feature["task_ids"] for feature in features] if "task_ids" in features[0] else None
        # A feature is one encoder row, or several for a type that encodes an example as several (the choices of a
        # multiple-choice question: `TaskType.encoder_rows`); they are flattened into the batch.
        rows, owners = [], []
        for index, feature in enumerate(features):
            # Without task types, every feature is one row, as the four original types encode it.
            definition = self._definition(task_ids[index]) if task_ids and self.task_types else TaskType()
            feature_rows = definition.encoder_rows(feature)
            rows += feature_rows
            owners += [index] * len(feature_rows)
        batch = dict(
            self.tokenizer.pad(rows, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        )
        seq_len = batch["input_ids"].shape[1]
        one_task = task_ids is None or len(set(task_ids)) == 1
        if task_ids is not None:
            # A single-task batch carries a plain int: the model then routes without reading a device tensor
            # (no host sync, no graph break under torch.compile). Mixed batches carry one id per row.
            batch["task_ids"] = (
                task_ids[0] if one_task else torch.tensor([task_ids[owner] for owner in owners], dtype=torch.long)
            )
        if "labels" not in features[0]:
            return batch

        labels = [feature["labels"] for feature in features]
        side = self.tokenizer.padding_side
        if isinstance(labels[0], dict):
            batch["labels"] = {
                name: self._definition(name=name, value=labels[0][name]).collate_labels(
                    [label[name] for label in labels], seq_len, side
                )
                for name in labels[0]
            }
        elif one_task:
            definition = self._definition(task_ids[0] if task_ids else 0, value=labels[0])
            batch["labels"] = definition.collate_labels(labels, seq_len, side)
        else:
            definitions = [self._definition(task_id, value=label) for task_id, label in zip(task_ids, labels)]
            per_feature = _mixed_labels(labels, definitions, seq_len, side)
            # A feature's label row goes with its first encoder row; its other rows hold -100 only.
            first = [row == 0 or owners[row - 1] != owner for row, owner in enumerate(owners)]
            batch["labels"] = torch.where(
                torch.tensor(first)[:, None], per_feature[torch.tensor(owners)], torch.tensor(-100.0)
            )
        return batch


def _mixed_labels(labels: list, definitions: list[TaskType], seq_len: int, padding_side: str) -> torch.Tensor:
    """`(batch, L)` floats padded with -100, each row holding its example's labels where its type puts them
    (`TaskType.label_columns`: from column 0, where the sequence heads read them; token tags beside their tokens)."""
    rows = [torch.as_tensor(label, dtype=torch.float).reshape(-1) for label in labels]
    width = max(seq_len, max(row.numel() for row in rows))
    padded = torch.full((len(rows), width), -100.0)
    for i, (definition, row) in enumerate(zip(definitions, rows)):
        padded[i, definition.label_columns(row.numel(), seq_len, padding_side)] = row
    return padded


def _guess_type(value) -> TaskType:
    """The type of a label told from its Python value, as `data.encode_labels` stores the four original types: int
    -> class id, float -> regression target, list of int -> token tags, list of float -> multi-label 0/1 vector.
    Only for a collator built without `task_types`."""
    if isinstance(value, list):
        tags = not value or isinstance(value[0], int)
        return TASK_TYPES["token_classification" if tags else "multi_label_classification"]
    return TASK_TYPES["regression" if isinstance(value, float) else "sequence_classification"]
