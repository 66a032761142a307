"""Reading task data, checking it, mapping labels to ids and tokenising it into model features.

Every problem with a file names the file and the line, and is raised as an `ExperimentError` before training starts.
"""

import atexit
import bisect
import contextlib
import csv
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..featurization import featurize_batch
from .experiment import DataPipelineSpec, DataSource, Experiment, ExperimentError, TaskSpec


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
#
# Each local file is read by a generator into a `datasets.Dataset` (memory-mapped Arrow, under the data cache), with
# the line each record starts on in a LINE column, so that a bad value found later (a label, an empty text) still
# names its file and line. Our readers, not `datasets`' csv/json builders, because their rules matter: a byte-order
# mark never sticks to a column name, GLUE's TSVs hold bare quotes, a JSON line's values keep their exact types
# (`1` stays an int, where an Arrow column would turn it into `1.0` next to a float), CoNLL and line files have no
# builder at all. Parquet files and Hub datasets are Arrow already.

LINE = "__line__"  # the line a record starts on (1-based); absent where a record's line is its row number
JSON_RECORD = "__json__"  # a JSON line's record, as its text: re-read per batch, with its values' types intact


def _delimited_records(path: str, delimiter: str, has_header: bool, column_names, quoting, stamp):
    # GLUE's TSVs contain bare quotes: tab-separated files are read with quoting off unless data.quoting turns it on
    # (TSVs written by pandas or spreadsheets quote fields holding tabs or newlines).
    if quoting is None:
        quoting = delimiter != "\t"
    count = 0
    with Path(path).open(newline="", encoding=ENCODING) as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
        header, last_line = column_names, 0
        for row in reader:
            # A quoted field may hold newlines: a record is named by the line it starts on, not the reader's last one.
            line, last_line = last_line + 1, reader.line_num
            if header is None:
                if not has_header:
                    raise ExperimentError(f"{path}: has_header is false, so give data.column_names.")
                header = [name.strip() for name in row]
                continue
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ExperimentError(
                    f"{path}, line {line}: expected {len(header)} columns ({', '.join(header)}), found {len(row)}."
                )
            count += 1
            yield {**dict(zip(header, row)), LINE: line}
    if not count:
        raise ExperimentError(f"{path} holds no examples.")


def _jsonl_records(path: str, stamp):
    count = 0
    with Path(path).open(encoding=ENCODING) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ExperimentError(f"{path}, line {number}: not valid JSON ({error.msg}).") from error
            if not isinstance(record, dict):
                raise ExperimentError(f"{path}, line {number}: each line must be a JSON object.")
            count += 1
            yield {JSON_RECORD: line.strip(), LINE: number}
    if not count:
        raise ExperimentError(f"{path} holds no examples.")


def _with_nested_columns(record: dict) -> dict:
    """The record with the fields of nested objects also reachable as dotted columns: CommonsenseQA's
    `{"question": {"stem": ..., "choices": [...]}}` gives the columns `question.stem` and `question.choices`."""
    nested = {}
    for key, value in record.items():
        if isinstance(value, dict):
            for inner, inner_value in _with_nested_columns(value).items():
                nested.setdefault(f"{key}.{inner}", inner_value)
    return {**record, **{key: value for key, value in nested.items() if key not in record}}


def _conll_records(path: str, stamp):
    """CoNLL-style columns: one token per line, the token first and its tag last, blank lines between sentences."""
    tokens, tags, start, count = [], [], None, 0
    with Path(path).open(encoding=ENCODING) as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if tokens:
                    count += 1
                    yield {"tokens": tokens, "tags": tags, LINE: start}
                tokens, tags, start = [], [], None
                continue
            if len(parts) < 2:
                raise ExperimentError(f"{path}, line {number}: expected a token and a tag, found {line.strip()!r}.")
            tokens.append(parts[0])
            tags.append(parts[-1])
            start = start or number
    if tokens:
        count += 1
        yield {"tokens": tokens, "tags": tags, LINE: start}
    if not count:
        raise ExperimentError(f"{path} holds no examples.")


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


