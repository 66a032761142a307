"""The project's bad-input inventory: every mistake in an experiment file, its data, the CLI flags or the Hub stops
`multitask-train` with `error: ...` and exit code 2, no traceback, before any data is tokenised, and leaves an
existing output folder byte-identical.

One row per case. Each row starts from a valid tiny experiment (a tiny random BERT saved with the tiny tokenizer,
three task groups), changes one thing, and runs the CLI in-process.
"""

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import save_tiny_encoder, tiny_bert_config

import modeling_multitask.training.data as data_module
from configuration_multitask import MultiTaskConfig
from modeling_multitask.training.cli import main, training_arguments
from modeling_multitask.training.evaluation import per_task
from modeling_multitask.training.experiment import load_experiment


DELETE = object()
ASSISTANT = [
    ("book a flight to boston tomorrow", "book", "O O O O B-city B-date"),
    ("what is the weather in denver", "weather", "O O O O O B-city"),
    ("show me flights to new york", "book", "O O O O B-city I-city"),
    ("hello", "greet", "O"),
]
PAIRS_HEADER = "sentence1\tsentence2\tscore\n"
PAIRS = PAIRS_HEADER + "book a flight\tbook flights\t4.5\nhello\train today\t0.5\nshow me boston\tshow me denver\t3\n"


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, Path]:
    """A tiny BERT with tokenizer (64 positions), one without weights, and one without tokenizer files."""
    root = tmp_path_factory.mktemp("encoders")
    return {
        "tiny": save_tiny_encoder(root / "tiny"),
        "no-weights": save_tiny_encoder(root / "no-weights", weights=False),
        "no-tokenizer": save_tiny_encoder(root / "no-tokenizer", tokenizer=False),
    }


