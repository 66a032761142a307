"""Training and serving share one featurisation: the same sentence gives the same input ids and the same word
alignment through the training data path and through the pipeline, for each tokenizer family."""

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_bert_config
from tokenizer_families import FAMILIES
from transformers import AutoConfig, AutoModel, pipeline

from configuration_multitask import WORD_SPLITTINGS
from modeling_multitask import MultiTaskConfig, MultiTaskModel
from modeling_multitask.featurization import WORD_SPLITTERS, featurize, featurize_batch, split_words
from modeling_multitask.hub import save_pipeline_files
from modeling_multitask.training.cli import main
from modeling_multitask.training.data import Rows, TaskGroup, tokenize
from modeling_multitask.training.experiment import DataSource, ExperimentError, TaskSpec, parse_experiment


# Multi-piece words, punctuation attached to words, non-ASCII text (accents, CJK), the "boston!", "o'hare",
# "new-york", "3pm,".
SENTENCES = [
    "book a flight to boston!",
    "from o'hare to new-york at 3pm, please",
    "zürich weather tomorrow",
    "Show me the cheapest fares from Denver to São Paulo.",
    "crème brûlée in 東京?",
    "what flights leave boston tomorrow morning?",
]
TASKS = [
    {"name": "slots", "type": "token_classification", "labels": ["O", "B-city", "I-city"]},
    {"name": "intent", "type": "sequence_classification", "labels": ["book", "other"]},
]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tokenizer(request):
    return FAMILIES[request.param]()


def _pipe(tokenizer, word_splitting="whitespace"):
    config = MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS, word_splitting=word_splitting)
    return pipeline("multitask", model=MultiTaskModel(config).eval(), tokenizer=tokenizer, device="cpu")


def _training_features(tokenizer, word_lists, word_splitting="whitespace", max_length=64):
    """A token task trained jointly with a sequence task, through the training data path; each word's tag is its
    index, so the aligned labels say which token carries which word."""
    source = DataSource()
    group = TaskGroup(
        [
            TaskSpec(
                name="slots", type="token_classification", data=source, text_column="tokens", max_length=max_length
            ),
            TaskSpec(name="intent", type="sequence_classification", data=source, text_column="tokens"),
        ],
        source,
    )
    rows = Rows([{"tokens": words} for words in word_lists], list(range(1, len(word_lists) + 1)), "memory")
    label_ids = {"slots": [list(range(len(words))) for words in word_lists], "intent": [0] * len(word_lists)}
    return tokenize(
        group, rows, tokenizer, label_ids, {"slots": 0, "intent": 1}, joint=True, word_splitting=word_splitting
    )


def _trained_word_starts(feature) -> dict[int, int]:
    """word -> the token that carries its tag in training."""
    return {tag: position for position, tag in enumerate(feature["labels"]["slots"]) if tag != -100}


def _served_word_starts(model_inputs) -> dict[int, int]:
    starts = {}
    for position, word in enumerate(model_inputs["word_ids"]):
        if word is not None:
            starts.setdefault(word, position)
    return starts


def test_training_and_pipeline_give_identical_ids_and_word_maps(tokenizer):
    pipe = _pipe(tokenizer)
    trained = _training_features(tokenizer, [sentence.split() for sentence in SENTENCES])
    for sentence, feature in zip(SENTENCES, trained, strict=True):
        served = pipe.preprocess(sentence)
        assert served["input_ids"][0].tolist() == feature["input_ids"], sentence
        assert served["attention_mask"][0].tolist() == feature["attention_mask"]
        starts = _served_word_starts(served)
        assert starts == _trained_word_starts(feature), sentence
        assert sorted(starts) == list(range(len(sentence.split()))), f"a word lost its tag: {sentence}"
        # Entity spans are whole whitespace words of the user's text.
        assert [sentence[start:end] for start, end in served["words"]] == sentence.split()


