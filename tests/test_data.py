"""Reading task data: byte-order marks, TSV quoting, UTF-8 whatever the locale."""

from pathlib import Path

import pytest

from modeling_multitask.training.data import read_split
from modeling_multitask.training.experiment import DataSource


BOM = "\ufeff"


def _read(path: Path, **options) -> list[dict]:
    return read_split(DataSource(files={"train": path}, **options), "train").records


@pytest.mark.parametrize(
    "name, text",
    [
        ("mrpc.tsv", f"{BOM}Quality\t#1 String\n1\tHe said hi\n"),
        ("data.csv", f"{BOM}Quality,#1 String\n1,He said hi\n"),
        ("data.jsonl", BOM + '{"Quality": "1", "#1 String": "He said hi"}\n'),
    ],
)
def test_a_byte_order_mark_does_not_stick_to_the_first_column(tmp_path, name, text):
    # GLUE's MRPC ships with a BOM: the first column was called "\ufeffQuality" and "did not exist".
    (tmp_path / name).write_text(text, encoding="utf-8")
    assert _read(tmp_path / name) == [{"Quality": "1", "#1 String": "He said hi"}]


def test_a_byte_order_mark_on_line_files_and_conll(tmp_path):
    (tmp_path / "seq.in").write_text(f"{BOM}book boston\n", encoding="utf-8")
    (tmp_path / "label").write_text(f"{BOM}book\n", encoding="utf-8")
    columns = {"tokens": tmp_path / "seq.in", "intent": tmp_path / "label"}
    assert _read(columns) == [{"tokens": "book boston", "intent": "book"}]
    (tmp_path / "ner.conll").write_text(f"{BOM}boston B-city\n", encoding="utf-8")
    assert _read(tmp_path / "ner.conll") == [{"tokens": ["boston"], "tags": ["B-city"]}]


def test_tsv_quoting_is_off_by_default_and_on_when_asked(tmp_path):
    # As pandas writes a field holding a tab and quotes: quoted, with inner quotes doubled.
    (tmp_path / "pandas.tsv").write_text('text\tlabel\n"a\tb ""c"""\t1\n', encoding="utf-8")
    assert _read(tmp_path / "pandas.tsv", quoting=True) == [{"text": 'a\tb "c"', "label": "1"}]
    # GLUE's bare quotes stay as they are by default.
    (tmp_path / "glue.tsv").write_text('sentence\tlabel\n"hide new secretions\t0\n', encoding="utf-8")
    assert _read(tmp_path / "glue.tsv") == [{"sentence": '"hide new secretions', "label": "0"}]


def test_csv_quoting_is_on_by_default_and_off_when_asked(tmp_path):
    (tmp_path / "data.csv").write_text('text,label\n"a, b",1\n', encoding="utf-8")
    assert _read(tmp_path / "data.csv") == [{"text": "a, b", "label": "1"}]
    (tmp_path / "bare.csv").write_text('text,label\n"a b,1\n', encoding="utf-8")
    assert _read(tmp_path / "bare.csv", quoting=False) == [{"text": '"a b', "label": "1"}]


def test_a_record_is_named_by_the_line_it_starts_on(tmp_path):
    """A quoted field may hold newlines (as spreadsheets and pandas write them): errors and example ids name the line
    where the record starts, not the reader's last line."""
    from modeling_multitask.training.experiment import ExperimentError

    text = 'text,label\n"two\nlines",1\n\n"one line",0\n"three\nmore\nlines",1,extra\n'
    (tmp_path / "data.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ExperimentError, match=r"data.csv, line 6: expected 2 columns"):
        _read(tmp_path / "data.csv")
    (tmp_path / "data.csv").write_text(text.rsplit('"three', 1)[0], encoding="utf-8")
    rows = read_split(DataSource(files={"train": tmp_path / "data.csv"}), "train")
    assert [record["text"] for record in rows.records] == ["two\nlines", "one line"]
    assert [rows.where(index) for index in range(2)] == [f"{tmp_path / 'data.csv'}, line {n}" for n in (2, 5)]
