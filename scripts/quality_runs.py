"""One benchmark run: `lorakit train` in its own process (its RSS high-water mark its own), then the trained
model directory read back (report/metrics.json, lorakit.json), checked with `lorakit verify`, and scored on the
dataset's extra files (dev file, out-of-scope texts).

Training goes through the CLI on purpose: the benchmark measures exactly what `lorakit train` does with its own
defaults; only the structural flags of a dataset (task, columns, group column, base) and the knobs a user passes
are added.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quality_datasets import MODE_FLAGS, QUICK, DatasetSpec, Prepared
from quality_metrics import DEFAULT_OOS_THRESHOLD, STRICT_PRECISION, benign_fpr, review_summary, review_threshold

ROOT = Path(__file__).resolve().parents[1]
PEAK_WRAPPER = Path(__file__).resolve().parent / "quality_peak.py"
LOG_TAIL = 15  # lines of a failed run's log shown


@dataclass
class Child:
    returncode: int
    peak_rss_mb: float  # the process's own RSS high-water mark (see quality_peak.py)
    peak_source: str  # "VmHWM" (exact), or "ru_maxrss" (includes the parent's size at fork) where VmHWM is missing
    wall_seconds: float


def child_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def stop_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so a benchmark that is stopped kills its running training first (run_measured)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def run_measured(target: Sequence[str], log: Path) -> Child:
    """Run the Python module (or .py file) `target[0]` with arguments `target[1:]` in its own process, output in
    `log`, and return its exit status, wall time and own peak RSS (written by quality_peak.py at its exit)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peak_file = log.with_suffix(".peak")
    peak_file.unlink(missing_ok=True)
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen([sys.executable, str(PEAK_WRAPPER), str(peak_file), *target], stdout=handle,
                                   stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C or SIGTERM: take the training down with us, never leave it running
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = round(time.perf_counter() - started, 1)
    try:
        peak_kb, source = int(peak_file.read_text("ascii").strip()), "VmHWM"
    except (OSError, ValueError):  # killed before its exit handler ran, or no /proc
        peak_kb, source = usage.ru_maxrss, "ru_maxrss"
    return Child(process.returncode, round(peak_kb / 1024, 1), source, wall)


def log_tail(log: Path, lines: int = LOG_TAIL) -> str:
    try:
        return "\n".join(log.read_text("utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def knob_flags(knobs: dict[str, Any]) -> list[str]:
    """`--flag value` for every knob set (None: lorakit's own default applies)."""
    flags: list[str] = []
    for name, value in knobs.items():
        if value is not None:
            flags += ["--" + name.replace("_", "-"), ",".join(value) if isinstance(value, list) else str(value)]
    return flags


def train_command(spec: DatasetSpec, prepared: Prepared, mode: str, output: Path, knobs: dict[str, Any],
                  quick: bool) -> list[str]:
    knobs = dict(knobs)
    if quick:
        knobs |= {name: value for name, value in QUICK.knobs(spec.task).items() if knobs.get(name) is None}
    return ["lorakit.cli", "train", "--task", spec.task, "--data", str(prepared.train_file),
            *prepared.flags, "--output", str(output), *MODE_FLAGS.get(mode, []), *knob_flags(knobs)]


def base_row(spec: DatasetSpec, mode: str) -> dict[str, Any]:
    return {"dataset": spec.name, "mode": mode, "task": spec.task, "metric": spec.metric, "judged_on": spec.judged_on,
            "base": spec.base or "all-MiniLM-L6-v2", "status": "ok", "validation": None, "test": None,
            "headline": None, "trainable_percent": None, "trainable_params": None, "train_seconds": None,
            "wall_seconds": None, "peak_rss_mb": None, "verify_ok": None, "extras": {}}


def unsupported_row(spec: DatasetSpec, mode: str) -> dict[str, Any]:
    return base_row(spec, mode) | {"status": "not supported", "reason": spec.why_unsupported(mode)}


def run_one(spec: DatasetSpec, prepared: Prepared, mode: str, work: Path, knobs: dict[str, Any], quick: bool,
            oos_threshold: float = DEFAULT_OOS_THRESHOLD, label: str | None = None,
            check: bool = True) -> dict[str, Any]:
    """Train, read back, verify (unless not `check`) and score one (dataset, mode); a failure is a row with its
    error, never a crash."""
    name = label or f"{spec.name}_{mode}"
    output = work / "models" / name
    log = work / "logs" / f"{name}.log"
    row = base_row(spec, mode)
    command = train_command(spec, prepared, mode, output, knobs, quick)
    row["command"] = " ".join(["lorakit", *command[1:]])
    child = run_measured(command, log)
    row |= {"wall_seconds": child.wall_seconds, "peak_rss_mb": child.peak_rss_mb, "peak_source": child.peak_source,
            "log": str(log)}
    if child.returncode != 0:
        tail = log_tail(log)
        last = next((line for line in reversed(tail.splitlines()) if line.strip()), "no output")
        return row | {"status": "failed", "error": f"lorakit train exited {child.returncode}: {last}\n{tail}"}
    try:
        row |= read_back(spec, output)
        row["extras"] |= score_extras(spec, prepared, output, oos_threshold)
        if spec.judged_on == "dev":
            row["headline"] = row["extras"].get(f"dev_{spec.metric}")
        if check:
            row |= verify(output)
    except Exception as exc:  # a broken model directory is this row's result, not the end of the benchmark
        return row | {"status": "failed", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"}
    return row


def read_back(spec: DatasetSpec, output: Path) -> dict[str, Any]:
    """Metrics and training figures the run recorded in the model directory."""
    metrics = json.loads((output / "report" / "metrics.json").read_text("utf-8"))
    training = metrics["training"]
    validation, test = metrics["validation"], metrics["test"]
    extras: dict[str, Any] = {}
    for part, values in (("validation", validation), ("test", test)):
        for key in ("macro_f1", "precision", "recall", "pearson"):
            if values.get(key) is not None and key != spec.metric:
                extras[f"{part}_{key}"] = values[key]
    if test.get("ece") is not None:
        extras["test_ece"] = test["ece"]
    calibration = test.get("calibration")
    if isinstance(calibration, dict):  # the review threshold applied to the test part
        extras["test_review_coverage"] = calibration.get("coverage")
        extras["test_accuracy_at_threshold"] = calibration.get("accuracy_at_threshold")
    labels = metrics.get("data", {}).get("labels") or []
    if "confusion_matrix" in test and "benign" in labels:
        extras["benign_fpr"] = benign_fpr(test["confusion_matrix"], labels)
    return {"validation": validation.get(spec.metric), "test": test.get(spec.metric),
            "headline": test.get(spec.metric), "trainable_percent": training.get("trainable_percent"),
            "trainable_params": training.get("trainable_params"), "total_params": training.get("total_params"),
            "train_seconds": training.get("train_seconds"), "epochs": training.get("epochs"),
            "train_examples": training.get("train_examples"), "validation_n": validation.get("n"),
            "test_n": test.get("n"), "extras": extras}


def score_extras(spec: DatasetSpec, prepared: Prepared, output: Path, oos_threshold: float) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if prepared.dev_file is not None:
        from lorakit.inference import evaluate_model_dir
        from lorakit.pipeline import DataSpec

        columns: dict[str, Any] = dict(prepared.dev_columns)
        dev = evaluate_model_dir(output, DataSpec(prepared.dev_file, **columns))
        for metric in dict.fromkeys((spec.metric, "accuracy", "macro_f1")):
            if dev.get(metric) is not None:
                extras[f"dev_{metric}"] = dev[metric]
        extras["dev_n"] = dev.get("n")
    if prepared.oos_file is not None:
        extras |= out_of_scope(prepared, output, oos_threshold)
    return extras


def top_probabilities(output: Path, texts: list[str]) -> tuple[list[float], list[bool] | None]:
    """The native core's top (calibrated) probability per text, and its needs_review flags when it reports them."""
    from lorakit.inference import predict

    results = predict(output, texts, "native", top_k=1)
    flags = [bool(r["needs_review"]) for r in results] if all("needs_review" in r for r in results) else None
    return [float(r["top"][0]["probability"]) for r in results], flags


def out_of_scope(prepared: Prepared, output: Path, fallback: float) -> dict[str, Any]:
    """OOS recall (out-of-scope texts flagged needs_review) and the in-scope test texts flagged alongside."""
    from lorakit.data import read_records

    manifest = json.loads((output / "lorakit.json").read_text("utf-8"))
    threshold, source = review_threshold(manifest, fallback)
    oos = [json.loads(line) for line in prepared.oos_file.read_text("utf-8").splitlines()  # type: ignore[union-attr]
           if line.strip()]
    split = json.loads((output / "report" / "split.json").read_text("utf-8"))
    records = read_records(prepared.train_file)
    text_column = prepared.flags[prepared.flags.index("--text-column") + 1]
    in_scope = [str(records[i][text_column]) for i in split["test"]]
    oos_top, oos_flags = top_probabilities(output, oos)
    in_top, in_flags = top_probabilities(output, in_scope)
    summary = review_summary(oos_top, in_top, threshold) | {"threshold_source": source}
    if oos_flags is not None and in_flags is not None:  # the runtime's own needs_review wins over the recomputation
        summary |= {"oos_recall": sum(oos_flags) / max(1, len(oos_flags)),
                    "in_scope_review_rate": sum(in_flags) / max(1, len(in_flags)),
                    "threshold_source": source + "; flags from the runtime's needs_review"}
    strict = strict_threshold(output, [records[i] for i in split["validation"]], text_column,
                              prepared.flags[prepared.flags.index("--label-column") + 1])
    strict_summary = review_summary(oos_top, in_top, strict)
    return summary | {f"strict_{key}": strict_summary[key]
                      for key in ("oos_recall", "in_scope_review_rate", "review_threshold")}


def strict_threshold(output: Path, validation: list[dict[str, Any]], text_column: str, label_column: str) -> float:
    """The review threshold training would choose for STRICT_PRECISION: lorakit's own rule on the validation
    part's calibrated probabilities (native core)."""
    import numpy as np

    from lorakit.calibration import choose_threshold
    from lorakit.inference import predict

    labels = json.loads((output / "lorakit.json").read_text("utf-8"))["labels"]
    results = predict(output, [str(row[text_column]) for row in validation], "native", top_k=len(labels))
    probabilities = np.zeros((len(results), len(labels)))
    for i, result in enumerate(results):
        for item in result["top"]:
            probabilities[i, labels.index(item["label"])] = item["probability"]
    truth = [labels.index(str(row[label_column])) for row in validation]
    return choose_threshold(probabilities, truth, STRICT_PRECISION).threshold


def verify(output: Path) -> dict[str, Any]:
    """`lorakit verify` of the exported directory: every installed backend against golden.safetensors."""
    from lorakit.verify import verify_model

    report = verify_model(output)
    backends = {name: ("not run" if result.get("not_run") else "ok" if result.get("ok") else "FAIL")
                for name, result in report["backends"].items()}
    diffs = {name: result["max_abs_diff"] for name, result in report["backends"].items()
             if isinstance(result.get("max_abs_diff"), (int, float))}
    return {"verify_ok": bool(report["ok"]), "verify": {"backends": backends, "max_abs_diff": diffs,
                                                        "checksums_ok": report["checksums"]["ok"]}}