def test_odd_whitespace_reaches_the_encoder_as_single_spaces(tokenizer):
    pipe = _pipe(tokenizer)
    messy = "  book a\tflight   to\nboston!  "
    served, clean = pipe.preprocess(messy), pipe.preprocess("book a flight to boston!")
    assert served["input_ids"].tolist() == clean["input_ids"].tolist()
    assert [messy[start:end] for start, end in served["words"]] == ["book", "a", "flight", "to", "boston!"]


def test_punctuation_splitting_serves_raw_text_as_the_pre_split_training_data(tokenizer):
    pipe = _pipe(tokenizer, word_splitting="punctuation")
    raw = ["book a flight to boston!", "from o'hare to new-york at 3pm, please"]
    pre_split = [["book", "a", "flight", "to", "boston", "!"], "from o ' hare to new - york at 3pm , please".split()]
    trained = _training_features(tokenizer, pre_split, word_splitting="punctuation")
    for text, words, feature in zip(raw, pre_split, trained, strict=True):
        served = pipe.preprocess(text)
        assert served["input_ids"][0].tolist() == feature["input_ids"], text
        assert _served_word_starts(served) == _trained_word_starts(feature), text
        assert [text[start:end] for start, end in served["words"]] == words


def test_sequence_only_features_are_the_tokenizers(tokenizer):
    """A sequence-only task reads normally spaced raw text exactly as the tokenizer alone would encode it."""
    texts, pairs = SENTENCES[:3], SENTENCES[3:]
    for text_pairs in (None, pairs):
        expected = tokenizer(texts, text_pairs, truncation=True, max_length=12)
        features = featurize_batch(tokenizer, texts, text_pairs, max_length=12)
        for index, feature in enumerate(features):
            assert feature.model_inputs() == {key: expected[key][index] for key in expected}


def test_word_ids_offsets_and_truncation():
    tokenizer = FAMILIES["byte_level_bpe"]()
    text = "fly  to boston!"
    features = featurize(tokenizer, text, "and zürich", max_length=64)
    assert features.words == [(0, 3), (5, 7), (8, 15)]
    for word, offset, sequence in zip(features.word_ids, features.offsets, features.sequence_ids, strict=True):
        if sequence == 0 and offset is not None:
            start, end = features.words[word]
            assert start <= offset[0] < offset[1] <= end  # each token lies inside its word of the raw text
        if sequence != 0:
            assert word is None  # pair and special tokens belong to no word
    assert not features.truncated and features.words_kept == 3

    cut = featurize(tokenizer, text, max_length=4)  # <s> + 2 tokens + </s>
    assert cut.truncated and len(cut.input_ids) == 4 and cut.full_length > 4
    assert cut.words_kept < 3


def test_split_words():
    text = "From O'Hare, (U.S.) 3pm!"
    assert [text[s:e] for s, e in split_words(text)] == ["From", "O'Hare,", "(U.S.)", "3pm!"]
    assert [text[s:e] for s, e in split_words(text, "punctuation")] == [
        *("From", "O", "'", "Hare", ","),
        *("(", "U", ".", "S", ".", ")"),
        *("3pm", "!"),
    ]
    with pytest.raises(ValueError, match=r"Unknown word_splitting 'spaces'. Allowed: whitespace, punctuation"):
        split_words(text, "spaces")


def test_word_splitting_names_agree_between_config_and_featurization():
    assert tuple(WORD_SPLITTERS) == WORD_SPLITTINGS


def test_word_splitting_is_validated_recorded_and_defaults_for_old_checkpoints(tmp_path):
    with pytest.raises(ValueError, match=r"word_splitting 'punct' is unknown. Did you mean 'punctuation'\?"):
        MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS, word_splitting="punct")
    model = MultiTaskModel(
        MultiTaskConfig(encoder_config=tiny_bert_config(), tasks=TASKS, word_splitting="punctuation")
    )
    model.save_pretrained(tmp_path / "new")
    saved = json.loads((tmp_path / "new" / "config.json").read_text())
    assert saved["word_splitting"] == "punctuation"
    assert MultiTaskConfig.from_pretrained(tmp_path / "new").word_splitting == "punctuation"
    del saved["word_splitting"]  # a checkpoint saved before the option
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    assert MultiTaskConfig.from_pretrained(tmp_path / "old").word_splitting == "whitespace"


