"""How peaked are a trained model's AttentionFusion weights? Statistics per task over a text file.

    python benchmarks/fusion_weights.py CHECKPOINT ../shared/data/snips/dev/seq.in
    python benchmarks/fusion_weights.py CHECKPOINT ../shared/data/stsb/dev.tsv --column sentence1 \
        --pair-column sentence2 --task stsb
    python benchmarks/fusion_weights.py CHECKPOINT ../shared/data/cola/dev.tsv --column 3 --task cola

TEXTS is a plain file with one text per line, or a `.tsv` read with quoting off (GLUE's format); `--column` names a
header column, or gives a 0-based index for a file without header. For each task it prints, over the real tokens:
  entropy      the weights' entropy divided by log(length): 1.0 is uniform attention (= mean pooling), 0 is one token;
  max weight   the largest weight of each example, beside 1/length (its value under uniform attention);
  token gate   length x weight, what token-level heads multiply each token by (1.0 everywhere = no change).
"""

import argparse
import csv
import sys

import torch
from transformers import AutoModel, AutoTokenizer


def load_checkpoint(checkpoint: str):
    """The model (in eval mode) and tokenizer of a trained checkpoint, through its shipped remote code."""
    model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
    return model, AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=True)


def load_fusion_model(checkpoint: str):
    """[`load_checkpoint`], exiting with status 2 and the reason if the model has no AttentionFusion."""
    model, tokenizer = load_checkpoint(checkpoint)
    if model.config.fusion is None:
        print(
            f"error: {checkpoint} has no AttentionFusion layer (it was trained with model.fusion=null).",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return model, tokenizer


def read_texts(path: str, column: str | None, pair_column: str | None) -> tuple[list[str], list[str] | None]:
    if not path.endswith(".tsv"):
        with open(path, encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle if line.strip()], None
    if column is None:
        raise SystemExit("error: a .tsv file needs --column (a header name, or a 0-based index without header).")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if column.isdigit():
        pick = [int(column)] + ([int(pair_column)] if pair_column else [])
    else:
        header, rows = rows[0], rows[1:]
        missing = [name for name in (column, pair_column) if name and name not in header]
        if missing:
            raise SystemExit(f"error: no column {missing[0]!r} in {path}; its columns are {header}.")
        pick = [header.index(column)] + ([header.index(pair_column)] if pair_column else [])
    texts = [row[pick[0]] for row in rows]
    return texts, ([row[pick[1]] for row in rows] if pair_column else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("texts")
    parser.add_argument("--column")
    parser.add_argument("--pair-column")
    parser.add_argument("--task", action="append", help="only these tasks (repeatable); default: every task")
    parser.add_argument("--limit", type=int, default=512, help="first N texts (default 512)")
    args = parser.parse_args(argv)

    model, tokenizer = load_fusion_model(args.checkpoint)
    texts, pairs = read_texts(args.texts, args.column, args.pair_column)
    texts, pairs = texts[: args.limit], pairs[: args.limit] if pairs else None
    tasks = args.task or model.config.task_names

    stats = {task: {"entropy": [], "max": [], "uniform": [], "gates": []} for task in tasks}
    for start in range(0, len(texts), 64):
        batch = [texts[start : start + 64]] + ([pairs[start : start + 64]] if pairs else [])
        encoded = tokenizer(*batch, padding=True, truncation=True, return_tensors="pt")
        mask = encoded["attention_mask"].bool()
        length = mask.sum(1).float()
        with torch.no_grad():
            weights = model(**encoded, output_fusion_weights=True).fusion_weights
        for task in tasks:
            w = weights[task].float()
            entropy = -(w.clamp_min(1e-12).log() * w).sum(1)
            stats[task]["entropy"].append(entropy / length.log().clamp_min(1e-6))
            stats[task]["max"].append(w.max(1).values)
            stats[task]["uniform"].append(1.0 / length)
            stats[task]["gates"].append((w * length[:, None])[mask])

    print(f"{len(texts)} texts from {args.texts}")
    print("| task | entropy / log(length) | max weight | 1 / length | token gate p5 / p50 / p95 |")
    print("|---|---|---|---|---|")
    for task, values in stats.items():
        gates = torch.cat(values["gates"])
        p5, p50, p95 = (gates.quantile(q).item() for q in (0.05, 0.5, 0.95))
        print(
            f"| {task} | {torch.cat(values['entropy']).mean():.3f} | {torch.cat(values['max']).mean():.3f} | "
            f"{torch.cat(values['uniform']).mean():.3f} | {p5:.2f} / {p50:.2f} / {p95:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
