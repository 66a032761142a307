"""`question_answering`: extractive, SQuAD-style. The answer is a span of the context, found from a question.

Data: a question (`text_column`, default `question`), a context (`text_pair_column`, default `context`) and the
answers (`label_column`, default `answers`): a list of `{"text", "answer_start"}` with character offsets into the
context (or one such answer without its list), or SQuAD's `{"text": [...], "answer_start": [...]}`; in a CSV or TSV
file, any of these as JSON text. Or flat, one answer a record (Kaggle's chaii layout): `label_column` holds the
answer's text and `answer_start_column` its character offset (an empty text: no answer). The SQuAD JSON layout
(`data -> paragraphs -> qas`) is read as such records (data format `squad`, which a `.json` file in that layout
gets without asking). An empty list is an unanswerable question (SQuAD 2.0), allowed with `allow_unanswerable: true`;
an answer's text is never empty.

Features: the question and the context encoded as a pair. A context longer than `max_length` is split into
overlapping windows that share `doc_stride` tokens (left out: 128, or a quarter of `max_length` where 128 leaves a
window no room to move on), each a feature of its own; a window's label is the first and last token of the first
answer, or `(0, 0)` (the first token: "no answer here") when the answer is not inside it.

Head: a linear layer on every token (`head_input = "token"`: with fusion, the task's fused tokens) gives a start and
an end logit; the loss is the mean of the start and end cross-entropies, as in transformers' QA models.

Decoding: over every window of an example, the span `(start, end)` of context tokens with `start <= end`, at most
`max_answer_length` tokens long, with the highest `start_logit + end_logit` wins; character offsets map it back to
the exact characters of the context, less the whitespace at its ends (a span of whitespace alone is passed over).
With `allow_unanswerable`, the answer is empty when the null score (the first token's start and end logits, in the
window where it is highest) beats the best span by more than `null_threshold`.

Metrics: exact match and F1, the official SQuAD v1.1 way (lower-case, punctuation and the articles a/an/the removed,
whitespace collapsed; the maximum over the gold answers), as fractions (SQuAD reports them x 100). Prediction: `{"answer", "score", "start", "end"}`
as transformers' question-answering pipeline returns it (`score`: the probability of the span's start times that of
its end, each a softmax over the context tokens of every window, so scores fall as the ranks do).
"""

import collections
import json
import math
import re
import string

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
    require_texts,
)


class QuestionAnsweringHead(LabelReading, nn.Module):
    """Start and end logits `(batch, seq, 2)` from each token; labels `(batch, 2)` token positions."""

    is_token_level = True
    task_type = "question_answering"

    def __init__(self, hidden_size: int, dropout: float, task_name: str = "task"):
        super().__init__()
        self.task_name = task_name
        self.dropout = nn.Dropout(dropout)
        self.qa_outputs = nn.Linear(hidden_size, 2)

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.qa_outputs(self.dropout(hidden_states))  # (batch, seq, 2): start, end

    def read_labels(self, labels, batch_size, seq_len):
        expected = f"({batch_size}, 2) start and end token positions in [0, {seq_len})"
        self._check_batch(labels, batch_size, expected)
        if labels.dim() != 2 or labels.shape[1] < 2:
            raise self._error(f"labels have shape {tuple(labels.shape)}; expected {expected}.")
        self._check_padding(labels[:, 2:], labels, expected)
        positions = labels[:, :2]
        invalid = not_a_class_id(positions, seq_len) | (positions == IGNORE_INDEX)
        if any_set(invalid):
            raise self._error(f"label {first_value(invalid, positions)} is not a token position; expected {expected}.")
        return positions.long()

    def loss(self, logits, labels):
        start_logits, end_logits = logits.float().unbind(-1)
        return (F.cross_entropy(start_logits, labels[:, 0]) + F.cross_entropy(end_logits, labels[:, 1])) / 2


