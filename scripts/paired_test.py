#!/usr/bin/env python3
"""Is the accuracy gap between two classification models real? Both model directories must come from the same split
(same data file and seed): their report/split.json names the rows. Each model predicts the part (native core), and the
script prints both accuracies, the gap in points with a paired bootstrap 95 % interval, and the exact McNemar test on
the texts exactly one of the two gets right. Example: LoRA against full fine-tuning from scripts/bench_quality.py.

    scripts/paired_test.py WORK/models/mmlu_pro_lora WORK/models/mmlu_pro_full --part test
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from lorakit.data import Example, Split  # noqa: E402
from lorakit.errors import LorakitError  # noqa: E402

BOOTSTRAP_SAMPLES = 10_000


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: under "equally accurate", each discordant text is a fair coin."""
    from scipy.stats import binomtest

    discordant = only_a + only_b
    return 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)


def paired_summary(correct_a: Sequence[bool], correct_b: Sequence[bool], seed: int = 0) -> dict[str, Any]:
    """Accuracies, gap A - B in points, its paired bootstrap 95 % interval, the discordant counts and McNemar's p."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.size == 0:
        raise LorakitError(f"need two equally long, non-empty lists of outcomes (got {a.size} and {b.size})")
    rows = np.random.default_rng(seed).integers(0, a.size, size=(BOOTSTRAP_SAMPLES, a.size))
    gaps = 100.0 * (a[rows].mean(axis=1) - b[rows].mean(axis=1))
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return {"n": int(a.size), "accuracy_a": float(a.mean()), "accuracy_b": float(b.mean()),
            "gap_points": 100.0 * float(a.mean() - b.mean()),
            "gap_ci95": [float(np.percentile(gaps, 2.5)), float(np.percentile(gaps, 97.5))],
            "only_a_right": only_a, "only_b_right": only_b, "mcnemar_p": mcnemar_p(only_a, only_b)}


def split_of(model_dir: Path) -> Split:
    from lorakit.data import read_split

    path = model_dir / "report" / "split.json"
    if not path.is_file():
        raise LorakitError(f"{path}: missing; the model was not trained by `lorakit train` with a split")
    split = read_split(path)
    if not split.origin.get("path"):
        raise LorakitError(f"{path}: does not record its data file; train the model again with this lorakit")
    return split


def part_examples(model_a: Path, model_b: Path, part: str) -> list[Example]:
    """The labelled texts of `part`, after checking both models were trained on the same data and split and that
    the data file is unchanged since (retrain's own check)."""
    from lorakit.data import load_dataset
    from lorakit.retrain import original_data

    first, second = split_of(model_a), split_of(model_b)
    if first.origin.get("sha256") != second.origin.get("sha256") or getattr(first, part) != getattr(second, part):
        raise LorakitError(f"{model_a} and {model_b} were not trained on the same data and split; compare models "
                           "from one benchmark run")
    columns = first.origin["columns"]
    dataset = load_dataset(original_data(first.origin, model_a), columns["text"], columns["label"])
    return first.part(dataset, part)


def outcomes(model_dir: Path, examples: Sequence[Example]) -> list[bool]:
    from lorakit.inference import predict

    results = predict(model_dir, [example.text for example in examples], "native", top_k=1)
    return [result["top"][0]["label"] == example.label for result, example in zip(results, examples, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_a", type=Path, help="first model directory (the gap is A - B)")
    parser.add_argument("model_b", type=Path, help="second model directory, trained on the same split")
    parser.add_argument("--part", choices=["validation", "test"], default="test", help="part of the split "
                        "(default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the lines")
    args = parser.parse_args(argv)
    try:
        examples = part_examples(args.model_a, args.model_b, args.part)
        summary = paired_summary(outcomes(args.model_a, examples), outcomes(args.model_b, examples))
    except LorakitError as exc:
        print(f"paired_test: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary | {"part": args.part}, indent=2))
        return 0
    low, high = summary["gap_ci95"]
    print(f"{args.part}: {summary['n']} texts; A {summary['accuracy_a']:.4f}, B {summary['accuracy_b']:.4f}")
    print(f"A - B: {summary['gap_points']:+.2f} points (paired bootstrap 95 %: {low:+.2f} to {high:+.2f})")
    print(f"only A right: {summary['only_a_right']}, only B right: {summary['only_b_right']}, "
          f"exact McNemar p = {summary['mcnemar_p']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