def test_experiment_word_splitting(tmp_path):
    raw = {
        "model": {"base_model": "unused", "word_splitting": "punctuations"},
        "tasks": [{"name": "slots", "type": "token_classification", "data": {"train": "train.jsonl"}}],
    }
    with pytest.raises(
        ExperimentError, match=r"model.word_splitting 'punctuations' is unknown. Did you mean 'punctuation'"
    ):
        parse_experiment(raw, tmp_path)
    raw["model"]["word_splitting"] = "punctuation"
    assert parse_experiment(raw, tmp_path).model.word_splitting == "punctuation"
    del raw["model"]["word_splitting"]
    assert parse_experiment(raw, tmp_path).model.word_splitting == "whitespace"


def test_checkpoint_folders_ship_the_featurization_file(tmp_path):
    tokenizer = FAMILIES["wordpiece"]()
    model = MultiTaskModel(MultiTaskConfig(encoder_config=tiny_bert_config(vocab_size=90), tasks=TASKS)).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "featurization.py").unlink()  # as in a folder saved before the pipeline imported it
    save_pipeline_files(tmp_path)
    assert (tmp_path / "featurization.py").is_file()
    pipe = pipeline(model=str(tmp_path), device="cpu", trust_remote_code=True)
    with torch.no_grad():
        assert set(pipe("book a flight to boston!")) == {"slots", "intent"}


# Whitespace words with tags: punctuation attached, multi-piece and non-ASCII words.
MEMORISED = [
    ("book a flight to boston!", "book", "O O O O B-city"),
    ("from o'hare to new-york at 3pm, please", "book", "O B-city O B-city O B-time O"),
    ("zürich weather tomorrow", "weather", "B-city O B-date"),
    ("what is the weather in são paulo?", "weather", "O O O O O B-city I-city"),
    ("hello there!", "greet", "O O"),
    ("fly to denver, then dallas.", "book", "O O B-city O B-city"),
]
ENCODERS = {
    "wordpiece": ("bert", {}),
    "byte_level_bpe": ("roberta", {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "type_vocab_size": 1}),
    "unigram": ("xlm-roberta", {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "type_vocab_size": 1}),
}


def _train_memorised(family: str, tmp_path, slots_max_length: int | None = None) -> dict:
    """Train a tiny encoder of `family` through the CLI on MEMORISED (train = validation); its metrics.json. With the
    default max_length (the encoder's limit) the two tasks train jointly, one encoder pass per sentence."""
    tokenizer = FAMILIES[family]()
    model_type, extra = ENCODERS[family]
    encoder = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=66,
        **extra,
    )
    torch.manual_seed(0)
    AutoModel.from_config(encoder).save_pretrained(tmp_path / "encoder")
    tokenizer.save_pretrained(tmp_path / "encoder")
    rows = [{"tokens": text.split(), "tags": tags.split(), "intent": intent} for text, intent, tags in MEMORISED]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = {"train": "train.jsonl", "validation": "train.jsonl"}
    experiment = {
        "model": {"base_model": str(tmp_path / "encoder"), "dropout": 0.0},
        "tasks": [
            {
                "name": "intent",
                "type": "sequence_classification",
                "data": data,
                "text_column": "tokens",
                "label_column": "intent",
            },
            {"name": "slots", "type": "token_classification", "data": data}
            | ({} if slots_max_length is None else {"max_length": slots_max_length}),
        ],
        "training": {
            "output_dir": str(tmp_path / "out"),
            "num_train_epochs": 200,
            "per_device_train_batch_size": 6,
            "learning_rate": 3e-3,
            "eval_strategy": "no",
            "save_strategy": "no",
            "disable_tqdm": True,
            "report_to": [],
        },
    }
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(experiment))
    assert main([str(tmp_path / "experiment.yaml")]) == 0
    return json.loads((tmp_path / "out" / "metrics.json").read_text())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_pipeline_predicts_what_the_cli_trained_on_memorised_sentences(family, tmp_path):
    """The issue's check, small: a model trained through the CLI until it memorises sentences with punctuation attached
    gives back, through the pipeline on the same raw sentences, every intent and every slot it was trained on."""
    metrics = _train_memorised(family, tmp_path)
    assert metrics["validation"]["slots"]["f1"] == metrics["validation"]["intent"]["accuracy"] == 1.0
    assert metrics["truncated_examples"] == {
        "train": {"intent": 0, "slots": 0},
        "validation": {"intent": 0, "slots": 0},
    }

    pipe = pipeline(model=str(tmp_path / "out"), device="cpu", trust_remote_code=True)
    for text, intent, tags in MEMORISED:
        predicted = pipe(text)
        assert predicted["intent"]["label"] == intent, text
        words = text.split()
        expected = [
            (tag[2:], word) for word, tag in zip(words, tags.split(), strict=True) if tag.startswith("B-")
        ]  # one-word entities, except "são paulo"
        found = [(entity["entity"], entity["word"]) for entity in predicted["slots"]["entities"]]
        if "são paulo?" in text:
            expected = [("city", "são paulo?")]
        assert found == expected, text


