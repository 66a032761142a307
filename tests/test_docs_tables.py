"""The docs' tables are renderings of the committed results files (`benchmarks/tables.py`): a doc that quotes a
number the results do not hold, or results added without updating the docs, fails here."""

import importlib.util
from pathlib import Path

import pytest


SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "tables.py"


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_docs_equal_the_tables_rendered_from_the_results(tables):
    expected = tables.expected_files()
    marked = {path.name for path in tables.DOCS if "<!-- table:" in path.read_text()}
    assert marked == {"README.md", "RESULTS.md", "PERFORMANCE.md"}
    stale = [str(path) for path, content in expected.items() if path.read_text() != content]
    assert not stale, f"run `python benchmarks/tables.py --write` and commit: {stale}"


def test_a_stale_table_is_found_and_rewritten(tables, tmp_path, monkeypatch, capsys):
    doc = tmp_path / "doc.md"
    # The GLUE single-task SST-2 mean as an earlier revision quoted it; the results file says 87.58.
    doc.write_text("Intro.\n\n<!-- table:glue -->\n| sst2 | 87.46 |\n<!-- /table -->\n\nAfter.\n")
    monkeypatch.setattr(tables, "DOCS", [doc])

    assert tables.main([]) == 1
    assert "87.46" in capsys.readouterr().out
    assert tables.main(["--write"]) == 0
    text = doc.read_text()
    assert "87.46" not in text and "**87.58** ± 0.33" in text
    assert text.startswith("Intro.\n\n<!-- table:glue -->\n| split |") and text.endswith("<!-- /table -->\n\nAfter.\n")
    assert tables.main([]) == 0


def test_unknown_table_name_is_refused(tables, tmp_path):
    with pytest.raises(ValueError, match="unknown table 'atsi'.*atis"):
        tables.render_doc("<!-- table:atsi -->\n<!-- /table -->\n", tmp_path / "doc.md")


def test_baselines_from_several_files_count_each_seed_once(tables, tmp_path, monkeypatch):
    """A try's cells come from its runs and the single-task runs of its baseline files: a seed in two files, or a file
    without baselines, is an error rather than a quietly smaller n; a run that lacks a metric leaves it out."""

    def run(variant, seed, accuracy=None):
        scores = {} if accuracy is None else {"accuracy": accuracy}
        return {"variant": variant, "seed": seed, "metrics": {"test": {"intent": scores}}}

    files = {
        "try": {"benchmark": "try", "runs": [run("fusion", 1, 0.9), run("fusion", 2, 0.8)]},
        "base": {"runs": [run("single_task", 1, 0.7), run("fusion", 1, 0.1)]},
        "later": {"runs": [run("single_task", 2, 0.6), run("single_task", 3)]},
    }
    monkeypatch.setattr(tables, "load", lambda name: files[name])
    merged = tables.with_baselines(files["try"], "base", "later")
    assert tables.full_cell(merged, "single_task", "test", "intent", "accuracy") == (
        "**65.00** ± 7.07 (n=2: 70.00, 60.00)"
    )  # seed 3 scored no accuracy
    assert tables.full_cell(merged, "fusion", "test", "intent", "accuracy").startswith("**85.00** ± 7.07 (n=2")
    assert tables.full_cell(merged, "fusion", "test", "intent", "f1") == "–"
    with pytest.raises(ValueError, match=r"\('single_task', 1, 'test', 'intent'\)\] \(variant, seed, split, task\)"):
        tables.with_baselines(files["try"], "base", "base")
    # The same seed's baseline of another task (QA's, in squad.json beside mixed.json's) is no duplicate.
    files["qa"] = {"runs": [{"variant": "single_task", "seed": 1, "metrics": {"test": {"qa": {"f1": 0.5}}}}]}
    both = tables.with_baselines(files["try"], "base", "qa")
    assert tables.full_cell(both, "single_task", "test", "qa", "f1") == "**50.00** ± 0.00 (n=1: 50.00)"
    with pytest.raises(ValueError, match="try.json has no single-task runs to be the baselines of try"):
        tables.with_baselines(files["try"], "try")