def write_data(folder: Path) -> None:
    rows = [{"tokens": text.split(), "tags": tags.split(), "intent": intent} for text, intent, tags in ASSISTANT]
    for split in ("train", "dev"):
        (folder / f"assistant_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "pairs.tsv").write_text(PAIRS)
    (folder / "ner.conll").write_text("-DOCSTART- O\n\nbook O\nboston B-city\n\nrain O\nin O\nnew B-city\n\n")


def base_experiment(folder: Path, encoder: Path) -> dict:
    assistant = {"train": "assistant_train.jsonl", "validation": "assistant_dev.jsonl"}
    pairs = {"train": "pairs.tsv", "validation": "pairs.tsv"}
    return {
        "model": {"base_model": str(encoder), "fusion": {"type": "attention", "hidden_size": 32}},
        "tasks": [
            {"name": "intent", "type": "sequence_classification", "data": assistant, "text_column": "tokens"}
            | {"label_column": "intent", "max_length": 16},
            {"name": "slots", "type": "token_classification", "data": assistant, "max_length": 16},
            {"name": "similarity", "type": "regression", "data": pairs, "text_column": "sentence1"}
            | {"text_pair_column": "sentence2", "label_column": "score"},
            {"name": "ner", "type": "token_classification", "data": {"train": "ner.conll"}},
        ],
        "sampling": {"strategy": "temperature", "temperature": 2.0},
        "training": {"output_dir": str(folder / "out"), "num_train_epochs": 1, "per_device_train_batch_size": 2},
    }


def change(raw: dict, path: str, value) -> None:
    node, keys = raw, path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = int(keys[-1]) if isinstance(node, list) else keys[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


@dataclasses.dataclass
class Case:
    id: str
    match: str  # regex the error message must contain
    changes: dict = dataclasses.field(default_factory=dict)  # dotted path in the experiment -> new value
    files: dict = dataclasses.field(default_factory=dict)  # file name in the workspace -> bytes or text
    args: list = dataclasses.field(default_factory=lambda: ["--overwrite"])  # --overwrite: nothing cleared early
    experiment: str = "experiment.yaml"  # the path given to the CLI, relative to the workspace
    patch: Callable | None = None  # (monkeypatch) -> None, for the Hub


def _empty_hub_split(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: datasets.Dataset.from_list([]))


def _hub_unreachable(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", offline)


def _evaluate_offline(monkeypatch):
    import evaluate

    def offline(module_id):
        raise ConnectionError("Hub unreachable")

    monkeypatch.setattr(evaluate, "load", offline)


def _wandb_missing(monkeypatch):
    from transformers.integrations import integration_utils

    monkeypatch.setattr(integration_utils, "is_wandb_available", lambda: False)


HUB_DATA = {"dataset": "glue", "config": "stsb", "splits": {"train": "train"}}
LATIN1_JSONL = '{"tokens": ["caf\xe9"], "tags": ["O"], "intent": "greet"}\n'.encode("latin-1")

CASES = [
    # ------------------------------------------------------------------------------------------ experiment file
    Case("missing-experiment", "nope.yaml does not exist", experiment="nope.yaml"),
    Case("experiment-is-a-directory", "is a directory: give the experiment .yaml file", experiment="."),
    Case("experiment-not-utf8", r"experiment file: .*experiment.yaml is not UTF-8 text.*save it as UTF-8"),
    Case("experiment-invalid-yaml", "is not valid YAML", files={"experiment.yaml": "model: [unclosed\n"}),
    Case(
        "experiment-not-a-mapping", "must hold a mapping with 'model' and 'tasks'", files={"experiment.yaml": "- 1\n"}
    ),
    Case("unknown-key", "Unknown key 'model.fusoin'. Did you mean 'fusion'", {"model.fusoin": {"type": "attention"}}),
    Case("unknown-training-key", "Unknown key 'training.learning_rat'. Did you mean", {"training.learning_rat": 0.1}),
    Case(
        "unknown-task-key",  # a task lists its own keys (not the training section's pointer to TrainingArguments)
        r"Unknown key 'tasks\[0\].context_column'. Did you mean 'text_column'.*Allowed here: name, type, data, ",
        {"tasks.0.context_column": "text"},
    ),
    Case("missing-base-model", "Missing required key 'model.base_model'", {"model.base_model": DELETE}),
    Case("empty-tasks", "'tasks' must be a non-empty list", {"tasks": []}),
    Case("task-type-typo", "Did you mean 'sequence_classification'", {"tasks.0.type": "sequence_clasification"}),
    Case("task-without-train", r"tasks\[3\] \(ner\).data needs a 'train' file", {"tasks.3.data": {"test": "x.conll"}}),
    Case(
        "num-labels-string",
        r"num_labels must be an integer, got '3' \(write 3 without quotes\)",
        {"tasks.0.num_labels": "3"},
    ),
    Case("num-labels-zero", "num_labels must be a positive integer, got 0", {"tasks.0.num_labels": 0}),
    Case("text-column-not-a-string", "text_column must be a string, got 5", {"tasks.0.text_column": 5}),
    Case("max-length-too-small", r"max_length must be an integer >= 4", {"tasks.0.max_length": 2}),
    Case(
        "max-length-null",
        r"max_length must be an integer >= 4, or left out for the default 128",
        {"tasks.0.max_length": None},
    ),
    Case("max-length-float", r"max_length must be an integer, got 64.5", {"tasks.0.max_length": 64.5}),
    Case("max-length-above-positions", r"max_length is 100.*takes at most 64 tokens", {"tasks.0.max_length": 100}),
    Case("unseen-labels-rule", "unseen_labels must be one of error, unk", {"tasks.0.unseen_labels": "skip"}),
    Case(
        "loss-weight-negative",
        r"tasks\[1\] \(slots\).*loss_weight must be a positive number",
        {"tasks.1.loss_weight": -1},
    ),
    Case(
        "decoding-on-sentence-task", "'decoding' is for token_classification tasks only", {"tasks.0.decoding": "bio"}
    ),
    Case("metric-typo", "'acuracy' is unknown.*Did you mean 'accuracy'", {"tasks.0.metrics": ["acuracy"]}),
    Case("label-file-missing", "label file .*nope.txt does not exist", {"tasks.0.labels": "nope.txt"}),
    Case(
        "label-file-not-utf8",
        "labels: .*labels.txt is not UTF-8 text",
        {"tasks.0.labels": "labels.txt"},
        files={"labels.txt": "caf\xe9\nbook\n".encode("latin-1")},
    ),
    Case(
        "labels-not-a-list", "labels must be a list of label names or a label file path", {"tasks.0.labels": {"a": 1}}
    ),
    Case("duplicate-task-names", r"Task names must be unique; \['intent'\]", {"tasks.1.name": "intent"}),
    Case("task-name-with-space", "invalid name 'my task'", {"tasks.0.name": "my task"}),
    Case("task-name-type", "name 'type', which clashes with the attribute 'type'", {"tasks.0.name": "type"}),
    Case("task-name-train", "name 'train', which clashes", {"tasks.0.name": "train"}),
    Case("task-name-update", "name 'update', which clashes", {"tasks.0.name": "update"}),
    Case("task-name-keys", "name 'keys', which clashes", {"tasks.3.name": "keys"}),
    Case(
        "task-names-with-ambiguous-metric-keys",
        "'score' and 'score_pearson' clash: the metric key 'eval_score_pearson_spearman'",
        {"tasks.2.name": "score", "tasks.1.name": "score_pearson"},
    ),
    Case(
        "fsdp-without-gpu", "training.fsdp is 'full_shard', but there is no GPU here", {"training.fsdp": "full_shard"}
    ),
    Case("dropout-out-of-range", r"model.dropout must be a number in \[0, 1\)", {"model.dropout": 1.5}),
    Case(
        "fusion-hidden-size",
        "model.fusion.hidden_size is 768 but the encoder.*has hidden size 32",
        {"model.fusion.hidden_size": 768},
    ),
    Case("fusion-not-a-mapping", "model.fusion must be a mapping", {"model.fusion": "attention"}),
    Case(
        "private-layers-negative", "task_private_layers must be a whole number >= 0", {"model.task_private_layers": -1}
    ),
    Case(
        "private-layers-too-many",
        "task_private_layers=5 leaves nothing shared.*at most 1",
        {"model.task_private_layers": 5},
    ),
    Case("sampling-strategy-typo", "Did you mean 'temperature'", {"sampling.strategy": "temprature"}),
    Case("sampling-temperature-text", "temperature must be a number > 0, got 'hot'", {"sampling.temperature": "hot"}),
    Case(
        "sampling-temperature-overflows", "temperature 0.001 is too small.*overflow", {"sampling.temperature": 0.001}
    ),
    Case(
        "sampling-cap-zero", "max_examples_per_task must be a positive integer", {"sampling.max_examples_per_task": 0}
    ),
    Case(
        "batch-size-zero",
        "per_device_train_batch_size must be a number > 0, got 0",
        {"training.per_device_train_batch_size": 0},
    ),
    Case("epochs-negative", "num_train_epochs must be a number > 0, got -1", {"training.num_train_epochs": -1}),
    Case("max-steps-zero", "max_steps must be a positive integer", {"training.max_steps": 0}),
    Case(
        "learning-rate-text",
        r"learning_rate must be a number \(float\), got 'fast'",
        {"training.learning_rate": "fast"},
    ),
    Case("training-arguments-reject", "training: ", {"training.lr_scheduler_type": "zigzag"}),
    Case(
        "best-model-metric-unknown",
        "metric_for_best_model 'intent_acuracy' is not a metric.*Did you mean 'intent_accuracy'.*combined_score",
        {"training.metric_for_best_model": "intent_acuracy"},
    ),
    Case(
        "best-model-metric-unknown-with-eval-prefix",
        "metric_for_best_model 'eval_slots_f2' is not a metric",
        {"training.metric_for_best_model": "eval_slots_f2"},
    ),
    Case(
        "best-model-metric-of-a-task-without-validation",
        "'ner_f1' is not a metric evaluation reports .task 'ner' has no validation data",
        {"training.metric_for_best_model": "ner_f1"},
    ),
    Case(
        "best-model-metric-overall-loss",
        "'loss': evaluation reports a loss per task.*'combined_score'.*'intent_loss'",
        {"training.metric_for_best_model": "eval_loss"},
    ),
    Case(
        "best-model-direction-contradicts",
        "greater_is_better is True but metric_for_best_model 'similarity_mse' is lower-is-better",
        {"training.metric_for_best_model": "similarity_mse", "training.greater_is_better": True},
    ),
    Case(
        "report-to-unknown",
        "report_to 'wandbx' is not an integration.*Did you mean 'wandb'",
        {"training.report_to": "wandbx"},
    ),
    Case(
        "report-to-not-installed",
        r"report_to 'wandb': its package is not installed here. Install it \(pip install wandb\)",
        {"training.report_to": ["wandb"]},
        patch=_wandb_missing,
    ),
    # ------------------------------------------------------------------------------------------------- --set
    Case("set-without-equals", "--set expects key.path=value", args=["--set", "training.num_train_epochs"]),
    Case(
        "set-through-null-section",
        r"'model.fusion' is null, not a section.*--set 'model.fusion=\{hidden_size: ...\}'",
        {"model.fusion": None},
        args=["--set", "model.fusion.hidden_size=32"],
    ),
    Case(
        "set-through-a-number",
        "'model.dropout' is 0.1, not a section",
        {"model.dropout": 0.1},
        args=["--set", "model.dropout.x=1"],
    ),
    Case(
        "set-task-past-the-end",
        "'tasks.9' is not an index of the list, which has 4 entries",
        args=["--set", "tasks.9.max_length=8"],
    ),
    Case("set-whole-task-past-the-end", "'tasks.4' is not an index", args=["--set", "tasks.4={name: extra}"]),
    Case(
        "set-value-not-yaml",
        r"--set training.learning_rate=\[1,: the value '\[1,' is not valid YAML.*Quote it",
        args=["--set", "training.learning_rate=[1,"],
    ),
    Case("set-task-not-an-index", "'tasks.first' is not an index", args=["--set", "tasks.first.max_length=8"]),
    # ----------------------------------------------------------------------------------- base model and output
    Case("base-model-missing", "model.base_model: cannot load", {"model.base_model": "/nonexistent/encoder"}),
    Case("base-model-without-weights", "has no weights.*save_pretrained", {"model.base_model": "@no-weights"}),
    Case("base-model-without-tokenizer", "has no vocabulary", {"model.base_model": "@no-tokenizer"}),
    Case(
        "output-dir-is-a-file", "output_dir .*notes.txt is an existing file", {"training.output_dir": "@out/notes.txt"}
    ),
    Case(
        "output-dir-under-a-file",
        "output_dir .*notes.txt/run lies under .*notes.txt, which is a file",
        {"training.output_dir": "@out/notes.txt/run"},
    ),
    Case("resume-and-overwrite", "--resume continues .* --overwrite starts again", args=["--resume", "--overwrite"]),
    Case(
        "resume-without-checkpoint",
        "--resume: no checkpoint-\\* folder",
        {"training.output_dir": "@fresh"},
        args=["--resume"],
    ),
    Case("earlier-checkpoints", "already holds checkpoint-3 .*pass --resume .*or --overwrite", args=[]),
    Case(
        "evaluate-metric-offline",
        "Could not load evaluate metric 'accuracy'",
        {"tasks.0.metrics": ["evaluate:accuracy"]},
        patch=_evaluate_offline,
    ),
    # ----------------------------------------------------------------------------------------------- data files
    Case("data-file-missing", "missing.jsonl does not exist", {"tasks.0.data.train": "missing.jsonl"}),
    Case(
        "data-format-unknown",
        "Cannot tell the format of .*data.txt",
        {"tasks.3.data.train": "data.txt"},
        files={"data.txt": "a\n"},
    ),
    Case("data-format-typo", "format 'jsonlines' is unknown", {"tasks.3.data.format": "jsonlines"}),
    Case(
        "data-quoting-not-bool",
        "data.quoting must be true or false, got 'yes please'",
        {"tasks.2.data.quoting": "yes please"},
    ),
    Case(
        "data-no-header-no-names", "has_header is false, so give data.column_names", {"tasks.2.data.has_header": False}
    ),
    Case(
        "column-typo",
        "column 'intnet' does not exist.*Available columns: tokens, tags, intent",
        {"tasks.0.label_column": "intnet"},
    ),
    Case(
        "label-not-in-list",
        r"assistant_train.jsonl, line 4: label 'greet' of task 'intent'",
        {"tasks.0.labels": ["book", "weather"]},
    ),
    Case(
        "unseen-validation-label",
        r"assistant_dev.jsonl, line 1: label 'farewell'.*unseen_labels: unk",
        files={"assistant_dev.jsonl": json.dumps({"tokens": ["bye"], "tags": ["O"], "intent": "farewell"}) + "\n"},
    ),
    Case(
        "tsv-wrong-column-count",
        r"pairs.tsv, line 3: expected 3 columns",
        files={"pairs.tsv": PAIRS_HEADER + "a\tb\t1\nno score\t2\n"},
    ),
    Case(
        "jsonl-broken",
        r"broken.jsonl, line 2: not valid JSON",
        {"tasks.0.data.train": "broken.jsonl"},
        files={"broken.jsonl": '{"tokens": ["hi"], "tags": ["O"], "intent": "greet"}\n{"tokens": [\n'},
    ),
    Case(
        "jsonl-not-objects",
        r"list.jsonl, line 1: each line must be a JSON object",
        {"tasks.0.data.train": "list.jsonl"},
        files={"list.jsonl": "[1, 2]\n"},
    ),
    Case(
        "data-empty",
        "empty.jsonl holds no examples",
        {"tasks.0.data.train": "empty.jsonl"},
        files={"empty.jsonl": "\n"},
    ),
    Case(
        "data-not-utf8",
        "latin1.jsonl is not UTF-8 text",
        {"tasks.0.data.train": "latin1.jsonl"},
        files={"latin1.jsonl": LATIN1_JSONL},
    ),
    Case(
        "tokens-and-tags-disagree",
        r"mismatch.jsonl, line 1: 2 tokens but 1 tags",
        {"tasks.0.data.train": "mismatch.jsonl", "tasks.1.data.train": "mismatch.jsonl"},
        files={"mismatch.jsonl": '{"tokens": ["hi", "there"], "tags": ["O"], "intent": "greet"}\n'},
    ),
    Case(
        "conll-line-without-tag",
        r"ner.conll, line 2: expected a token and a tag",
        files={"ner.conll": "book O\nboston\n"},
    ),
    Case(
        "empty-label",
        r"assistant_train.jsonl, line 1: empty label",
        files={"assistant_train.jsonl": '{"tokens": ["hi"], "tags": ["O"], "intent": " "}\n'},
    ),
    Case(
        "regression-target-text",
        r"pairs.tsv, line 3: regression label 'high' is not a number",
        files={"pairs.tsv": PAIRS_HEADER + "a\tb\t1\nc\td\thigh\n"},
    ),
    Case(
        "regression-target-nan",
        r"pairs.tsv, line 3: regression label 'nan' is not a finite number",
        files={"pairs.tsv": PAIRS_HEADER + "a\tb\t1\nc\td\tnan\n"},
    ),
    Case(
        "regression-target-inf",
        r"pairs.tsv, line 2: regression label '-inf' is not a finite",
        files={"pairs.tsv": PAIRS_HEADER + "a\tb\t-inf\n"},
    ),
    Case(
        "multi-label-value",
        "multi-label value 5 must be a list",
        {"tasks.0.type": "multi_label_classification"},
        files={"assistant_train.jsonl": '{"tokens": ["hi"], "tags": ["O"], "intent": 5}\n'},
    ),
    Case(
        "line-files-disagree",
        "Line files of one split must have the same number of lines",
        {"tasks.3.data.train": {"tokens": "seq.in", "tags": "seq.out"}},
        files={"seq.in": "a b\nc\n", "seq.out": "O O\n"},
    ),
    # --------------------------------------------------------------------------------------------------- Hub
    Case(
        "hub-split-empty",
        r"Hub dataset split glue\[train\] holds no examples",
        {"tasks.2.data": HUB_DATA},
        patch=_empty_hub_split,
    ),
    Case(
        "hub-unreachable",
        "Could not load Hub dataset 'glue'.*point data.train/validation at local files",
        {"tasks.2.data": HUB_DATA},
        patch=_hub_unreachable,
    ),
    Case("hub-and-files", "give either a Hub 'dataset'", {"tasks.2.data": HUB_DATA | {"train": "pairs.tsv"}}),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _resolve_placeholders(value, workspace: Path, encoders: dict[str, Path]):
    """`@name` names an encoder fixture folder, else a path in the workspace."""
    if isinstance(value, str) and value.startswith("@"):
        name = value[1:]
        return str(encoders[name]) if name in encoders else str(workspace / name)
    return value


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_stops_with_a_clear_error_and_touches_nothing(case, tmp_path, encoders, capsys, monkeypatch):
    write_data(tmp_path)
    raw = base_experiment(tmp_path, encoders["tiny"])
    for path, value in case.changes.items():
        change(raw, path, _resolve_placeholders(value, tmp_path, encoders))
    text = yaml.safe_dump(raw)
    if case.id == "experiment-not-utf8":
        (tmp_path / "experiment.yaml").write_bytes(("# caf\xe9\n" + text).encode("latin-1"))
    else:
        (tmp_path / "experiment.yaml").write_text(text, encoding="utf-8")
    for name, content in case.files.items():
        target = tmp_path / name
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content, encoding="utf-8")

    # An earlier run's output: a checkpoint, metrics and a file; none may change, even under --overwrite.
    output = tmp_path / "out"
    (output / "checkpoint-3").mkdir(parents=True)
    (output / "checkpoint-3" / "trainer_state.json").write_text('{"global_step": 3}')
    (output / "metrics.json").write_text('{"validation": {}}')
    (output / "notes.txt").write_text("earlier run")
    before = _snapshot(output)

    tokenised = []
    real_tokenize = data_module.tokenize
    monkeypatch.setattr(data_module, "tokenize", lambda *a, **k: tokenised.append(1) or real_tokenize(*a, **k))
    if case.patch is not None:
        case.patch(monkeypatch)

    code = main([str(tmp_path / case.experiment), *case.args])
    error = capsys.readouterr().err
    assert code == 2, error
    assert error.startswith("error: ") and "Traceback" not in error, error
    assert re.search(case.match, error), error
    assert not tokenised, "data was tokenised before the error"
    assert _snapshot(output) == before
    assert not (tmp_path / "fresh").exists() or not any((tmp_path / "fresh").iterdir())


# ------------------------------------------------------------------------------------------------ Python API


@pytest.mark.parametrize("name", ["type", "train", "update", "keys", "to", "training", "get"])
def test_config_rejects_task_names_that_clash_with_module_dict_attributes(name):
    with pytest.raises(ValueError, match=f"name '{name}', which clashes with the attribute '{name}'"):
        MultiTaskConfig(
            encoder_config=tiny_bert_config(),
            tasks=[{"name": name, "type": "sequence_classification", "num_labels": 2}],
        )


def test_metric_keys_are_read_by_the_longest_task_name():
    metrics = {"eval_ner_f1": 0.5, "eval_ner_fine_f1": 0.9, "eval_ner_fine_loss": 0.1, "eval_combined_score": 0.7}
    assert per_task(metrics, "eval", ["ner", "ner_fine"]) == {
        "ner": {"f1": 0.5},
        "ner_fine": {"f1": 0.9, "loss": 0.1},
    }


@pytest.mark.parametrize(
    ("metric", "greater"),
    [
        ("similarity_mse", False),  # lower-is-better: the Trainer alone would keep the worst checkpoint
        ("eval_similarity_mse", False),
        ("intent_loss", False),
        ("intent_accuracy", True),
        ("combined_score", True),
        ("slots_f1", True),
    ],
)
def test_best_model_direction_follows_the_metric(metric, greater, tmp_path, encoders):
    write_data(tmp_path)
    raw = base_experiment(tmp_path, encoders["tiny"])
    raw["training"].update(metric_for_best_model=metric, load_best_model_at_end=True, eval_strategy="epoch")
    raw["training"]["save_strategy"] = "epoch"
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    experiment = load_experiment(tmp_path / "experiment.yaml")
    assert training_arguments(experiment, has_validation=True).greater_is_better is greater


@pytest.mark.parametrize(
    ("metric", "greater"), [("similarity_mse_mse", False), ("similarity_pearsonr_pearsonr", True)]
)
def test_best_model_direction_of_an_evaluate_metric_follows_its_result_key(metric, greater, tmp_path, encoders):
    """`evaluate:<module>` results are `<task>_<module>_<key>`: the key says the direction."""
    write_data(tmp_path)
    raw = base_experiment(tmp_path, encoders["tiny"])
    raw["tasks"][2]["metrics"] = ["pearson", "evaluate:mse", "evaluate:pearsonr"]
    raw["training"]["metric_for_best_model"] = metric
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_experiment(tmp_path / "experiment.yaml").training["greater_is_better"] is greater


def test_best_model_metric_reads_task_names_with_underscores(tmp_path, encoders):
    """`ner_fine_f1` is ner_fine's f1 (the longest task name), and an error metric of a task named like a metric
    still reads as lower-is-better."""
    write_data(tmp_path)
    raw = base_experiment(tmp_path, encoders["tiny"])
    raw["tasks"][2]["name"] = "pair_score"
    raw["tasks"][3]["data"]["validation"] = "ner.conll"
    raw["tasks"][3]["name"] = "ner_fine"
    raw["training"]["metric_for_best_model"] = "eval_pair_score_mse"
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_experiment(tmp_path / "experiment.yaml").training["greater_is_better"] is False
    raw["training"]["metric_for_best_model"] = "ner_fine_f1"
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_experiment(tmp_path / "experiment.yaml").training["greater_is_better"] is True