def test_truncated_token_examples_keep_their_lost_gold_tags():
    tokenizer = FAMILIES["wordpiece"]()
    sentences = [sentence.split() for sentence in SENTENCES[:2]]  # 10 and 21 tokens with [CLS] and [SEP]
    source = DataSource()
    task = TaskSpec(name="slots", type="token_classification", data=source, text_column="tokens", max_length=10)
    rows = Rows([{"tokens": words} for words in sentences], [1, 2], "memory")
    tags = [[10 + word for word in range(len(words))] for words in sentences]  # tag id = 10 + word index
    short, long = tokenize(TaskGroup([task], source), rows, tokenizer, {"slots": tags}, {"slots": 0}, joint=False)
    assert "truncated" not in short and "scoring" not in short
    assert long["truncated"] is True and len(long["input_ids"]) == 10
    kept = [tag for tag in long["labels"] if tag != -100]
    assert kept + long["scoring"] == tags[1]  # every gold tag is either scored or kept aside, in order
    assert long["scoring"]


def test_token_metrics_count_entities_past_the_cut_as_misses():
    from modeling_multitask.training.metrics import token_metrics

    id2label = {0: "O", 1: "B-city", 2: "I-city"}
    predictions = np.array([[0, 1, 0, 0]])  # the model saw two words and tagged "boston"
    labels = np.array([[-100, 1, 0, -100]])  # [CLS] boston to [SEP]: "denver" (B-city) was cut
    assert token_metrics(predictions, labels, id2label)["recall"] == 1.0  # the cut entity vanishes from the score
    honest = token_metrics(predictions, labels, id2label, unscored=[[1]])
    assert honest["recall"] == 0.5 and honest["precision"] == 1.0 and honest["accuracy"] == pytest.approx(2 / 3)


def test_cli_scores_truncated_sentences_against_their_full_gold_and_counts_them(tmp_path):
    tokenizer = FAMILIES["wordpiece"]()
    too_long = sum(len(tokenizer(text)["input_ids"]) > 8 for text, _, _ in MEMORISED)
    metrics = _train_memorised("wordpiece", tmp_path, slots_max_length=8)
    assert metrics["truncated_examples"]["validation"] == {"intent": 0, "slots": too_long} and too_long >= 2
    assert metrics["truncated_examples"]["train"]["slots"] == too_long
    # Memorised, the model is right on every word it sees; the entities past the cut are what it misses.
    assert metrics["validation"]["slots"]["precision"] == 1.0
    assert metrics["validation"]["slots"]["recall"] < 1.0
