"""Task heads and the one registry that maps a task type to its head.

A head turns a task representation into logits and knows its loss. Sequence-level heads read one vector per example
`(batch, hidden)`; token-level heads read one per token `(batch, seq, hidden)`. The loss follows the problem type, as
in transformers: single-label -> cross-entropy, multi-label -> BCE with logits, regression -> MSE, token
classification -> cross-entropy ignoring `-100`.

Shipped as remote code: imports only torch. Its keys match `TASK_TYPES` in the config (a test checks).
"""

import torch
from torch import nn
from torch.nn import functional as F


IGNORE_INDEX = -100  # label value that pads mixed batches and marks unlabelled tokens (the transformers convention)


def _any(mask: torch.Tensor) -> bool:
    """Whether any entry of `mask` is set. One host sync on an accelerator (once per head per step); skipped while
    torch.compile traces the model, where reading a value would break the graph (shapes are still checked)."""
    if torch.compiler.is_compiling():
        return False
    return bool(mask.any())


def _not_a_class_id(ids: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Where `ids` (long, or float in a mixed batch) hold neither a class id in [0, num_labels) nor -100."""
    invalid = (ids < 0) | (ids >= num_labels)
    if ids.is_floating_point():
        invalid = invalid | (ids != ids.round())  # NaN compares unequal to itself, so it is caught here too
    return invalid & (ids != IGNORE_INDEX)


def _first_value(mask: torch.Tensor, values: torch.Tensor) -> str:
    """`<value> at row i` (or `at position i, j`) for the first set entry of `mask`; only on the error path."""
    position = tuple(int(i) for i in mask.nonzero()[0])
    return (
        f"{values[position].item()} at {'row' if len(position) == 1 else 'position'} {', '.join(map(str, position))}"
    )


class LabelReading:
    """Shared by every head: errors that name the task, and the split of a `(batch, L)` tensor into this head's
    labels and the -100 padding of a mixed batch after them."""

    task_name = "task"
    task_type = "task"

    def _error(self, problem: str) -> ValueError:
        return ValueError(f"Task {self.task_name!r} ({self.task_type}): {problem}")

    def _check_batch(self, labels: torch.Tensor, batch_size: int, expected: str) -> None:
        if labels.dim() == 0 or labels.shape[0] != batch_size:
            raise self._error(f"labels have shape {tuple(labels.shape)}; expected {expected} for this batch.")

    def _check_padding(self, padding: torch.Tensor, labels: torch.Tensor, expected: str) -> None:
        """`padding`, the columns after this head's labels, must be -100 (a mixed batch's padding): anything else
        means the labels have another shape than this head's (one-hot class ids, several regression targets)."""
        if padding.numel() and _any(padding != IGNORE_INDEX):
            row = int((padding != IGNORE_INDEX).any(1).nonzero()[0])
            raise self._error(
                f"labels have shape {tuple(labels.shape)} and row {row} is {labels[row].tolist()}; expected "
                f"{expected} (a mixed batch's rows may only add -100 padding after them)."
            )


class SequenceHead(LabelReading, nn.Module):
    """Dropout -> Linear -> tanh -> dropout -> Linear on a pooled `(batch, hidden)` vector (as RoBERTa's head)."""

    is_token_level = False

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, task_name: str = "task"):
        super().__init__()
        self.num_labels = num_labels
        self.task_name = task_name
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out_proj(self.dropout(hidden))  # (batch, num_labels)

    def read_labels(self, labels: torch.Tensor, batch_size: int, seq_len: int) -> torch.Tensor:
        """This head's labels from its natural shape or from a mixed batch's `(batch, L)` tensor padded with -100;
        labels of another shape or out of range raise a `ValueError` naming the task."""
        raise NotImplementedError

    def _one_value_per_example(self, labels: torch.Tensor, batch_size: int, expected: str) -> torch.Tensor:
        """`(batch,)` labels, from `(batch,)`, `(batch, 1)` or a mixed batch's `(batch, L)` padded with -100."""
        self._check_batch(labels, batch_size, expected)
        if labels.dim() > 2:
            raise self._error(f"labels have shape {tuple(labels.shape)}; expected {expected}.")
        if labels.dim() == 2:
            self._check_padding(labels[:, 1:], labels, expected)
            return labels[:, 0]
        return labels

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SequenceClassificationHead(SequenceHead):
    """Single-label classification: logits `(batch, num_labels)`, labels `(batch,)` class ids."""

    task_type = "sequence_classification"

    def read_labels(self, labels, batch_size, seq_len):
        expected = f"({batch_size},) class ids in [0, {self.num_labels}) (not one-hot: pass labels.argmax(-1))"
        ids = self._one_value_per_example(labels, batch_size, expected)
        invalid = _not_a_class_id(ids, self.num_labels)
        if _any(invalid):
            raise self._error(f"label {_first_value(invalid, ids)} is not a class id; expected {expected}.")
        return ids.long()

    def loss(self, logits, labels):
        return F.cross_entropy(logits.float(), labels)


