"""`multiple_choice`: pick the right one of `num_choices` candidate answers (CommonsenseQA, SWAG, ...).

Data: a question or context (`text_column`, default `question`), the choices (`choices_column`, default `choices`: a
list of strings, or of `{"label", "text"}` as CommonsenseQA ships them; or one column per choice with
`choice_columns: [ending0, ending1, ...]`), and the answer (`label_column`, default `label`): the right choice's index,
or its label (CommonsenseQA's `answerKey: "B"`). Nested JSON fields are columns too: `question.stem`. Every choice
has text: an empty one, in training data or a pipeline input, is an error (it is nearly always a lost cell).

Features: each (question, choice) pair is encoded; an example is `num_choices` encoder rows, flattened into the
batch (`encoder_rows`), so its choices share one encoder pass with everything else in it.

Head: dense + tanh + linear to one score on each choice's pooled vector (`head_input = "sequence"`: with fusion, the
task's attention-pooled tokens of that choice), reshaped to `(examples, num_choices)`; cross-entropy over the choices
(a softmax over them). Metric: accuracy. Prediction: `{"answer", "index", "score", "scores"}`: the chosen option,
its position, its probability, and every option's probability.
"""

import torch
from torch.nn import functional as F

from .task_type import (
    ENCODER_INPUTS,
    Metric,
    SequenceHead,
    TaskType,
    any_set,
    first_value,
    not_a_class_id,
    require_texts,
)


class MultipleChoiceHead(SequenceHead):
    """One score per choice row `(examples * num_choices, hidden)` -> logits `(examples, num_choices)`; labels
    `(examples,)` the right choice's index (in a mixed batch, on each example's first row, -100 on the others)."""

    task_type = "multiple_choice"

    def __init__(self, hidden_size: int, num_choices: int, dropout: float, task_name: str = "task"):
        super().__init__(hidden_size, 1, dropout, task_name)
        self.num_choices = num_choices

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if pooled.shape[0] % self.num_choices:
            raise self._error(
                f"got {pooled.shape[0]} rows, not a multiple of num_choices={self.num_choices}: each example is "
                "num_choices consecutive rows, one per choice."
            )
        return super().forward(pooled).reshape(-1, self.num_choices)

    def read_labels(self, labels, batch_size, seq_len):
        if labels.shape[0] == batch_size * self.num_choices != batch_size:
            labels = labels[:: self.num_choices]  # a mixed batch: the label rides on each example's first row
        expected = f"({batch_size},) choice indices in [0, {self.num_choices})"
        ids = self._one_value_per_example(labels, batch_size, expected)
        invalid = not_a_class_id(ids, self.num_choices)
        if any_set(invalid):
            raise self._error(f"label {first_value(invalid, ids)} is not a choice index; expected {expected}.")
        return ids.long()

    def loss(self, logits, labels):
        return F.cross_entropy(logits.float(), labels)


def _choice_texts(choices) -> tuple[list[str], list[str | None]]:
    """`(texts, labels)` of a choices value: strings, or `{"label", "text"}` dicts."""
    if not isinstance(choices, list) or not choices:
        raise ValueError(f"choices must be a non-empty list, got {choices!r}")
    texts, labels = [], []
    for choice in choices:
        if isinstance(choice, dict) and isinstance(choice.get("text"), str):
            texts.append(choice["text"])
            labels.append(None if choice.get("label") is None else str(choice["label"]))
        elif isinstance(choice, str):
            texts.append(choice)
            labels.append(None)
        else:
            raise ValueError(f"a choice must be a string or {{'label', 'text'}}, got {choice!r}")
    # An empty choice is nearly always a lost cell (a missing column value); scored, it would pass as an option.
    empty = [position for position, text in enumerate(texts) if not text.strip()]
    if empty:
        raise ValueError(
            f"choice {empty[0]} (counting from 0) has no text; every choice of {choices!r} needs its text"
        )
    return texts, labels


