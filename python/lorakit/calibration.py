"""Confidence calibration of a sequence classifier and the review threshold built on it (docs/calibration.md).

Temperature scaling: one scalar T, fitted on validation logits by minimising the negative log-likelihood of
softmax(logits / T); it changes probabilities, never the argmax. Expected calibration error (ECE) over 15
equal-width bins of the top probability. The review threshold is chosen on the calibrated validation
probabilities for a target precision: texts whose top probability falls below it go to a person.

numpy and scipy only: the runtimes and the CLI compute the same numbers from any backend's logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ECE_BINS = 15
TARGET_PRECISION = 0.95
# Below this share of validation items accepted, a "reached" target rests on a handful of texts: not reached.
MIN_COVERAGE = 0.1
TEMPERATURE_BOUNDS = (0.05, 20.0)
FITTED_ON = "validation"


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """log softmax(logits / temperature) per row, in float64, shifted by the row maximum."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return result


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) per row, in float64: the calibrated probabilities every runtime serves."""
    result: np.ndarray = np.exp(log_softmax(logits, temperature))
    return result


def nll(logits: np.ndarray, labels: Sequence[int] | np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under softmax(logits / temperature)."""
    ids = np.asarray(labels, dtype=np.int64)
    if len(ids) == 0:
        return float("nan")
    return float(-log_softmax(logits, temperature)[np.arange(len(ids)), ids].mean())


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float
    nll_before: float  # at T = 1
    nll_after: float  # at the fitted T
    warning: str | None = None  # the fit is not to be trusted as it stands (why, and what was done)