class MultiLabelClassificationHead(SequenceHead):
    """Multi-label classification: logits `(batch, num_labels)`, labels `(batch, num_labels)` of 0/1."""

    task_type = "multi_label_classification"

    def read_labels(self, labels, batch_size, seq_len):
        expected = f"({batch_size}, {self.num_labels}) targets in [0, 1]"
        self._check_batch(labels, batch_size, expected)
        if labels.dim() != 2 or labels.shape[1] < self.num_labels:
            raise self._error(f"labels have shape {tuple(labels.shape)}; expected {expected}.")
        self._check_padding(labels[:, self.num_labels :], labels, expected)
        targets = labels[:, : self.num_labels]
        invalid = ~((targets >= 0) & (targets <= 1))  # NaN fails both comparisons
        if _any(invalid):
            raise self._error(f"label {_first_value(invalid, targets)} is outside [0, 1]; expected {expected}.")
        return targets.float()

    def loss(self, logits, labels):
        return F.binary_cross_entropy_with_logits(logits.float(), labels)


class RegressionHead(SequenceHead):
    """Regression: logits `(batch, 1)`, labels `(batch,)` floats."""

    task_type = "regression"

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, task_name: str = "task"):
        super().__init__(hidden_size, 1, dropout, task_name)

    def read_labels(self, labels, batch_size, seq_len):
        expected = f"({batch_size},) finite targets, one per example"
        values = self._one_value_per_example(labels, batch_size, expected).float()
        invalid = ~torch.isfinite(values)
        if _any(invalid):
            raise self._error(f"label {_first_value(invalid, values)} is not finite; expected {expected}.")
        return values

    def loss(self, logits, labels):
        return F.mse_loss(logits.float().squeeze(-1), labels)


class TokenClassificationHead(LabelReading, nn.Module):
    """Token classification: logits `(batch, seq, num_labels)`, labels `(batch, seq)` with -100 where ignored.

    With `sentence_context`, the head also reads one sentence vector per example (with fusion: the task's
    attention-pooled tokens) next to every token: `logits_t = W [h_t ; c] + b`, computed as `W_h h_t + W_c c + b`, so
    the `(batch, seq, 2 * hidden)` concatenation is never built. `W_c` starts at zero (set by the model's weight
    init), so the head starts as the plain token classifier.
    """

    is_token_level = True
    task_type = "token_classification"

    def __init__(
        self,
        hidden_size: int,
        num_labels: int,
        dropout: float,
        sentence_context: bool = False,
        task_name: str = "task",
    ):
        super().__init__()
        self.num_labels = num_labels
        self.task_name = task_name
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        self.context_classifier = None
        if sentence_context:
            # On a forked random stream: the rest of the model draws the same initial weights with or without it.
            with torch.random.fork_rng(devices=[]):
                self.context_classifier = nn.Linear(hidden_size, num_labels, bias=False)

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.classifier(self.dropout(hidden_states))  # (batch, seq, num_labels)
        if self.context_classifier is not None:
            if context is None:
                raise ValueError("This token head was built with sentence_context: pass the (batch, hidden) context.")
            logits = logits + self.context_classifier(context).unsqueeze(1)
        return logits

    def read_labels(self, labels, batch_size, seq_len):
        """`(batch, seq)` tag ids, from `(batch, seq)` or a mixed batch's wider `(batch, L)` padded with -100."""
        expected = f"({batch_size}, {seq_len}) tag ids in [0, {self.num_labels}) or -100, one per token"
        self._check_batch(labels, batch_size, expected)
        if labels.dim() != 2 or labels.shape[1] < seq_len:
            raise self._error(f"labels have shape {tuple(labels.shape)}; expected {expected}.")
        self._check_padding(labels[:, seq_len:], labels, expected)
        ids = labels[:, :seq_len]
        invalid = _not_a_class_id(ids, self.num_labels)
        if _any(invalid):
            raise self._error(f"label {_first_value(invalid, ids)} is not a tag id; expected {expected}.")
        return ids.long()

    def loss(self, logits, labels):
        # Summed then divided by the labelled-token count, so a batch whose labels are all -100 gives 0, not NaN.
        summed = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        return summed / (labels != -100).sum().clamp(min=1)


