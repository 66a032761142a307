"""`benchmarks/run_quality.py` on a task mix that is not in ../shared/data: every variant trains, the tables add up.

The benchmark command must work for any experiment file, not only the three shipped ones: here a joint intent + slots
pair (sentence accuracy), a sentence-pair regression and a multi-label task, on a tiny random encoder.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from test_train_cli import DATA, write_data


RUNNER = Path(__file__).resolve().parents[1] / "benchmarks" / "run_quality.py"
TIMINGS = (
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "epoch",
    "model_preparation_time",
)  # what the Trainer adds to eval metrics
TOPICS = ["travel|food", "weather", "travel", "weather|food", "", "travel"]


@pytest.fixture(scope="module")
def run_quality():
    spec = importlib.util.spec_from_file_location("run_quality", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def held_back_experiment(folder: Path, encoder: Path) -> Path:
    write_data(folder)
    rows = [
        {"tokens": text.split(), "tags": tags.split(), "intent": intent, "topics": topics}
        for (text, intent, tags), topics in zip(DATA, TOPICS)
    ]
    (folder / "mix.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    mix = {"train": "mix.jsonl", "validation": "mix.jsonl", "test": "mix.jsonl"}
    pairs = {"train": "pairs.tsv", "validation": "pairs.tsv", "test": "pairs.tsv"}
    raw = {
        "model": {"base_model": str(encoder), "fusion": {"type": "attention"}},
        "tasks": [
            {
                "name": "intent",
                "type": "sequence_classification",
                "data": mix,
                "text_column": "tokens",
                "label_column": "intent",
            },
            {
                "name": "slots",
                "type": "token_classification",
                "data": mix,
                "text_column": "tokens",
                "label_column": "tags",
            },
            {
                "name": "topics",
                "type": "multi_label_classification",
                "data": mix,
                "text_column": "tokens",
                "label_column": "topics",
                "labels": ["travel", "weather", "food"],
            },
            {
                "name": "similarity",
                "type": "regression",
                "data": pairs,
                "text_column": "sentence1",
                "text_pair_column": "sentence2",
                "label_column": "score",
            },
        ],
        "training": {
            "output_dir": "unused",
            "num_train_epochs": 1,
            "per_device_train_batch_size": 2,
            "learning_rate": 1e-3,
            "disable_tqdm": True,
            "report_to": "none",
        },
    }
    path = folder / "heldback.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_every_variant_on_a_held_back_task_mix(tmp_path, tiny_encoder, run_quality):
    experiment = held_back_experiment(tmp_path, tiny_encoder)
    results = tmp_path / "results"
    argv = [str(experiment), "--seeds", "1", "2", "--results-dir", str(results), "--runs-dir", str(tmp_path / "runs")]
    # Two processes at once, so the six runs are merged into one table by concurrent writers.
    assert run_quality.main([*argv, "--jobs", "2"]) == 0

    record = json.loads((results / "heldback.json").read_text())
    assert record["protocol"]["split"] == "test"  # every task has a test split
    assert sorted((run["variant"], run["seed"]) for run in record["runs"]) == [
        (variant, seed) for variant in ("fusion", "no_fusion", "single_task") for seed in (1, 2)
    ]
    expected = {
        ("intent", "accuracy"),
        ("slots", "f1"),
        ("topics", "micro_f1"),
        ("similarity", "pearson"),
        ("similarity", "spearman"),
        ("intent+slots", "sentence_accuracy"),
    }
    assert {tuple(pair) for pair in record["protocol"]["metrics"]} == expected
    for variant, table in record["summary"].items():
        assert table["seeds"] == [1, 2]
        for task, metric in expected:
            entry = table["metrics"][f"test/{task}/{metric}"]
            assert entry["n"] == 2, (variant, task, metric)
            low = -100 if task == "similarity" else 0  # correlations may be negative after one tiny epoch
            assert all(low <= value <= 100 for value in entry["values"]), (variant, task, entry)
    # Each run trained its own model: the checkpoint folders are there (multi-task) or the baselines' (single task).
    runs = tmp_path / "runs" / "heldback"
    assert {p.name for p in runs.iterdir() if p.is_dir()} >= {
        "fusion_s1",
        "no_fusion_s2",
        "single_slots_s1",
        "single_topics_s2",
        "single_similarity_s1",
    }

    table = (results / "heldback.md").read_text()
    assert "| intent+slots | sentence_accuracy |" in table and "fusion − single" in table
    assert "python benchmarks/run_quality.py" in table
    assert len(record["commands"]) == 6  # the exact call of every run, to reproduce it alone

    # A second call with the same settings adds to the table instead of starting it again.
    assert run_quality.main([*argv[:1], "--seeds", "3", "--variants", "no_fusion", *argv[4:]]) == 0
    again = json.loads((results / "heldback.json").read_text())
    assert again["summary"]["no_fusion"]["seeds"] == [1, 2, 3] and again["summary"]["fusion"]["seeds"] == [1, 2]

    # A new tag decoding re-scores the saved models of every recorded run (multi-task and single task) instead of
    # training them again: each keeps its training record, and only the slot metrics may change.
    raw = yaml.safe_load(experiment.read_text())
    raw["tasks"][1]["decoding"] = "bio"
    experiment.write_text(yaml.safe_dump(raw))
    assert run_quality.main([*argv[:1], "--rescore", *argv[4:]]) == 0
    rescored = json.loads((results / "heldback.json").read_text())
    assert rescored["settings"]["decoding"] == {"slots": "bio"}
    before = {(run["variant"], run["seed"]): run for run in again["runs"]}
    assert sorted(before) == sorted((run["variant"], run["seed"]) for run in rescored["runs"])
    for run in rescored["runs"]:
        old = before[(run["variant"], run["seed"])]
        assert run["scored"]["decoding"] == {"slots": "bio"} and run["wall_s"] == old["wall_s"]
        for split, tasks in old["metrics"].items():
            for task in ("intent", "topics", "similarity"):
                scores = {k: v for k, v in tasks[task].items() if k not in TIMINGS}
                assert {k: run["metrics"][split][task][k] for k in scores} == pytest.approx(scores, abs=1e-6), task
    assert rescored["commands"][: len(again["commands"])] == again["commands"]
    assert "--rescore" in rescored["commands"][-1]

    # Re-scoring needs runs trained with the same settings; a training call with the new decoding adds to the table.
    assert run_quality.main([*argv[:1], "--rescore", "--epochs", "2", *argv[4:]]) == 2
    assert run_quality.main([*argv[:1], "--seeds", "4", "--variants", "fusion", *argv[4:]]) == 0
    assert json.loads((results / "heldback.json").read_text())["summary"]["fusion"]["seeds"] == [1, 2, 4]
    saved = json.loads((runs / "fusion_s4" / "config.json").read_text())  # the model keeps its decoding
    assert [task.get("decoding") for task in saved["tasks"]] == [None, "bio", None, None]

    # A different multi-task architecture starts the multi-task rows again; the single-task baselines, which never
    # used it, stay with their commands.
    raw["model"]["task_private_layers"] = 1
    experiment.write_text(yaml.safe_dump(raw))
    assert run_quality.main([*argv[:1], "--seeds", "5", "--variants", "fusion", *argv[4:]]) == 0
    private = json.loads((results / "heldback.json").read_text())
    assert private["settings"]["model"] == {"task_private_layers": 1}
    assert sorted((run["variant"], run["seed"]) for run in private["runs"]) == [
        ("fusion", 5), ("single_task", 1), ("single_task", 2)
    ]  # fmt: skip
    kept = [run["command"] for run in private["runs"] if run["variant"] == "single_task"]
    assert (
        private["commands"] == [*dict.fromkeys(kept), private["commands"][-1]]
        and "--seeds 5" in private["commands"][-1]
    )
    assert json.loads((runs / "fusion_s5" / "config.json").read_text())["task_private_layers"] == 1
    # So does a task's loss weight, though the file is the same experiment and the call the same command.
    raw["tasks"][1]["loss_weight"] = 2.0
    experiment.write_text(yaml.safe_dump(raw))
    assert run_quality.main([*argv[:1], "--seeds", "6", "--variants", "fusion", *argv[4:]]) == 0
    weighted = json.loads((results / "heldback.json").read_text())
    assert weighted["settings"]["model"] == {"task_private_layers": 1, "loss_weights": {"slots": 2.0}}
    assert sorted((run["variant"], run["seed"]) for run in weighted["runs"]) == [
        ("fusion", 6), ("single_task", 1), ("single_task", 2)
    ]  # fmt: skip


def test_single_task_head_starts_from_the_seed(tmp_path, tiny_encoder, run_quality):
    import torch

    from modeling_multitask.training.experiment import load_experiment

    task = load_experiment(held_back_experiment(tmp_path, tiny_encoder)).tasks[0]

    def head(seed):
        torch.rand(7)  # whatever ran before in the process must not matter
        return run_quality.single_task_model(task, str(tiny_encoder), ["a", "b", "c"], seed).classifier.weight

    assert torch.equal(head(1), head(1)) and not torch.equal(head(1), head(2))


def test_absent_data_skips_with_the_reason(tmp_path, tiny_encoder, run_quality, capsys):
    experiment = held_back_experiment(tmp_path, tiny_encoder)
    (tmp_path / "pairs.tsv").unlink()
    assert run_quality.main([str(experiment), "--results-dir", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SKIPPED heldback:") and "pairs.tsv" in out
    assert not (tmp_path / "results" / "heldback.json").exists()


def test_unknown_variant_is_refused(tmp_path, run_quality, capsys):
    assert run_quality.main(["atis", "--variants", "fusion,singletask"]) == 2
    assert "singletask" in capsys.readouterr().err


def test_fusion_weight_statistics(tmp_path, tiny_tokenizer, capsys):
    spec = importlib.util.spec_from_file_location("fusion_weights", RUNNER.parent / "fusion_weights.py")
    fusion_weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fusion_weights)
    import torch
    from conftest import TASKS, tiny_bert_config

    from modeling_multitask import MultiTaskConfig, MultiTaskModel

    torch.manual_seed(0)
    model = MultiTaskModel(
        MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS, fusion={"type": "attention"})
    )
    texts = tmp_path / "texts.txt"
    texts.write_text("show me flights to boston\nbook a flight\nhello there how is the weather in denver today\n")

    def table(score_std: float | None) -> dict[str, list[str]]:
        if score_std is not None:
            with torch.no_grad():
                model.fusion.score.weight.normal_(std=score_std)
        model.save_pretrained(tmp_path / "checkpoint")
        tiny_tokenizer.save_pretrained(tmp_path / "checkpoint")
        assert fusion_weights.main([str(tmp_path / "checkpoint"), str(texts), "--task", "intent"]) == 0
        rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| intent")]
        return [cell.strip() for cell in rows[0]]

    # A new fusion layer scores every token zero: uniform attention, i.e. mean pooling, and token gates of one.
    name, entropy, largest, uniform, gates = table(None)
    assert float(entropy) == 1.0 and float(largest) == float(uniform) and gates == "1.00 / 1.00 / 1.00"
    # Large scores concentrate the weights: lower entropy, a larger top weight, gates spread around one.
    name, entropy, largest, uniform, gates = table(40.0)
    assert float(entropy) < 0.9 and float(largest) > float(uniform) + 0.05
    assert float(gates.split(" / ")[0]) < 0.5 < 1.5 < float(gates.split(" / ")[2])


def test_fusion_ablation_matches_the_training_evaluation(tmp_path, tiny_encoder, capsys):
    """The ablation's "learned weights" column must reproduce the scores the training CLI wrote for the same model."""
    import torch

    from modeling_multitask.training.cli import main as train

    spec = importlib.util.spec_from_file_location("fusion_ablation", RUNNER.parent / "fusion_ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)

    experiment = held_back_experiment(tmp_path, tiny_encoder)
    assert train([str(experiment), "--set", f"training.output_dir={tmp_path / 'out'}"]) == 0
    capsys.readouterr()
    assert ablation.main([str(tmp_path / "out"), str(experiment), "--split", "test"]) == 0
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:-1]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| ") and not line.startswith("| task")
    }
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())["test"]
    assert set(rows) == {"intent", "slots", "topics", "similarity"}
    for task, (metric, learned, _, _) in rows.items():
        assert float(learned) == pytest.approx(100 * written[task][metric.strip()], abs=0.006), task

    weights = ablation.uniform_weights(torch.zeros(2, 4, 8), 0, torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))
    torch.testing.assert_close(weights, torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0], [0.25, 0.25, 0.25, 0.25]]))


