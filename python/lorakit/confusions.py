"""The most frequent mistakes of a classifier, read off its confusion matrix (rows: true, columns: predicted)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TOP_CONFUSIONS = 10


def top_confusions(matrix: Sequence[Sequence[int]], labels: Sequence[str], n: int = TOP_CONFUSIONS
                   ) -> list[dict[str, Any]]:
    """The `n` largest off-diagonal cells, largest count first (ties: larger share, then label order): true label,
    predicted label, count, and share = count / examples of the true label."""
    counts = np.asarray(matrix, dtype=np.int64)
    if counts.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix of shape {counts.shape} for {len(labels)} labels")
    totals = counts.sum(axis=1)
    cells = [(int(counts[i, j]), float(counts[i, j] / totals[i]), i, j)
             for i, j in zip(*np.nonzero(counts), strict=True) if i != j]
    cells.sort(key=lambda cell: (-cell[0], -cell[1], cell[2], cell[3]))
    return [{"true": labels[i], "predicted": labels[j], "count": count, "share": round(share, 4)}
            for count, share, i, j in cells[:n]]


def format_confusions(confusions: Sequence[dict[str, Any]]) -> list[str]:
    """One line per confusion, e.g. `  card_arrival -> card_delivery_estimate  7 (35% of card_arrival)`."""
    if not confusions:
        return ["  none"]
    width = max(len(str(item["true"])) + len(str(item["predicted"])) for item in confusions) + 4
    return [f"  {(str(item['true']) + ' -> ' + str(item['predicted'])):<{width}} {item['count']:>4} "
            f"({100 * item['share']:.0f}% of {item['true']})" for item in confusions]
