"""Reading task data, checking it, mapping labels to ids and tokenising it into model features.

Every problem with a file names the file and the line, and is raised as an `ExperimentError` before training starts.
"""

import bisect
import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..featurization import featurize_batch
from .experiment import DataSource, Experiment, ExperimentError, TaskSpec


logger = logging.getLogger(__name__)

UNK_LABEL = "UNK"
# Every data file is read as UTF-8, whatever the locale; "-sig" drops a leading byte-order mark, which files saved by
# Windows tools (and GLUE's MRPC) carry and which would otherwise stick to the first column name or JSON line.
ENCODING = "utf-8-sig"
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".conll": "conll",
    ".bio": "conll",
    ".iob": "conll",
}


@dataclass
class Rows:
    """The records of one split of one data source, with where each came from (for error messages)."""

    records: list[dict]
    lines: list[int]
    origin: str
    unit: str = "line"  # what `lines` count: file lines, or questions of a SQuAD file

    def where(self, index: int) -> str:
        return f"{self.origin}, {self.unit} {self.lines[index]}"


# ---------------------------------------------------------------------------------------------------------- reading


def _read_delimited(
    path: Path, delimiter: str, has_header: bool, column_names: list[str] | None, quoting: bool | None = None
) -> Rows:
    # GLUE's TSVs contain bare quotes: tab-separated files are read with quoting off unless data.quoting turns it on
    # (TSVs written by pandas or spreadsheets quote fields holding tabs or newlines).
    if quoting is None:
        quoting = delimiter != "\t"
    records, lines = [], []
    with path.open(newline="", encoding=ENCODING) as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
        header = column_names
        for row in reader:
            if header is None:
                if not has_header:
                    raise ExperimentError(f"{path}: has_header is false, so give data.column_names.")
                header = [name.strip() for name in row]
                continue
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ExperimentError(
                    f"{path}, line {reader.line_num}: expected {len(header)} columns "
                    f"({', '.join(header)}), found {len(row)}."
                )
            records.append(dict(zip(header, row)))
            lines.append(reader.line_num)
    return Rows(records, lines, str(path))


def _read_jsonl(path: Path) -> Rows:
    records, lines = [], []
    with path.open(encoding=ENCODING) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ExperimentError(f"{path}, line {number}: not valid JSON ({error.msg}).") from error
            if not isinstance(record, dict):
                raise ExperimentError(f"{path}, line {number}: each line must be a JSON object.")
            records.append(_with_nested_columns(record))
            lines.append(number)
    return Rows(records, lines, str(path))


def _with_nested_columns(record: dict) -> dict:
    """The record with the fields of nested objects also reachable as dotted columns: CommonsenseQA's
    `{"question": {"stem": ..., "choices": [...]}}` gives the columns `question.stem` and `question.choices`."""
    nested = {}
    for key, value in record.items():
        if isinstance(value, dict):
            for inner, inner_value in _with_nested_columns(value).items():
                nested.setdefault(f"{key}.{inner}", inner_value)
    return {**record, **{key: value for key, value in nested.items() if key not in record}}


def _read_conll(path: Path) -> Rows:
    """CoNLL-style columns: one token per line, the token first and its tag last, blank lines between sentences."""
    records, lines = [], []
    tokens, tags, start = [], [], None
    with path.open(encoding=ENCODING) as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if tokens:
                    records.append({"tokens": tokens, "tags": tags})
                    lines.append(start)
                tokens, tags, start = [], [], None
                continue
            if len(parts) < 2:
                raise ExperimentError(f"{path}, line {number}: expected a token and a tag, found {line.strip()!r}.")
            tokens.append(parts[0])
            tags.append(parts[-1])
            start = start or number
    if tokens:
        records.append({"tokens": tokens, "tags": tags})
        lines.append(start)
    return Rows(records, lines, str(path))


def _is_squad_layout(path: Path) -> bool:
    """Whether a .json file is one SQuAD document (`{"data": [{"paragraphs": ...}]}`) rather than JSON lines."""
    with path.open(encoding=ENCODING) as handle:
        head = handle.read(4096)
    if not re.match(r'\s*\{\s*"(data|version)"', head):
        return False
    try:
        document = json.loads(path.read_text(encoding=ENCODING))
    except json.JSONDecodeError:
        return False
    articles = document.get("data") if isinstance(document, dict) else None
    return (
        isinstance(articles, list) and bool(articles) and isinstance(articles[0], dict) and "paragraphs" in articles[0]
    )