def test_paired_bootstrap_compares_two_trained_models(tmp_path, tiny_encoder, capsys):
    """The A and B columns are each model's own training-CLI scores; a model against itself differs by exactly 0."""
    from modeling_multitask.training.cli import main as train

    spec = importlib.util.spec_from_file_location("paired_bootstrap", RUNNER.parent / "paired_bootstrap.py")
    paired = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paired)

    experiment = held_back_experiment(tmp_path, tiny_encoder)
    for seed in (1, 2):
        out = f"training.output_dir={tmp_path / f'seed{seed}'}"
        assert train([str(experiment), "--set", out, "--set", f"seed={seed}"]) == 0
    capsys.readouterr()

    def table(a, b):
        assert paired.main([str(a), str(b), str(experiment), "--split", "test", "--resamples", "200"]) == 0
        lines = capsys.readouterr().out.splitlines()
        rows = [line.split("|")[1:-1] for line in lines if line.startswith("| ") and not line.startswith("| task")]
        return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows}

    rows = table(tmp_path / "seed1", tmp_path / "seed2")
    assert set(rows) == {"intent", "slots", "topics", "similarity"}
    for folder, column in (("seed1", 1), ("seed2", 2)):
        written = json.loads((tmp_path / folder / "metrics.json").read_text())["test"]
        for task, cells in rows.items():
            assert float(cells[column]) == pytest.approx(100 * written[task][cells[0]], abs=0.006), (folder, task)
    for task, (_, a, b, gap, interval, _) in rows.items():
        low, high = (float(x) for x in interval.strip("[]").split(","))
        assert float(gap) == pytest.approx(float(a) - float(b), abs=0.02)
        assert low <= high, task

    itself = table(tmp_path / "seed1", tmp_path / "seed1")
    for task, (_, a, b, gap, interval, differ) in itself.items():
        assert a == b and float(gap) == 0 and interval == "[+0.00, +0.00]", task
        assert differ in ("0.0%", "–"), task


