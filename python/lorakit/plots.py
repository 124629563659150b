"""PNG plots for the report folder (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path,
                          title: str = "Confusion matrix") -> Path:
    size = min(24.0, max(4.0, 0.3 * len(labels) + 2))
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = range(len(labels))
    font = 8 if len(labels) <= 20 else 5
    ax.set_xticks(list(ticks), labels=list(labels), rotation=90, fontsize=font)
    ax.set_yticks(list(ticks), labels=list(labels), fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(labels) <= 20:  # counts stay readable only for small matrices
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=font)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


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
