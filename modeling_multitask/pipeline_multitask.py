"""MultiTaskPipeline: text (or a text pair) in, predictions for one task or for every task from one encoder pass.

Shipped as remote code next to every checkpoint (its `config.json` names it under `custom_pipelines`), so that
`pipeline(model=repo_or_dir, trust_remote_code=True)` works where only torch and transformers are installed: this file
imports nothing else.
"""

import inspect

import torch
from transformers import Pipeline
from transformers.utils import logging

from .featurization import featurize, position_limit


logger = logging.get_logger(__name__)

PIPELINE_TASK = "multitask"
# What `preprocess` hands to `_forward` besides the model inputs; none of it goes into the model.
_META_KEYS = ("text", "text_pair", "tasks", "word_ids", "words", "tokens", "truncated")
_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def _input_shape(keys) -> str:
    """A type's input keys as an error message shows them: `{'question', 'context'}`."""
    return "{" + ", ".join(map(repr, keys)) + "}"


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

    Inputs: a string, a pair as `(text, text_pair)` or `{"text": ..., "text_pair": ...}`, an input a task type reads
    itself (`{"question": ..., "context": ...}` for question answering, `{"question": ..., "choices": [...]}` for
    multiple choice), or a list of those (texts batched with `batch_size=`); or as keywords, as transformers' (v4)
    question-answering pipeline took them: `pipe(question=..., context=...)`, a list under the first key for a batch
    (the other keys give lists of the same length, or one value the batch shares). Each input goes to the tasks that
    read its shape; a dict's keys that no task of the model reads (an `"id"`, gold `"answers"`) are ignored, as in
    transformers' pipelines, while an unknown keyword is an error. Over-long texts are truncated to what the encoder
    accepts, with a warning; long contexts are read in overlapping windows.

    Call arguments:
        task (`str`, *optional*):
            One task to predict (only its head runs). Left out, every task is predicted from one encoder pass and the
            result is `{task name: prediction}` (named, it is that task's prediction); when the checkpoint marks pair
            tasks (`text_pair_tasks`), a single text gets the single-text tasks and a pair the pair tasks.
        top_k (`int`, *optional*, defaults to 1):
            Above 1, also return the `top_k` best labels of a single-label task, or the `top_k` best answers of a
            question-answering task (spans over every window, each span once), under `"top_k"`, best first.
        threshold (`float`, *optional*, defaults to 0.5):
            For multi-label tasks, the sigmoid score a label needs to be predicted.
        return_fusion_weights (`bool`, *optional*, defaults to `False`):
            Add each task's AttentionFusion weight per token under `"fusion_weights"` (what the task attends to), for
            text inputs; question-answering and multiple-choice inputs, read in windows or one row per choice, get
            none (with a warning).
        max_length (`int`, *optional*):
            Truncate inputs to this many tokens (defaults to the encoder's limit). Question-answering windows and
            multiple-choice pairs default to the `max_length` their task was trained with (in the config), so the
            pipeline answers as evaluation scored; checkpoints from before it was recorded use the encoder's limit.
        doc_stride, max_answer_len, align_to_words (question answering, as transformers' pipeline names them):
            The tokens consecutive windows share (the task's `doc_stride`), the longest answer in tokens (the task's
            `max_answer_length`), and whether an answer is widened to whole words (`True`, as transformers does;
            `False` returns the raw span that evaluation scores).

    Predictions, as each task's type makes them (`TaskType.predict`, in `configuration_multitask/task_<type>.py`):
        - sequence classification: `{"label", "score"}` (+ `"top_k"`: a list of `{"label", "score"}`);
        - multi-label classification: `{"labels": [...], "scores": {label: score}}`;
        - regression: `{"value": float}`;
        - token classification: `{"entities": [{"entity", "start", "end", "word", "score"}]}`, grouped from BIO tags
          of the first sub-token of each word, with character offsets into the input text. A word is what it was in
          training: a whitespace-separated token (an entity never splits one), or with the checkpoint's
          `word_splitting: punctuation`, also each punctuation character (`"Boston!"` reads as `"Boston !"`);
        - question answering: `{"answer", "score", "start", "end"}`, character offsets into the context (+ `"top_k"`:
          a list of those);
        - multiple choice: `{"answer", "index", "score", "scores": [{"choice", "score"}]}`.

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

    def __call__(self, inputs=None, *args, **kwargs):
        # pipe(question=..., context=...), as transformers' (v4) question-answering pipeline took it
        if inputs is None:
            inputs = self._keyword_inputs(kwargs)
        if isinstance(inputs, list) and not inputs:
            return []
        # An input a type reads itself (a question and a context, a question and its choices) becomes several model
        # rows of its own, so it cannot share a padded batch with texts: those run one at a time, the texts batched.
        batched = kwargs.get("batch_size", self._batch_size or 1) > 1
        if not (isinstance(inputs, list) and batched and any(self._reads_own_input(item) for item in inputs)):
            return super().__call__(inputs, *args, **kwargs)
        results = [None] * len(inputs)
        texts = [index for index, item in enumerate(inputs) if not self._reads_own_input(item)]
        if texts:
            for index, result in zip(texts, super().__call__([inputs[i] for i in texts], *args, **kwargs)):
                results[index] = result
        for index, item in enumerate(inputs):
            if self._reads_own_input(item):
                results[index] = super().__call__(item, *args, **{**kwargs, "batch_size": 1})
        return results

    def _input_keywords(self) -> list[tuple[str, ...]]:
        """The input shapes this model reads, as keyword names: `("text", "text_pair")` and each own-input type's."""
        own = (view.definition.input_keys for view in self.model.config.task_views if view.definition.input_keys)
        return [("text", "text_pair"), *dict.fromkeys(own)]

    def _readable_input_keywords(self) -> str:
        """`_input_keywords` as error messages list them: `text=..., text_pair=..., or question=..., context=...`."""
        return ", or ".join(", ".join(f"{key}=..." for key in shape) for shape in self._input_keywords())

    def _read_keys(self, inputs: dict) -> set[str]:
        """The keys of a dict input that some task of this model reads; the others (an `"id"`, gold `"answers"` in a
        SQuAD-like line) are the caller's and are ignored, as transformers' pipelines ignore them."""
        return set(inputs) & {key for shape in self._input_keywords() for key in shape}

    def _reads_own_input(self, item) -> bool:
        """Whether a pipeline input is for a type that reads it itself (see `TaskType.input_keys`), not a text."""
        if not isinstance(item, dict):
            return False
        read = self._read_keys(item)
        return not (read and read <= {"text", "text_pair"})

    def _keyword_inputs(self, kwargs: dict):
        """The input given as keywords (popped from `kwargs`): `text=` (and `text_pair=`), or the keys a task type
        reads. A list under the first key (`question=[...]`) makes a batch: the other keys give a list of the same
        length, or one value that every input of the batch shares (one context for several questions)."""
        shapes = self._input_keywords()
        given = {
            key: kwargs.pop(key) for key in dict.fromkeys(key for shape in shapes for key in shape) if key in kwargs
        }
        if not given:
            parameters = inspect.signature(self._sanitize_parameters).parameters.values()
            options = {p.name for p in parameters if p.kind != p.VAR_KEYWORD} | {"batch_size", "num_workers"}
            unread = sorted(set(kwargs) - options)
            raise ValueError(
                f"No input{f' this model reads (got {unread})' if unread else ''}: pass a text, a list of texts, or "
                f"keywords {self._readable_input_keywords()}."
            )
        lead = next(iter(given))
        if not isinstance(given[lead], (list, tuple)):
            return given
        size = len(given[lead])
        lists = {key: value for key, value in given.items() if isinstance(value, (list, tuple))}
        if any(len(value) != size for value in lists.values()):
            got = ", ".join(f"{key}: {len(value)}" for key, value in lists.items())
            raise ValueError(f"A batch given as keywords needs lists of one length; got {got} items.")
        return [
            {key: value[index] if key in lists else value for key, value in given.items()} for index in range(size)
        ]

    # ----------------------------------------------------------------------------------------------- parameters
    def _sanitize_parameters(
        self, task=None, top_k=None, threshold=None, return_fusion_weights=None, max_length=None, **unknown
    ):
        # Unlike a dict's extra keys (data the caller keeps with an input), keywords are call arguments: an unknown one
        # is most likely a typo (`contxt=`) and is refused, as Python refuses an unexpected keyword.
        # Options a task type takes itself (question answering's doc_stride, as transformers' pipeline names them).
        views = getattr(self.model.config, "task_views", ())  # a model of another kind is refused later
        declared = {name: view.definition for view in views for name in view.definition.pipeline_options}
        type_options = {name: unknown.pop(name) for name in list(unknown) if name in declared}
        if unknown:
            own = "".join(f", {name}" for name in declared)
            raise ValueError(
                f"Unknown argument {', '.join(map(repr, sorted(unknown)))}: this model reads inputs "
                f"{self._readable_input_keywords()}, and takes the options task, top_k, threshold, return_fusion_weights"
                f"{own} and max_length."
            )
        preprocess, forward, postprocess = {}, {}, {}
        for name, value in type_options.items():
            declared[name].check_pipeline_option(name, value)
        if type_options:
            preprocess["options"] = postprocess["options"] = type_options
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
        elif isinstance(inputs, dict) and "text" in inputs:  # routed here by its read keys (`_reads_own_input`)
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
        # Types that read inputs of their own (a question and a context, say) are served by `_preprocess_own`.
        names = [view.name for view in self.model.config.task_views if view.definition.input_keys is None]
        if not names:
            shapes = [
                f"{view.name}: {_input_shape(view.definition.input_keys)}" for view in self.model.config.task_views
            ]
            raise ValueError(
                f"No task of this model reads text; pass a dict with its task's keys ({'; '.join(shapes)})."
            )
        if task is not None and task not in names:
            keys = self.model.config.task(task).definition.input_keys
            raise ValueError(f"Task {task!r} reads {_input_shape(keys)}, not text: pass a dict with those keys.")
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
        # The encoder's position limit as training counts it (a RoBERTa takes 2 fewer tokens than its position
        # embeddings), for tokenizers saved without a model_max_length.
        limits = [
            position_limit(self.model.config.encoder_config),
            self.tokenizer.model_max_length,
            max_length,
        ]
        return min(limit for limit in limits if isinstance(limit, int) and limit > 0)

    def _own_input_tasks(self, inputs, task) -> list[str]:
        """The tasks whose type reads this input's keys itself (`TaskType.input_keys`), e.g. question answering's
        `{"question", "context"}`, matched on the keys some task reads (`_read_keys`); empty for text inputs."""
        if not self._reads_own_input(inputs):
            return []
        read = self._read_keys(inputs)
        views = [view for view in self.model.config.task_views if view.definition.input_keys is not None]
        fitting = [view for view in views if set(view.definition.input_keys) == read]
        if task is not None:
            fitting = [view for view in fitting if view.name == task]
        # Of the tasks that read these keys, those that can read this input (a multiple-choice task reads questions
        # with as many choices as it was trained on): a model with a 4-choice and a 5-choice task serves each question
        # with the one that fits it.
        problems = [view.definition.pipeline_input_problem(view, inputs) for view in fitting]
        if fitting and all(problems):
            raise ValueError(" ".join(problems))
        fitting = [view.name for view, problem in zip(fitting, problems, strict=True) if problem is None]
        if not fitting:
            shapes = sorted({_input_shape(view.definition.input_keys) for view in views})
            ignored = sorted(set(inputs) - read)
            unread = f" (no task of this model reads {', '.join(map(repr, ignored))})" if ignored else ""
            raise ValueError(
                f"Cannot read input with keys {sorted(inputs)}{unread}{f' for task {task!r}' if task else ''}: this "
                f"model reads a string, a (text, text_pair) pair{''.join(f', or {shape}' for shape in shapes)}."
            )
        return fitting

    def _preprocess_own(self, inputs, tasks: list[str], max_length, options: dict) -> dict:
        """Model inputs per task, as its type makes them from the input (one row per window of a long context). Each
        task reads at the length it was trained and evaluated with, unless the call sets one."""
        own = {}
        for name in tasks:
            view = self.model.config.task(name)
            length = self._max_length(max_length if max_length is not None else view.max_length)
            model_inputs, example = view.definition.pipeline_features(view, inputs, self.tokenizer, length, options)
            if example.get("truncated"):
                logger.warning(f"Task {name!r}: input cut to {length} tokens (pass max_length= to read more of it).")
            own[name] = (model_inputs, example)
        return {"own": own}

    def preprocess(self, inputs, task=None, max_length=None, options=None):
        own_tasks = self._own_input_tasks(inputs, task)
        if own_tasks:
            return self._preprocess_own(inputs, own_tasks, max_length, options or {})
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
        if "own" in model_inputs:  # one forward per task, over the rows its type made
            result = {"own": {}}
            for name, (inputs, example) in model_inputs["own"].items():
                outputs = self.model(**inputs, task_ids=self.model.config.task_index(name))
                result["own"][name] = (outputs.task_logits[name], example)
            return result
        meta = {key: model_inputs.pop(key) for key in _META_KEYS}
        task_ids = None if task is None else self.model.config.task_index(task)
        if task_ids is None and self.model.config.num_tasks == 1:
            task_ids = 0
        # The tasks these inputs are for (every text task, or the single-text or pair ones), from one encoder pass; a
        # batch of inputs holds one list per input.
        wanted = meta["tasks"] if meta["tasks"] and isinstance(meta["tasks"][0], list) else [meta["tasks"]]
        tasks = list(dict.fromkeys(name for names in wanted for name in names)) if task_ids is None else None
        outputs = self.model(
            **model_inputs, task_ids=task_ids, tasks=tasks, output_fusion_weights=return_fusion_weights
        )
        result = {"attention_mask": model_inputs["attention_mask"]}
        for name, logits in outputs.task_logits.items():
            result[f"logits/{name}"] = logits
        for name, weights in (outputs.fusion_weights or {}).items():
            result[f"fusion/{name}"] = weights
        result.update(meta)
        return result

    # ----------------------------------------------------------------------------------------------- postprocess
    def postprocess(
        self, model_outputs, task=None, top_k=1, threshold=None, return_fusion_weights=False, options=None
    ):
        config = self.model.config
        if "own" in model_outputs:
            if return_fusion_weights:
                logger.warning_once(
                    f"return_fusion_weights applies to text inputs; {', '.join(model_outputs['own'])} read inputs of "
                    "their own (windows of a context, a row per choice) and return no fusion weights."
                )
            results = {}
            for name, (logits, example) in model_outputs["own"].items():
                view = config.task(name)
                results[name] = view.definition.predict(
                    view, logits, example, {"top_k": top_k, "threshold": threshold, **(options or {})}
                )
                if example.get("truncated"):
                    results[name]["truncated"] = True  # as a cut text's predictions are flagged
            return results if task is None else results[task]
        length = int(model_outputs["attention_mask"][0].sum())  # real tokens (padding sits after them)
        # What each task's type needs to turn its logits into a prediction (`TaskType.predict`).
        example = {key: model_outputs[key] for key in ("text", "text_pair", "words", "word_ids")}
        example["length"] = length
        options = {"top_k": top_k, "threshold": threshold}
        results = {}
        for name in model_outputs["tasks"]:
            view = config.task(name)
            result = view.definition.predict(view, model_outputs[f"logits/{name}"][0], example, options)
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


__all__ = ["MultiTaskPipeline", "PIPELINE_TASK"]
