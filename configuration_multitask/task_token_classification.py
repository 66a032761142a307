"""`token_classification`: one tag per word (slot filling, NER), usually IOB2 (`B-city`, `I-city`, `O`).

Data: the words (a list, or one space-separated string) and one tag per word. Each word's tag goes to its first token;
the other tokens and the special tokens get -100 (the JointBERT / transformers convention). Head: a linear layer on
each token (with fusion's `token_context`, also on the task's pooled sentence vector). Decoding (`decoding`):
`"argmax"`, each token's most likely tag, or `"bio"`, the most likely tag sequence in which `I-X` follows only `B-X`
or `I-X`. Metrics: entity-level F1, precision and recall (seqeval, conlleval-compatible) and tag accuracy, against
the full gold sentence (tags of words cut off by `max_length` count as predicted `O`). Prediction: `{"entities"}`,
grouped from the words' tags, with character offsets into the input text.
"""

import difflib

import torch
from torch import nn
from torch.nn import functional as F

from .task_type import (
    IGNORE_INDEX,
    LabelReading,
    Metric,
    TaskType,
    any_set,
    first_value,
    not_a_class_id,
    training_library,
)


TAG_DECODINGS = ("argmax", "bio")


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
        invalid = not_a_class_id(ids, self.num_labels)
        if any_set(invalid):
            raise self._error(f"label {first_value(invalid, ids)} is not a tag id; expected {expected}.")
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


# ------------------------------------------------------------------------------------------------ scoring


def tag_sequences(predictions, labels, id2label: dict[int, str], unscored=None):
    """Gold and predicted tag strings per sentence, keeping only labelled positions (first sub-tokens).

    `unscored` (one list of gold tag ids per sentence) holds the tags of words the model never saw (cut by
    max_length): they end the gold sentence and are predicted "O", so entities past the cut count as misses."""
    gold, predicted = [], []
    for index, (prediction_row, label_row) in enumerate(zip(predictions, labels)):
        keep = label_row != IGNORE_INDEX
        unseen = [id2label[int(i)] for i in ((unscored[index] or []) if unscored is not None else [])]
        gold.append([id2label[int(i)] for i in label_row[keep]] + unseen)
        predicted.append([id2label[int(i)] for i in prediction_row[keep]] + ["O"] * len(unseen))
    return gold, predicted


def token_metrics(predictions, labels, id2label: dict[int, str], unscored=None) -> dict[str, float]:
    """Entity-level precision/recall/F1 (seqeval, conlleval-compatible) and tag accuracy, against the full gold
    sentences (see `tag_sequences` for `unscored`)."""
    seqeval = training_library("seqeval.metrics")
    gold, predicted = tag_sequences(predictions, labels, id2label, unscored)
    flat_gold = [tag for sentence in gold for tag in sentence]
    flat_predicted = [tag for sentence in predicted for tag in sentence]
    matches = sum(g == p for g, p in zip(flat_gold, flat_predicted, strict=True))
    return {
        "f1": float(seqeval.f1_score(gold, predicted, zero_division=0)),
        "precision": float(seqeval.precision_score(gold, predicted, zero_division=0)),
        "recall": float(seqeval.recall_score(gold, predicted, zero_division=0)),
        "accuracy": matches / len(flat_gold) if flat_gold else 0.0,
    }


def entity_report(predictions, labels, id2label: dict[int, str]) -> str:
    gold, predicted = tag_sequences(predictions, labels, id2label)
    return training_library("seqeval.metrics").classification_report(gold, predicted, zero_division=0)


def group_bio(tagged_words, text: str) -> list[dict]:
    """Merge `(tag, score, start, end)` words into entity spans.

    `B-X` opens an entity of type X; `I-X` continues an open X entity (or opens one, as seqeval does for a stray
    `I-`); `O` closes it. Tags without a B-/I- prefix are their own type and merge while they repeat.
    """
    entities, current, scores = [], None, []

    def close():
        if current is not None:
            current["score"] = sum(scores) / len(scores)
            current["word"] = text[current["start"] : current["end"]]
            entities.append(current)

    for tag, score, start, end in tagged_words:
        prefix, _, kind = tag.partition("-") if tag[:2] in ("B-", "I-") else ("I", "", tag)
        if tag == "O":
            close()
            current, scores = None, []
            continue
        if prefix == "B" or current is None or current["entity"] != kind:
            close()
            current, scores = {"entity": kind, "start": start, "end": end}, []
        current["end"] = end
        scores.append(score)
    close()
    return entities


def _words(value) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ValueError(f"expected a list of strings or a space-separated string, got {value!r}")


