#!/usr/bin/env python3
"""Generative classification on MMLU-Pro's 14 categories: the base zero-shot, the base few-shot and a LoRA adapter,
all on one split, plus native vs torch latency per document and their agreement.

Usage: bench_generative.py --out DIR [--per-label 30,4,20] [--epochs N] [--base gemma-3-270m] [--json PATH] [--quick]

1. A stratified subset of ../shared/data/mmlu_pro/mmlu_pro_pool.jsonl (question text, category label) is written to
   DIR/mmlu_subset.jsonl; `lorakit train --task generative` splits it ONCE (train/validation/test) and trains LoRA
   with its default settings except the epoch count.
2. Every figure is on the test part of that split (DIR/lora/report/split.json). Few-shot prompts hold one example
   per category: the shortest training row of each, so the test documents never appear in a prompt.
3. Each row of the table runs in its own process (`--worker`), at the same thread count: torch rows use the torch
   reference scorer (one prompt pass + KV cache), native rows the Rust core through the Python binding.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mmlu_pro" / "mmlu_pro_pool.jsonl"
ROWS = ("base zero-shot (torch)", "base few-shot (torch)", "LoRA (torch)", "LoRA (native)", "LoRA few-shot (native)")
WORKERS = {"base zero-shot (torch)": "base-zero", "base few-shot (torch)": "base-few", "LoRA (torch)": "lora-torch",
           "LoRA (native)": "lora-native", "LoRA few-shot (native)": "lora-native-few"}


def write_subset(data: Path, out: Path, per_label: int, seed: int) -> int:
    by_label: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    with data.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            by_label[row["category"]].append(row)
    rng = random.Random(seed)
    rows = []
    for label in sorted(by_label):
        for row in rng.sample(by_label[label], per_label):
            rows.append({"text": row["question"], "label": label, "question_id": row["question_id"]})
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def split_rows(subset: Path, model_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(test rows, one training row per label) from the split the trainer wrote."""
    rows = [json.loads(line) for line in subset.read_text("utf-8").splitlines() if line.strip()]
    split = json.loads((model_dir / "report" / "split.json").read_text("utf-8"))
    test = [rows[i] for i in split["test"]]
    shots: dict[str, dict[str, Any]] = {}
    for i in split["train"]:  # the shortest of each label, so that 14 examples fit max_seq_len
        label = rows[i]["label"]
        if label not in shots or len(rows[i]["text"]) < len(shots[label]["text"]):
            shots[label] = rows[i]
    return test, [shots[label] for label in sorted(shots)]


