"""Evaluation tells the truth: `evaluate:` modules get the decoded labels the built-in metrics use, each dataset is
scored as its own task (not from the model's echo of task_ids), the combined score respects each metric's direction
and reaches the callbacks, and throughput counts the examples the sampler actually draws."""

import json

import numpy as np
import pytest
import torch
from conftest import TASKS, tiny_bert_config
from transformers import EarlyStoppingCallback, TrainingArguments

from modeling_multitask import MultiTaskConfig, MultiTaskModel, MultiTaskModelOutput
from modeling_multitask.training import MultiTaskDataCollator, MultiTaskTrainer, TaskInfo
from modeling_multitask.training.metrics import combined_score, greater_is_better, metric_inputs
from modeling_multitask.training.trainer import FeatureDataset


SENTENCES = ["book a flight to boston", "what is the weather", "hello", "show me flights to new york"]
TASK_INDEX = {task["name"]: i for i, task in enumerate(TASKS)}


def features(tokenizer, task: str, repeat: int = 1, seed: int = 0) -> list[dict]:
    """Tokenised examples of `task` with labels of its type (token tags on first sub-tokens, -100 elsewhere)."""
    generator = np.random.default_rng(seed)
    rows = []
    for sentence in SENTENCES * repeat:
        encoding = dict(tokenizer(sentence))
        length = len(encoding["input_ids"])
        if task == "intent":
            label = int(generator.integers(3))
        elif task == "slots":
            label = [-100] + [int(t) for t in generator.integers(3, size=length - 2)] + [-100]
        elif task == "similarity":
            label = float(generator.uniform(0, 5))
        else:
            label = [float(v) for v in generator.integers(2, size=4)]
        rows.append({**encoding, "labels": label, "task_ids": TASK_INDEX[task]})
    return rows


def task_infos(**extra_metrics) -> list[TaskInfo]:
    infos = [TaskInfo(t["name"], t["type"], t.get("labels")) for t in TASKS]
    for info in infos:
        info.extra_metrics = extra_metrics.get(info.name, {})
    return infos


def make_trainer(
    tmp_path, tokenizer, tasks=TASKS, infos=None, model=None, trainer_kwargs=None, **arguments
) -> MultiTaskTrainer:
    """A trainer on a tiny random model; `arguments` go to TrainingArguments, `trainer_kwargs` to the trainer."""
    torch.manual_seed(0)
    model = model or MultiTaskModel(MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=tasks))
    settings = dict(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        use_cpu=True,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=3,
        disable_tqdm=True,
        save_strategy="no",
        seed=0,
    )
    return MultiTaskTrainer(
        model=model,
        args=TrainingArguments(**{**settings, **arguments}),
        data_collator=MultiTaskDataCollator(tokenizer),
        processing_class=tokenizer,
        tasks=infos or task_infos(),
        **{"group_sizes": [1], **(trainer_kwargs or {})},
    )


# ------------------------------------------------------------------------------------------------ evaluate modules

ECHO_METRIC = '''
import json
import os

import datasets
import evaluate

FEATURES = {
    "tokens": datasets.Sequence(datasets.Value("string")),
    "multilabel": datasets.Sequence(datasets.Value("int64")),
    "classes": datasets.Value("int64"),
    "values": datasets.Value("float64"),
}


class Echo(evaluate.Metric):
    """Writes what it receives to $ECHO_METRIC_DIR/<config>.json and returns how many examples that was."""

    def _info(self):
        kind = FEATURES[self.config_name]
        return evaluate.MetricInfo(
            description="echo", citation="", inputs_description="",
            features=datasets.Features({"predictions": kind, "references": kind}),
        )

    def _compute(self, predictions, references):
        path = os.path.join(os.environ["ECHO_METRIC_DIR"], self.config_name + ".json")
        with open(path, "w") as file:
            json.dump({"predictions": predictions, "references": references}, file)
        return {"examples": len(predictions), "nested": {"value": 1.0}, "ignored": "text"}
'''


