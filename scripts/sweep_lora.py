#!/usr/bin/env python3
"""LoRA rank and target sweep on banking77: r in 4, 8, 16, 32 with attention-only targets (query,key,value) and with
every linear layer (query,key,value,dense, lorakit's default for MiniLM), all on the pipeline's one split.

Each run is `lorakit train` in its own process with lorakit's defaults except --r and --target-modules (and any knob
passed here). Prints a table, writes --json and a --plot PNG: accuracy against trainable parameters (log x), one
marker series per target set, each point annotated with its r. LoRA alpha stays lorakit's default unless
--lora-alpha or --alpha-per-rank is given, so the adapter's scale alpha / r changes with r.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from quality_datasets import DATASETS  # noqa: E402
from quality_report import number  # noqa: E402
from quality_runs import run_one, stop_on_sigterm  # noqa: E402

DEFAULT_RANKS = "4,8,16,32"
DEFAULT_TARGETS = "query,key,value;query,key,value,dense"
MARKERS = ("o", "s", "^", "D", "v")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", default=DEFAULT_RANKS, help="comma-separated LoRA ranks (default: %(default)s)")
    parser.add_argument("--targets", default=DEFAULT_TARGETS, help="target sets separated by ';', modules by ',' "
                        "(default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: a tiny subset and one epoch")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data",
                        help="folder holding banking77/ (default: ../shared/data of the repo)")
    parser.add_argument("--work", type=Path, help="keep data, models and logs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    parser.add_argument("--plot", type=Path, help="write the accuracy vs trainable parameters PNG here")
    parser.add_argument("--no-verify", action="store_true", help="skip `lorakit verify` of each model")
    knobs = parser.add_argument_group("training knobs (unset: lorakit train's own default)")
    knobs.add_argument("--epochs", type=float)
    knobs.add_argument("--learning-rate", type=float)
    knobs.add_argument("--batch-size", type=int)
    knobs.add_argument("--max-seq-len", type=int)
    alpha = knobs.add_mutually_exclusive_group()
    alpha.add_argument("--lora-alpha", type=int, help="one alpha for every rank")
    alpha.add_argument("--alpha-per-rank", type=float, help="alpha = this x r (constant scale alpha / r)")
    knobs.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    try:
        args.rank_list = [int(value) for value in args.ranks.split(",") if value.strip()]
    except ValueError:
        parser.error(f"--ranks {args.ranks!r}: comma-separated integers")
    if not args.rank_list or min(args.rank_list) < 1:
        parser.error("--ranks: at least one rank, each >= 1")
    args.target_sets = [[name.strip() for name in group.split(",") if name.strip()]
                        for group in args.targets.split(";") if group.strip()]
    if not args.target_sets or any(not group for group in args.target_sets):
        parser.error(f"--targets {args.targets!r}: sets of module names, e.g. {DEFAULT_TARGETS}")
    return args


def alpha_for(args: argparse.Namespace, rank: int) -> int | None:
    per_rank: float | None = args.alpha_per_rank
    if per_rank is not None:
        return max(1, round(per_rank * rank))
    alpha: int | None = args.lora_alpha
    return alpha


def sweep(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    spec = DATASETS["banking77"]
    folder = args.data_root / spec.folder
    if not folder.is_dir():
        raise SystemExit(f"sweep_lora: {folder}: banking77 folder not found (pass --data-root)")
    prepared = spec.prepare(folder, work / "data", args.quick)
    plan = [(targets, rank) for targets in args.target_sets for rank in args.rank_list]
    rows = []
    for index, (targets, rank) in enumerate(plan, start=1):
        label = f"banking77_r{rank}_{'-'.join(targets)}"
        knobs = {"r": rank, "target_modules": targets, "lora_alpha": alpha_for(args, rank), "epochs": args.epochs,
                 "learning_rate": args.learning_rate, "batch_size": args.batch_size,
                 "max_seq_len": args.max_seq_len, "seed": args.seed}
        print(f"[{index}/{len(plan)}] r={rank} targets={','.join(targets)}: training", flush=True)
        row = run_one(spec, prepared, "lora", work, knobs, args.quick, label=label, check=not args.no_verify)
        row |= {"r": rank, "targets": ",".join(targets), "lora_alpha": knobs["lora_alpha"]}
        print(f"[{index}/{len(plan)}] r={rank} targets={','.join(targets)}: {row['status']} test accuracy "
              f"{number(row['test'])}", flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'targets':<26} {'r':>3} {'trainable':>10} {'train %':>8} {'val acc':>8} {'test acc':>8} "
              f"{'test F1':>8} {'train s':>8} {'peak MB':>8} {'verify':>6}")
    lines = [header, "-" * len(header)]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"{row['targets']:<26} {row['r']:>3} {row['status']}: {row.get('error', '')[:60]}")
            continue
        verify = "-" if row.get("verify_ok") is None else "PASS" if row["verify_ok"] else "FAIL"
        lines.append(f"{row['targets']:<26} {row['r']:>3} {row['trainable_params']:>10,} "
                     f"{number(row['trainable_percent'], 2):>8} {number(row['validation']):>8} "
                     f"{number(row['test']):>8} {number(row['extras'].get('test_macro_f1')):>8} "
                     f"{number(row['train_seconds'], 1):>8} {number(row['peak_rss_mb'], 0):>8} {verify:>6}")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, quick: bool) -> Path:
    """Test accuracy against trainable parameters (log x): one marker series per target set, r annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for index, targets in enumerate(dict.fromkeys(row["targets"] for row in rows)):
        points = sorted((row["trainable_params"], row["test"], row["r"]) for row in rows
                        if row["targets"] == targets and row["status"] == "ok")
        if not points:
            continue
        axis.plot([p[0] for p in points], [p[1] for p in points], marker=MARKERS[index % len(MARKERS)],
                  label=targets)
        for params, accuracy, rank in points:
            axis.annotate(f"r={rank}", (params, accuracy), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("trainable parameters (log scale)")
    axis.set_ylabel("test accuracy")
    axis.set_title("banking77: LoRA rank and targets" + (" (quick smoke run)" if quick else ""))
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(title="target modules")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    scratch = None if args.work else tempfile.mkdtemp(prefix="lorakit-sweep-")
    work = (args.work or Path(str(scratch))).absolute()
    try:
        from lorakit.cli import quiet_libraries

        quiet_libraries()
        rows = sweep(args, work)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    print()
    if args.quick:
        print("QUICK SMOKE RUN: tiny subset, one epoch; the numbers say nothing about quality")
    print(table(rows))
    if args.json:
        meta = {"quick": args.quick, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(["scripts/sweep_lora.py", *sys.argv[1:]]), "cpus": os.cpu_count()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", "utf-8")
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot(rows, args.plot, args.quick)}")
    return 1 if any(row["status"] != "ok" or row.get("verify_ok") is False for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
