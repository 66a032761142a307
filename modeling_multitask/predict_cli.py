"""`multitask-predict CHECKPOINT_OR_REPO [TEXT ...] [--task NAME] [--file inputs.jsonl] [--explain] [--html out.html]`

Prints one JSON line per input: `{"text": ..., ["text_pair": ...,] "predictions": ...}`. With `--explain`, each task's
AttentionFusion weight per token is added to the predictions, drawn as a compact tokens x tasks view on stderr (so
stdout stays JSON lines), and with `--html` written as a self-contained heatmap page. The weights are those of texts
and text pairs: an input a task type reads itself (a question and a context) gets a note saying it has none.
"""

import argparse
import html
import json
import os
import sys
from pathlib import Path

from transformers import pipeline

from .hub import read_checkpoint_config
from .pipeline_multitask import PIPELINE_TASK, MultiTaskPipeline


BARS = " ▁▂▃▄▅▆▇█"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multitask-predict", description=__doc__.split("\n\n")[1])
    parser.add_argument("checkpoint", help="a checkpoint folder or a Hub repo id")
    parser.add_argument("texts", nargs="*", help="texts to predict (or use --file)")
    parser.add_argument("--task", default=None, help="predict one task (default: every task)")
    parser.add_argument(
        "--file",
        type=Path,
        default=None,
        help=(
            'JSON lines: a string, {"text": ..., "text_pair": ...}, or an input a task type reads, such as '
            '{"question": ..., "context": ...} (question answering) or {"question": ..., "choices": [...]} '
            "(multiple choice), per line; keys no task reads (an id) are printed back, not read"
        ),
    )
    parser.add_argument("--text-pair", default=None, help="second text for every TEXT (pair tasks)")
    parser.add_argument("--explain", action="store_true", help="show each task's AttentionFusion weight per token")
    parser.add_argument("--html", type=Path, default=None, help="write the --explain heatmap to this HTML file")
    parser.add_argument("--top-k", type=int, default=None, help="also list the k best labels of single-label tasks")
    parser.add_argument("--threshold", type=float, default=None, help="multi-label decision threshold (0.5)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=None, help="truncate inputs to this many tokens")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="needed for a Hub repo: run the pipeline code the repo ships (read it first). A local folder needs no "
        "flag: it runs with this installed version's model and pipeline code, and the .py files in the folder are "
        "never executed.",
    )
    return parser


def check_device(device: str) -> None:
    """Refuse a device this machine cannot use before the model is loaded (torch would fail with a traceback)."""
    import torch

    try:
        parsed = torch.device(int(device) if device.isdigit() else device)  # "0" is CUDA device 0, as in pipeline()
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a device: use cpu, cuda, cuda:1, mps ...") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {device}: this machine has no CUDA device (or torch was built without CUDA).")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(
                f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}."
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS (Apple GPU) is not available on this machine.")


def check_html_target(path: Path | None) -> None:
    """The heatmap is written after every prediction: a bad path must fail before any of them."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"--html {path} is a directory: give a file name, e.g. {path / 'explain.html'}.")
    if not path.parent.is_dir():
        raise ValueError(f"--html {path}: the folder {path.parent} does not exist; create it first.")


def read_inputs(args) -> list:
    inputs = [text if args.text_pair is None else {"text": text, "text_pair": args.text_pair} for text in args.texts]
    if args.file is not None:
        if args.file.is_dir():
            raise ValueError(f"--file {args.file} is a directory: give a JSON lines file.")
        if not args.file.is_file():
            raise FileNotFoundError(f"--file {args.file} does not exist.")
        try:
            text = args.file.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"--file {args.file} is not UTF-8 text ({error.reason} at byte {error.start}): save it as UTF-8."
            ) from None
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{args.file}:{number}: not JSON ({error.msg}); each line is a JSON string or "
                    '{"text": ..., "text_pair": ...}.'
                ) from None
            if not isinstance(item, (str, dict)):
                raise ValueError(
                    f"{args.file}:{number}: expected a string or an object (with 'text', or the keys a task reads, such "
                    f"as 'question' and 'context'), got {item!r}."
                )
            inputs.append(item)
    if not inputs:
        raise ValueError("Nothing to predict: give TEXT arguments or --file inputs.jsonl.")
    return inputs


def is_local_checkpoint(checkpoint: str) -> bool:
    """A folder (or what is clearly meant as one), as opposed to a Hub repo id."""
    return os.path.exists(checkpoint) or checkpoint.startswith((".", "/", "~"))


def load_pipeline(args):
    kwargs = {"device": args.device}
    if is_local_checkpoint(args.checkpoint):
        # Checked here, for an error that says what is wrong with the folder.
        read_checkpoint_config(os.path.expanduser(args.checkpoint))
        # This installed pipeline and, through the classes this package registers with AutoConfig / AutoModel, this
        # installed model code: nothing the folder holds is executed, so no opt-in is needed.
        kwargs["pipeline_class"] = MultiTaskPipeline
        kwargs["trust_remote_code"] = args.trust_remote_code
    elif not args.trust_remote_code:
        raise ValueError(
            f"{args.checkpoint!r} is a Hub repo: loading it runs the pipeline code it ships on this machine. Read it "
            f"at https://huggingface.co/{args.checkpoint} and pass --trust-remote-code, or download the repo and "
            "pass its local folder (which runs this installed version's code)."
        )
    else:
        kwargs["trust_remote_code"] = True  # a Hub repo brings its own pipeline code
    if args.dtype is not None:
        kwargs["dtype"] = args.dtype
    if args.revision is not None:
        kwargs["revision"] = args.revision
    return pipeline(PIPELINE_TASK, model=args.checkpoint, **kwargs)


def token_weights(predictions: dict) -> tuple[list[str], dict[str, list[float]]]:
    """Tokens and `{task: weight per token}` from `{task: prediction}` with `fusion_weights`."""
    tokens, weights = [], {}
    for task, prediction in predictions.items():
        entries = prediction.get("fusion_weights") or []
        tokens = tokens or [entry["token"] for entry in entries]
        weights[task] = [entry["weight"] for entry in entries]
    return tokens, weights


def input_label(item) -> str:
    """An input as the explain views title it: its text (`text || text_pair`), or the JSON of an input a task type
    reads itself."""
    if isinstance(item, str):
        return item
    if "text" in item:
        return item["text"] + (f" || {item['text_pair']}" if item.get("text_pair") else "")
    return json.dumps(item, ensure_ascii=False)


def no_weights_note(tasks) -> str:
    """Why an input has no token weights: the pipeline returns them for texts only (`return_fusion_weights`)."""
    return (
        "no token weights: --explain shows AttentionFusion weights for texts and text pairs only, and this input goes "
        f"to {', '.join(tasks)} as encoder rows of their own (windows of a context, one row per choice)"
    )


def terminal_view(text: str, tokens: list[str], weights: dict[str, list[float]]) -> str:
    """Tokens down, tasks across; each cell a bar scaled to that task's largest weight, and the weight."""
    if not tokens:
        return f"# {text}\n({no_weights_note(weights)})"
    width = max([len(token) for token in tokens] + [5])
    column = max([len(task) for task in weights] + [7])
    lines = [f"# {text}", " " * width + "  " + "  ".join(task.rjust(column) for task in weights)]
    for index, token in enumerate(tokens):
        cells = []
        for values in weights.values():
            peak = max(values) or 1.0
            bar = BARS[round(values[index] / peak * (len(BARS) - 1))]
            cells.append(f"{bar} {values[index]:.3f}".rjust(column))
        lines.append(token.ljust(width) + "  " + "  ".join(cells))
    return "\n".join(lines)