def _squad_records(path: str, stamp):
    """The SQuAD JSON layout as published (`{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
    "answers"}]}]}]}`): one record per question, with its paragraph as `context` and SQuAD 2.0's `is_impossible`
    questions given no answers. Its "line" is the question's number in the file."""
    try:
        document = json.loads(Path(path).read_text(encoding=ENCODING))
    except json.JSONDecodeError as error:
        raise ExperimentError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}).") from error
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ExperimentError(f"{path}: a SQuAD file holds {{'data': [articles]}}; this one does not.")
    number = 0
    try:
        for article in document["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = [] if qa.get("is_impossible") else qa["answers"]
                    record = {
                        "id": qa["id"],
                        "title": article.get("title", ""),
                        "question": qa["question"],
                        "context": paragraph["context"],
                        "answers": answers,
                    }
                    number += 1
                    yield {JSON_RECORD: json.dumps(record), LINE: number}
    except (KeyError, TypeError) as error:
        raise ExperimentError(
            f"{path}, question {number + 1}: not in the SQuAD layout (missing {error}); expected "
            "data -> paragraphs -> qas with id, question and answers."
        ) from None
    if not number:
        raise ExperimentError(f"{path} holds no examples.")


def _line_file_records(columns: dict[str, str], stamp):
    """Parallel text files, one example per line, one file per column (ATIS/SNIPS's seq.in, seq.out, label)."""
    counts = {}
    for column, path in columns.items():
        with Path(path).open(encoding=ENCODING) as handle:
            counts[column] = sum(1 for _ in handle)
    if len(set(counts.values())) > 1:
        raise ExperimentError(
            "Line files of one split must have the same number of lines; got "
            + ", ".join(f"{columns[c]}: {n}" for c, n in counts.items())
            + "."
        )
    handles = [Path(path).open(encoding=ENCODING) for path in columns.values()]
    try:
        for number, values in enumerate(zip(*handles), start=1):
            yield {**{column: value.rstrip("\r\n") for column, value in zip(columns, values)}, LINE: number}
    finally:
        for handle in handles:
            handle.close()
    if not next(iter(counts.values()), 0):
        raise ExperimentError(f"{' + '.join(columns.values())} holds no examples.")


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise ExperimentError(f"Data file {path} does not exist.")


def _stamp(path: Path) -> tuple[str, int, int]:
    """What a file's content is taken to depend on: its path, size and modification time."""
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@dataclass
class ArrowRows:
    """The records of one split of one data source, as a memory-mapped `datasets.Dataset`, with where each came from.

    `batches()` hands them out as [`Rows`], the unit the checking, labelling and tokenising functions work on."""

    dataset: Any  # datasets.Dataset
    origin: str
    identity: str  # what the records depend on (file stamps, a Hub dataset's fingerprint): part of cache keys
    unit: str = "line"  # what the LINE column counts: file lines, or questions of a SQuAD file

    def __len__(self) -> int:
        return len(self.dataset)

    def rows(self, batch: dict[str, list], indices: list[int]) -> Rows:
        """A batch of the dataset (`dataset[i:j]`, or a `.map` batch) as `Rows`; `indices` are its row numbers."""
        lines = batch[LINE] if LINE in batch else [index + 1 for index in indices]
        if JSON_RECORD in batch:
            records = [_with_nested_columns(json.loads(text)) for text in batch[JSON_RECORD]]
        else:
            names = [name for name in batch if name != LINE]
            records = [dict(zip(names, values)) for values in zip(*(batch[name] for name in names))]
        return Rows(records, list(lines), self.origin, self.unit)

    def batches(self, size: int = 1000):
        for start in range(0, len(self.dataset), size):
            stop = min(start + size, len(self.dataset))
            yield self.rows(self.dataset[start:stop], list(range(start, stop)))

    def to_rows(self) -> Rows:
        return self.rows(self.dataset[:], list(range(len(self.dataset))))


def read_split(source: DataSource, split: str) -> Rows | None:
    """The records of `split` as Python objects (`None` when the source has no such split). Training reads them as
    Arrow through [`load_split`]; this is for small data and tests."""
    with _quiet_datasets(), tempfile.TemporaryDirectory(prefix="multitask-read-") as scratch:
        loaded = load_split(source, split, Path(scratch))
        return None if loaded is None else loaded.to_rows()


def load_split(source: DataSource, split: str, cache_dir: Path) -> ArrowRows | None:
    """The records of `split` as Arrow (`None` when the source has no such split); local files are converted once
    into `cache_dir` and re-read from there while they keep their size and modification time."""
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
        origin = f"{source.dataset}[{source.splits[split]}]"
        if not len(data):
            raise ExperimentError(
                f"Hub dataset split {origin} holds no examples: name a non-empty split in data.splits.{split}."
            )
        return ArrowRows(data, origin, f"hub:{data._fingerprint}")

    location = source.files.get(split)
    if location is None:
        return None
    try:
        return _load_local(source, location, cache_dir)
    except UnicodeDecodeError as error:
        raise ExperimentError(
            f"{location} is not UTF-8 text ({error.reason} at byte {error.start}): save it as UTF-8."
        ) from error


class StreamedRows(ArrowRows):
    """The records of a streamed train split: `dataset` is a `datasets.IterableDataset`, read lazily each time it is
    iterated, every record with the line it starts on (a Hub stream's: its row number), so errors still name it."""

    def __len__(self) -> int:
        raise TypeError(f"{self.origin} is streamed: it has no length (its size is data.num_examples or one count).")

    def raw_batches(self, size: int = 1000):
        """The records as batches of columns (as `dataset[i:j]` gives them), read from the file as they are asked for."""
        records = iter(self.dataset.iter(batch_size=size))
        while True:
            try:
                batch = next(records)
            except StopIteration:
                return
            except UnicodeDecodeError as error:
                raise ExperimentError(
                    f"{self.origin} is not UTF-8 text ({error.reason} at byte {error.start}): save it as UTF-8."
                ) from error
            yield batch

    def batches(self, size: int = 1000):
        for batch in self.raw_batches(size):
            yield self.rows(batch, [])

    def shard(self, rank: int, world_size: int) -> "StreamedRows":
        """This rank's share of the records (`datasets.distributed.split_dataset_by_node`): with one file, every
        `world_size`-th record from the `rank`-th on, so ranks read disjoint records."""
        if world_size == 1:
            return self
        from datasets.distributed import split_dataset_by_node

        shared = split_dataset_by_node(self.dataset, rank=rank, world_size=world_size)
        return StreamedRows(shared, self.origin, self.identity, self.unit)


def stream_split(source: DataSource, split: str) -> StreamedRows:
    """The records of `split`, read lazily (`data.streaming: true`): from the same record readers as map mode, so
    every check and error is the same, or a Hub dataset streamed (`load_dataset(..., streaming=True)`)."""
    import datasets

    if source.dataset is not None:
        try:
            data = datasets.load_dataset(source.dataset, source.config, split=source.splits[split], streaming=True)
        except Exception as error:  # datasets raises many types (connection, missing config, ...)
            raise ExperimentError(
                f"Could not stream Hub dataset '{source.dataset}' ({source.config}, split "
                f"'{source.splits[split]}'): {error}. Offline, point data.train at a local file instead."
            ) from error
        data = data.map(lambda record, index: {LINE: index + 1}, with_indices=True)
        return StreamedRows(data, f"{source.dataset}[{source.splits[split]}]", _hub_stream_identity(source), "row")
    reader = _local_reader(source, source.files[split])
    # datasets reads a list in gen_kwargs as shards, one generator call each: pass none.
    options = {key: tuple(value) if isinstance(value, list) else value for key, value in reader.options.items()}
    data = datasets.IterableDataset.from_generator(reader.generator, gen_kwargs=options)
    return StreamedRows(data, reader.origin, reader.identity, reader.unit)


def _hub_stream_identity(source: DataSource) -> str:
    """A Hub stream is not read before training: it is named by what the experiment says (its revision is not known)."""
    return f"hub-stream:{json.dumps([source.dataset, source.config, source.splits.get('train')])}"


def _from_generator(generator, gen_kwargs: dict, cache_dir: Path):
    """`Dataset.from_generator`, re-raising our readers' errors as they were (datasets wraps them)."""
    import datasets
    from datasets.exceptions import DatasetGenerationError

    # datasets reads a list in gen_kwargs as shards, one generator call each: pass none.
    gen_kwargs = {key: tuple(value) if isinstance(value, list) else value for key, value in gen_kwargs.items()}
    try:
        return datasets.Dataset.from_generator(generator, gen_kwargs=gen_kwargs, cache_dir=str(cache_dir / "read"))
    except DatasetGenerationError as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, (ExperimentError, UnicodeDecodeError, OSError)):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


