"""PNG plots for the report folder (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

MAX_CLASSES_SHOWN = 80  # beyond this (banking77 fits), only the classes with the most confusions are drawn
INCH_PER_CLASS = 0.22  # a cell stays about 16 points wide, room for a 6-point label
Curves = Mapping[str, Mapping[str, Sequence[float]]]  # part -> {"threshold", "coverage", "accuracy"}
Marks = Mapping[str, tuple[float, float | None]]  # part -> (coverage, accuracy) at the review threshold


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path,
                          title: str = "Confusion matrix") -> Path:
    """Rows normalised to the share of each true class (so rare classes are as visible as frequent ones), with
    the figure and fonts scaled to the class count; cell values are written only while they stay legible."""
    counts = np.asarray(matrix, dtype=np.float64)
    shown = classes_to_show(counts, MAX_CLASSES_SHOWN)
    if len(shown) < len(labels):
        title = f"{title}: {len(shown)} of {len(labels)} classes, most confused"
    shares = row_shares(counts)[np.ix_(shown, shown)]
    names = [labels[i] for i in shown]
    n = len(names)
    side = min(INCH_PER_CLASS * MAX_CLASSES_SHOWN + 3, max(5.0, INCH_PER_CLASS * n + 3))
    font = 9 if n <= 20 else 7 if n <= 50 else 6
    fig, ax = plt.subplots(figsize=(side, side))
    # square-root colour scale: a 5% confusion stays visible next to a 95% diagonal
    image = ax.imshow(shares, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0))
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    ticks = list(range(n))
    ax.set_xticks(ticks, labels=names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, labels=names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i, j in zip(*np.nonzero(shares), strict=True):
            ax.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=font - 1,
                    color="white" if shares[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def row_shares(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the true class's examples); rows without examples stay zero."""
    totals = counts.sum(axis=1, keepdims=True)
    shares: np.ndarray = np.divide(counts, totals, out=np.zeros_like(counts, dtype=np.float64), where=totals > 0)
    return shares


def classes_to_show(counts: np.ndarray, limit: int) -> list[int]:
    """All classes up to `limit`; beyond, the `limit` with most errors as true or predicted class, in label order."""
    if len(counts) <= limit:
        return list(range(len(counts)))
    errors = counts.sum(axis=0) + counts.sum(axis=1) - 2 * np.diag(counts)
    return sorted(np.argsort(-errors, kind="stable")[:limit].tolist())


def plot_loss_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """`history` is the trainer log: entries with `loss` (training) or `eval_loss`, each with `epoch`."""
    train = [(entry["epoch"], entry["loss"]) for entry in history if "loss" in entry and "epoch" in entry]
    evals = [(entry["epoch"], entry["eval_loss"]) for entry in history if "eval_loss" in entry]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), marker="o", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_reliability(data: dict[str, Any], path: Path, title: str = "Reliability") -> Path:
    """Reliability diagram before and after temperature scaling side by side: per equal-width confidence bin a bar
    of the accuracy there, the gap to the bin's mean confidence, and the diagonal of perfect calibration.
    `data` is calibration.reliability_data(...): {"temperature", "before"|"after": {"ece", "bins": [...]}}."""
    return save(reliability_figure(data, title), path)


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def reliability_figure(data: dict[str, Any], title: str = "Reliability") -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    for ax, side in zip(axes, ("before", "after"), strict=True):
        bins = [row for row in data[side]["bins"] if row["count"]]
        width = data[side]["bins"][0]["upper"] - data[side]["bins"][0]["lower"]
        centres = [(row["lower"] + row["upper"]) / 2 for row in bins]
        ax.bar(centres, [row["accuracy"] for row in bins], width=width, edgecolor="black", color="tab:blue",
               label=f"accuracy (ECE {data[side]['ece']:.4f})")
        gaps = [row["confidence"] - row["accuracy"] for row in bins]
        ax.bar(centres, gaps, bottom=[row["accuracy"] for row in bins], width=width, color="tab:red", alpha=0.3,
               edgecolor="tab:red", hatch="//", label="gap to mean confidence")
        ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top probability (confidence)")
        ax.set_title("before temperature scaling" if side == "before" else
                     f"after temperature scaling (T = {data['temperature']:.3g})")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_coverage(curves: Curves, marks: Marks, threshold: float, target_precision: float, path: Path,
                  title: str = "Coverage vs accuracy") -> Path:
    """Accuracy of the accepted texts against the share accepted, one line per part (`curves`: name ->
    calibration.curve_json(...)), the target precision, and each part's (coverage, accuracy) at the chosen
    threshold (`marks`; accuracy None when the threshold accepts nothing there)."""
    return save(coverage_figure(curves, marks, threshold, target_precision, title), path)


def coverage_figure(curves: Curves, marks: Marks, threshold: float, target_precision: float,
                    title: str = "Coverage vs accuracy") -> Figure:
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for (name, curve), colour in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green"), strict=False):
        ax.plot(curve["coverage"], curve["accuracy"], color=colour, label=name)
        coverage, accuracy = marks.get(name, (0.0, None))
        if accuracy is not None:
            ax.plot(coverage, accuracy, marker="o", markersize=8, color=colour, markeredgecolor="black",
                    linestyle="none", label=f"{name} at threshold {threshold:.3f}: coverage {coverage:.3f}, "
                    f"accuracy {accuracy:.3f}")
    ax.axhline(target_precision, color="tab:red", linestyle="--", label=f"target precision {target_precision:g}")
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("coverage (share of texts accepted, not sent to review)")
    ax.set_ylabel("accuracy of the accepted texts")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