def fit_temperature(logits: np.ndarray, labels: Sequence[int] | np.ndarray,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> TemperatureFit:
    """The T in `bounds` minimising the NLL of softmax(logits / T), searched over log T (bounded Brent: the same
    inputs always give the same T). Validation without a single error has no finite optimum (the NLL falls as
    T -> 0): T stays 1 with a warning."""
    from scipy.optimize import minimize_scalar  # type: ignore[import-untyped]

    values = np.asarray(logits, dtype=np.float64)
    ids = np.asarray(labels, dtype=np.int64)
    check_logits(values, ids)
    before = nll(values, ids)
    if bool((values.argmax(axis=1) == ids).all()):
        return TemperatureFit(1.0, before, before, f"every one of the {len(ids)} validation texts is classified "
                              "right, so no temperature can be fitted; kept T = 1")
    low, high = (math.log(bound) for bound in bounds)
    found = minimize_scalar(lambda log_t: nll(values, ids, math.exp(log_t)), bounds=(low, high), method="bounded",
                            options={"xatol": 1e-6})
    temperature = float(math.exp(found.x))
    after = nll(values, ids, temperature)
    if after > before:  # the bounded search missed: T = 1 is never worse than what it found
        temperature, after = 1.0, before
    warning = None
    if min(abs(found.x - low), abs(found.x - high)) < 1e-3:
        warning = (f"the fitted temperature {temperature:.3g} is at the bound of [{bounds[0]:g}, {bounds[1]:g}]; "
                   "validation is too small or too one-sided for a reliable fit")
    return TemperatureFit(temperature, before, after, warning)


def check_logits(logits: np.ndarray, labels: np.ndarray) -> None:
    if logits.ndim != 2 or logits.shape[0] != len(labels) or logits.shape[0] == 0:
        raise ValueError(f"need logits [N, C] with N = {len(labels)} labels (N > 0), got {list(logits.shape)}")
    if not np.isfinite(logits).all():
        raise ValueError("logits must be finite")


def top_and_correct(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top probability, whether the top label is the true one) per row."""
    values = np.asarray(probabilities, dtype=np.float64)
    return values.max(axis=1), values.argmax(axis=1) == np.asarray(labels, dtype=np.int64)


def bin_index(confidence: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Bin b holds the confidences in (b / bins, (b + 1) / bins]; a confidence of 0 falls in bin 0."""
    index: np.ndarray = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    return index


def reliability_bins(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray,
                     bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per equal-width bin of the top probability: its range, how many texts, their accuracy and mean confidence
    (None for an empty bin). What a reliability diagram draws."""
    confidence, correct = top_and_correct(probabilities, labels)
    index = bin_index(confidence, bins)
    rows = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        rows.append({"lower": b / bins, "upper": (b + 1) / bins, "count": count,
                     "accuracy": float(correct[inside].mean()) if count else None,
                     "confidence": float(confidence[inside].mean()) if count else None})
    return rows


def expected_calibration_error(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of (share of texts in the bin) x |accuracy - mean confidence| (L1, top label)."""
    n = len(np.asarray(labels))
    if n == 0:
        return float("nan")
    return float(sum(row["count"] / n * abs(row["accuracy"] - row["confidence"])
                     for row in reliability_bins(probabilities, labels, bins) if row["count"]))


@dataclass(frozen=True)
class CoverageCurve:
    """Accepting the texts whose top probability is >= thresholds[i] keeps coverage[i] of them, of which
    accuracy[i] are right. Thresholds descend (coverage grows); one point per distinct top probability."""
    thresholds: np.ndarray
    coverage: np.ndarray
    accuracy: np.ndarray
    accepted: np.ndarray  # how many texts each threshold accepts


def coverage_curve(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray) -> CoverageCurve:
    confidence, correct = top_and_correct(probabilities, labels)
    order = np.argsort(-confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    right = np.cumsum(correct)
    # accepting ">= t" takes every tied text: only the last of a run of equal confidences is a point
    last = np.append(confidence[1:] != confidence[:-1], True) if len(confidence) else np.zeros(0, dtype=bool)
    accepted = np.arange(1, len(confidence) + 1)[last]
    return CoverageCurve(thresholds=confidence[last], coverage=accepted / max(1, len(confidence)),
                         accuracy=right[last] / accepted, accepted=accepted)


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float  # 0.0: every text is accepted (nothing needs review)
    target_precision: float
    reached: bool  # the accepted validation texts reach the target at >= MIN_COVERAGE
    coverage: float  # on the data it was chosen on
    accuracy: float
    warning: str | None = None


def choose_threshold(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray,
                     target_precision: float = TARGET_PRECISION,
                     min_coverage: float = MIN_COVERAGE) -> ThresholdChoice:
    """The smallest threshold on the top probability whose accepted texts (top probability >= it) reach
    `target_precision`, accepting at least `min_coverage` of them; 0 when all texts together already do.
    Unreachable: the threshold of the best precision at >= `min_coverage` (ties: the larger coverage), and a
    warning saying so."""
    curve = coverage_curve(probabilities, labels)
    if len(curve.thresholds) == 0:
        raise ValueError("choosing a threshold needs at least one text")
    enough = curve.coverage >= min_coverage - 1e-12
    enough[-1] = True  # accepting everything always counts, however few texts there are
    meets = np.flatnonzero((curve.accuracy >= target_precision - 1e-12) & enough)
    if len(meets):
        i = int(meets[-1])
        threshold = 0.0 if i == len(curve.thresholds) - 1 else float(curve.thresholds[i])
        return ThresholdChoice(threshold, target_precision, True, float(curve.coverage[i]), float(curve.accuracy[i]))
    candidates = np.flatnonzero(enough)
    best = candidates[curve.accuracy[candidates] >= curve.accuracy[candidates].max() - 1e-12]
    i = int(best[-1])
    threshold = 0.0 if i == len(curve.thresholds) - 1 else float(curve.thresholds[i])
    warning = (f"target precision {target_precision:g} is not reached on {FITTED_ON} at coverage >= "
               f"{min_coverage:g}; review threshold {threshold:.4f} gives the best precision there, "
               f"{curve.accuracy[i]:.4f} at coverage {curve.coverage[i]:.4f}")
    return ThresholdChoice(threshold, target_precision, False, float(curve.coverage[i]), float(curve.accuracy[i]),
                           warning)


def at_threshold(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray, threshold: float) -> dict[str, Any]:
    """Coverage and accuracy of the texts a threshold accepts (accuracy None when it accepts none)."""
    confidence, correct = top_and_correct(probabilities, labels)
    accepted = confidence >= threshold
    count = int(accepted.sum())
    return {"accepted": count, "coverage": count / len(confidence) if len(confidence) else float("nan"),
            "accuracy_at_threshold": float(correct[accepted].mean()) if count else None}


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and the review threshold chosen with it, plus what they were chosen for."""
    fit: TemperatureFit
    choice: ThresholdChoice

    @property
    def temperature(self) -> float:
        return self.fit.temperature

    @property
    def review_threshold(self) -> float:
        return self.choice.threshold

    @property
    def warnings(self) -> list[str]:
        return [warning for warning in (self.fit.warning, self.choice.warning) if warning]

    def manifest_entry(self) -> dict[str, Any]:
        """The `calibration` object of lorakit.json (docs/FORMAT.md)."""
        return {"temperature": self.temperature, "review_threshold": self.review_threshold,
                "target_precision": self.choice.target_precision, "fitted_on": FITTED_ON}

    def summary(self) -> dict[str, Any]:
        """What report/metrics.json records about the fit itself."""
        return self.manifest_entry() | {"target_reached": self.choice.reached, "nll_before": self.fit.nll_before,
                                        "nll_after": self.fit.nll_after, "warnings": self.warnings}

    def evaluate(self, logits: np.ndarray, labels: Sequence[int] | np.ndarray) -> dict[str, Any]:
        """ECE before and after, and what the threshold accepts, on one part of the data."""
        before, after = softmax(logits), softmax(logits, self.temperature)
        return {"temperature": self.temperature, "ece_before": expected_calibration_error(before, labels),
                "ece_after": expected_calibration_error(after, labels), "threshold": self.review_threshold,
                **at_threshold(after, labels, self.review_threshold), "n": len(np.asarray(labels))}


def calibrate(logits: np.ndarray, labels: Sequence[int] | np.ndarray,
              target_precision: float = TARGET_PRECISION) -> Calibration:
    """Fit the temperature on (validation) `logits` and choose the review threshold on the same data."""
    fit = fit_temperature(logits, labels)
    return Calibration(fit, choose_threshold(softmax(logits, fit.temperature), labels, target_precision))


def reliability_data(logits: np.ndarray, labels: Sequence[int] | np.ndarray, temperature: float) -> dict[str, Any]:
    """Reliability diagram data before (T = 1) and after temperature scaling, with each side's ECE."""
    sides = {"before": softmax(logits), "after": softmax(logits, temperature)}
    return {"temperature": temperature} | {
        side: {"ece": expected_calibration_error(probabilities, labels),
               "bins": reliability_bins(probabilities, labels)} for side, probabilities in sides.items()}


def curve_json(curve: CoverageCurve, points: int = 101) -> dict[str, list[float]]:
    """The coverage curve thinned to about `points` points evenly spread in coverage (the last one kept)."""
    if len(curve.coverage) > points:
        targets = np.linspace(curve.coverage[0], curve.coverage[-1], points)
        keep = np.unique(np.searchsorted(curve.coverage, targets, side="left").clip(0, len(curve.coverage) - 1))
    else:
        keep = np.arange(len(curve.coverage))
    return {"threshold": curve.thresholds[keep].tolist(), "coverage": curve.coverage[keep].tolist(),
            "accuracy": curve.accuracy[keep].tolist()}