class TokenClassification(TaskType):
    name = "token_classification"
    problem_type = "token_classification"
    hub_task = "token-classification"
    transformers_model = ("AutoModelForTokenClassification", None)
    head_input = "token"
    word_level = True
    text_pair = False
    settings = {"decoding": "argmax"}
    default_columns = {"text_column": "tokens", "label_column": "tags"}
    metrics = (Metric("f1"), Metric("precision"), Metric("recall"), Metric("accuracy"))

    # -------------------------------------------------------------------------------------------- schema
    def check_settings(self, task, settings, labels):
        decoding = settings.get("decoding", "argmax")
        if decoding not in TAG_DECODINGS:
            match = difflib.get_close_matches(str(decoding), TAG_DECODINGS, n=1)
            raise ValueError(
                f"Task {task!r}: decoding {decoding!r} is unknown.{f' Did you mean {match[0]!r}?' if match else ''} "
                f"Allowed: {', '.join(TAG_DECODINGS)} (argmax: each token's most likely tag; bio: the most likely "
                "IOB2-valid tag sequence)."
            )
        if decoding == "bio" and labels is not None:
            inside = [label for label in labels if label.startswith("I-")]
            if not inside or len(inside) == len(labels):
                raise ValueError(
                    f"Task {task!r}: decoding 'bio' constrains IOB2 tags (I-X only after B-X or I-X), so it needs "
                    f"labels that start with 'I-' and others that do not; got {labels[:6]}"
                    f"{' ...' if len(labels) > 6 else ''}. Use decoding 'argmax' for other tag sets."
                )
        return {"decoding": decoding}

    # -------------------------------------------------------------------------------------------- data
    def read_label(self, value, options):
        tags = _words(value)
        if not tags:
            raise ValueError("no tags: every example needs at least one word and its tag")
        return tags

    def label_names(self, raw):
        return raw

    def sort_labels(self, names):
        return sorted(names, key=lambda label: (label != "O", label))  # "O" first, as taggers expect

    def encode_label(self, raw, to_id, num_labels, words=None):
        if words is not None and len(words) != len(raw):
            raise ValueError(f"{len(words)} tokens but {len(raw)} tags; each token needs exactly one tag")
        return [to_id(name) for name in raw]

    def feature_label(self, stored, word_ids):
        """Per token: its word's tag on the word's first token, -100 elsewhere (later pieces, special tokens); and
        the gold tags of the words that got no token (cut by max_length), which scoring counts as predicted "O"."""
        aligned, seen = [], set()
        for word in word_ids:
            aligned.append(IGNORE_INDEX if word is None or word in seen else stored[word])
            if word is not None:
                seen.add(word)
        unscored = [tag for word, tag in enumerate(stored) if word not in seen]
        return aligned, (unscored or None)

    # -------------------------------------------------------------------------------------------- collating
    def label_columns(self, length, seq_len, padding_side):
        """Beside the tokens, so on the side the tokenizer leaves its padding free (a left-padding tokenizer puts the
        tokens, and so the tags, at the end)."""
        if length > seq_len:
            return slice(0, length)
        return slice(seq_len - length, seq_len) if padding_side == "left" else slice(0, length)

    def collate_labels(self, labels, seq_len, padding_side):
        padded = torch.full((len(labels), seq_len), IGNORE_INDEX, dtype=torch.long)
        for row, tags in enumerate(labels):
            tags = tags[:seq_len]
            padded[row, self.label_columns(len(tags), seq_len, padding_side)] = torch.tensor(tags, dtype=torch.long)
        return padded

    # -------------------------------------------------------------------------------------------- head
    def build_head(self, task, hidden_size, dropout, token_context=False):
        return TokenClassificationHead(
            hidden_size, task.num_labels, dropout, sentence_context=token_context, task_name=task.name
        )

    def decode(self, task, logits: torch.Tensor, word_mask: torch.Tensor | None) -> torch.Tensor:
        """Tag ids `(batch, seq)` from logits `(batch, seq, num_labels)`, as the task's `decoding` says."""
        return decode_tags(logits, word_mask, list(task.labels), task.decoding)

    # -------------------------------------------------------------------------------------------- metrics
    def reduce_logits(self, task, logits, labels):
        # The labelled positions (-100 elsewhere) are the first sub-token of each word: what gets decoded. Without
        # labels there is no such mask; BIO decoding then waits for the pipeline, which knows the words.
        if task.decoding != "argmax" and labels is not None:
            return decode_tags(logits, labels != IGNORE_INDEX, list(task.labels), task.decoding)
        return logits.argmax(-1)

    def compute_metrics(self, task, predictions, labels, scoring=None):
        return token_metrics(predictions, labels, task.id2label, scoring)

    def metric_inputs(self, task, predictions, labels, scoring=None):
        gold, predicted = tag_sequences(predictions, labels, task.id2label, scoring)
        return predicted, gold

    def example_correct(self, task, predictions, labels):
        gold, predicted = tag_sequences(predictions, labels, task.id2label)
        return [g == p for g, p in zip(gold, predicted, strict=True)]

    # -------------------------------------------------------------------------------------------- serving
    def predict(self, task, logits, example, options):
        """Entity spans from the tags of the first token of each word of the first text (words as in training: see
        `featurization`); each word's score is its tag's probability and its span the whole word in the text."""
        logits = logits[: example["length"]].float()
        probabilities = logits.softmax(-1)  # (seq, num_labels)
        first_token = {}  # word index -> its first token
        for index, word in enumerate(example["word_ids"][: len(probabilities)]):
            if word is not None and word not in first_token:
                first_token[word] = index
        word_mask = torch.zeros(len(probabilities), dtype=torch.bool)
        word_mask[list(first_token.values())] = True
        tag_ids = self.decode(task, logits[None], word_mask[None])[0]
        tagged = []
        for word, first in sorted(first_token.items()):
            label_id = int(tag_ids[first])
            start, end = example["words"][word]
            tagged.append((task.labels[label_id], probabilities[first, label_id].item(), start, end))
        return {"entities": group_bio(tagged, example["text"])}


__all__ = [
    "TAG_DECODINGS",
    "TokenClassification",
    "TokenClassificationHead",
    "bio_transitions",
    "decode_tags",
    "entity_report",
    "group_bio",
    "tag_sequences",
    "token_metrics",
    "viterbi_decode",
]
