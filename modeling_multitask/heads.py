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


class SequenceHead(nn.Module):
    """Dropout -> Linear -> tanh -> dropout -> Linear on a pooled `(batch, hidden)` vector (as RoBERTa's head)."""

    is_token_level = False

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out_proj(self.dropout(hidden))  # (batch, num_labels)

    def read_labels(self, labels: torch.Tensor, seq_len: int) -> torch.Tensor:
        """This head's labels from its natural shape or from a mixed batch's `(batch, L)` tensor padded with -100."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SequenceClassificationHead(SequenceHead):
    """Single-label classification: logits `(batch, num_labels)`, labels `(batch,)` class ids."""

    def read_labels(self, labels, seq_len):
        return (labels[:, 0] if labels.dim() == 2 else labels).long()

    def loss(self, logits, labels):
        return F.cross_entropy(logits.float(), labels)


class MultiLabelClassificationHead(SequenceHead):
    """Multi-label classification: logits `(batch, num_labels)`, labels `(batch, num_labels)` of 0/1."""

    def read_labels(self, labels, seq_len):
        return labels[:, : self.num_labels].float()

    def loss(self, logits, labels):
        return F.binary_cross_entropy_with_logits(logits.float(), labels)


class RegressionHead(SequenceHead):
    """Regression: logits `(batch, 1)`, labels `(batch,)` floats."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__(hidden_size, 1, dropout)

    def read_labels(self, labels, seq_len):
        return (labels[:, 0] if labels.dim() == 2 else labels).float()

    def loss(self, logits, labels):
        return F.mse_loss(logits.float().squeeze(-1), labels)


class TokenClassificationHead(nn.Module):
    """Token classification: logits `(batch, seq, num_labels)`, labels `(batch, seq)` with -100 where ignored.

    With `sentence_context`, the head also reads one sentence vector per example (with fusion: the task's
    attention-pooled tokens) next to every token: `logits_t = W [h_t ; c] + b`, computed as `W_h h_t + W_c c + b`, so
    the `(batch, seq, 2 * hidden)` concatenation is never built. `W_c` starts at zero (set by the model's weight
    init), so the head starts as the plain token classifier.
    """

    is_token_level = True

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, sentence_context: bool = False):
        super().__init__()
        self.num_labels = num_labels
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

    def read_labels(self, labels, seq_len):
        return labels[:, :seq_len].long()

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
        return head_class(hidden_size, task["num_labels"], dropout, sentence_context=True)
    return head_class(hidden_size, task["num_labels"], dropout)