@pytest.fixture
def echo_metrics(tmp_path, monkeypatch):
    """A local `evaluate` metric script, loaded offline once per input kind."""
    import evaluate

    folder = tmp_path / "echo"
    folder.mkdir()
    (folder / "echo.py").write_text(ECHO_METRIC)
    monkeypatch.setenv("ECHO_METRIC_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kinds = {"slots": "tokens", "topics": "multilabel", "intent": "classes", "similarity": "values"}
    modules = {task: {"evaluate:echo": evaluate.load(str(folder), config_name=kind)} for task, kind in kinds.items()}

    def received(task: str) -> dict:
        return json.loads((tmp_path / f"{kinds[task]}.json").read_text())

    return modules, received


def test_evaluate_modules_get_the_decoded_labels_the_built_in_metrics_use(tmp_path, tiny_tokenizer, echo_metrics):
    modules, received = echo_metrics
    trainer = make_trainer(tmp_path, tiny_tokenizer, infos=task_infos(**modules))
    data = {name: FeatureDataset(features(tiny_tokenizer, name)) for name in TASK_INDEX}
    metrics = trainer.evaluate(data)

    for name in TASK_INDEX:
        assert metrics[f"eval_{name}_echo_examples"] == len(SENTENCES)
        assert metrics[f"eval_{name}_echo_nested_value"] == 1.0
        assert f"eval_{name}_echo_ignored" not in metrics
    tags = ["O", "B-city", "I-city"]
    slots = received("slots")
    gold_slots = [[tags[t] for t in row["labels"] if t != -100] for row in data["slots"].features]
    assert slots["references"] == gold_slots  # tag strings per sentence, -100 positions dropped
    assert [len(sentence) for sentence in slots["predictions"]] == [len(sentence) for sentence in gold_slots]
    assert {tag for sentence in slots["predictions"] for tag in sentence} <= set(tags)
    topics = received("topics")
    assert topics["references"] == [[int(v) for v in row["labels"]] for row in data["topics"].features]
    assert {v for row in topics["predictions"] for v in row} <= {0, 1}  # after the threshold, not probabilities
    intent = received("intent")
    assert intent["references"] == [row["labels"] for row in data["intent"].features]
    assert set(intent["predictions"]) <= {0, 1, 2}
    similarity = received("similarity")
    assert similarity["references"] == pytest.approx([row["labels"] for row in data["similarity"].features])


def test_metric_inputs_decode_each_task_type():
    labels = np.array([[-100, 1, 2, 0, -100]])
    predictions = np.array([[0, 1, 0, 0, 2]])
    assert metric_inputs("token_classification", predictions, labels, ["O", "B-city", "I-city"]) == (
        [["B-city", "O", "O"]],
        [["B-city", "I-city", "O"]],
    )
    assert metric_inputs("multi_label_classification", np.array([[0.7, 0.2]]), np.array([[1.0, 1.0]]), None) == (
        [[1, 0]],
        [[1, 1]],
    )


# ------------------------------------------------------------------------------------------------ which task


def without_task_ids(module, args, output):
    """A forward hook: the model's output no longer echoes task_ids (evaluation must know the task otherwise)."""
    return MultiTaskModelOutput(**{key: value for key, value in output.items() if key != "task_ids"})


def test_each_dataset_is_scored_as_its_task_without_the_models_task_ids(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer)
    trainer.model.register_forward_hook(without_task_ids)
    metrics = trainer.evaluate({name: FeatureDataset(features(tiny_tokenizer, name)) for name in ("slots", "topics")})
    assert {"eval_slots_f1", "eval_topics_micro_f1", "eval_slots_loss", "eval_combined_score"} <= set(metrics)
    assert not any(key.startswith(("eval_intent", "eval_similarity")) for key in metrics)
    assert trainer.last_eval_predictions["slots"][0].shape == trainer.last_eval_predictions["slots"][1].shape


def test_evaluation_data_must_name_its_tasks(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer)
    data = FeatureDataset(features(tiny_tokenizer, "intent"))
    with pytest.raises(ValueError, match=r"evaluation datasets \['intnet'\] are not tasks.*intent, slots"):
        trainer.evaluate({"intnet": data})
    with pytest.raises(ValueError, match="pass the evaluation data as a dict of task name -> dataset"):
        trainer.evaluate(data)


# ------------------------------------------------------------------------------------------------ direction


def test_metric_direction_and_combined_score():
    assert greater_is_better("f1") and greater_is_better("pearson_spearman")
    assert not greater_is_better("mse") and not greater_is_better("loss")
    assert combined_score([("accuracy", 0.8), ("mse", 0.4)]) == pytest.approx((0.8 - 0.4) / 2)


REGRESSION = [{"name": "similarity", "type": "regression"}]


def regression_trainer(tmp_path, tokenizer, callbacks=(), **arguments):
    train = features(tokenizer, "similarity", repeat=4)
    for row in train:
        row["task_ids"] = 0
    validation = features(tokenizer, "similarity", seed=1)
    for row in validation:
        row["task_ids"] = 0
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        tasks=REGRESSION,
        infos=[TaskInfo("similarity", "regression", None, ["mse"])],
        eval_strategy="epoch",
        learning_rate=3e-3,
        metric_for_best_model="combined_score",
        trainer_kwargs=dict(
            train_dataset=FeatureDataset(train),
            eval_dataset={"similarity": FeatureDataset(validation)},
            group_sizes=[len(train)],
            callbacks=list(callbacks),
        ),
        **arguments,
    )
    return trainer


