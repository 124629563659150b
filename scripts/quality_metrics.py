"""The quality benchmark's arithmetic, apart from any training: out-of-scope review rates, the benign false-positive
rate, LoRA's gap to full fine-tuning, and the targets each run is judged against."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

GAP_LIMIT_POINTS = 1.0  # LoRA may trail full fine-tuning by at most this many points
DEFAULT_OOS_THRESHOLD = 0.5  # used only while the model's lorakit.json has no calibration.review_threshold
# clinc150 also reports OOS recall at the threshold this precision needs on the validation part: the default target
# (0.95) is met there at full coverage when in-scope accuracy exceeds it, and then flags nothing.
STRICT_PRECISION = 0.99


def review_threshold(manifest: dict[str, Any], fallback: float) -> tuple[float | None, str]:
    """The threshold needs_review uses and where it came from.

    lorakit.json `calibration.review_threshold` when the model carries one (null there means no text is ever
    flagged); otherwise `fallback` (the --oos-threshold argument), applied to the model's probabilities."""
    calibration = manifest.get("calibration")
    if isinstance(calibration, dict) and "review_threshold" in calibration:
        value = calibration["review_threshold"]
        return (None if value is None else float(value)), "lorakit.json calibration.review_threshold"
    return fallback, "--oos-threshold (the model has no calibration.review_threshold)"


def needs_review(top_probabilities: Sequence[float], threshold: float | None) -> list[bool]:
    """needs_review(text) = top calibrated probability < threshold; never, without a threshold."""
    return [threshold is not None and probability < threshold for probability in top_probabilities]


def rate(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def auroc(out_of_scope_top: Sequence[float], in_scope_top: Sequence[float]) -> float | None:
    """Probability that an out-of-scope text has a lower top probability than an in-scope one (ties count half):
    how well the top probability separates them at any threshold. None when either side is empty."""
    if not out_of_scope_top or not in_scope_top:
        return None
    from sklearn.metrics import roc_auc_score

    truth = [1] * len(out_of_scope_top) + [0] * len(in_scope_top)
    scores = [-p for p in out_of_scope_top] + [-p for p in in_scope_top]
    return float(roc_auc_score(truth, scores))


def review_summary(out_of_scope_top: Sequence[float], in_scope_top: Sequence[float],
                   threshold: float | None) -> dict[str, Any]:
    """oos_recall: out-of-scope texts flagged needs_review; in_scope_review_rate: in-scope test texts flagged too
    (the price of that recall); oos_auroc: the threshold-free separation."""
    return {"oos_recall": rate(needs_review(out_of_scope_top, threshold)),
            "in_scope_review_rate": rate(needs_review(in_scope_top, threshold)),
            "oos_auroc": auroc(out_of_scope_top, in_scope_top), "review_threshold": threshold,
            "oos_texts": len(out_of_scope_top), "in_scope_texts": len(in_scope_top)}


def benign_fpr(confusion: Sequence[Sequence[int]], labels: Sequence[str], benign: str = "benign") -> float | None:
    """Share of benign texts predicted as anything else (confusion rows: true label, columns: predicted)."""
    if benign not in labels:
        return None
    row = confusion[labels.index(benign)]
    total = sum(row)
    return (total - row[labels.index(benign)]) / total if total else None


def gap_points(lora: float | None, full: float | None) -> float | None:
    """LoRA minus full, in points (hundredths of the metric); None unless both exist."""
    if lora is None or full is None or not (math.isfinite(lora) and math.isfinite(full)):
        return None
    return round((lora - full) * 100, 2)


def add_gaps(rows: list[dict[str, Any]]) -> None:
    """Each LoRA and QLoRA row gets `gap_points` to the full row of its dataset (None when there is none)."""
    full = {row["dataset"]: row.get("headline") for row in rows if row["mode"] == "full" and row["status"] == "ok"}
    for row in rows:
        if row["mode"] in ("lora", "qlora"):
            row["gap_points"] = gap_points(row.get("headline"), full.get(row["dataset"]))


def evaluate_targets(rows: Sequence[dict[str, Any]], targets: dict[str, float | None],
                     judged_on: dict[str, str]) -> list[dict[str, Any]]:
    """One check per trained row with a target (headline >= target) and per LoRA row with a full row to compare
    (within GAP_LIMIT_POINTS). `margin_points`: how far above (+) or below (-) the line the value is."""
    checks: list[dict[str, Any]] = []
    for row in rows:
        target = targets.get(row["dataset"])
        value = row.get("headline")
        if row["status"] == "ok" and target is not None and value is not None:
            checks.append({"dataset": row["dataset"], "mode": row["mode"],
                           "check": f"{row['metric']} ({judged_on.get(row['dataset'], 'test')}) >= {target:g}",
                           "value": value, "target": target, "met": value >= target,
                           "margin_points": round((value - target) * 100, 2)})
    for row in rows:
        gap = row.get("gap_points")
        if row["mode"] == "lora" and row["status"] == "ok" and gap is not None:
            checks.append({"dataset": row["dataset"], "mode": "lora",
                           "check": f"LoRA within {GAP_LIMIT_POINTS:g} point of full", "value": gap,
                           "target": -GAP_LIMIT_POINTS, "met": gap >= -GAP_LIMIT_POINTS,
                           "margin_points": round(gap + GAP_LIMIT_POINTS, 2)})
    return checks


def status_word(met: bool) -> str:
    return "met" if met else "MISSED"