def span_and_choice_experiment(folder: Path, encoder: Path) -> Path:
    """Question answering (the SQuAD layout) and multiple choice (CommonsenseQA's layout) in one model: the tasks of
    those types' own CLI tests, each with its data in a subfolder."""
    from test_multiple_choice import csqa_experiment, write_csqa
    from test_question_answering import qa_experiment, write_qa_data

    tasks = []
    for subfolder, write, experiment in (("qa", write_qa_data, qa_experiment), ("mc", write_csqa, csqa_experiment)):
        (folder / subfolder).mkdir()
        write(folder / subfolder)
        task = experiment(folder / subfolder, encoder)["tasks"][0]
        task["data"] = {
            split: f"{subfolder}/{name}" if split != "format" else name for split, name in task["data"].items()
        }
        tasks.append(task)
    raw = yaml.safe_load((held_back_experiment(folder, encoder)).read_text())
    path = folder / "spans.yaml"
    path.write_text(yaml.safe_dump({**raw, "tasks": tasks}))
    return path


def test_question_answering_and_multiple_choice_baselines(tmp_path, tiny_encoder, run_quality):
    """The single-task baselines of the two types that read more than a text: `AutoModelForQuestionAnswering` and
    `AutoModelForMultipleChoice`, fed our batches through their definitions, trained, saved and scored like the
    multi-task model."""
    experiment = span_and_choice_experiment(tmp_path, tiny_encoder)
    results, runs = tmp_path / "results", tmp_path / "runs"
    argv = [str(experiment), "--seeds", "1", "--results-dir", str(results), "--runs-dir", str(runs)]
    assert run_quality.main([*argv, "--variants", "fusion,single_task", "--single-tasks", "qa"]) == 0
    first = json.loads((results / "spans.json").read_text())
    assert set(next(r for r in first["runs"] if r["variant"] == "single_task")["per_task_wall_s"]) == {"qa"}
    # Re-scoring scores the baselines that were trained (csqa's is not there yet).
    assert run_quality.main([*argv[:1], "--rescore", "--variants", "single_task", *argv[3:]]) == 0
    # The other baseline in a later call: merged into the same seed's baseline record.
    assert run_quality.main([*argv, "--variants", "single_task", "--single-tasks", "csqa"]) == 0
    assert run_quality.main([*argv, "--variants", "single_task", "--single-tasks", "nope"]) == 2

    record = json.loads((results / "spans.json").read_text())
    assert len(record["runs"]) == 2
    assert record["protocol"]["split"] == "validation"  # no task has a test split
    assert {tuple(pair) for pair in record["protocol"]["metrics"]} == {
        ("qa", "f1"),
        ("qa", "exact_match"),
        ("csqa", "accuracy"),
    }
    for variant in ("fusion", "single_task"):
        for key in ("validation/qa/f1", "validation/qa/exact_match", "validation/csqa/accuracy"):
            entry = record["summary"][variant]["metrics"][key]
            assert entry["n"] == 1 and 0 <= entry["values"][0] <= 100, (variant, key)
    # The baselines are the standard transformers models, saved as such.
    for task, architecture in (("qa", "BertForQuestionAnswering"), ("csqa", "BertForMultipleChoice")):
        saved = json.loads((runs / "spans" / f"single_{task}_s1" / "config.json").read_text())
        assert saved["architectures"] == [architecture]

    # Re-scoring loads the saved transformers models and scores them the same way.
    baseline = next(run for run in record["runs"] if run["variant"] == "single_task")
    assert run_quality.main([*argv[:1], "--rescore", "--variants", "single_task", *argv[3:]]) == 0
    rescored = next(
        run for run in json.loads((results / "spans.json").read_text())["runs"] if run["variant"] == "single_task"
    )
    for task, metric in (("qa", "f1"), ("qa", "exact_match"), ("csqa", "accuracy")):
        expected = baseline["metrics"]["validation"][task][metric]
        assert rescored["metrics"]["validation"][task][metric] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("task_type", ["question_answering", "multiple_choice"])