@dataclass
class _Reader:
    """How one split of local files is read: a record generator and its arguments, and what to name in errors."""

    generator: Any
    options: dict
    origin: str
    identity: str
    unit: str = "line"
    parquet: Path | None = None  # parquet files are Arrow already: read as such in map mode


def _local_reader(source: DataSource, location) -> _Reader:
    if isinstance(location, dict):
        for path in location.values():
            _require_file(path)
        columns = {column: str(path) for column, path in location.items()}
        stamp = [_stamp(path) for path in location.values()]
        return _Reader(
            _line_file_records, {"columns": columns, "stamp": stamp}, " + ".join(columns.values()), json.dumps(stamp)
        )
    _require_file(location)
    file_format = source.format or _SUFFIX_FORMATS.get(location.suffix.lower())
    if source.format is None and location.suffix.lower() == ".json" and _is_squad_layout(location):
        file_format = "squad"  # SQuAD's published files are .json; each split's file is told apart by itself
    if file_format is None:
        raise ExperimentError(
            f"Cannot tell the format of {location} from its suffix: set data.format to one "
            f"of {', '.join(sorted(set(_SUFFIX_FORMATS.values())))}."
        )
    stamp = _stamp(location)
    options = {"path": str(location), "stamp": stamp}
    reader = _Reader(None, options, str(location), json.dumps(stamp))
    if file_format in ("csv", "tsv"):
        delimiter = source.delimiter or ("\t" if file_format == "tsv" else ",")
        options.update(
            delimiter=delimiter, has_header=source.has_header, column_names=source.column_names, quoting=source.quoting
        )
        reader.generator = _delimited_records
    elif file_format in ("jsonl", "json"):
        reader.generator = _jsonl_records
    elif file_format == "squad":
        reader.generator, reader.unit = _squad_records, "question"
    elif file_format == "conll":
        reader.generator = _conll_records
    elif file_format == "parquet":
        reader.generator, reader.unit, reader.parquet = _parquet_records, "row", location
    else:
        raise ExperimentError(f"data.format '{file_format}' needs a mapping of column -> line file per split.")
    return reader


