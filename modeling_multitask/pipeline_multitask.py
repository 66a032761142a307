"""MultiTaskPipeline: text (or a text pair) in, predictions for one task or for every task from one encoder pass.

Shipped as remote code next to every checkpoint (its `config.json` names it under `custom_pipelines`), so that
`pipeline(model=repo_or_dir, trust_remote_code=True)` works where only torch and transformers are installed: this file
imports nothing else.
"""

import torch
from transformers import Pipeline
from transformers.utils import logging

from .featurization import featurize


logger = logging.get_logger(__name__)

PIPELINE_TASK = "multitask"
# What `preprocess` hands to `_forward` besides the model inputs; none of it goes into the model.
_META_KEYS = ("text", "text_pair", "tasks", "word_ids", "words", "tokens", "truncated")
_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def _pair_tasks(config) -> set[str] | None:
    """Names of the tasks that read a text pair, or `None` when the checkpoint does not say.

    Read from an optional `text_pair_tasks` list in `config.json` (written by training when a task has a second text
    column); without it every task accepts either input.
    """
    names = getattr(config, "text_pair_tasks", None)
    return None if names is None else set(names)


class MultiTaskPipeline(Pipeline):
    r"""
    Predictions of a [`MultiTaskModel`] for a text or a text pair.

    Inputs: a string, a pair as `(text, text_pair)` or `{"text": ..., "text_pair": ...}`, or a list of those (batched
    with `batch_size=`). Over-long inputs are truncated to what the encoder accepts, with a warning.

    Call arguments:
        task (`str`, *optional*):
            One task to predict (only its head runs). Left out, every task is predicted from one encoder pass and the
            result is `{task name: prediction}` (named, it is that task's prediction); when the checkpoint marks pair tasks (`text_pair_tasks`), a single
            text gets the single-text tasks and a pair the pair tasks.
        top_k (`int`, *optional*, defaults to 1):
            For single-label tasks, also return the `top_k` best labels under `"top_k"` when above 1.
        threshold (`float`, *optional*, defaults to 0.5):
            For multi-label tasks, the sigmoid score a label needs to be predicted.
        return_fusion_weights (`bool`, *optional*, defaults to `False`):
            Add each task's AttentionFusion weight per token under `"fusion_weights"` (what the task attends to).
        max_length (`int`, *optional*):
            Truncate inputs to this many tokens (defaults to the encoder's limit).

    Predictions per task type:
        - sequence classification: `{"label", "score"}` (+ `"top_k"`: a list of `{"label", "score"}`);
        - multi-label classification: `{"labels": [...], "scores": {label: score}}`;
        - regression: `{"value": float}`;
        - token classification: `{"entities": [{"entity", "start", "end", "word", "score"}]}`, grouped from BIO tags
          of the first sub-token of each word, with character offsets into the input text. A word is what it was in
          training: a whitespace-separated token (an entity never splits one), or with the checkpoint's
          `word_splitting: punctuation`, also each punctuation character (`"Boston!"` reads as `"Boston !"`).

    The text is featurised by the same function as the training data (`featurization.featurize`): the encoder reads
    its words joined by single spaces.

    Example:

    ```python
    >>> from transformers import pipeline
    >>> pipe = pipeline(model="path/or/repo", trust_remote_code=True)
    >>> pipe("book a flight to boston", task="intent")
    {'label': 'book', 'score': 0.93}
    ```
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not hasattr(self.model.config, "tasks") or not getattr(self.model.config, "task_names", None):
            raise ValueError(
                f"MultiTaskPipeline needs a multi-task model (a config with `tasks`), got {type(self.model).__name__} "
                f"with a {type(self.model.config).__name__}."
            )
        if self.tokenizer is None or not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(
                "MultiTaskPipeline needs a fast tokenizer (for character offsets); save one next to the "
                "model or pass `tokenizer=`."
            )

    # ----------------------------------------------------------------------------------------------- parameters
    def _sanitize_parameters(self, task=None, top_k=None, threshold=None, return_fusion_weights=None, max_length=None):
        preprocess, forward, postprocess = {}, {}, {}
        if task is not None:
            self._check_task(task)
            preprocess["task"] = forward["task"] = postprocess["task"] = task
        if max_length is not None:
            if not isinstance(max_length, int) or max_length < 2:
                raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}.")
            preprocess["max_length"] = max_length
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
            postprocess["top_k"] = top_k
        if threshold is not None:
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold is a probability in [0, 1], got {threshold!r}.")
            postprocess["threshold"] = threshold
        if return_fusion_weights is not None:
            if return_fusion_weights and self.model.config.fusion is None:
                raise ValueError(
                    "return_fusion_weights=True needs a model with AttentionFusion, but this checkpoint "
                    "has `fusion: null` in its config; there are no task token weights to show."
                )
            forward["return_fusion_weights"] = postprocess["return_fusion_weights"] = bool(return_fusion_weights)
        return preprocess, forward, postprocess

    def _check_task(self, task):
        names = self.model.config.task_names
        if task not in names:
            raise ValueError(
                f"Unknown task {task!r}. This model predicts: {', '.join(names)}. "
                "Pass one of those as task=, or leave task out to predict every task."
            )

    # ----------------------------------------------------------------------------------------------- preprocess
    def _split_input(self, inputs) -> tuple[str, str | None]:
        if isinstance(inputs, str):
            text, text_pair = inputs, None
        elif isinstance(inputs, dict) and "text" in inputs and set(inputs) <= {"text", "text_pair"}:
            text, text_pair = inputs["text"], inputs.get("text_pair")
        elif isinstance(inputs, (tuple, list)) and len(inputs) == 2 and all(isinstance(x, str) for x in inputs):
            text, text_pair = inputs
        else:
            raise ValueError(
                f"Cannot read input {inputs!r}: pass a string, a pair as (text, text_pair) or "
                "{'text': ..., 'text_pair': ...}, or a list of those."
            )
        for name, value in (("text", text), ("text_pair", text_pair)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"Empty or non-string {name} {value!r}: every input needs some text to predict from.")
        return text, text_pair

    def _tasks_for(self, text_pair, task) -> list[str]:
        """The tasks to report for one input: the named one, or every task whose input kind (single/pair) matches."""
        pair_tasks = _pair_tasks(self.model.config)
        names = self.model.config.task_names
        if task is not None:
            if pair_tasks is not None and task in pair_tasks and text_pair is None:
                raise ValueError(
                    f"Task {task!r} compares two texts but got one: pass "
                    "{'text': ..., 'text_pair': ...} or a (text, text_pair) tuple."
                )
            if pair_tasks is not None and task not in pair_tasks and text_pair is not None:
                raise ValueError(f"Task {task!r} reads a single text but got a pair: pass just the text.")
            return [task]
        if pair_tasks is None:
            return names
        wanted = [name for name in names if (name in pair_tasks) == (text_pair is not None)]
        if not wanted:
            kind = "a text pair" if text_pair is not None else "a single text"
            raise ValueError(
                f"No task of this model reads {kind} (pair tasks: {sorted(pair_tasks)}; "
                f"all tasks: {', '.join(names)})."
            )
        return wanted

    def _max_length(self, max_length):
        limits = [
            getattr(self.model.config.encoder_config, "max_position_embeddings", None),
            self.tokenizer.model_max_length,
            max_length,
        ]
        return min(limit for limit in limits if isinstance(limit, int) and limit > 0)

    def preprocess(self, inputs, task=None, max_length=None):
        text, text_pair = self._split_input(inputs)
        tasks = self._tasks_for(text_pair, task)
        max_length = self._max_length(max_length)
        # The function training tokenises with, and the word splitting the model was trained with (checkpoints from
        # before the option have none: they were trained on whitespace words).
        features = featurize(
            self.tokenizer,
            text,
            text_pair,
            max_length=max_length,
            word_splitting=getattr(self.model.config, "word_splitting", "whitespace"),
        )
        if features.truncated:
            logger.warning(
                f"Input of {features.full_length} tokens truncated to {max_length} (the encoder's limit): "
                "predictions only see the start, and entities past the cut are not reported."
            )
        model_inputs = {key: torch.tensor([values]) for key, values in features.model_inputs().items()}
        model_inputs.update(
            text=text,
            text_pair=text_pair,
            tasks=tasks,
            word_ids=features.word_ids,
            words=features.words,
            tokens=self.tokenizer.convert_ids_to_tokens(features.input_ids),
            truncated=features.truncated,
        )
        return model_inputs

    # ----------------------------------------------------------------------------------------------- forward
    def _forward(self, model_inputs, task=None, return_fusion_weights=False):
        meta = {key: model_inputs.pop(key) for key in _META_KEYS}
        task_ids = None if task is None else self.model.config.task_index(task)
        if task_ids is None and self.model.config.num_tasks == 1:
            task_ids = 0
        outputs = self.model(**model_inputs, task_ids=task_ids, output_fusion_weights=return_fusion_weights)
        result = {"attention_mask": model_inputs["attention_mask"]}
        for name, logits in outputs.task_logits.items():
            result[f"logits/{name}"] = logits
        for name, weights in (outputs.fusion_weights or {}).items():
            result[f"fusion/{name}"] = weights
        result.update(meta)
        return result

    # ----------------------------------------------------------------------------------------------- postprocess
    def postprocess(self, model_outputs, task=None, top_k=1, threshold=0.5, return_fusion_weights=False):
        config = self.model.config
        tasks = model_outputs["tasks"]
        length = int(model_outputs["attention_mask"][0].sum())  # real tokens (padding sits after them)
        results = {}
        for name in tasks:
            spec = config.tasks[config.task_index(name)]
            logits = model_outputs[f"logits/{name}"][0].float()
            labels = spec["labels"] or []
            if spec["type"] == "sequence_classification":
                result = _single_label(logits, labels, top_k)
            elif spec["type"] == "multi_label_classification":
                result = _multi_label(logits, labels, threshold)
            elif spec["type"] == "regression":
                result = {"value": logits.reshape(-1)[0].item()}
            elif spec["type"] == "token_classification":
                result = {"entities": self._entities(name, logits[:length], labels, model_outputs)}
            else:
                raise ValueError(f"Task {name!r} has type {spec['type']!r}, which this pipeline cannot decode.")
            if return_fusion_weights:
                weights = model_outputs[f"fusion/{name}"][0, :length].float().tolist()
                result["fusion_weights"] = [
                    {"token": token, "weight": round(weight, 6)}
                    for token, weight in zip(model_outputs["tokens"][:length], weights, strict=True)
                ]
            results[name] = result
        if model_outputs["truncated"]:
            for result in results.values():
                result["truncated"] = True
        return results if task is None else results[task]

    def _entities(self, task, logits, labels, model_outputs) -> list[dict]:
        """Entity spans from the BIO tags of the first token of each word of the first text (words as in training:
        see `featurization`), decoded as the task's `decoding` says; each word's score is its tag's probability and
        its span is the whole word in the input text."""
        probabilities = logits.softmax(-1)  # (seq, num_labels)
        first_token = {}  # word index -> its first token
        for index, word in enumerate(model_outputs["word_ids"][: len(probabilities)]):
            if word is not None and word not in first_token:
                first_token[word] = index
        word_mask = torch.zeros(len(probabilities), dtype=torch.bool)
        word_mask[list(first_token.values())] = True
        tag_ids = self.model.decode_token_labels(task, logits[None], word_mask[None])[0]
        tagged = []
        for word, first in sorted(first_token.items()):
            label_id = int(tag_ids[first])
            start, end = model_outputs["words"][word]
            tagged.append((labels[label_id], probabilities[first, label_id].item(), start, end))
        return group_bio(tagged, model_outputs["text"])


def _single_label(logits, labels, top_k) -> dict:
    probabilities = logits.softmax(-1)
    order = probabilities.argsort(descending=True).tolist()
    result = {"label": labels[order[0]], "score": probabilities[order[0]].item()}
    if top_k > 1:
        result["top_k"] = [{"label": labels[i], "score": probabilities[i].item()} for i in order[:top_k]]
    return result


def _multi_label(logits, labels, threshold) -> dict:
    scores = torch.sigmoid(logits).tolist()
    return {
        "labels": [label for label, score in zip(labels, scores, strict=True) if score >= threshold],
        "scores": dict(zip(labels, scores, strict=True)),
    }


def group_bio(tagged_words, text: str) -> list[dict]:
    """Merge `(tag, score, start, end)` words into entity spans.

    `B-X` opens an entity of type X; `I-X` continues an open X entity (or opens one, as seqeval does for a stray
    `I-`); `O` closes it. Tags without a B-/I- prefix are their own type and merge while they repeat.
    """
    entities, current, scores = [], None, []

    def close():
        if current is not None:
            current["score"] = sum(scores) / len(scores)
            current["word"] = text[current["start"] : current["end"]]
            entities.append(current)

    for tag, score, start, end in tagged_words:
        prefix, _, kind = tag.partition("-") if tag[:2] in ("B-", "I-") else ("I", "", tag)
        if tag == "O":
            close()
            current, scores = None, []
            continue
        if prefix == "B" or current is None or current["entity"] != kind:
            close()
            current, scores = {"entity": kind, "start": start, "end": end}, []
        current["end"] = end
        scores.append(score)
    close()
    return entities


__all__ = ["MultiTaskPipeline", "PIPELINE_TASK", "group_bio"]