# ------------------------------------------------------------------------------------------------ SQuAD scoring


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower-case, no punctuation, no articles (a, an, the), single spaces."""
    text = "".join(char for char in text.lower() if char not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token F1 between two answers after normalisation (an empty answer matches only an empty one)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], golds: dict[str, list[str]]) -> dict[str, float]:
    """Exact match and F1 as fractions (SQuAD's script prints them x 100), each question's best over its gold answers,
    averaged over questions (SQuAD v1.1's evaluation). A question without gold answers (unanswerable) counts as right
    only for an empty answer. Fractions like every other metric here, so the combined score averages like with like."""
    em = f1_total = 0.0
    for question, gold in golds.items():
        gold = gold or [""]
        prediction = predictions.get(question, "")
        em += max(exact_match(prediction, answer) for answer in gold)
        f1_total += max(f1(prediction, answer) for answer in gold)
    count = max(len(golds), 1)
    return {"exact_match": em / count, "f1": f1_total / count}


# ------------------------------------------------------------------------------------------------ spans


def best_spans(start_logits, end_logits, offsets, max_answer_length: int, count: int = 1, top: int = 20):
    """The `count` best context spans of one window, best first, as `(score, start_token, end_token)`: `offsets[i]` is
    token i's character span in the context, `None` for the question, special tokens and padding. Spans start and end
    among the `top` best start and end tokens (the usual n-best search)."""
    valid = [i for i, offset in enumerate(offsets) if offset is not None]
    if not valid:
        return []
    index = torch.tensor(valid)
    starts = start_logits[index].topk(min(top, len(valid))).indices.tolist()
    ends = end_logits[index].topk(min(top, len(valid))).indices.tolist()
    spans = [
        (float(start_logits[start] + end_logits[end]), start, end)
        for start in (valid[i] for i in starts)
        for end in (valid[i] for i in ends)
        if start <= end and end - start + 1 <= max_answer_length
    ]
    return sorted(spans, key=lambda span: span[0], reverse=True)[:count]


def decode_answers(
    windows, context: str, max_answer_length: int, allow_unanswerable=False, null_threshold=0.0, count: int = 1
) -> list[tuple[str, int, int, float]]:
    """The `count` best answers over every window of one example, best first: `(text, start char, end char, score)`.
    `windows` holds `(start logits, end logits, offsets)` per window. Spans rank by start + end logit, the usual
    n-best search; `score` is the span's start probability times its end probability, each a softmax over the context
    tokens of every window, so a later answer never scores above an earlier one (a per-window softmax would rate a
    weak window's best span as highly as the strong window's). Windows overlap, so a span found in several counts
    once, with its best score. Spans lose the whitespace around them, and one of whitespace alone (a lone byte-level
    space token) is no answer. An unanswerable question (SQuAD 2.0, where allowed) answers `("", 0, 0, 0.0)` alone."""
    candidates, null, context_starts, context_ends = {}, None, [], []
    for start_logits, end_logits, offsets in windows:
        context_tokens = [i for i, offset in enumerate(offsets) if offset is not None]
        context_starts.append(start_logits[context_tokens])  # the scores' softmax runs over these, all windows long
        context_ends.append(end_logits[context_tokens])
        # A few spans beyond `count`: some may be whitespace, or the same span as another window's.
        for score, start, end in best_spans(start_logits, end_logits, offsets, max_answer_length, count + 3):
            span = _strip_whitespace(context, offsets[start][0], offsets[end][1])
            if span[0] < span[1] and (span not in candidates or score > candidates[span]):
                candidates[span] = score
        null_score = float(start_logits[0] + end_logits[0])
        null = null_score if null is None else max(null, null_score)
    ranked = sorted(candidates.items(), key=lambda item: item[1], reverse=True)[:count]
    if not ranked or (allow_unanswerable and null - ranked[0][1] > null_threshold):
        return [("", 0, 0, 0.0)]
    log_norm = float(torch.logsumexp(torch.cat(context_starts), 0) + torch.logsumexp(torch.cat(context_ends), 0))
    return [(context[first:last], first, last, math.exp(score - log_norm)) for (first, last), score in ranked]


def _strip_whitespace(context: str, first: int, last: int) -> tuple[int, int]:
    """The character span `[first, last)` without the whitespace at its ends (SentencePiece and byte-level tokens
    carry the space before a word)."""
    while first < last and context[first].isspace():
        first += 1
    while last > first and context[last - 1].isspace():
        last -= 1
    return first, last


def decode_answer(windows, context: str, max_answer_length: int, allow_unanswerable=False, null_threshold=0.0):
    """The best answer over every window of one example: `(text, start char, end char, score)` (see
    `decode_answers`); `("", 0, 0, 0.0)` for an unanswerable one."""
    return decode_answers(windows, context, max_answer_length, allow_unanswerable, null_threshold)[0]


# ------------------------------------------------------------------------------------------------ features


def window_features(
    tokenizer, question: str, context: str, max_length: int, doc_stride: int, words: bool = False
) -> list[tuple]:
    """The question and every window of the context, encoded as pairs: `(input ids, attention mask (token type ids),
    each token's character span in the context (`None` outside it))`; with `words`, each window also gives its tokens'
    word spans (the characters of the whole word a token is part of, as the tokenizer's pre-tokenizer splits words),
    which the pipeline's `align_to_words` reads."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("question_answering needs a fast tokenizer (character offsets map answers to tokens).")
    question = question.lstrip()  # leading spaces would only take room from the context
    question_tokens = len(tokenizer(question, add_special_tokens=False)["input_ids"])
    room = max_length - question_tokens - tokenizer.num_special_tokens_to_add(pair=True)  # a window's context tokens
    # Windows that move on need room for more than the doc_stride tokens they share (the tokenizer panics otherwise);
    # a context that fits beside the question needs no windows.
    if room <= doc_stride and len(tokenizer(context, add_special_tokens=False)["input_ids"]) > room:
        raise ValueError(
            f"the question takes {question_tokens} tokens, leaving {max(room, 0)} of the {max_length} tokens of a "
            f"window for the context, not more than doc_stride {doc_stride}: shorten the question, or raise max_length "
            "or lower doc_stride"
        )
    encoded = tokenizer(
        question,
        context,
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    context_sequence = 1
    windows = []
    for row in range(len(encoded["input_ids"])):
        sequence_ids = encoded.sequence_ids(row)
        offsets = [
            tuple(offset) if sequence == context_sequence else None
            for sequence, offset in zip(sequence_ids, encoded["offset_mapping"][row], strict=True)
        ]
        window = {"input_ids": encoded["input_ids"][row], "attention_mask": encoded["attention_mask"][row]}
        if "token_type_ids" in encoded:
            window["token_type_ids"] = encoded["token_type_ids"][row]
        if not words:
            windows.append((window, offsets))
            continue
        word_offsets = [
            None if offset is None or word is None else tuple(encoded.word_to_chars(row, word, context_sequence))
            for offset, word in zip(offsets, encoded.word_ids(row), strict=True)
        ]
        windows.append((window, offsets, word_offsets))
    return windows


def answer_positions(offsets: list, answer_start: int, answer_end: int) -> tuple[int, int]:
    """The first and last token of the answer's characters in a window, or `(0, 0)` when it is not wholly inside."""
    tokens = [i for i, offset in enumerate(offsets) if offset is not None]
    if not tokens or offsets[tokens[0]][0] > answer_start or offsets[tokens[-1]][1] < answer_end:
        return 0, 0
    start = next(i for i in tokens if offsets[i][1] > answer_start)
    end = next(i for i in reversed(tokens) if offsets[i][0] < answer_end)
    return start, end


def _answers(value) -> list[dict]:
    """Answers as a list of `{"text", "answer_start"}`, from that, one such answer alone or SQuAD's dict of parallel
    lists, or any of them as JSON text (a CSV or TSV cell)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(
                f"expected the answers as a list of {{'text', 'answer_start'}}, got the text {value!r}; in a CSV or TSV "
                'file, write them as JSON: [{"text": "Bern", "answer_start": 36}]'
            ) from None
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        value = [value]  # one answer, written without its list
    if isinstance(value, dict) and isinstance(value.get("text"), list):
        starts = value.get("answer_start") or []
        if len(starts) != len(value["text"]):
            raise ValueError(f"answers {value!r}: 'text' and 'answer_start' have different lengths")
        value = [{"text": text, "answer_start": start} for text, start in zip(value["text"], starts)]
    if not isinstance(value, list):
        raise ValueError(f"expected a list of {{'text', 'answer_start'}} answers, got {value!r}")
    answers = []
    for answer in value:
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise ValueError(f"an answer must be {{'text': ..., 'answer_start': ...}}, got {answer!r}")
        if not answer["text"].strip():
            raise ValueError(
                f"answer {answer!r} has no text; an unanswerable question has no answers (an empty list, with "
                "allow_unanswerable: true)"
            )
        start = answer.get("answer_start")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"answer {answer['text']!r} needs a character offset 'answer_start' >= 0, got {start!r}")
        answers.append({"text": answer["text"], "answer_start": start})
    return answers


DEFAULT_DOC_STRIDE = 128  # transformers' run_qa.py default, for windows of 384 tokens


def resolve_doc_stride(settings: dict, max_length: int) -> int:
    """The tokens consecutive windows share: the task's `doc_stride`, or by default 128 where windows of `max_length`
    tokens leave room to move on beyond it, else a quarter of `max_length` (so a task that sets neither still runs)."""
    if settings["doc_stride"] is not None:
        return settings["doc_stride"]
    return DEFAULT_DOC_STRIDE if DEFAULT_DOC_STRIDE < max_length // 2 else max_length // 4


def _check_doc_stride(stride: int, max_length: int, task: str) -> None:
    if stride >= max_length // 2:
        raise ValueError(
            f"Task {task!r}: doc_stride {stride} leaves windows of {max_length} tokens no room to move on: use a "
            f"doc_stride below {max_length // 2}, or leave it out (it then follows max_length)."
        )


class QuestionAnswering(TaskType):
    name = "question_answering"
    problem_type = "question_answering"
    hub_task = "question-answering"
    head_input = "token"
    text_pair = False  # its pair is always (question, context), read by its own featurisation
    min_labels = None
    input_keys = ("question", "context")
    # doc_stride None: follows max_length (resolve_doc_stride).
    settings = {"doc_stride": None, "max_answer_length": 30, "allow_unanswerable": False, "null_threshold": 0.0}
    data_settings = {"answer_start_column": ""}  # set: label_column is one answer's text, this column its start
    default_columns = {"text_column": "question", "text_pair_column": "context", "label_column": "answers"}
    metrics = (Metric("f1"), Metric("exact_match"))
    reported_metrics = ("exact_match", "f1")
    transformers_model = ("AutoModelForQuestionAnswering", None)

    def check_settings(self, task, settings, labels):
        checked = super().check_settings(task, settings, labels)
        for key in ("doc_stride", "max_answer_length"):
            value = checked[key]
            if key == "doc_stride" and value is None:
                continue  # follows max_length, which may be known only once the encoder is
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Task {task!r}: {key} must be a positive integer, got {value!r}.")
        max_length = settings.get("max_length")
        if checked["doc_stride"] is not None and isinstance(max_length, int) and not isinstance(max_length, bool):
            _check_doc_stride(checked["doc_stride"], max_length, task)
        if not isinstance(checked["allow_unanswerable"], bool):
            raise ValueError(f"Task {task!r}: allow_unanswerable must be true or false.")
        threshold = checked["null_threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(f"Task {task!r}: null_threshold must be a number, got {threshold!r}.")
        return checked

    # -------------------------------------------------------------------------------------------- data
    def record_columns(self, task):
        start_column = task.data_settings.get("answer_start_column")
        return super().record_columns(task) + ([("answer_start_column", start_column)] if start_column else [])

    def label_value(self, task, record):
        start_column = task.data_settings.get("answer_start_column")
        if not start_column:
            return super().label_value(task, record)
        text, start = record[task.label_column], record[start_column]
        if text is None or (isinstance(text, str) and not text.strip()):
            return []  # no answer: allowed with allow_unanswerable
        if isinstance(start, str) and start.strip().isdigit():
            start = int(start)  # a CSV or TSV cell
        return [{"text": text, "answer_start": start}]

    def read_label(self, value, options):
        return _answers(value)

    def label_names(self, raw):
        return []

    def encode_label(self, raw, to_id, num_labels, words=None):
        return raw

    def featurize(self, task, records: list[dict], labels: list, tokenizer, max_length: int) -> list[list[dict]]:
        """Per record, its features: one per window of the context, with the window's answer positions as labels and
        what scoring needs (`scoring`: the example's index, the context offsets, the context and the gold answers)."""
        settings = task.settings
        if tokenizer.padding_side != "right":
            raise ValueError(
                "question_answering maps answers through token positions counted from the left: load the tokenizer "
                "with padding_side='right'"
            )
        stride = resolve_doc_stride(settings, max_length)
        _check_doc_stride(stride, max_length, task.name)  # here too: max_length may have been the encoder's default
        featurized = []
        for index, (record, answers) in enumerate(zip(records, labels, strict=True)):
            question, context = record[task.text_column], record[task.text_pair_column]
            for column, value in ((task.text_column, question), (task.text_pair_column, context)):
                if not isinstance(value, str) or not value.strip():
                    raise ValueError(f"column '{column}' is empty or not text ({value!r})")
            for answer in answers:
                if context[answer["answer_start"] : answer["answer_start"] + len(answer["text"])] != answer["text"]:
                    raise ValueError(
                        f"answer {answer['text']!r} is not at character {answer['answer_start']} of the context "
                        f"(found {context[answer['answer_start'] : answer['answer_start'] + len(answer['text'])]!r})"
                    )
            if not answers and not settings["allow_unanswerable"]:
                raise ValueError("no answer: set allow_unanswerable: true for SQuAD 2.0-style unanswerable questions")
            windows = window_features(tokenizer, question, context, max_length, stride)
            features = []
            for window, offsets in windows:
                if answers:
                    first = answers[0]
                    positions = answer_positions(
                        offsets, first["answer_start"], first["answer_start"] + len(first["text"])
                    )
                else:
                    positions = (0, 0)
                scoring = {
                    "example": index,
                    "offsets": offsets,
                    "context": context,
                    "answers": [answer["text"] for answer in answers],
                }
                features.append({**window, "labels": list(positions), "scoring": scoring})
            if answers and all(feature["labels"] == [0, 0] for feature in features):
                features[0]["truncated"] = True  # no window holds the answer whole: every window trains "no answer"
            featurized.append(features)
        return featurized

    truncation_note = (
        "have an answer that no window of max_length tokens holds whole (too long for the room the question leaves), "
        "so every window of them trains as 'no answer'; raise max_length or shorten the question"
    )

    # -------------------------------------------------------------------------------------------- head
    def build_head(self, task, hidden_size, dropout, token_context=False):
        return QuestionAnsweringHead(hidden_size, dropout, task_name=task.name)

    def pipeline_example(self, task):
        return '{"question": "Where is the tower?", "context": "The tower stands in the old town of Bern."}'

    # -------------------------------------------------------------------------------------------- baseline
    def transformers_config(self, labels):
        return {"num_labels": 2}  # its qa_outputs layer: a start and an end logit

    def transformers_inputs(self, task, batch):
        """`AutoModelForQuestionAnswering` takes the answer as `start_positions` and `end_positions`."""
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        if "labels" in batch:
            inputs["start_positions"], inputs["end_positions"] = batch["labels"].unbind(-1)
        return inputs

    def transformers_logits(self, task, outputs):
        return torch.stack((outputs.start_logits, outputs.end_logits), dim=-1)

    # -------------------------------------------------------------------------------------------- metrics
    def reduce_logits(self, task, logits, labels):
        return logits.float()  # windows are decoded together once every one of an example has been scored

    def answers_of(self, task, predictions, scoring) -> tuple[dict, dict]:
        """`({example: predicted text}, {example: gold texts})` from every window's logits and scoring entry."""
        windows, contexts, golds = collections.defaultdict(list), {}, {}
        for logits, entry in zip(predictions, scoring, strict=True):
            logits = torch.as_tensor(logits)[: len(entry["offsets"])]
            windows[entry["example"]].append((logits[:, 0], logits[:, 1], entry["offsets"]))
            contexts[entry["example"]] = entry["context"]
            golds[entry["example"]] = entry["answers"]
        settings = task.settings
        predicted = {
            example: decode_answer(
                spans,
                contexts[example],
                settings["max_answer_length"],
                settings["allow_unanswerable"],
                settings["null_threshold"],
            )[0]
            for example, spans in windows.items()
        }
        return predicted, golds

    def compute_metrics(self, task, predictions, labels, scoring=None):
        if scoring is None:
            raise ValueError(f"Task {task.name!r}: question answering is scored from its features' windows.")
        return squad_scores(*self.answers_of(task, predictions, scoring))

    def metric_inputs(self, task, predictions, labels, scoring=None):
        """As the `squad` / `squad_v2` evaluate modules read them: `{"id", "prediction_text"}` and
        `{"id", "answers": {"text", "answer_start"}}` per question."""
        predicted, golds = self.answers_of(task, predictions, scoring)
        return (
            [{"id": str(example), "prediction_text": text} for example, text in predicted.items()],
            [
                {"id": str(example), "answers": {"text": golds[example], "answer_start": [0] * len(golds[example])}}
                for example in predicted
            ],
        )

    # -------------------------------------------------------------------------------------------- serving
    # The options of transformers' question-answering pipeline that apply here, with its names and defaults.
    pipeline_options = ("doc_stride", "max_answer_len", "align_to_words")

    def check_pipeline_option(self, name, value):
        if name == "align_to_words":
            if not isinstance(value, bool):
                raise ValueError(f"align_to_words is True or False, got {value!r}.")
        elif isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "doc_stride" else 1):
            raise ValueError(
                f"{name} must be {'an integer >= 0' if name == 'doc_stride' else 'a positive integer'}, got {value!r}."
            )

    def pipeline_features(self, task, inputs: dict, tokenizer, max_length: int, options=None) -> tuple[dict, dict]:
        """`(model inputs with one row per window, what `predict` needs)` for `{"question", "context"}`; the windows
        share the task's doc_stride tokens, or the call's `doc_stride`."""
        require_texts(inputs, ("question", "context"))
        question, context = inputs["question"], inputs["context"]
        stride = (options or {}).get("doc_stride")
        if stride is None:
            stride = resolve_doc_stride(task.settings, max_length)
        _check_doc_stride(stride, max_length, task.name)
        try:
            windows = window_features(tokenizer, question, context, max_length, stride, words=True)
        except ValueError as error:  # a question too long for the windows: only the call's max_length can change
            raise ValueError(
                f"Task {task.name!r}: {error} (the pipeline reads windows of {max_length} tokens, the task's training "
                "length unless the call sets max_length=, and doc_stride= sets the tokens they share)"
            ) from None
        rows = [window for window, *_ in windows]
        model_inputs = {key: [row[key] for row in rows] for key in rows[0]}
        padded = tokenizer.pad(model_inputs, padding_side="right", return_tensors="pt")  # offsets index from the left
        return dict(padded), {
            "context": context,
            "offsets": [offsets for _, offsets, _ in windows],
            "word_offsets": [word_offsets for *_, word_offsets in windows],
        }

    def predict(self, task, logits, example, options):
        """`logits`: `(windows, seq, 2)`, every window of the input. As transformers' pipeline does, an answer is
        widened to whole words (`align_to_words`, on unless the call turns it off: evaluation scores the raw span, as
        the SQuAD scripts do), and spans are at most the task's `max_answer_length` tokens, or the call's
        `max_answer_len`."""
        offsets_key = "word_offsets" if options.get("align_to_words", True) else "offsets"
        windows = [
            (row[: len(offsets), 0].float(), row[: len(offsets), 1].float(), offsets)
            for row, offsets in zip(logits, example[offsets_key], strict=True)
        ]
        settings = task.settings
        top_k = options.get("top_k") or 1
        answers = [
            {"answer": text, "score": score, "start": start, "end": end}
            for text, start, end, score in decode_answers(
                windows,
                example["context"],
                options.get("max_answer_len") or settings["max_answer_length"],
                settings["allow_unanswerable"],
                settings["null_threshold"],
                count=top_k,
            )
        ]
        return {**answers[0], "top_k": answers} if top_k > 1 else answers[0]


__all__ = [
    "QuestionAnswering",
    "QuestionAnsweringHead",
    "decode_answer",
    "decode_answers",
    "normalize_answer",
    "squad_scores",
]
