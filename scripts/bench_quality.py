#!/usr/bin/env python3
"""Quality benchmark: LoRA vs full fine-tuning with `lorakit train`'s own defaults on every dataset of shared/data.

For each dataset and mode, one `lorakit train` in its own process (the pipeline's one split, the same for both
modes), then from the exported model directory: the task metric on validation and test, the trainable share of
parameters, train seconds, the training process's peak RSS, `lorakit verify`, LoRA's gap to full in points, and the
dataset's extras (clinc150: out-of-scope recall of needs_review; jailbreak: benign false-positive rate; wnut17 and
stsb: their dev files). Prints one table and the targets (met / MISSED); --json and --report DIR write the rows,
DIR/quality.md and PNG plots. docs/quality.md explains every number.

Datasets: banking77, clinc150, jailbreak_classification, mmlu_pro (MiniLM), mmlu_pro_generative (gemma-3-270m, LoRA
only), presidio_synth_pii, wnut17, stsb. Training knobs left unset keep lorakit's defaults.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from quality_datasets import DATASETS, MODES, DatasetSpec, Prepared, select  # noqa: E402
from quality_metrics import DEFAULT_OOS_THRESHOLD, add_gaps, evaluate_targets  # noqa: E402
from quality_report import number, table, targets_text, write_markdown, write_plots  # noqa: E402
from quality_runs import run_one, stop_on_sigterm, train_command, unsupported_row  # noqa: E402

DEFAULT_DATA_ROOT = ROOT.parent / "shared" / "data"
KNOBS = ("epochs", "batch_size", "max_seq_len", "r", "lora_alpha", "seed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", help=f"comma-separated (default: all; --quick leaves out mmlu_pro_generative "
                        f"unless named): {', '.join(DATASETS)}")
    parser.add_argument("--modes", default="lora,full", help="comma-separated: lora, full, qlora (LoRA on a 4-bit "
                        "base), weighted (LoRA, class-weighted loss) (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny subsets and one epoch (minutes; the "
                        "numbers mean nothing)")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                        help="folder holding one sub-folder per dataset (default: ../shared/data of the repo)")
    parser.add_argument("--work", type=Path, help="keep converted data, model directories and logs here "
                        "(default: a temporary folder, removed at the end)")
    parser.add_argument("--json", type=Path, help="write the rows and target checks as JSON here")
    parser.add_argument("--report", type=Path, help="write DIR/quality.md and PNG plots here")
    parser.add_argument("--dry-run", action="store_true", help="convert the data and print the training commands; "
                        "train nothing")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="JSON", help="train nothing: combine the rows of "
                        "earlier --json files into one table, --json and --report (a later file's row replaces an "
                        "earlier one of the same dataset and mode)")
    parser.add_argument("--oos-threshold", type=float, default=DEFAULT_OOS_THRESHOLD,
                        help="clinc150: the review threshold used while the model's lorakit.json has no "
                        "calibration.review_threshold (default: %(default)s)")
    knobs = parser.add_argument_group("training knobs (unset: lorakit train's own default)")
    knobs.add_argument("--epochs", type=float)
    knobs.add_argument("--lora-learning-rate", type=float, help="learning rate of the LoRA runs")
    knobs.add_argument("--full-learning-rate", type=float, help="learning rate of the full fine-tuning runs")
    knobs.add_argument("--batch-size", type=int)
    knobs.add_argument("--max-seq-len", type=int)
    knobs.add_argument("--r", type=int, help="LoRA rank")
    knobs.add_argument("--lora-alpha", type=int)
    knobs.add_argument("--seed", type=int, help="seed of the split and of training")
    args = parser.parse_args(argv)
    try:
        args.specs = select(args.datasets, args.quick)
    except ValueError as exc:
        parser.error(str(exc))
    args.mode_list = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not args.mode_list or any(mode not in MODES for mode in args.mode_list):
        parser.error(f"--modes {args.modes!r}: choose from {', '.join(MODES)}")
    if not 0 <= args.oos_threshold <= 1:
        parser.error("--oos-threshold must be in [0, 1]")
    return args


def knobs_for(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    knobs = {name: getattr(args, name) for name in KNOBS}
    knobs["learning_rate"] = args.full_learning_rate if mode == "full" else args.lora_learning_rate
    return knobs


def prepare_all(args: argparse.Namespace, work: Path) -> dict[str, Prepared]:
    prepared: dict[str, Prepared] = {}
    for spec in args.specs:
        folder = args.data_root / spec.folder
        if not folder.is_dir():
            raise SystemExit(f"bench_quality: {folder}: dataset folder not found (pass --data-root or drop "
                             f"{spec.name} from --datasets)")
        try:
            prepared[spec.name] = spec.prepare(folder, work / "data", args.quick)
        except (OSError, ValueError, KeyError) as exc:
            raise SystemExit(f"bench_quality: {spec.name}: cannot convert {folder}: {exc}") from None
    return prepared


def summary(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return str(row["status"]) + (f": {row.get('error', '').splitlines()[0]}" if row.get("error") else "")
    return (f"{row['metric']} validation {number(row['validation'])} test {number(row['test'])}, "
            f"train {number(row['train_seconds'], 1)} s, peak {number(row['peak_rss_mb'], 0)} MB, "
            f"verify {'PASS' if row['verify_ok'] else 'FAIL'}")


def run_all(args: argparse.Namespace, work: Path, prepared: dict[str, Prepared]) -> list[dict[str, Any]]:
    plan: list[tuple[DatasetSpec, str]] = [(spec, mode) for spec in args.specs for mode in args.mode_list]
    rows = []
    for number_, (spec, mode) in enumerate(plan, start=1):
        reason = spec.why_unsupported(mode)
        if reason:
            rows.append(unsupported_row(spec, mode))
            print(f"[{number_}/{len(plan)}] {spec.name} {mode}: not supported ({reason})", flush=True)
            continue
        print(f"[{number_}/{len(plan)}] {spec.name} {mode}: training (log: {work / 'logs'}/{spec.name}_{mode}.log)",
              flush=True)
        row = run_one(spec, prepared[spec.name], mode, work, knobs_for(args, mode), args.quick, args.oos_threshold)
        print(f"[{number_}/{len(plan)}] {spec.name} {mode}: {summary(row)}", flush=True)
        rows.append(row)
    return rows


def git_commit() -> str:
    try:
        result = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return str(result.stdout).strip()


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    return {"quick": args.quick, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "commit": git_commit(), "command": " ".join(["scripts/bench_quality.py", *sys.argv[1:]]),
            "data_root": str(args.data_root), "cpus": os.cpu_count(), "python": platform.python_version(),
            "modes": ",".join(args.mode_list)}


def merged_rows(paths: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of earlier --json files, in dataset registry and mode order, and each file's metadata."""
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    metas = []
    for path in paths:
        try:
            run = json.loads(path.read_text("utf-8"))
            rows, meta = run["rows"], run["meta"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"bench_quality: --merge {path}: not a bench_quality --json file ({exc})") from None
        metas.append({"file": str(path), **meta})
        by_key |= {(row["dataset"], row["mode"]): row for row in rows}
    order = {name: i for i, name in enumerate(DATASETS)}
    rows = sorted(by_key.values(), key=lambda r: (order.get(r["dataset"], len(order)), MODES.index(r["mode"])
                                                  if r["mode"] in MODES else len(MODES)))
    return rows, metas


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    if args.merge:
        rows, runs = merged_rows(args.merge)
        args.specs = [DATASETS[name] for name in dict.fromkeys(row["dataset"] for row in rows) if name in DATASETS]
        args.mode_list = list(dict.fromkeys(row["mode"] for row in rows))
        args.quick = any(run.get("quick") for run in runs)
    scratch = None if args.work else tempfile.mkdtemp(prefix="lorakit-quality-")
    work = (args.work or Path(str(scratch))).absolute()
    try:
        prepared = prepare_all(args, work)  # --merge: only for the datasets' notes
        if args.dry_run:
            for spec in args.specs:
                for mode in args.mode_list:
                    reason = spec.why_unsupported(mode)
                    if reason:
                        print(f"# {spec.name} {mode}: not supported ({reason})")
                        continue
                    command = train_command(spec, prepared[spec.name], mode, work / "models" / f"{spec.name}_{mode}",
                                            knobs_for(args, mode), args.quick)
                    print(" ".join(["lorakit", *command[1:]]))
            if scratch is not None:
                print(f"# {work} is removed at exit: pass --work DIR to keep the converted files")
            return 0
        from lorakit.cli import quiet_libraries

        quiet_libraries()
        if not args.merge:
            rows = run_all(args, work, prepared)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    add_gaps(rows)
    checks = evaluate_targets(rows, {name: spec.target for name, spec in DATASETS.items()},
                              {name: spec.judged_on for name, spec in DATASETS.items()})
    print()
    if args.quick:
        print("QUICK SMOKE RUN: tiny subsets, one epoch; the numbers say nothing about quality")
    print(table(rows))
    print(targets_text(checks))
    meta = metadata(args) | ({"merged_runs": runs} if args.merge else {})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "targets": checks}, indent=2) + "\n", "utf-8")
        print(f"wrote {args.json}")
    if args.report:
        plots = write_plots(args.report, rows)
        notes = {name: item.notes for name, item in prepared.items()}
        print(f"wrote {write_markdown(args.report / 'quality.md', rows, checks, meta, notes, plots)}")
    broken = [row for row in rows if row["status"] == "failed" or row.get("verify_ok") is False]
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