def test_baseline_wrapper_gives_the_transformers_model_its_own_inputs(tiny_encoder, run_quality, task_type):
    """The wrapper's loss is the transformers model's own loss on its own input layout, and its logits are laid out as
    our head's: start/end positions from our `(batch, 2)` labels; choices unflattened from our rows."""
    import torch

    from modeling_multitask.training.metrics import task_view

    settings = {"num_choices": 3} if task_type == "multiple_choice" else {}
    view = task_view(task_type, None, "task", **settings)
    model_class, _ = view.definition.transformers_model
    import transformers

    torch.manual_seed(0)
    model = getattr(transformers, model_class).from_pretrained(str(tiny_encoder)).eval()
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 50, (6, 10), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if task_type == "question_answering":
        labels = torch.tensor([[1, 3], [0, 0], [4, 9], [2, 2], [5, 6], [7, 8]])
        own = model(input_ids=input_ids, attention_mask=attention_mask, start_positions=labels[:, 0],
                    end_positions=labels[:, 1])  # fmt: skip
        own_logits = torch.stack((own.start_logits, own.end_logits), -1)
        assert own_logits.shape == (6, 10, 2)
    else:  # 2 questions x 3 choices, flattened as the collator lays them out
        labels = torch.tensor([2, 0])
        own = model(input_ids=input_ids.view(2, 3, 10), attention_mask=attention_mask.view(2, 3, 10), labels=labels)
        own_logits = own.logits
        assert own_logits.shape == (2, 3)
    wrapped = run_quality.TransformersBaseline(model, view)(
        input_ids=input_ids, attention_mask=attention_mask, labels=labels, task_ids=0
    )
    assert torch.allclose(wrapped.loss, own.loss) and torch.allclose(wrapped.logits, own_logits)


def test_a_partial_baseline_call_replaces_only_its_tasks(run_quality):
    earlier = {
        "variant": "single_task",
        "seed": 1,
        "per_task_wall_s": {"intent": 10.0, "slots": 20.0, "sst2": 5.0},
        "metrics": {
            "test": {"intent": {"accuracy": 0.9}, "slots": {"f1": 0.8}, "intent+slots": {"sentence_accuracy": 0.7}}
        },
    }
    new = {
        "variant": "single_task",
        "seed": 1,
        "per_task_wall_s": {"intent": 12.0},
        "metrics": {"test": {"intent": {"accuracy": 0.95}}},
    }
    merged = run_quality.merged_baselines(earlier, new)
    # The retrained intent replaces its metrics; slots stay; the old intent+slots pairing is gone (its intent model is).
    assert merged["metrics"] == {"test": {"intent": {"accuracy": 0.95}, "slots": {"f1": 0.8}}}
    assert merged["per_task_wall_s"] == {"intent": 12.0, "slots": 20.0, "sst2": 5.0} and merged["wall_s"] == 37.0
