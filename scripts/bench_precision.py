#!/usr/bin/env python3
"""Accuracy cost and speed of the native core's reduced precision (docs/precision.md).

Usage: bench_precision.py [--model DIR] [--data CSV] [--exclude CSV] [--limit N] [--threads N] [--json OUT]

For fp32, bf16 and int8 it reports, on labelled held-out texts: accuracy, agreement of the predicted label with
fp32, and the largest and mean |logit - fp32 logit|; and the median wall and CPU time of one classify call on 32
texts of exactly 128 tokens (tokenization included; on `--latency-model`, default the model itself when its max_seq_len
allows 128 tokens, else .fixtures/minilm_lora: the same encoder shapes).

Without `--data`, the model's golden texts are the data and the fp32 torch golden labels their labels (so accuracy
there is agreement with torch fp32). `--data` reads `--text-column` / `--label-column` of a CSV; `--exclude` drops
rows whose text appears in another CSV (the model's training file), so only held-out rows are scored.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lorakit import native
from lorakit.golden import read_golden

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / ".fixtures" / "minilm_lora"
PRECISIONS = ("fp32", "bf16", "int8")
WORDS = ("account", "transfer", "card", "pending", "refund", "balance", "payment", "exchange", "limit", "verify")


def read_rows(path: Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {text_column, label_column} - set(reader.fieldnames or [])
        if missing:
            sys.exit(f"{path}: no column {sorted(missing)} (header {reader.fieldnames})")
        return [(r[text_column], r[label_column]) for r in reader if r[text_column].strip()]


def held_out(args: argparse.Namespace) -> tuple[list[str], list[str], str]:
    """Texts, their labels and a description of where they came from."""
    if args.data is None:
        golden = read_golden(args.model)
        labels = native.Model.load(args.model, threads=args.threads).task_info()["labels"]
        truth = [labels[i] for i in np.asarray(golden.logits).argmax(1)]
        return list(golden.texts), truth, f"{args.model.name} golden texts (labels: torch fp32 argmax)"
    rows = read_rows(args.data, args.text_column, args.label_column)
    source = f"{args.data}"
    if args.exclude is not None:
        seen = {text for text, _ in read_rows(args.exclude, args.text_column, args.label_column)}
        rows = [r for r in rows if r[0] not in seen]
        source += f" minus the {len(seen)} texts of {args.exclude}"
    random.Random(args.seed).shuffle(rows)
    rows = rows[: args.limit]
    return [t for t, _ in rows], [label for _, label in rows], f"{len(rows)} rows of {source} (seed {args.seed})"


def exact_texts(model: Any, batch: int, seq_len: int) -> list[str]:
    texts = [" ".join(WORDS[(row + i) % len(WORDS)] for i in range(seq_len - 2)) for row in range(batch)]
    lengths = {int(sum(m)) for m in model.tokenize(texts)["attention_mask"]}
    if lengths != {seq_len}:
        sys.exit(f"latency texts tokenize to {sorted(lengths)} tokens, expected {seq_len}")
    return texts


def latency_ms(model: Any, texts: list[str], repeats: int) -> tuple[float, float]:
    """Median wall time and median process CPU time (all threads) of one call, in ms. CPU time is the steadier
    figure on a machine that other work shares."""
    for _ in range(2):
        model.classify(texts)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        model.classify(texts)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def classify_all(model: Any, texts: list[str], batch: int = 64) -> np.ndarray:
    return np.concatenate([model.classify(texts[i : i + batch]).logits for i in range(0, len(texts), batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path(os.environ.get("LORAKIT_PRECISION_MODEL", FIXTURE)))
    parser.add_argument("--data", type=Path)
    parser.add_argument("--exclude", type=Path)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=77)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-model", type=Path)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, dest="json_out")
    args = parser.parse_args()

    texts, truth, source = held_out(args)
    latency_dir = args.latency_model
    if latency_dir is None:
        fits = json.loads((args.model / "lorakit.json").read_text())["max_seq_len"] >= 128
        latency_dir = args.model if fits else FIXTURE
    rows: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    for precision in PRECISIONS:
        model = native.Model.load(args.model, threads=args.threads, precision=precision)
        labels = model.task_info()["labels"]
        logits = classify_all(model, texts)
        predicted = [labels[i] for i in logits.argmax(1)]
        if reference is None:
            reference = logits
        diff = np.abs(logits - reference)
        timed = native.Model.load(latency_dir, threads=args.threads, precision=precision)
        wall_ms, cpu_ms = latency_ms(timed, exact_texts(timed, 32, 128), args.repeats)
        rows.append({
            "precision": precision,
            "texts": len(texts),
            "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
            "agreement_with_fp32": float(np.mean(logits.argmax(1) == reference.argmax(1))),
            "max_abs_logit_diff": float(diff.max()),
            "mean_abs_logit_diff": float(diff.mean()),
            "latency_32x128_ms": wall_ms,
            "cpu_32x128_ms": cpu_ms,
        })
    fp32_ms, fp32_cpu = rows[0]["latency_32x128_ms"], rows[0]["cpu_32x128_ms"]
    print(f"data: {source}\nmodel: {args.model}\nlatency model: {latency_dir} ({args.threads} threads)")
    print(f"{'precision':<10}{'accuracy':>10}{'agree fp32':>12}{'max |dlogit|':>14}{'mean |dlogit|':>15}"
          f"{'32x128 ms':>11}{'speedup':>9}{'cpu ms':>9}{'cpu gain':>10}")
    for r in rows:
        print(f"{r['precision']:<10}{r['accuracy']:>10.4f}{r['agreement_with_fp32']:>12.4f}"
              f"{r['max_abs_logit_diff']:>14.4f}{r['mean_abs_logit_diff']:>15.5f}{r['latency_32x128_ms']:>11.1f}"
              f"{fp32_ms / r['latency_32x128_ms']:>8.2f}x{r['cpu_32x128_ms']:>9.1f}"
              f"{fp32_cpu / r['cpu_32x128_ms']:>9.2f}x")
    if args.json_out:
        meta = {"data": source, "model": str(args.model), "latency_model": str(latency_dir),
                "threads": args.threads, "machine": platform.processor() or platform.machine()}
        args.json_out.write_text(json.dumps({"rows": rows, "settings": meta}, indent=2) + "\n")


if __name__ == "__main__":
    main()
