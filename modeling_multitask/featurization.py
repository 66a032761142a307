"""Text -> model features, one function for training and serving.

Training and the pipeline both call `featurize_batch` (or `featurize`), so a sentence reaches the encoder with the
same `input_ids` and the same word alignment whichever path it takes. A *word* is a whitespace-separated token of the
text, as the data formats define it (`"boston!"` is one word), or, with `word_splitting="punctuation"`, each
punctuation character is a word of its own as well (`"boston!"` is `"boston" "!"`, as in corpora tokenised the CoNLL
way). The encoder reads the words joined by single spaces; every token knows which word its characters fall in, and
every character offset points back into the caller's text.

Shipped as remote code next to every checkpoint (the pipeline imports it): it imports only the standard library.
"""

import re
import unicodedata
from dataclasses import dataclass


_WHITESPACE_WORD = re.compile(r"\S+")


def position_limit(encoder_config) -> int | None:
    """The most tokens the encoder can embed, or None when it has no learned position limit we know of. Training
    checks `max_length` against it, and the pipeline cuts its inputs (and QA windows) to it."""
    positions = getattr(encoder_config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return None
    # RoBERTa-style encoders number positions from padding_idx + 1, so two of their embeddings are never used.
    if encoder_config.model_type in ("roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text"):
        positions -= (encoder_config.pad_token_id or 0) + 1
    return positions


def _is_punctuation(char: str) -> bool:
    """BERT's definition (its BasicTokenizer splits these off): Unicode punctuation, plus the ASCII symbols that are
    not letters, digits or spaces (`$`, `+`, `^`, ...)."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _split_punctuation(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The spans of `text[start:end]` (one whitespace word) with each punctuation character on its own."""
    pieces, piece_start = [], start
    for index in range(start, end):
        if _is_punctuation(text[index]):
            if piece_start < index:
                pieces.append((piece_start, index))
            pieces.append((index, index + 1))
            piece_start = index + 1
    if piece_start < end:
        pieces.append((piece_start, end))
    return pieces


def _whitespace_words(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in _WHITESPACE_WORD.finditer(text)]


def _punctuation_words(text: str) -> list[tuple[int, int]]:
    return [piece for start, end in _whitespace_words(text) for piece in _split_punctuation(text, start, end)]


# `word_splitting` value -> the character spans of a text's words. `configuration_multitask.WORD_SPLITTINGS` lists the
# same names (a test keeps them equal; the config file ships on its own and cannot import this one).
WORD_SPLITTERS = {"whitespace": _whitespace_words, "punctuation": _punctuation_words}


def split_words(text: str, word_splitting: str = "whitespace") -> list[tuple[int, int]]:
    """The `(start, end)` character spans of the words of `text` under `word_splitting`."""
    if word_splitting not in WORD_SPLITTERS:
        raise ValueError(
            f"Unknown word_splitting {word_splitting!r}. Allowed: {', '.join(WORD_SPLITTERS)} "
            "(whitespace: words are separated by spaces; punctuation: each punctuation character is a word as well)."
        )
    return WORD_SPLITTERS[word_splitting](text)


@dataclass
class _Normalized:
    """A text as the encoder reads it: its words joined by single spaces, and where each character came from."""

    text: str  # what the tokenizer sees
    source: list[int]  # model-text character -> character of the caller's text (-1 for an inserted space)
    word_of: list[int]  # model-text character -> word index (-1 for a space)
    words: list[tuple[int, int]]  # word -> its span in the caller's text


def _normalize(text: str, word_splitting: str) -> _Normalized:
    words = split_words(text, word_splitting)
    pieces, source, word_of = [], [], []
    for index, (start, end) in enumerate(words):
        if index:
            pieces.append(" ")
            source.append(-1)
            word_of.append(-1)
        pieces.append(text[start:end])
        source.extend(range(start, end))
        word_of.extend([index] * (end - start))
    return _Normalized("".join(pieces), source, word_of, words)


@dataclass
class Features:
    """The encoder inputs of one text (or text pair), with the alignment decoding and labelling need.

    Lists are per token, special tokens included, without padding.
    """

    input_ids: list[int]
    attention_mask: list[int]
    token_type_ids: list[int] | None
    word_ids: list[int | None]  # the word of the first text a token belongs to; None for special and pair tokens
    sequence_ids: list[int | None]  # 0 for the text, 1 for the pair, None for special tokens
    offsets: list[tuple[int, int] | None]  # a token's character span in its own input text; None for special tokens
    words: list[tuple[int, int]]  # each word of the first text: its character span in that text
    full_length: int  # tokens the input would take without truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.input_ids)

    @property
    def words_kept(self) -> int:
        """How many words of the first text still have a token after truncation (those past the cut are lost)."""
        kept = [word for word in self.word_ids if word is not None]
        return max(kept) + 1 if kept else 0

    def model_inputs(self) -> dict[str, list[int]]:
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs


def _token_alignment(normalized: _Normalized, start: int, end: int) -> tuple[int | None, tuple[int, int] | None]:
    """The word and the caller's-text span of a token covering model-text characters `[start, end)`.

    Byte-level BPE may leave the leading space in a token's span (`"Ġboston"` without `trim_offsets`), so the token's
    word is that of its first non-space character; a token of spaces only (`"Ġ"`, `"▁"`) belongs to no word.
    """
    content = [index for index in range(start, end) if normalized.word_of[index] >= 0]
    if not content:
        return None, None
    return normalized.word_of[content[0]], (normalized.source[content[0]], normalized.source[content[-1]] + 1)


def featurize_batch(
    tokenizer,
    texts: list[str],
    text_pairs: list[str] | None = None,
    *,
    max_length: int | None = None,
    word_splitting: str = "whitespace",
) -> list[Features]:
    """Features of each text (and its pair), tokenised as the encoder reads them at training and serving time.

    Args:
        tokenizer: a fast tokenizer (character offsets are needed to align words).
        texts: raw texts; a word-level training example is its words joined by single spaces.
        text_pairs (*optional*): a second text per example (pair tasks). Its tokens get no word id.
        max_length (*optional*): truncate to this many tokens (longest-first for pairs); `None` keeps everything.
        word_splitting (*optional*, defaults to `"whitespace"`): what a word is; see `split_words`.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"featurize needs a fast tokenizer (it aligns words through character offsets); got "
            f"{type(tokenizer).__name__}. Load the tokenizer with AutoTokenizer, which returns a fast one."
        )
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise ValueError(f"Got {len(texts)} texts but {len(text_pairs)} text pairs; give one pair per text.")
    firsts = [_normalize(text, word_splitting) for text in texts]
    seconds = None if text_pairs is None else [_normalize(pair, word_splitting) for pair in text_pairs]
    model_texts = [normalized.text for normalized in firsts]
    model_pairs = None if seconds is None else [normalized.text for normalized in seconds]

    full = tokenizer(model_texts, model_pairs, truncation=False, return_offsets_mapping=True)
    lengths = [len(ids) for ids in full["input_ids"]]
    # (encoding, row) per example: the full one, or a truncated one for the examples longer than max_length.
    rows = [(full, index) for index in range(len(texts))]
    too_long = [index for index, length in enumerate(lengths) if max_length is not None and length > max_length]
    if too_long:
        cut = tokenizer(
            [model_texts[index] for index in too_long],
            None if model_pairs is None else [model_pairs[index] for index in too_long],
            truncation=True,
            max_length=max_length,
            return_offsets_mapping=True,
        )
        for row, index in enumerate(too_long):
            rows[index] = (cut, row)

    features = []
    for index, (first, (encoding, row)) in enumerate(zip(firsts, rows, strict=True)):
        sequence_ids = encoding.sequence_ids(row)
        word_ids, offsets = [], []
        for sequence, (start, end) in zip(sequence_ids, encoding["offset_mapping"][row], strict=True):
            normalized = first if sequence == 0 else (seconds[index] if sequence == 1 else None)
            word, span = (None, None) if normalized is None else _token_alignment(normalized, start, end)
            word_ids.append(word if sequence == 0 else None)
            offsets.append(span)
        features.append(
            Features(
                input_ids=list(encoding["input_ids"][row]),
                attention_mask=list(encoding["attention_mask"][row]),
                token_type_ids=list(encoding["token_type_ids"][row]) if "token_type_ids" in encoding else None,
                word_ids=word_ids,
                sequence_ids=sequence_ids,
                offsets=offsets,
                words=first.words,
                full_length=lengths[index],
            )
        )
    return features


def featurize(
    tokenizer,
    text: str,
    text_pair: str | None = None,
    *,
    max_length: int | None = None,
    word_splitting: str = "whitespace",
) -> Features:
    """`featurize_batch` for one text (or text pair)."""
    pairs = None if text_pair is None else [text_pair]
    return featurize_batch(tokenizer, [text], pairs, max_length=max_length, word_splitting=word_splitting)[0]


__all__ = ["Features", "WORD_SPLITTERS", "featurize", "featurize_batch", "split_words"]
