"""Tiny fast tokenizers of the three families, trained offline in a fraction of a second on a few sentences.

WordPiece as BERT's (lower-casing, accents stripped, punctuation split off by the pre-tokenizer), byte-level BPE as
RoBERTa's (the space is part of the next token: `Ġboston`), and Unigram with Metaspace as XLM-R's / SentencePiece's
(splits only at spaces: `▁boston!`). Each is wrapped in the transformers class that model family loads with.
"""

import json

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertTokenizerFast, RobertaTokenizerFast, XLMRobertaTokenizerFast


CORPUS = [
    "book a flight to boston!",
    "from o'hare to new-york at 3pm, please",
    "zürich weather tomorrow",
    "show me the cheapest fares from denver to são paulo.",
    "what flights leave boston tomorrow morning?",
]


def wordpiece() -> BertTokenizerFast:
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend.train_from_iterator(
        CORPUS, trainers.WordPieceTrainer(vocab_size=90, special_tokens=specials, show_progress=False)
    )
    return BertTokenizerFast(vocab=backend.get_vocab())


def byte_level_bpe() -> RobertaTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    backend.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(vocab_size=320, special_tokens=specials, initial_alphabet=alphabet, show_progress=False),
    )
    model = json.loads(backend.to_str())["model"]
    return RobertaTokenizerFast(vocab=model["vocab"], merges=[tuple(merge) for merge in model["merges"]])


def unigram() -> XLMRobertaTokenizerFast:
    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    backend.train_from_iterator(
        CORPUS, trainers.UnigramTrainer(vocab_size=90, special_tokens=specials, unk_token="<unk>", show_progress=False)
    )
    model = json.loads(backend.to_str())["model"]
    return XLMRobertaTokenizerFast(vocab=[tuple(entry) for entry in model["vocab"]])


FAMILIES = {"wordpiece": wordpiece, "byte_level_bpe": byte_level_bpe, "unigram": unigram}