def _as_index(label) -> int | None:
    """An answer given as a choice's position: 2, "2", or 2.0 / "2.0" (pandas writes an integer column with gaps as
    floats); `None` for anything else."""
    if isinstance(label, bool):
        return None
    if isinstance(label, int):
        return label
    try:
        value = float(label)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else None


def _encode_pairs(tokenizer, question: str, choices: list[str], max_length: int):
    """The (question, choice) pairs encoded within `max_length` tokens, and whether any had to be cut. Encoding once
    without truncation tells; only pairs that are too long are encoded a second time."""
    encoded = tokenizer([question] * len(choices), choices)
    if max(len(ids) for ids in encoded["input_ids"]) <= max_length:
        return encoded, False
    return tokenizer([question] * len(choices), choices, truncation=True, max_length=max_length), True


class MultipleChoice(TaskType):
    name = "multiple_choice"
    problem_type = "multiple_choice"
    hub_task = "multiple-choice"
    min_labels = None
    text_pair = False
    input_keys = ("question", "choices")
    settings = {"num_choices": None}
    data_settings = {"choices_column": "choices", "choice_columns": []}
    default_columns = {"text_column": "question", "label_column": "label"}
    metrics = (Metric("accuracy"),)
    transformers_model = ("AutoModelForMultipleChoice", None)

    def check_settings(self, task, settings, labels):
        num_choices = settings.get("num_choices")
        if isinstance(num_choices, bool) or not isinstance(num_choices, int) or num_choices < 2:
            raise ValueError(
                f"Task {task!r}: multiple_choice needs num_choices, the number of choices of every question (an "
                f"integer >= 2), got {num_choices!r}."
            )
        return {"num_choices": num_choices}

    def check_data_settings(self, given, settings):
        columns = given.get("choice_columns")
        if columns and given.get("choices_column") is not None:
            raise ValueError(
                "give the choices either as one list column (choices_column) or as one column per choice "
                f"(choice_columns), not both: choices_column is {given['choices_column']!r}, choice_columns {columns}."
            )
        if columns and len(columns) != settings["num_choices"]:
            raise ValueError(
                f"choice_columns names {len(columns)} columns, but num_choices is {settings['num_choices']}: name "
                "one column per choice."
            )
        if columns and not all(isinstance(column, str) and column for column in columns):
            raise ValueError(f"choice_columns must be a list of column names, got {columns!r}.")

    # -------------------------------------------------------------------------------------------- data
    def read_label(self, value, options):
        if value is None or isinstance(value, (bool, list, dict)) or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"expected the right choice's index or label, got {value!r}")
        return value.strip() if isinstance(value, str) else value

    def label_names(self, raw):
        return []

    def encode_label(self, raw, to_id, num_labels, words=None):
        return raw

    def record_columns(self, task):
        columns = task.data_settings.get("choice_columns") or []
        own = [(f"choice_columns[{i}]", column) for i, column in enumerate(columns)]
        return super().record_columns(task) + (
            own or [("choices_column", task.data_settings.get("choices_column") or "choices")]
        )

    def choices_of(self, task, record: dict) -> tuple[list[str], list[str | None]]:
        """A training record's choice texts and labels, from the columns `record_columns` names (the data reader has
        checked that the record has them)."""
        columns = task.data_settings.get("choice_columns") or []
        if columns:
            return _choice_texts([record[column] for column in columns])
        return _choice_texts(record[task.data_settings.get("choices_column") or "choices"])

    def featurize(self, task, records, labels, tokenizer, max_length):
        num_choices = task.settings["num_choices"]
        featurized = []
        for record, label in zip(records, labels, strict=True):
            question = record[task.text_column]
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"column '{task.text_column}' is empty or not text ({question!r})")
            texts, choice_labels = self.choices_of(task, record)
            if len(texts) != num_choices:
                raise ValueError(f"{len(texts)} choices, but the task has num_choices={num_choices}")
            if isinstance(label, str) and label in choice_labels:
                index = choice_labels.index(label)
            elif (position := _as_index(label)) is not None:
                index = position
            elif any(name is not None for name in choice_labels):
                raise ValueError(
                    f"answer {label!r} is neither a choice index in [0, {num_choices}) nor one of the choices' labels "
                    f"{choice_labels}"
                )
            else:
                raise ValueError(
                    f"answer {label!r} is not a choice index, and the choices have no labels: give the right choice's "
                    f"position in [0, {num_choices}), 0 for the first"
                )
            if not 0 <= index < num_choices:
                raise ValueError(f"answer index {index} is outside [0, {num_choices})")
            encoded, cut = _encode_pairs(tokenizer, question, texts, max_length)
            feature = {key: encoded[key] for key in ENCODER_INPUTS if key in encoded}
            featurized.append([{**feature, "labels": index, **({"truncated": True} if cut else {})}])
        return featurized

    truncation_note = "have a question and choice longer than max_length together, which were cut to fit"

    def encoder_rows(self, feature):
        inputs = {key: feature[key] for key in ENCODER_INPUTS if key in feature}
        return [{key: values[row] for key, values in inputs.items()} for row in range(len(inputs["input_ids"]))]

    def pipeline_example(self, task):
        choices = ", ".join(f'"option {i + 1}"' for i in range(task.get("num_choices") or 2))
        return f'{{"question": "Which one fits?", "choices": [{choices}]}}'

    # -------------------------------------------------------------------------------------------- baseline
    def transformers_inputs(self, task, batch):
        """`AutoModelForMultipleChoice` takes the choices as a dimension of their own: `(examples, num_choices, seq)`,
        not flattened into the batch."""
        num_choices = task.settings["num_choices"]
        return {
            key: value.reshape(-1, num_choices, value.shape[-1]) if key in ENCODER_INPUTS else value
            for key, value in batch.items()
        }

    # -------------------------------------------------------------------------------------------- head
    def build_head(self, task, hidden_size, dropout, token_context=False):
        return MultipleChoiceHead(hidden_size, task.settings["num_choices"], dropout, task_name=task.name)

    def compute_metrics(self, task, predictions, labels, scoring=None):
        return {"accuracy": float((predictions == labels).mean()) if len(labels) else 0.0}

    def example_correct(self, task, predictions, labels):
        return [bool(p == g) for p, g in zip(predictions, labels, strict=True)]

    # -------------------------------------------------------------------------------------------- serving
    def pipeline_input_problem(self, task, inputs):
        try:
            texts, _ = _choice_texts(inputs["choices"])
        except ValueError as error:
            return f"Task {task.name!r}: {error}."
        if len(texts) != task.settings["num_choices"]:
            expected = task.settings["num_choices"]
            return f"Task {task.name!r} was trained on {expected} choices per question, got {len(texts)}."
        return None

    def pipeline_features(self, task, inputs, tokenizer, max_length, options=None):
        problem = self.pipeline_input_problem(task, inputs)
        if problem is not None:
            raise ValueError(problem)
        require_texts(inputs, ("question",))
        texts, _ = _choice_texts(inputs["choices"])
        encoded, cut = _encode_pairs(tokenizer, inputs["question"], texts, max_length)
        padded = tokenizer.pad({key: encoded[key] for key in ENCODER_INPUTS if key in encoded}, return_tensors="pt")
        return dict(padded), {"choices": texts, "truncated": cut}

    def predict(self, task, logits, example, options):
        """`logits`: `(1, num_choices)`."""
        probabilities = logits.reshape(-1).float().softmax(-1)
        index = int(probabilities.argmax())
        return {
            "answer": example["choices"][index],
            "index": index,
            "score": probabilities[index].item(),
            "scores": [
                {"choice": choice, "score": score}
                for choice, score in zip(example["choices"], probabilities.tolist(), strict=True)
            ],
        }


__all__ = ["MultipleChoice", "MultipleChoiceHead"]