def _read_squad(path: Path) -> Rows:
    """The SQuAD JSON layout as published (`{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
    "answers"}]}]}]}`): one record per question, with its paragraph as `context` and SQuAD 2.0's
    `is_impossible` questions given no answers."""
    try:
        document = json.loads(path.read_text(encoding=ENCODING))
    except json.JSONDecodeError as error:
        raise ExperimentError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}).") from error
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ExperimentError(f"{path}: a SQuAD file holds {{'data': [articles]}}; this one does not.")
    records = []
    try:
        for article in document["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = [] if qa.get("is_impossible") else qa["answers"]
                    records.append(
                        {
                            "id": qa["id"],
                            "title": article.get("title", ""),
                            "question": qa["question"],
                            "context": paragraph["context"],
                            "answers": answers,
                        }
                    )
    except (KeyError, TypeError) as error:
        raise ExperimentError(
            f"{path}, question {len(records) + 1}: not in the SQuAD layout (missing {error}); expected "
            "data -> paragraphs -> qas with id, question and answers."
        ) from None
    return Rows(records, list(range(1, len(records) + 1)), str(path), unit="question")


def _read_line_files(columns: dict[str, Path]) -> Rows:
    """Parallel text files, one example per line, one file per column (ATIS/SNIPS's seq.in, seq.out, label)."""
    values = {}
    for column, path in columns.items():
        _require_file(path)
        values[column] = path.read_text(encoding=ENCODING).splitlines()
    counts = {column: len(column_values) for column, column_values in values.items()}
    if len(set(counts.values())) > 1:
        raise ExperimentError(
            "Line files of one split must have the same number of lines; got "
            + ", ".join(f"{columns[c]}: {n}" for c, n in counts.items())
            + "."
        )
    names = list(values)
    records = [dict(zip(names, row)) for row in zip(*values.values())]
    return Rows(records, list(range(1, len(records) + 1)), " + ".join(str(p) for p in columns.values()))


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise ExperimentError(f"Data file {path} does not exist.")


def read_split(source: DataSource, split: str) -> Rows | None:
    """The records of `split` (`None` when the source has no such split)."""
    if source.dataset is not None:
        if split not in source.splits:
            return None
        import datasets

        try:
            data = datasets.load_dataset(source.dataset, source.config, split=source.splits[split])
        except Exception as error:  # datasets raises many types (connection, missing config, ...)
            raise ExperimentError(
                f"Could not load Hub dataset '{source.dataset}' ({source.config}, split "
                f"'{source.splits[split]}'): {error}. Offline, point data.train/validation at "
                "local files instead."
            ) from error
        records = data.to_list()
        origin = f"{source.dataset}[{source.splits[split]}]"
        if not records:
            raise ExperimentError(
                f"Hub dataset split {origin} holds no examples: name a non-empty split in data.splits.{split}."
            )
        return Rows(records, list(range(1, len(records) + 1)), origin)

    location = source.files.get(split)
    if location is None:
        return None
    try:
        rows = _read_local(source, location)
    except UnicodeDecodeError as error:
        raise ExperimentError(
            f"{location} is not UTF-8 text ({error.reason} at byte {error.start}): save it as UTF-8."
        ) from error
    if not rows.records:
        raise ExperimentError(f"{rows.origin} holds no examples.")
    return rows


def _read_local(source: DataSource, location) -> Rows:
    if isinstance(location, dict):
        rows = _read_line_files(location)
    else:
        _require_file(location)
        file_format = source.format or _SUFFIX_FORMATS.get(location.suffix.lower())
        if source.format is None and location.suffix.lower() == ".json" and _is_squad_layout(location):
            file_format = "squad"  # SQuAD's published files are .json; each split's file is told apart by itself
        if file_format is None:
            raise ExperimentError(
                f"Cannot tell the format of {location} from its suffix: set data.format to one "
                f"of {', '.join(sorted(set(_SUFFIX_FORMATS.values())))}."
            )
        if file_format in ("csv", "tsv"):
            delimiter = source.delimiter or ("\t" if file_format == "tsv" else ",")
            rows = _read_delimited(location, delimiter, source.has_header, source.column_names, source.quoting)
        elif file_format in ("jsonl", "json"):
            rows = _read_jsonl(location)
        elif file_format == "squad":
            rows = _read_squad(location)
        elif file_format == "conll":
            rows = _read_conll(location)
        elif file_format == "parquet":
            import pyarrow.parquet

            try:
                records = pyarrow.parquet.read_table(location).to_pylist()
            except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
                raise ExperimentError(f"{location} is not a readable parquet file: {error}") from error
            rows = Rows(records, list(range(1, len(records) + 1)), str(location))
        else:
            raise ExperimentError(f"data.format '{file_format}' needs a mapping of column -> line file per split.")
    return rows


# ------------------------------------------------------------------------------------------------------- labelling


def _words(value: Any, rows: Rows, index: int, column: str) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ExperimentError(
        f"{rows.where(index)}: column '{column}' must be a list of strings or a space-separated string, got {value!r}."
    )


def _check_columns(task: TaskSpec, rows: Rows) -> None:
    available = list(rows.records[0])
    for column in (task.text_column, task.text_pair_column, task.label_column):
        if column is not None and column not in rows.records[0]:
            raise ExperimentError(
                f"Task '{task.name}': column '{column}' does not exist in {rows.origin}. "
                f"Available columns: {', '.join(map(str, available))}."
            )
    for index, record in enumerate(rows.records):
        missing = [c for c in (task.text_column, task.label_column, task.text_pair_column) if c and c not in record]
        if missing:
            raise ExperimentError(f"{rows.where(index)}: missing column '{missing[0]}'.")


def _raw_labels(task: TaskSpec, rows: Rows, index: int) -> Any:
    """The label of one record as its type reads it: name(s), or a value."""
    value = rows.records[index][task.label_column]
    try:
        return task.definition.read_label(value, task.data_settings)
    except ValueError as error:
        raise ExperimentError(
            f"{rows.where(index)}: {error} (column '{task.label_column}' of task '{task.name}')."
        ) from None


def infer_labels(task: TaskSpec, train: Rows) -> list[str] | None:
    """The label names: the experiment's list, `0 ... num_labels - 1` for a bare count, or every label seen in train
    (in the order the task's type sorts them)."""
    definition = task.definition
    if definition.min_labels is None:
        return None
    if task.labels is not None:
        labels = list(task.labels)
    elif task.num_labels is not None:
        labels = [str(i) for i in range(task.num_labels)]
    else:
        seen = set()
        for index in range(len(train.records)):
            seen.update(definition.label_names(_raw_labels(task, train, index)))
        labels = definition.sort_labels(seen)
    if task.unseen_labels == "unk" and UNK_LABEL not in labels:
        labels.append(UNK_LABEL)
    return labels


def encode_labels(task: TaskSpec, rows: Rows, labels: list[str] | None, split: str) -> list[Any]:
    """What each record's feature stores for its label, as the task's type encodes it (class id, value, 0/1 vector,
    tag ids...)."""
    label2id = {label: i for i, label in enumerate(labels or [])}

    def to_id(name: str) -> int:
        if name in label2id:
            return label2id[name]
        if split != "train" and task.unseen_labels == "unk":
            return label2id[UNK_LABEL]
        hint = (
            "add it to the task's labels"
            if split == "train"
            else "add it to the task's labels, or set unseen_labels: unk to score it as UNK (always an error)"
        )
        raise ExperimentError(
            f"{rows.where(index)}: label '{name}' of task '{task.name}' is not in its label "
            f"list ({len(label2id)} labels): {hint}."
        )

    definition = task.definition
    encoded = []
    for index in range(len(rows.records)):
        raw = _raw_labels(task, rows, index)
        words = None
        if definition.word_level:
            words = _words(rows.records[index][task.text_column], rows, index, task.text_column)
        try:
            encoded.append(definition.encode_label(raw, to_id, len(label2id), words))
        except ValueError as error:
            if isinstance(error, ExperimentError):
                raise
            raise ExperimentError(f"{rows.where(index)}: {error} (task '{task.name}').") from None
    return encoded


# ------------------------------------------------------------------------------------------------------ tokenising


# Keys of a feature that the collator leaves out (it passes on only model inputs, labels and task ids).
SCORING = "scoring"  # what a task's metrics need beyond the label (a token task's gold tags past the truncation)
UNSCORED_TAGS = SCORING  # its former name
TRUNCATED = "truncated"  # present (True) on examples longer than max_length


@dataclass
class TaskGroup:
    """Tasks trained on the same examples in one encoder pass (one task, or e.g. intent + slots of ATIS)."""

    tasks: list[TaskSpec]
    source: DataSource
    split_words: bool | None = None  # tokenise from word lists; defaults to "any task is token-level"

    @property
    def name(self) -> str:
        return "+".join(task.name for task in self.tasks)

    @property
    def first(self) -> TaskSpec:
        return self.tasks[0]

    @property
    def word_level(self) -> bool:
        if self.split_words is not None:
            return self.split_words
        return any(task.definition.word_level for task in self.tasks)


def group_tasks(experiment: Experiment) -> list[TaskGroup]:
    """Tasks sharing data, text columns and max_length form one group when `sampling.joint` is on."""
    groups: dict[tuple, TaskGroup] = {}
    for i, task in enumerate(experiment.tasks):
        key = (task.data.key(), task.text_column, task.text_pair_column, task.max_length)
        # A type with its own featurisation (windows, choices) shapes its features alone: it trains in its own group.
        key = key if experiment.sampling.joint and task.definition.featurize is None else (i,)
        groups.setdefault(key, TaskGroup([], task.data)).tasks.append(task)
    return list(groups.values())


def tokenize(
    group: TaskGroup,
    rows: Rows,
    tokenizer,
    label_ids: dict[str, list],
    task_indices: dict[str, int],
    joint: bool,
    word_splitting: str = "whitespace",
) -> list[dict]:
    """Model features for the records of one group's split, through `featurize_batch`, the pipeline's function.

    Word-level groups (any task whose type is word-level) read each record's words joined by single spaces: the text
    the pipeline will see for that sentence. Each task's type turns its stored label into the feature's label, aligned
    to the tokens (`TaskType.feature_label`).
    """
    task = group.first
    if task.definition.featurize is not None:
        return _own_features(task, rows, tokenizer, label_ids[task.name], task_indices[task.name])
    pairs = None
    if group.word_level:
        if task.text_pair_column:
            raise ExperimentError(
                f"Task '{task.name}': its examples are words with per-word labels, read from one text; drop "
                "text_pair_column (or train the pair task on its own data)."
            )
        words = [_words(record[task.text_column], rows, i, task.text_column) for i, record in enumerate(rows.records)]
        texts = [" ".join(record_words) for record_words in words]
    else:
        texts = [_text(record[task.text_column], rows, i, task.text_column) for i, record in enumerate(rows.records)]
        if task.text_pair_column:
            pairs = [
                _text(r[task.text_pair_column], rows, i, task.text_pair_column) for i, r in enumerate(rows.records)
            ]
    featurized = featurize_batch(tokenizer, texts, pairs, max_length=task.max_length, word_splitting=word_splitting)
    truncated = sum(example.truncated for example in featurized)
    if truncated:
        logger.warning(
            "%s: %d of %d examples are longer than max_length=%d tokens and were truncated.",
            rows.origin,
            truncated,
            len(rows.records),
            task.max_length,
        )

    cut_words = 0
    features = []
    for index, example in enumerate(featurized):
        feature = example.model_inputs()
        record_word_ids = None
        if group.word_level:
            owners = _word_owners(words[index], example.words)
            cut_words += len(owners) - len(set(owners))
            record_word_ids = [None if word is None else owners[word] for word in example.word_ids]
        labels, scoring = {}, {}
        for member in group.tasks:
            labels[member.name], scoring[member.name] = member.definition.feature_label(
                label_ids[member.name][index], record_word_ids
            )
        if joint:
            feature["labels"] = labels
        else:
            feature["labels"] = labels[task.name]
            feature["task_ids"] = task_indices[task.name]
            if scoring[task.name] is not None:
                # E.g. the gold tags of words cut off by max_length, which scoring counts as predicted "O", so
                # entities past the cut are misses instead of vanishing from the score.
                feature[SCORING] = scoring[task.name]
        if example.truncated:
            feature[TRUNCATED] = True
        features.append(feature)
    if cut_words:
        logger.warning(
            "%s: word_splitting=%s cuts %d words into several (punctuation, or a space inside a token); each such "
            "word's tag goes to its first piece, and the pieces after it are not trained (the pipeline will tag "
            "them as words of their own).",
            rows.origin,
            word_splitting,
            cut_words,
        )
    return features


def _own_features(task: TaskSpec, rows: Rows, tokenizer, labels: list, task_index: int) -> list[dict]:
    """Features of a task whose type featurises its examples itself (`TaskType.featurize`): a record may give several
    (the windows of a long context); problems are reported with the record's file and line."""
    features = []
    for index, record in enumerate(rows.records):
        try:
            (record_features,) = task.definition.featurize(task, [record], [labels[index]], tokenizer, task.max_length)
        except ValueError as error:
            raise ExperimentError(f"{rows.where(index)}: {error} (task '{task.name}').") from None
        for feature in record_features:
            feature["task_ids"] = task_index
            if "scoring" in feature:  # which example a feature came from, across the whole split
                feature["scoring"] = {**feature["scoring"], "example": index}
        features.extend(record_features)
    return features


def _word_owners(record_words: list[str], word_spans: list[tuple[int, int]]) -> list[int]:
    """For each featurised word (a span of the record's words joined by single spaces), the record word it is in.

    The identity, unless word splitting cuts a record word into pieces or a record word holds a space."""
    starts, position = [], 0
    for word in record_words:
        starts.append(position)
        position += len(word) + 1
    return [bisect.bisect_right(starts, start) - 1 for start, _ in word_spans]


def _text(value: Any, rows: Rows, index: int, column: str) -> str:
    if isinstance(value, list):
        value = " ".join(map(str, value))
    if not isinstance(value, str) or not value.strip():
        raise ExperimentError(f"{rows.where(index)}: column '{column}' is empty or not text ({value!r}).")
    return value


@dataclass
class PreparedData:
    """Everything training needs from the data: label names per task, train features per group, eval features."""

    labels: dict[str, list[str] | None]
    train: dict[str, list[dict]]  # group name -> features
    validation: dict[str, list[dict]] = field(default_factory=dict)  # task name -> features
    test: dict[str, list[dict]] = field(default_factory=dict)
    groups: list[TaskGroup] = field(default_factory=list)
    truncated: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> task -> examples cut at max_length


def prepare_data(experiment: Experiment, tokenizer) -> PreparedData:
    """Read, check and tokenise every task's splits; any problem raises `ExperimentError` before training.

    Every split of every task is read and its labels checked before the first one is tokenised, so a bad row in the
    last file fails in seconds, not after the others have been tokenised.
    """
    groups = group_tasks(experiment)
    task_indices = {task.name: i for i, task in enumerate(experiment.tasks)}
    cache: dict[tuple, Rows | None] = {}

    def rows_of(source: DataSource, split: str) -> Rows | None:
        key = (source.key(), source.format, split)
        if key not in cache:
            cache[key] = read_split(source, split)
        return cache[key]

    prepared = PreparedData(labels={}, train={}, groups=groups)
    word_splitting = experiment.model.word_splitting
    checked = []  # (group, train rows, train label ids, {split: (rows, {task: label ids})})
    for group in groups:
        train_rows = rows_of(group.source, "train")
        label_ids = {}
        for task in group.tasks:
            _check_columns(task, train_rows)
            prepared.labels[task.name] = infer_labels(task, train_rows)
            label_ids[task.name] = encode_labels(task, train_rows, prepared.labels[task.name], "train")
        evaluation = {}
        for split in ("validation", "test"):
            rows = rows_of(group.source, split)
            if rows is None:
                continue
            for task in group.tasks:
                _check_columns(task, rows)
            evaluation[split] = (
                rows,
                {task.name: encode_labels(task, rows, prepared.labels[task.name], split) for task in group.tasks},
            )
        checked.append((group, train_rows, label_ids, evaluation))

    for group, train_rows, label_ids, evaluation in checked:
        prepared.train[group.name] = tokenize(
            group,
            train_rows,
            tokenizer,
            label_ids,
            task_indices,
            joint=len(group.tasks) > 1,
            word_splitting=word_splitting,
        )
        for task in group.tasks:
            prepared.truncated.setdefault("train", {})[task.name] = _count_truncated(prepared.train[group.name])
        for split, (rows, split_label_ids) in evaluation.items():
            for task in group.tasks:
                ids = {task.name: split_label_ids[task.name]}
                # Evaluated alone, but tokenised exactly as in training.
                single = TaskGroup([task], group.source, split_words=group.word_level)
                getattr(prepared, split)[task.name] = tokenize(
                    single, rows, tokenizer, ids, task_indices, joint=False, word_splitting=word_splitting
                )
                count = _count_truncated(getattr(prepared, split)[task.name])
                prepared.truncated.setdefault(split, {})[task.name] = count
    return prepared


def _count_truncated(features: list[dict]) -> int:
    return sum(1 for feature in features if feature.get(TRUNCATED))