def test_best_model_is_the_one_with_the_lower_mse(tmp_path, tiny_tokenizer):
    trainer = regression_trainer(
        tmp_path, tiny_tokenizer, num_train_epochs=4, save_strategy="epoch", load_best_model_at_end=True
    )
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_similarity_mse" in entry]
    mses = [entry["eval_similarity_mse"] for entry in evaluations]
    assert len(set(mses)) == 4  # the test needs evaluations that differ
    best = evaluations[int(np.argmin(mses))]
    assert trainer.state.best_global_step == best["step"]
    assert trainer.state.best_metric == pytest.approx(-min(mses))
    assert all(entry["eval_combined_score"] == -entry["eval_similarity_mse"] for entry in evaluations)
    assert trainer.evaluate()["eval_similarity_mse"] == pytest.approx(min(mses))  # the kept model is the best one


def test_early_stopping_sees_the_combined_score(tmp_path, tiny_tokenizer):
    seen = []

    class Recorder(EarlyStoppingCallback):
        def on_evaluate(self, args, state, control, metrics, **kwargs):
            seen.append(metrics.get("eval_combined_score"))
            return super().on_evaluate(args, state, control, metrics, **kwargs)

    # No improvement is ever large enough: the run stops at the second evaluation if the callback sees the value.
    stopper = Recorder(early_stopping_patience=1, early_stopping_threshold=1e9)
    trainer = regression_trainer(tmp_path, tiny_tokenizer, callbacks=[stopper], num_train_epochs=5)
    trainer.train()
    assert len(seen) == 2 and None not in seen
    assert trainer.state.epoch == 2


# ------------------------------------------------------------------------------------------------ throughput


def test_train_samples_per_second_counts_the_examples_drawn_under_a_cap(tmp_path, tiny_tokenizer):
    intent, slots = features(tiny_tokenizer, "intent", repeat=16), features(tiny_tokenizer, "slots", repeat=16)
    trainer = make_trainer(
        tmp_path,
        tiny_tokenizer,
        num_train_epochs=2,
        trainer_kwargs=dict(
            train_dataset=torch.utils.data.ConcatDataset([FeatureDataset(intent), FeatureDataset(slots)]),
            group_sizes=[len(intent), len(slots)],
            max_examples_per_task=6,  # 12 capped examples an epoch (3 batches of 4) of the 128 there are
        ),
    )
    drawn = []
    original = trainer.compute_loss

    def counting_loss(model, inputs, *args, **kwargs):
        drawn.append(len(inputs["input_ids"]))
        return original(model, inputs, *args, **kwargs)

    trainer.compute_loss = counting_loss
    metrics = trainer.train().metrics
    assert sum(drawn) == 24
    assert metrics["train_samples_per_second"] * metrics["train_runtime"] == pytest.approx(24, rel=0.02)


def test_sentence_accuracy_needs_the_label_and_every_tag_right():
    from modeling_multitask.training.metrics import sentence_accuracy

    id2tag = {0: "O", 1: "B-city", 2: "I-city"}
    gold_tags = np.array([[-100, 0, 1, 2, -100], [-100, 1, -100, 0, -100], [-100, 0, 0, -100, -100]])
    predicted_tags = np.array([[0, 0, 1, 2, 0], [2, 1, 2, 0, 1], [0, 0, 1, 0, 0]])  # -100 positions never count
    labels, gold_labels = np.array([1, 0, 1]), np.array([1, 0, 0])
    # Example 1: all right; 2: all right at word starts; 3: wrong label and wrong tag.
    assert sentence_accuracy(labels, gold_labels, predicted_tags, gold_tags, id2tag) == pytest.approx(2 / 3)
    assert sentence_accuracy(np.array([0, 1, 1]), gold_labels, gold_tags, gold_tags, id2tag) == 0.0


@pytest.mark.parametrize(
    "task_type, listed, expected",
    [
        ("regression", None, "pearson_spearman"),
        ("regression", ["mse", "pearson"], "mse"),
        ("token_classification", ["evaluate:seqeval", "precision"], "precision"),
        ("sequence_classification", ["evaluate:accuracy"], "accuracy"),
    ],
)
def test_primary_metric_is_the_first_built_in_listed_else_the_types_first(task_type, listed, expected):
    from modeling_multitask.training.metrics import primary_metric

    assert primary_metric(task_type, listed) == expected
