"""Reading experiment files: UTF-8 under any locale, --set overrides, max_length against the encoder, and
--overwrite clearing the earlier run's checkpoints only once every check has passed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import tiny_bert_config
from test_bad_inputs import base_experiment, encoders, write_data  # noqa: F401  (encoders is a fixture)

from modeling_multitask.training.cli import check_base_model, main
from modeling_multitask.training.experiment import apply_overrides, load_experiment


ROOT = Path(__file__).resolve().parents[1]


def test_utf8_experiment_and_label_file_load_under_the_c_locale(tmp_path):
    write_data(tmp_path)
    raw = base_experiment(tmp_path, Path("unused"))
    raw["tasks"][0]["labels"] = "labels.txt"
    (tmp_path / "labels.txt").write_text("book\ngreet\nweather\ncafé\n", encoding="utf-8")
    (tmp_path / "experiment.yaml").write_text("# Experiment for the café dataset\n" + yaml.safe_dump(raw), "utf-8")
    script = (
        "import sys; from modeling_multitask.training.experiment import load_experiment; "
        "print(load_experiment(sys.argv[1]).tasks[0].labels[-1].encode('unicode_escape').decode())"
    )
    environment = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONPATH": str(ROOT)}
    environment.pop("PYTHONIOENCODING", None)
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "experiment.yaml")],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "caf\\xe9"


def test_set_creates_missing_sections_and_replaces_list_entries():
    raw = {"model": {"base_model": "x"}, "tasks": [{"name": "a"}, {"name": "b"}]}
    apply_overrides(raw, ["sampling.temperature=1.5", "tasks.1.max_length=32", "model.fusion={type: attention}"])
    assert raw["sampling"] == {"temperature": 1.5}
    assert raw["tasks"][1] == {"name": "b", "max_length": 32}
    assert raw["model"]["fusion"] == {"type": "attention"}


def test_default_max_length_is_lowered_to_the_encoder_limit(tmp_path, encoders):  # noqa: F811
    write_data(tmp_path)
    raw = base_experiment(tmp_path, encoders["tiny"])
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    experiment = load_experiment(tmp_path / "experiment.yaml")
    assert [task.max_length for task in experiment.tasks] == [16, 16, 128, 128]
    check_base_model(experiment)
    limit = tiny_bert_config().max_position_embeddings
    assert [task.max_length for task in experiment.tasks] == [16, 16, limit, limit]


def test_overwrite_clears_the_earlier_runs_checkpoints(tmp_path, encoders, capsys):  # noqa: F811
    write_data(tmp_path)
    raw = base_experiment(tmp_path, encoders["tiny"])
    raw["tasks"] = raw["tasks"][:1]
    raw["training"].update(save_strategy="epoch", report_to="none", disable_tqdm=True)
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    earlier = tmp_path / "out" / "checkpoint-999"
    earlier.mkdir(parents=True)
    (earlier / "trainer_state.json").write_text(json.dumps({"global_step": 999}))

    assert main([str(tmp_path / "experiment.yaml"), "--overwrite"]) == 0
    checkpoints = sorted(path.name for path in (tmp_path / "out").glob("checkpoint-*"))
    # A later --resume must find this run's checkpoint, not the earlier run's higher-numbered one.
    assert checkpoints == ["checkpoint-2"]