def first_per_label(rows: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    seen: collections.Counter[str] = collections.Counter()
    kept = []
    for row in rows:
        if seen[row["label"]] < count:
            seen[row["label"]] += 1
            kept.append(row)
    return kept


def worker(kind: str, model_dir: Path, rows_file: Path, threads: int) -> dict[str, Any]:
    """Predictions and per-document wall time of one backend, in this process alone."""
    sys.path.insert(0, str(ROOT / "python"))
    spec = json.loads(rows_file.read_text("utf-8"))
    few = kind.endswith("-few")
    test, shots = spec["fewshot_test" if few else "test"], spec["shots"]
    examples_pairs = [(s["text"], s["label"]) for s in shots]
    predictions: list[str] = []
    probabilities: list[list[float]] = []
    times: list[float] = []
    if kind.startswith("lora-native"):
        from lorakit.native import Model

        model = Model.load(str(model_dir), threads=threads)
        for row in test:
            start = time.perf_counter()
            if few:
                result = model.classify_fewshot(row["text"], examples_pairs)
            else:
                result = model.classify([row["text"]])
            times.append(time.perf_counter() - start)
            predictions.append(result.label_names[int(result.probabilities[0].argmax())])
            probabilities.append([float(p) for p in result.probabilities[0]])
        return {"predictions": predictions, "probabilities": probabilities, "times": times}

    import torch
    from transformers import AutoModelForCausalLM

    from lorakit.generative import classify
    from lorakit.generative_load import find_base, load_generative_merged, prompt_tokens_of
    from lorakit.manifest import read_manifest
    from lorakit.prompt import Example

    torch.set_num_threads(threads)
    manifest = read_manifest(model_dir)
    tokens = prompt_tokens_of(model_dir, manifest)
    if kind.startswith("base"):
        base = find_base(model_dir, manifest)
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()
    else:
        model = load_generative_merged(model_dir, manifest)
    examples = [Example(s["text"], s["label"]) for s in shots] if few else []
    for row in test:
        start = time.perf_counter()
        scores = classify(model, tokens, row["text"], manifest.labels, examples)
        times.append(time.perf_counter() - start)
        predictions.append(scores.label)
        probabilities.append([float(p) for p in scores.probabilities])
    return {"predictions": predictions, "probabilities": probabilities, "times": times}


def run_worker(kind: str, model_dir: Path, rows_file: Path, threads: int, out: Path, reuse: bool) -> dict[str, Any]:
    result_file = out / f"worker-{kind}.json"
    if not (reuse and result_file.exists() and result_file.stat().st_mtime > rows_file.stat().st_mtime):
        subprocess.run([sys.executable, __file__, "--worker", kind, "--model", str(model_dir), "--rows", str(rows_file),
                        "--threads", str(threads), "--result", str(result_file)], check=True)
    result: dict[str, Any] = json.loads(result_file.read_text("utf-8"))
    return result


def metrics(truth: list[str], predicted: list[str], labels: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="working directory (subset, model, worker results)")
    parser.add_argument("--data", type=Path, default=DATA, help="MMLU-Pro pool (JSON Lines)")
    parser.add_argument("--per-label", default="30,4,20", help="train,validation,test rows per category")
    parser.add_argument("--epochs", type=float, default=2.0, help="training epochs")
    parser.add_argument("--base", default="gemma-3-270m", help="base causal LM (a directory or gemma-3-270m)")
    parser.add_argument("--max-document-tokens", type=int, default=128, help="document tokens kept in the prompt")
    parser.add_argument("--fewshot-per-label", type=int, default=5,
                        help="test documents per category for the few-shot rows (their prompts are ~6x longer)")
    parser.add_argument("--threads", type=int, default=2, help="compute threads of every backend")
    parser.add_argument("--seed", type=int, default=42, help="subset sampling and split seed")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4,1,2 rows per category, 1 epoch")
    parser.add_argument("--reuse", action="store_true", help="keep a model already trained in OUT/lora and the "
                        "worker results newer than the test rows")
    parser.add_argument("--worker", choices=sorted(set(WORKERS.values())), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.result.write_text(json.dumps(worker(args.worker, args.model, args.rows, args.threads)), "utf-8")
        return 0
    if args.out is None:
        parser.error("--out is required")
    per_label = [4, 1, 2] if args.quick else [int(n) for n in args.per_label.split(",")]
    epochs = 1.0 if args.quick else args.epochs
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    subset, model_dir = out / "mmlu_subset.jsonl", out / "lora"
    total = sum(per_label)
    rows = write_subset(args.data, subset, total, args.seed)
    train_s = None
    if not (args.reuse and (model_dir / "lorakit.json").exists()):
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "lorakit"), "train", "--task", "generative", "--base",
                        args.base, "--data", str(subset), "--output", str(model_dir), "--epochs", str(epochs),
                        "--validation-fraction", f"{per_label[1] / total:.6f}",
                        "--test-fraction", f"{per_label[2] / total:.6f}", "--seed", str(args.seed),
                        "--max-document-tokens", str(args.max_document_tokens)], check=True)
        train_s = time.perf_counter() - start
    test, shots = split_rows(subset, model_dir)
    rows_file = out / "rows.json"
    fewshot_test = first_per_label(test, args.fewshot_per_label)
    spec = json.dumps({"test": test, "fewshot_test": fewshot_test, "shots": shots}, ensure_ascii=False)
    if not rows_file.exists() or rows_file.read_text("utf-8") != spec:  # results of other rows are stale
        rows_file.write_text(spec, "utf-8")
    manifest = json.loads((model_dir / "lorakit.json").read_text("utf-8"))
    labels = manifest["labels"]

    results: dict[str, dict[str, Any]] = {}
    for name in ROWS:
        raw = run_worker(WORKERS[name], model_dir, rows_file, args.threads, out, args.reuse)
        truth = [row["label"] for row in (fewshot_test if "few-shot" in name else test)]
        results[name] = {**metrics(truth, raw["predictions"], labels), "n": len(truth),
                         "median_ms_per_document": 1000 * statistics.median(raw["times"]), "raw": raw}
    torch_raw, native_raw = results["LoRA (torch)"]["raw"], results["LoRA (native)"]["raw"]
    same = sum(a == b for a, b in zip(torch_raw["predictions"], native_raw["predictions"], strict=True))
    prob_diff = max(abs(a - b) for ra, rb in zip(torch_raw["probabilities"], native_raw["probabilities"], strict=True)
                    for a, b in zip(ra, rb, strict=True))

    print(f"\nMMLU-Pro, 14 categories: {rows} rows sampled ({'/'.join(map(str, per_label))} per category "
          f"train/validation/test), test n={len(test)}, base {args.base}, {args.threads} threads"
          + (f", LoRA trained in {train_s:.0f} s" if train_s else ""))
    print(f"{'row':<26} {'n':>4} {'accuracy':>9} {'macro-F1':>9} {'ms/doc':>9}")
    for name in ROWS:
        r = results[name]
        print(f"{name:<26} {r['n']:>4} {r['accuracy']:>9.4f} {r['macro_f1']:>9.4f} {r['median_ms_per_document']:>9.1f}")
    ratio = results["LoRA (native)"]["median_ms_per_document"] / results["LoRA (torch)"]["median_ms_per_document"]
    print(f"native / torch latency per document: {ratio:.2f}x; same label on {same}/{len(test)} documents; "
          f"max |probability difference| {prob_diff:.2e}")
    if args.json:
        summary = {"dataset": str(args.data), "per_label": per_label, "test_n": len(test), "base": args.base,
                   "threads": args.threads, "train_seconds": train_s, "epochs": epochs,
                   "rows": {name: {k: v for k, v in r.items() if k != "raw"} for name, r in results.items()},
                   "native_vs_torch": {"latency_ratio": ratio, "same_label": same, "max_prob_diff": prob_diff}}
        args.json.write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
