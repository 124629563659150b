#!/usr/bin/env python3
"""Quality benchmark: LoRA vs full fine-tuning of the offline MiniLM on a labelled file (default banking77).

One stratified split (seed fixed) shared by both runs; prints one table and writes JSON with validation/test
metrics, trainable-parameter share, train time and the `lorakit verify` result of each exported model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from lorakit.cli import quiet_libraries  # noqa: E402
from lorakit.models import MINILM_ID, minilm_path  # noqa: E402
from lorakit.pipeline import DataSpec, train_and_export  # noqa: E402
from lorakit.train import TrainConfig  # noqa: E402
from lorakit.verify import format_report, verify_model  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "banking77" / "train.csv"


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    full = mode == "full"
    config = TrainConfig(
        base=str(minilm_path()), labels=[], full=full, epochs=args.epochs,
        learning_rate=args.full_lr if full else args.lora_lr, batch_size=args.batch_size,
        max_seq_len=args.max_seq_len, r=args.r, lora_alpha=2 * args.r, seed=args.seed,
    )
    data = DataSpec(args.data, args.text_column, args.label_column, seed=args.seed)
    model_dir = args.out / f"{args.data.parent.name}_minilm_{mode}"
    started = time.perf_counter()
    metrics = train_and_export(data, config, model_dir, MINILM_ID, onnx=False,
                               checkpoint_dir=args.out / f"run_{mode}")
    wall = time.perf_counter() - started
    report = verify_model(model_dir)
    print(format_report(report), flush=True)
    return {
        "mode": mode, "model_dir": str(model_dir), "learning_rate": config.lr(), "epochs": args.epochs,
        "max_seq_len": args.max_seq_len, "validation": metrics["validation"], "test": metrics["test"],
        "trainable_params": metrics["training"]["trainable_params"],
        "total_params": metrics["training"]["total_params"],
        "trainable_percent": metrics["training"]["trainable_percent"],
        "train_seconds": metrics["training"]["train_seconds"], "wall_seconds": round(wall, 1),
        "verify": {"ok": report["ok"], "backends": {name: {k: v for k, v in result.items() if k != "worst"}
                                                    for name, result in report["backends"].items()}},
    }


def table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'mode':<6} {'val acc':>8} {'val F1':>8} {'test acc':>8} {'test F1':>8} {'trainable':>10} "
              f"{'train s':>8} {'verify':>7}  max|diff| per backend")
    lines = [header, "-" * len(header)]
    for row in rows:
        diffs = ", ".join(f"{name} {result['max_abs_diff']:.1e}" for name, result in row["verify"]["backends"].items())
        lines.append(f"{row['mode']:<6} {row['validation']['accuracy']:>8.4f} {row['validation']['macro_f1']:>8.4f} "
                     f"{row['test']['accuracy']:>8.4f} {row['test']['macro_f1']:>8.4f} "
                     f"{row['trainable_percent']:>9.2f}% {row['train_seconds']:>8.0f} "
                     f"{'PASS' if row['verify']['ok'] else 'FAIL':>7}  {diffs}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="category")
    parser.add_argument("--modes", default="lora,full", help="comma-separated: lora, full")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lora-lr", type=float, default=2e-3)
    parser.add_argument("--full-lr", type=float, default=2e-4)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lorakit-bench-quality"))
    parser.add_argument("--json", type=Path, default=Path("bench_quality.json"))
    args = parser.parse_args()
    quiet_libraries()
    args.out = args.out.absolute()
    rows = [run_mode(mode.strip(), args) for mode in args.modes.split(",") if mode.strip()]
    print(table(rows))
    args.json.write_text(json.dumps({"data": str(args.data), "base": MINILM_ID, "runs": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if all(row["verify"]["ok"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
