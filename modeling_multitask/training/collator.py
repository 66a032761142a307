"""The task-aware data collator: dynamic padding per batch, labels shaped for each task type, and `task_ids`."""

from dataclasses import dataclass

import torch


INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def _is_token_tags(value) -> bool:
    """Token tags are a list of int (multi-label vectors are lists of float); see `data.encode_labels`."""
    return isinstance(value, list) and (not value or isinstance(value[0], int))


def _token_columns(length: int, seq_len: int, padding_side: str) -> slice:
    """Where a row of `length` tags goes among `seq_len` columns: beside its tokens, so on the side the tokenizer
    leaves its padding free (a left-padding tokenizer puts the tokens, and so the tags, at the end)."""
    return slice(seq_len - length, seq_len) if padding_side == "left" else slice(0, length)


def _label_tensor(values: list, seq_len: int, padding_side: str = "right") -> torch.Tensor:
    """Stack one task's labels. Their Python type says their kind (set in `data.encode_labels`):
    int -> class id, float -> regression target, list of int -> token tags (padded with -100 to `seq_len` on
    `padding_side`, as the tokenizer padded the tokens), list of float -> multi-label 0/1 vector."""
    first = values[0]
    if _is_token_tags(first):
        padded = torch.full((len(values), seq_len), -100, dtype=torch.long)
        for row, tags in enumerate(values):
            tags = tags[:seq_len]
            padded[row, _token_columns(len(tags), seq_len, padding_side)] = torch.tensor(tags, dtype=torch.long)
        return padded
    if isinstance(first, list):
        return torch.tensor(values, dtype=torch.float)
    return torch.tensor(values, dtype=torch.float if isinstance(first, float) else torch.long)


@dataclass
class MultiTaskDataCollator:
    """
    Pads a batch to its longest example and builds the labels the model expects:
    - one task: that task's labels in their natural shape (see `MultiTaskModel.forward`), and `task_ids` an int;
    - several tasks mixed in the batch: a `(batch, L)` float tensor, each row its own labels, padded with -100;
    - joint examples (labels given as a dict per task): a dict of per-task label tensors.

    Args:
        tokenizer: pads the model inputs (its padding side and pad token are used).
        pad_to_multiple_of (`int`, *optional*): round the padded length up (tensor-core friendly on GPUs).
    """

    tokenizer: object
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        inputs = [{key: feature[key] for key in INPUT_KEYS if key in feature} for feature in features]
        batch = dict(
            self.tokenizer.pad(inputs, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        )
        seq_len = batch["input_ids"].shape[1]
        task_ids = [feature["task_ids"] for feature in features] if "task_ids" in features[0] else None
        one_task = task_ids is None or len(set(task_ids)) == 1
        if task_ids is not None:
            # A single-task batch carries a plain int: the model then routes without reading a device tensor
            # (no host sync, no graph break under torch.compile). Mixed batches carry one id per example.
            batch["task_ids"] = task_ids[0] if one_task else torch.tensor(task_ids, dtype=torch.long)
        if "labels" not in features[0]:
            return batch

        labels = [feature["labels"] for feature in features]
        side = self.tokenizer.padding_side
        if isinstance(labels[0], dict):
            batch["labels"] = {
                name: _label_tensor([label[name] for label in labels], seq_len, side) for name in labels[0]
            }
        elif one_task:
            batch["labels"] = _label_tensor(labels, seq_len, side)
        else:
            batch["labels"] = self._mixed_labels(labels, seq_len, side)
        return batch

    @staticmethod
    def _mixed_labels(labels: list, seq_len: int, padding_side: str = "right") -> torch.Tensor:
        """`(batch, L)` floats padded with -100: class ids, targets and multi-label vectors from column 0 (where the
        heads read them), token tags beside their tokens (see `_token_columns`)."""
        rows = [torch.as_tensor(label, dtype=torch.float).reshape(-1) for label in labels]
        width = max(seq_len, max(row.numel() for row in rows))
        padded = torch.full((len(rows), width), -100.0)
        for i, (label, row) in enumerate(zip(labels, rows)):
            if _is_token_tags(label) and row.numel() <= seq_len:
                padded[i, _token_columns(row.numel(), seq_len, padding_side)] = row
            else:
                padded[i, : row.numel()] = row
        return padded