def _load_local(source: DataSource, location, cache_dir: Path) -> ArrowRows:
    reader = _local_reader(source, location)
    if reader.parquet is not None:
        # Map mode names a parquet row by its number as a "line" (the reader's LINE column is for streams).
        return ArrowRows(_read_parquet(reader.parquet, cache_dir), reader.origin, reader.identity)
    data = _from_generator(reader.generator, reader.options, cache_dir)
    return ArrowRows(data, reader.origin, reader.identity, unit=reader.unit)


def _parquet_records(path: str, stamp):
    """A parquet file's rows, a record batch at a time (for streaming; map mode memory-maps the file instead)."""
    import pyarrow.parquet

    try:
        parquet = pyarrow.parquet.ParquetFile(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ExperimentError(f"{path} is not a readable parquet file: {error}") from error
    if not parquet.metadata.num_rows:
        raise ExperimentError(f"{path} holds no examples.")
    number = 0
    for batch in parquet.iter_batches(batch_size=BATCH_SIZE):
        for record in batch.to_pylist():
            number += 1
            yield {**record, LINE: number}


def _read_parquet(location: Path, cache_dir: Path):
    import datasets
    import pyarrow.parquet

    try:
        # The footer alone: a file that is not parquet fails here with pyarrow's own words.
        rows = pyarrow.parquet.ParquetFile(location).metadata.num_rows
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ExperimentError(f"{location} is not a readable parquet file: {error}") from error
    if not rows:
        raise ExperimentError(f"{location} holds no examples.")
    try:
        return datasets.Dataset.from_parquet(str(location), cache_dir=str(cache_dir / "read"))
    except Exception as error:  # datasets wraps pyarrow's errors in its own
        raise ExperimentError(f"{location} is not a readable parquet file: {error}") from error


@contextlib.contextmanager
def _quiet_datasets():
    """No `datasets` progress bars while we read and map: the CLI's stderr carries our messages only."""
    import datasets

    disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not disabled:
            datasets.enable_progress_bars()


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
    """Every column the task's type reads (`record_columns`) present in the first record, then in every record."""
    columns = task.definition.record_columns(task)
    available = list(rows.records[0])
    for setting, column in columns:
        if column not in rows.records[0]:
            raise ExperimentError(
                f"Task '{task.name}': column '{column}' does not exist in {rows.origin} (the task's {setting}). "
                f"Available columns: {', '.join(map(str, available))}."
            )
    for index, record in enumerate(rows.records):
        missing = [(setting, column) for setting, column in columns if column not in record]
        if missing:
            raise ExperimentError(f"{rows.where(index)}: missing column '{missing[0][1]}' ({missing[0][0]}).")


def _raw_labels(task: TaskSpec, rows: Rows, index: int) -> Any:
    """The label of one record as its type reads it: name(s), or a value."""
    try:
        value = task.definition.label_value(task, rows.records[index])
        return task.definition.read_label(value, task.data_settings)
    except ValueError as error:
        raise ExperimentError(
            f"{rows.where(index)}: {error} (column '{task.label_column}' of task '{task.name}')."
        ) from None


def seen_labels(task: TaskSpec, rows: Rows) -> set[str]:
    """The label names the records of `rows` use for `task` (a batch's share of `infer_labels`)."""
    seen = set()
    for index in range(len(rows.records)):
        seen.update(task.definition.label_names(_raw_labels(task, rows, index)))
    return seen


def label_list(task: TaskSpec, seen: set[str]) -> list[str] | None:
    """The label names: the experiment's list, `0 ... num_labels - 1` for a bare count, or the `seen` ones (in the
    order the task's type sorts them); `None` for a type without labels."""
    definition = task.definition
    if definition.min_labels is None:
        return None
    if task.labels is not None:
        labels = list(task.labels)
    elif task.num_labels is not None:
        labels = [str(i) for i in range(task.num_labels)]
    else:
        labels = definition.sort_labels(seen)
    if task.unseen_labels == "unk" and UNK_LABEL not in labels:
        labels.append(UNK_LABEL)
    return labels


def infer_labels(task: TaskSpec, train: Rows) -> list[str] | None:
    """The label names: the experiment's list, `0 ... num_labels - 1` for a bare count, or every label seen in train
    (in the order the task's type sorts them)."""
    inferred = task.definition.min_labels is not None and task.labels is None and task.num_labels is None
    return label_list(task, seen_labels(task, train) if inferred else set())


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
    cut = sum(example.truncated for example in featurized)
    _warn_cut(rows, cut, f"are longer than max_length={task.max_length} tokens and were truncated")

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
            if "scoring" in feature:  # which example a feature came from, across the whole split (batches too)
                feature["scoring"] = {**feature["scoring"], "example": rows.lines[index]}
        features.extend(record_features)
    note = task.definition.truncation_note
    _warn_cut(rows, _count_truncated(features), f"{note} (max_length={task.max_length}, task '{task.name}')")
    return features


def _warn_cut(rows: Rows, count: int, what: str) -> None:
    """Say how many of a file's examples lost something to max_length; `what` says what, after "N of M examples"."""
    if count:
        logger.warning("%s: %d of %d examples %s.", rows.origin, count, len(rows.records), what)


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


# ------------------------------------------------------------------------------------------------------ preparing
#
# Each group's features are built once per fingerprint and kept as Arrow files in the data cache:
#   <cache>/features/<fingerprint>/{train*.arrow, validation-<i>*.arrow, test-<i>*.arrow, meta.json}
# The fingerprint covers the data (path, size and modification time of every file; a Hub dataset's own
# fingerprint), the tokenizer, every task setting that reaches the features, and the code that builds them. A
# second run with the same fingerprint reads the files (memory-mapped) and neither re-reads nor re-tokenises.

CACHE_ENV = "MULTITASK_CACHE"
CACHE_LAYOUT = 1  # bump when the cached files change shape
BATCH_SIZE = 1000  # examples per batch of checking and tokenising


def default_cache_dir() -> Path:
    """`$MULTITASK_CACHE`, else `multitask/` in the Hugging Face datasets cache (`$HF_DATASETS_CACHE`, by default
    `~/.cache/huggingface/datasets`)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "multitask"


def _cache_root(settings: DataPipelineSpec) -> Path:
    if not settings.cache:
        # Still files (memory-mapped, not held in RAM), in a folder removed when the process ends.
        scratch = tempfile.mkdtemp(prefix="multitask-data-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        return Path(scratch)
    root = Path(settings.cache_dir) if settings.cache_dir is not None else default_cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExperimentError(
            f"data_pipeline.cache_dir: cannot create the data cache {root} ({error.strerror}): choose another "
            f"folder (or set ${CACHE_ENV}), or turn the cache off with data_pipeline.cache: false."
        ) from None
    return root


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    """A hash of the code that turns records into features: reading, labelling (the task types) and featurising."""
    import configuration_multitask

    from .. import featurization

    files = [
        Path(__file__),
        Path(featurization.__file__),
        *sorted(Path(configuration_multitask.__file__).parent.glob("*.py")),
    ]
    digest = hashlib.sha256(str(CACHE_LAYOUT).encode())
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _tokenizer_identity(tokenizer) -> str:
    """The tokenizer's vocabulary, normaliser, pre-tokeniser and post-processor, without the truncation and padding
    state that each call sets on it."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return f"{type(tokenizer).__name__}:{getattr(tokenizer, 'name_or_path', '')}:{len(tokenizer)}"
    state = json.loads(backend.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    text = json.dumps([type(tokenizer).__name__, list(tokenizer.model_input_names), state], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _split_identity(source: DataSource, split: str, rows_of) -> str | None:
    """What a split's records depend on, read without reading the data (except a Hub dataset, whose fingerprint is
    known once `datasets` has it at hand)."""
    if source.dataset is not None and source.streaming and split == "train":
        return _hub_stream_identity(source)
    if source.dataset is not None:
        rows = rows_of(source, split)
        return None if rows is None else rows.identity
    location = source.files.get(split)
    if location is None:
        return None
    paths = list(location.values()) if isinstance(location, dict) else [location]
    for path in paths:
        _require_file(path)
    return json.dumps([_stamp(path) for path in paths])


def _group_fingerprint(
    group: TaskGroup, identities: dict, tokenizer_id: str, task_indices: dict, word_splitting
) -> str:
    task_keys = (
        "name", "type", "text_column", "text_pair_column", "label_column", "labels", "num_labels", "unseen_labels",
        "max_length", "settings", "data_settings",
    )  # fmt: skip
    spec = {
        "code": _code_version(),
        "tokenizer": tokenizer_id,
        "data": identities,
        "source": repr(group.source),
        "split_words": group.split_words,
        "word_splitting": word_splitting,
        "tasks": [
            {**{key: getattr(task, key) for key in task_keys}, "index": task_indices[task.name]}
            for task in group.tasks
        ],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=repr).encode()).hexdigest()[:32]


@dataclass
class _GroupFeatures:
    """One group's features, as read from (or written to) its cache folder."""

    labels: dict[str, list[str] | None]
    train: Any  # datasets.Dataset; None for a streamed train split, tokenised while training
    evaluation: dict[str, dict[str, Any]]  # split -> task -> datasets.Dataset
    truncated: dict[str, dict[str, int]]
    warnings: list[str]
    train_size: int | None = None  # a streamed train split's examples (data.num_examples, or counted once)


def _load_cached(folder: Path) -> _GroupFeatures | None:
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        evaluation = {
            split: {name: _open_features(folder, files) for name, files in tasks.items()}
            for split, tasks in meta["evaluation"].items()
        }
        train = None if meta["train"] is None else _open_features(folder, meta["train"])
        return _GroupFeatures(
            meta["labels"], train, evaluation, meta["truncated"], meta["warnings"], meta.get("train_size")
        )
    except (OSError, ValueError, KeyError) as error:  # a damaged entry (a file deleted by hand...): build it again
        logger.warning("Ignoring the damaged data cache entry %s (%s); tokenising again.", folder, error)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _open_features(folder: Path, files: list[str]):
    """One split's features, memory-mapped from its Arrow file (one per tokenising process)."""
    import datasets

    parts = [datasets.Dataset.from_file(str(folder / name)) for name in files]
    return _drop_empty_columns(parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts))


def _file_names(features) -> list[str]:
    """The Arrow files `Dataset.map` wrote (`num_proc` > 1 writes one per process), in order."""
    return [Path(entry["filename"]).name for entry in features.cache_files]


class _HeldWarnings(logging.Filter):
    """Holds back the warnings `tokenize` logs for each batch, so each is logged once per split, not per batch."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False

    def messages(self) -> list[str]:
        by_template: dict[str, list[logging.LogRecord]] = {}
        for record in self.records:
            by_template.setdefault(record.msg, []).append(record)
        messages = []
        for records in by_template.values():
            message = records[0].getMessage()
            if len(records) > 1:
                message += f" (in the first of {len(records)} batches of up to {BATCH_SIZE} examples saying so)"
            messages.append(message)
        return messages


def _featurizer(
    rows: ArrowRows, group: TaskGroup, tokenizer, labels, task_indices, split, word_splitting, check_columns=False
):
    """The function that checks, labels and tokenises one batch of records (`dataset[i:j]`, a `.map` batch, or a
    stream's batch) into feature columns: the one featurisation of map mode and streaming. `check_columns` for a
    stream, whose records may first be read here (map mode checked every split before tokenising any)."""

    def featurize(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        batch_rows = rows.rows(batch, indices)
        if check_columns:
            for task in group.tasks:
                _check_columns(task, batch_rows)
        label_ids = {task.name: encode_labels(task, batch_rows, labels[task.name], split) for task in group.tasks}
        joint = len(group.tasks) > 1
        return _feature_columns(tokenize(group, batch_rows, tokenizer, label_ids, task_indices, joint, word_splitting))

    return featurize


def _featurize_split(
    rows: ArrowRows, group: TaskGroup, tokenizer, labels, task_indices, split, word_splitting, path, num_proc
):
    """One split of a group, checked, labelled and tokenised batch by batch into the Arrow file `path`."""
    featurize = _featurizer(rows, group, tokenizer, labels, task_indices, split, word_splitting)

    processes = num_proc if num_proc > 1 and len(rows) > BATCH_SIZE else None
    # In one process, tokenize's per-batch warnings are held back and logged once per split (and again from the
    # cache). Worker processes could not hand them back: there each batch logs its own.
    held = _HeldWarnings() if processes is None else None
    if held is not None:
        logger.addFilter(held)
    try:
        features = rows.dataset.map(
            featurize,
            with_indices=True,
            batched=True,
            batch_size=BATCH_SIZE,
            remove_columns=rows.dataset.column_names,
            cache_file_name=str(path),
            new_fingerprint=hashlib.sha256(str(path).encode()).hexdigest()[:32],
            load_from_cache_file=False,
            num_proc=processes,
        )
    finally:
        if held is not None:
            logger.removeFilter(held)
    return features, [] if held is None else held.messages()


def _feature_columns(features: list[dict]) -> dict[str, list]:
    """A batch of features as columns. Every batch has the same columns (Arrow needs one schema per file):
    `truncated` is always there (False where absent), `scoring` always, as JSON text ("null" where absent)."""
    names = dict.fromkeys(name for feature in features for name in feature)
    names.update({TRUNCATED: None, SCORING: None})
    columns = {}
    for name in names:
        if name == TRUNCATED:
            columns[name] = [bool(feature.get(TRUNCATED)) for feature in features]
        elif name == SCORING:
            columns[name] = [json.dumps(feature.get(SCORING)) for feature in features]
        else:
            columns[name] = [feature[name] for feature in features]
    return columns


def _drop_empty_columns(features):
    """Rows without a truncated example or anything to score lose those keys, as the features had none before."""
    import pyarrow.compute

    table = features.data
    empty = []
    if TRUNCATED in table.column_names and not pyarrow.compute.any(table.column(TRUNCATED)).as_py():
        empty.append(TRUNCATED)
    if (
        SCORING in table.column_names
        and pyarrow.compute.all(pyarrow.compute.equal(table.column(SCORING), "null")).as_py()
    ):
        empty.append(SCORING)
    return features.remove_columns(empty) if empty else features


def count_truncated(features) -> int:
    """Examples cut at max_length, in a list of features or an Arrow dataset of them."""
    if isinstance(features, list):
        return _count_truncated(features)
    if TRUNCATED not in features.column_names:
        return 0
    import pyarrow.compute

    return int(pyarrow.compute.sum(features.data.column(TRUNCATED)).as_py() or 0)


def example_lengths(features) -> list[int]:
    """Tokens per example (for batching by length), without reading the features into Python objects."""
    if isinstance(features, list):
        return [len(feature["input_ids"]) for feature in features]
    import pyarrow.compute

    return pyarrow.compute.list_value_length(features.data.column("input_ids")).to_numpy().tolist()


def scoring_column(features) -> list:
    """Every example's `scoring` entry (`None` where it has none)."""
    if isinstance(features, list):
        return [feature.get(SCORING) for feature in features]
    if SCORING not in features.column_names:
        return [None] * len(features)
    return [json.loads(text) for text in features[SCORING]]


class _OncePerMessage(logging.Filter):
    """Lets each of `tokenize`'s per-batch warnings (truncation...) through once per stream, not once per batch."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.seen:
            return False
        self.seen.add(record.msg)
        return True


@dataclass
class StreamedFeatures:
    """A streamed group's train features (`data.streaming: true`): read, checked, labelled and tokenised a batch of
    `BATCH_SIZE` records at a time while training draws them, by the same function as map mode (`_featurizer`).

    `examples(rank, world_size)` is one pass over that rank's share of the records; nothing is written to disk."""

    rows: StreamedRows
    group: TaskGroup
    featurize: Any  # batch of records -> feature columns
    num_examples: int  # data.num_examples, or counted once: the group's sampling weight

    def examples(self, rank: int = 0, world_size: int = 1):
        once = _OncePerMessage()
        for batch in self.rows.shard(rank, world_size).raw_batches(BATCH_SIZE):
            logger.addFilter(once)
            try:
                columns = self.featurize(batch, [])
            finally:
                logger.removeFilter(once)
            names = list(columns)
            for values in zip(*columns.values()):
                yield dict(zip(names, values))


def group_size(features) -> int:
    """Examples of one group's train features: a map-mode dataset's length, or a stream's size."""
    return features.num_examples if isinstance(features, StreamedFeatures) else len(features)


@dataclass
class PreparedData:
    """Everything training needs from the data: label names per task, train features per group, eval features.

    Features are `datasets.Dataset`s (memory-mapped Arrow) whose rows read as the feature dicts `tokenize` returns;
    a streamed group's train features are a [`StreamedFeatures`] (see [`group_size`])."""

    labels: dict[str, list[str] | None]
    train: dict[str, Any]  # group name -> features
    validation: dict[str, Any] = field(default_factory=dict)  # task name -> features
    test: dict[str, Any] = field(default_factory=dict)
    groups: list[TaskGroup] = field(default_factory=list)
    truncated: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> task -> examples cut at max_length
    cache_hits: list[str] = field(default_factory=list)  # the groups whose features came from the data cache


def _checked_labels(group: TaskGroup, train: ArrowRows) -> tuple[dict[str, list[str] | None], int]:
    """Every train record's columns checked and every task's label names inferred, batch by batch; and the records
    counted (a stream's size)."""
    seen = {task.name: set() for task in group.tasks}
    infer = [task for task in group.tasks if task.labels is None and task.num_labels is None]
    count = 0
    for rows in train.batches(BATCH_SIZE):
        count += len(rows.records)
        for task in group.tasks:
            _check_columns(task, rows)
        for task in infer:
            if task.definition.min_labels is not None:
                seen[task.name] |= seen_labels(task, rows)
    return {task.name: label_list(task, seen[task.name]) for task in group.tasks}, count


def _stream_labels_and_size(group: TaskGroup, train: StreamedRows) -> tuple[dict[str, list[str] | None], int]:
    """A streamed group's label names and size: from the experiment (`labels` or `num_labels`, `data.num_examples`)
    where it gives both, else from one pass over the file that checks every record's columns and labels."""
    needs_labels = any(
        task.definition.min_labels is not None and task.labels is None and task.num_labels is None
        for task in group.tasks
    )
    if group.source.num_examples is not None and not needs_labels:
        return {task.name: label_list(task, set()) for task in group.tasks}, group.source.num_examples
    labels, count = _checked_labels(group, train)
    return labels, group.source.num_examples or count


def _check_split(group: TaskGroup, rows: ArrowRows, labels: dict, split: str) -> None:
    """Every record's columns and labels checked, batch by batch, before anything is tokenised."""
    for batch in rows.batches(BATCH_SIZE):
        for task in group.tasks:
            _check_columns(task, batch)
            encode_labels(task, batch, labels[task.name], split)


def prepare_data(experiment: Experiment, tokenizer) -> PreparedData:
    """Read, check and tokenise every task's splits; any problem raises `ExperimentError` before training.

    Every split of every task is read and its labels checked before the first one is tokenised, so a bad row in the
    last file fails in seconds, not after the others have been tokenised. A group whose features are in the data cache
    (same data, tokenizer, settings and code: see `_group_fingerprint`) is read from there instead.
    """
    groups = group_tasks(experiment)
    task_indices = {task.name: i for i, task in enumerate(experiment.tasks)}
    settings = getattr(experiment, "data_pipeline", None) or DataPipelineSpec()
    word_splitting = experiment.model.word_splitting
    root = _cache_root(settings)
    loaded: dict[tuple, ArrowRows | None] = {}

    def rows_of(source: DataSource, split: str) -> ArrowRows | None:
        key = (source.key(), source.format, split)
        if key not in loaded:
            loaded[key] = load_split(source, split, root)
        return loaded[key]

    streams: dict[tuple, StreamedRows] = {}

    def stream_of(source: DataSource) -> StreamedRows:
        if source.key() not in streams:
            streams[source.key()] = stream_split(source, "train")
        return streams[source.key()]

    prepared = PreparedData(labels={}, train={}, groups=groups)
    with _quiet_datasets():
        tokenizer_id = _tokenizer_identity(tokenizer)
        plans = []  # (group, cache folder, cached features or None, (train rows, labels, eval rows, size) or None)
        for group in groups:
            identities = {
                split: _split_identity(group.source, split, rows_of) for split in ("train", "validation", "test")
            }
            folder = (
                root / "features" / _group_fingerprint(group, identities, tokenizer_id, task_indices, word_splitting)
            )
            cached = _load_cached(folder)
            if cached is not None:
                plans.append((group, folder, cached, None))
                continue
            size = None
            if group.source.streaming:
                # Only its evaluation splits are tokenised now (and cached), with its labels and size.
                labels, size = _stream_labels_and_size(group, stream_of(group.source))
                train = None
            else:
                train = rows_of(group.source, "train")
                labels, _ = _checked_labels(group, train)
                _check_split(group, train, labels, "train")
            evaluation = {}
            for split in ("validation", "test"):
                rows = rows_of(group.source, split)
                if rows is not None:
                    _check_split(group, rows, labels, split)
                    evaluation[split] = rows
            plans.append((group, folder, None, (train, labels, evaluation, size)))

        for group, folder, cached, checked in plans:
            if cached is None:
                cached = _build_group(group, folder, checked, tokenizer, task_indices, word_splitting, settings)
            else:
                prepared.cache_hits.append(group.name)
                for message in cached.warnings:
                    logger.warning("%s", message)
            prepared.labels.update(cached.labels)
            if group.source.streaming:
                stream = stream_of(group.source)
                featurize = _featurizer(
                    stream, group, tokenizer, cached.labels, task_indices, "train", word_splitting, check_columns=True
                )
                prepared.train[group.name] = StreamedFeatures(stream, group, featurize, cached.train_size)
            else:
                prepared.train[group.name] = cached.train
            for split, tasks in cached.evaluation.items():
                getattr(prepared, split).update(tasks)
            for split, counts in cached.truncated.items():
                prepared.truncated.setdefault(split, {}).update(counts)
    return prepared


def _build_group(group, folder: Path, checked, tokenizer, task_indices, word_splitting, settings) -> _GroupFeatures:
    """Tokenise one group's splits into a fresh cache folder, then move it into place (a concurrent run that got
    there first wins: its files are the same)."""
    train, labels, evaluation, size = checked
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    num_proc = settings.num_proc
    meta = {"labels": labels, "train": None, "train_size": size, "evaluation": {}, "truncated": {}, "warnings": []}
    if train is not None:  # a streamed train split is tokenised while training
        features, warnings = _featurize_split(
            train, group, tokenizer, labels, task_indices, "train", word_splitting, scratch / "train.arrow", num_proc
        )
        meta["warnings"] += warnings
        meta["train"] = _file_names(features)
        for task in group.tasks:
            meta["truncated"].setdefault("train", {})[task.name] = count_truncated(features)
    for split, rows in evaluation.items():
        meta["evaluation"][split] = {}
        for i, task in enumerate(group.tasks):
            # Evaluated alone, but tokenised exactly as in training.
            single = TaskGroup([task], group.source, split_words=group.word_level)
            path = scratch / f"{split}-{i}.arrow"
            split_features, warnings = _featurize_split(
                rows, single, tokenizer, labels, task_indices, split, word_splitting, path, num_proc
            )
            meta["warnings"] += warnings
            meta["evaluation"][split][task.name] = _file_names(split_features)
            meta["truncated"].setdefault(split, {})[task.name] = count_truncated(split_features)
    for message in meta["warnings"]:
        logger.warning("%s", message)
    (scratch / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    try:
        os.replace(scratch, folder)
    except OSError:  # another process wrote the same features first
        shutil.rmtree(scratch, ignore_errors=True)
    return _load_cached(folder)


def _count_truncated(features: list[dict]) -> int:
    return sum(1 for feature in features if feature.get(TRUNCATED))