def html_heatmap(rows: list[tuple[str, list[str], dict[str, list[float]]]]) -> str:
    """A self-contained page: one tokens x tasks table per input (or the note of an input without token weights),
    cell colour = weight / the task's largest weight."""
    tables = []
    for text, tokens, weights in rows:
        if not tokens:
            tables.append(f"<h2>{html.escape(text)}</h2>\n<p>{html.escape(no_weights_note(weights))}.</p>")
            continue
        header = "".join(f"<th>{html.escape(task)}</th>" for task in weights)
        body = []
        for index, token in enumerate(tokens):
            cells = []
            for values in weights.values():
                alpha = values[index] / (max(values) or 1.0)
                cells.append(f'<td style="background: rgba(220, 60, 30, {alpha:.3f})">{values[index]:.3f}</td>')
            body.append(f"<tr><th class=token>{html.escape(token)}</th>{''.join(cells)}</tr>")
        tables.append(
            f"<h2>{html.escape(text)}</h2>\n<table><tr><th></th>{header}</tr>\n" + "\n".join(body) + "\n</table>"
        )
    style = (
        "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;margin-bottom:2em} "
        "td,th{border:1px solid #ddd;padding:2px 8px;text-align:right;font-size:13px} th.token{text-align:left}"
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=utf-8><title>AttentionFusion token weights</title>"
        f"<style>{style}</style></head><body>\n<h1>What each task attends to</h1>\n"
        "<p>AttentionFusion weight of every token for every task (a column sums to 1 over the tokens; colour is "
        "relative to the column's largest weight).</p>\n" + "\n".join(tables) + "\n</body></html>\n"
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.html is not None and not args.explain:
        args.explain = True  # the heatmap needs the weights
    try:
        check_device(args.device)
        check_html_target(args.html)
        inputs = read_inputs(args)
        pipe = load_pipeline(args)
        call = {"batch_size": args.batch_size}
        for key in ("task", "top_k", "threshold", "max_length"):
            if getattr(args, key) is not None:
                call[key] = getattr(args, key)
        if args.explain:
            call["return_fusion_weights"] = True
        results = pipe(inputs, **call)
    except (FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)  # as multitask-train and multitask-push print theirs
        return 2

    explained = []
    for item, predictions in zip(inputs, results, strict=True):
        record = {"text": item} if isinstance(item, str) else dict(item)
        record["predictions"] = predictions
        print(json.dumps(record, ensure_ascii=False), flush=True)
        if args.explain:
            by_task = {args.task: predictions} if args.task else predictions
            tokens, weights = token_weights(by_task)
            label = input_label(item)
            explained.append((label, tokens, weights))
            print(terminal_view(label, tokens, weights), file=sys.stderr)
    if args.html is not None:
        try:
            args.html.write_text(html_heatmap(explained), encoding="utf-8")
        except OSError as error:
            print(f"error: --html {args.html}: cannot write it ({error.strerror}).", file=sys.stderr)
            return 2
        print(f"heatmap written to {args.html}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