# ------------------------------------------------------------------------------------------------ tag decoding


def bio_transitions(labels: list[str]) -> torch.Tensor:
    """`allowed[i, j]`: may tag `j` follow tag `i` in IOB2? `I-X` may follow only `B-X` or `I-X`; every other tag
    (O, B-*, or one without a prefix such as UNK) may follow anything. The extra last row is the sentence start,
    where `I-X` is not allowed either."""
    # Built as Python lists and converted once: setting tensor elements one by one took ~15 ms for ATIS's 122 tags,
    # on every pipeline call and evaluation batch.
    return torch.tensor(
        [
            [not label.startswith("I-") or previous in (f"B-{label[2:]}", label) for label in labels]
            for previous in [*labels, None]  # None: the sentence start
        ]
    )


def viterbi_decode(logits: torch.Tensor, word_mask: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """For each row of `logits` `(batch, seq, num_labels)`, the sequence of tags over the `word_mask` positions that
    maximises the summed per-token log-probabilities among the sequences `allowed` (see [`bio_transitions`]): the
    hard constraints of a CRF on top of a locally normalised tagger. Other positions keep their argmax."""
    result = logits.argmax(-1)
    num_labels = logits.shape[-1]
    penalty = torch.zeros(allowed.shape, device=logits.device).masked_fill(~allowed.to(logits.device), float("-inf"))
    for row in range(logits.shape[0]):
        positions = word_mask[row].nonzero(as_tuple=True)[0]
        if len(positions) == 0:
            continue
        log_probs = logits[row, positions].float().log_softmax(-1)
        best = log_probs[0] + penalty[num_labels]  # from the sentence start
        pointers = []
        for token_log_probs in log_probs[1:]:
            best, pointer = (best[:, None] + penalty[:num_labels]).max(0)  # (previous tag, next tag) -> next tag
            best = best + token_log_probs
            pointers.append(pointer)
        path = [int(best.argmax())]
        for pointer in reversed(pointers):
            path.append(int(pointer[path[-1]]))
        result[row, positions] = torch.tensor(path[::-1], device=result.device)
    return result


def decode_tags(logits: torch.Tensor, word_mask: torch.Tensor | None, labels: list[str], decoding: str):
    """Tag ids of token logits `(batch, seq, num_labels)`: per-token argmax, or (`decoding="bio"`) the best IOB2-valid
    sequence over the `word_mask` positions, the first sub-token of each word."""
    if decoding == "argmax":
        return logits.argmax(-1)
    if decoding != "bio":
        raise ValueError(f"Unknown tag decoding {decoding!r}: use 'argmax' or 'bio'.")
    if word_mask is None:
        raise ValueError("decoding='bio' needs word_mask: which positions hold the first sub-token of a word.")
    return viterbi_decode(logits, word_mask.bool(), bio_transitions(labels))


HEAD_REGISTRY = {
    "sequence_classification": SequenceClassificationHead,
    "multi_label_classification": MultiLabelClassificationHead,
    "regression": RegressionHead,
    "token_classification": TokenClassificationHead,
}


def build_head(task: dict, hidden_size: int, dropout: float, token_context: bool = False) -> nn.Module:
    """The head for one task spec (a `MultiTaskConfig.tasks` entry); `token_context` gives token-level heads a
    sentence-context input (see [`TokenClassificationHead`])."""
    head_class = HEAD_REGISTRY.get(task["type"])
    if head_class is None:
        raise ValueError(f"No head for task type {task['type']!r}. Known types: {', '.join(HEAD_REGISTRY)}.")
    if head_class.is_token_level and token_context:
        return head_class(hidden_size, task["num_labels"], dropout, sentence_context=True, task_name=task["name"])
    return head_class(hidden_size, task["num_labels"], dropout, task_name=task["name"])
