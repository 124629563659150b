#!/usr/bin/env python3
"""STS-B dev Spearman of the untuned all-MiniLM-L6-v2 and of a LoRA trained on sts-train (EmbeddingConfig defaults).

Usage: bench_embedding.py [--data DIR] [--json PATH] [--quick] [--epochs N] [--no-progress]

Checkpoints are chosen on 10% of sts-train held out (seeded), so sts-dev is only ever scored, never selected on.
--quick: 256 training pairs, 200 dev pairs, one epoch (a smoke run, not a result).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from lorakit.embedding import EmbeddingConfig, evaluate_embedding, load_stsb, train_embedding  # noqa: E402
from lorakit.models import minilm_path  # noqa: E402

COLUMNS = ("spearman", "pearson", "auc_roc", "margin", "best_f1")


def table(rows: dict[str, dict[str, Any]], seconds: dict[str, float]) -> str:
    lines = [f"{'model':<22}" + "".join(f"{name:>10}" for name in COLUMNS) + f"{'train s':>10}"]
    for name, metrics in rows.items():
        cells = "".join(f"{metrics[key]:>10.4f}" if metrics[key] is not None else f"{'-':>10}" for key in COLUMNS)
        train = f"{seconds[name]:>10.1f}" if name in seconds else f"{'-':>10}"
        lines.append(f"{name:<22}{cells}{train}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "stsb",
                        help="folder with sts-train.csv and sts-dev.csv (the original STS-B files)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="smoke run on a small subset")
    parser.add_argument("--epochs", type=float, help="override EmbeddingConfig's default epochs")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()

    train_all, dev = load_stsb(args.data / "sts-train.csv"), load_stsb(args.data / "sts-dev.csv")
    random.Random(0).shuffle(train_all)
    held_out = len(train_all) // 10
    validation, train = train_all[:held_out], train_all[held_out:]
    config = EmbeddingConfig()
    if args.quick:
        train, validation, dev = train[:256], validation[:64], dev[:200]
        config.epochs = 1.0
    if args.epochs is not None:
        config.epochs = args.epochs
    base = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    max_len = 256  # all-MiniLM-L6-v2's sentence_bert_config.json; train_embedding resolves the same

    started = time.perf_counter()
    rows = {"MiniLM-L6 (untuned)": evaluate_embedding(AutoModel.from_pretrained(base), tokenizer, dev, max_len,
                                                      config.pooling, config.normalize)}
    base_eval_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bench-embedding-") as work:
        result = train_embedding(base, train, validation, config, Path(work), progress=not args.no_progress)
    name = f"MiniLM-L6 + LoRA r{config.r}"
    rows[name] = evaluate_embedding(result.model, result.tokenizer, dev, result.stats["max_seq_len"],
                                    config.pooling, config.normalize)
    print(f"\nSTS-B dev ({len(dev)} pairs); trained on {len(train)} sts-train pairs, {config.epochs:g} epoch(s), "
          f"{torch.get_num_threads()} threads")
    print(table(rows, {name: result.stats["train_seconds"]}))
    if args.json:
        report = {"benchmark": "stsb-dev", "quick": args.quick, "threads": torch.get_num_threads(),
                  "train_pairs": len(train), "validation_pairs": len(validation), "dev_pairs": len(dev),
                  "config": config.to_json(), "base_eval_seconds": round(base_eval_seconds, 2),
                  "results": rows, "train_stats": result.stats}
        args.json.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
