"""Report plots and the top-confusion list, at banking77 scale (77 classes) on synthetic predictions; the
calibration plots on logits of known calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from lorakit.calibration import calibrate, coverage_curve, curve_json, reliability_data, softmax
from lorakit.confusions import format_confusions, top_confusions
from lorakit.evaluate import classification_metrics
from lorakit.plots import (
    INCH_PER_CLASS,
    classes_to_show,
    coverage_figure,
    plot_confusion_matrix,
    plot_coverage,
    plot_reliability,
    reliability_figure,
    row_shares,
)

LABELS = [f"intent_{i:02d}" for i in range(77)]
# (true, predicted, how many of the true class's examples): 5 -> 9 is the largest; 12 -> 3 ties 40 -> 41 on count
# but class 12 has half the examples, so its share is larger and it ranks first of the two.
PLANTED = [(5, 9, 7), (12, 3, 5), (40, 41, 5), (70, 2, 3)]


def synthetic_predictions() -> tuple[list[int], list[int]]:
    """20 examples per class (10 for class 12), all right except the planted confusions and one stray error in
    every seventh class."""
    true: list[int] = []
    predicted: list[int] = []
    planted = {(t, p): n for t, p, n in PLANTED}
    for label in range(len(LABELS)):
        size = 10 if label == 12 else 20
        wrong = [p for (t, p), n in planted.items() if t == label for _ in range(n)]
        if label % 7 == 0 and label not in (70,):
            wrong.append((label + 1) % len(LABELS))
        true += [label] * size
        predicted += wrong + [label] * (size - len(wrong))
    return true, predicted


def test_top_confusions_on_77_classes() -> None:
    true, predicted = synthetic_predictions()
    matrix = classification_metrics(true, predicted, LABELS)["confusion_matrix"]
    top = top_confusions(matrix, LABELS, n=4)
    assert top == [
        {"true": "intent_05", "predicted": "intent_09", "count": 7, "share": 0.35},
        {"true": "intent_12", "predicted": "intent_03", "count": 5, "share": 0.5},
        {"true": "intent_40", "predicted": "intent_41", "count": 5, "share": 0.25},
        {"true": "intent_70", "predicted": "intent_02", "count": 3, "share": 0.15},
    ]
    # the stray single errors follow, in label order; the default lists ten
    rest = top_confusions(matrix, LABELS)[4:]
    assert [(item["true"], item["predicted"], item["count"]) for item in rest[:2]] == [
        ("intent_00", "intent_01", 1), ("intent_07", "intent_08", 1)]
    assert len(top_confusions(matrix, LABELS)) == 10
    lines = format_confusions(top)
    assert lines[0].split() == ["intent_05", "->", "intent_09", "7", "(35%", "of", "intent_05)"]


def test_a_perfect_classifier_has_no_confusions() -> None:
    matrix = np.diag([4, 5, 6]).tolist()
    assert top_confusions(matrix, ["a", "b", "c"]) == []
    assert format_confusions([]) == ["  none"]


def test_top_confusions_refuses_a_matrix_of_other_labels() -> None:
    with pytest.raises(ValueError, match="for 2 labels"):
        top_confusions(np.eye(3, dtype=int).tolist(), ["a", "b"])


def test_rows_are_normalised_by_the_true_class() -> None:
    shares = row_shares(np.array([[8.0, 2.0], [0.0, 0.0], [1.0, 3.0]]))
    assert shares.tolist() == [[0.8, 0.2], [0.0, 0.0], [0.25, 0.75]]


def test_confusion_png_scales_with_the_class_count(tmp_path: Path) -> None:
    true, predicted = synthetic_predictions()
    matrix = classification_metrics(true, predicted, LABELS)["confusion_matrix"]
    big = plot_confusion_matrix(matrix, LABELS, tmp_path / "big.png")
    small = plot_confusion_matrix([[3, 1], [0, 4]], ["yes", "no"], tmp_path / "small.png")
    assert big.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = imread(big).shape[:2]
    side = round((INCH_PER_CLASS * 77 + 3) * 100)  # inches x dpi 100
    assert (height, width) == (side, side)
    assert imread(small).shape[:2] == (500, 500)


def test_beyond_80_classes_the_most_confused_are_drawn(tmp_path: Path) -> None:
    counts = np.diag(np.full(100, 10))
    for true in range(0, 100, 2):  # every even class confuses with the next one
        counts[true, true + 1] = 3
    counts[99, 98] = 1
    shown = classes_to_show(counts, 80)
    assert len(shown) == 80 and shown == sorted(shown)
    errors = counts.sum(axis=0) + counts.sum(axis=1) - 2 * np.diag(counts)
    assert min(errors[shown]) >= max(np.delete(errors, shown))
    plot_confusion_matrix(counts.tolist(), [f"c{i}" for i in range(100)], tmp_path / "many.png")
    assert imread(tmp_path / "many.png").shape[0] == round((INCH_PER_CLASS * 80 + 3) * 100)


def overconfident(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits 3x sharper than the labels they were drawn with."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, (n, 4))
    labels = (rng.random((n, 1)) > softmax(logits).cumsum(axis=1)).sum(axis=1).clip(0, 3)
    return logits * 3, labels


def test_reliability_diagram_draws_accuracy_bars_the_diagonal_and_ece(tmp_path: Path) -> None:
    logits, labels = overconfident()
    data = reliability_data(logits, labels, calibrate(logits, labels).temperature)
    fig = reliability_figure(data, "Reliability (test)")
    for ax, side in zip(fig.axes, ("before", "after"), strict=True):
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert f"accuracy (ECE {data[side]['ece']:.4f})" in legend and "perfect calibration" in legend
        filled = [row for row in data[side]["bins"] if row["count"]]
        accuracy_bars = ax.containers[0]
        assert [bar.get_height() for bar in accuracy_bars] == pytest.approx([row["accuracy"] for row in filled])
        [diagonal] = ax.get_lines()
        assert diagonal.get_xydata().tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert data["before"]["ece"] > 3 * data["after"]["ece"]
    path = plot_reliability(data, tmp_path / "reliability.png")
    assert imread(path).shape[:2] == (460, 1000)


def test_coverage_plot_marks_the_threshold_and_the_target(tmp_path: Path) -> None:
    logits, labels = overconfident()
    calibration = calibrate(logits, labels, target_precision=0.8)
    evaluated = calibration.evaluate(logits, labels)
    curve = curve_json(coverage_curve(softmax(logits, calibration.temperature), labels))
    assert len(curve["coverage"]) <= 101 and curve["coverage"][-1] == 1.0
    marks = {"validation": (evaluated["coverage"], evaluated["accuracy_at_threshold"]), "test": (0.0, None)}
    fig = coverage_figure({"validation": curve, "test": curve}, marks, calibration.review_threshold, 0.8)
    [ax] = fig.axes
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "target precision 0.8" in legend
    marked = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(marked) == 1  # the test mark accepts nothing here: no point drawn
    assert marked[0].get_xydata().tolist() == [[evaluated["coverage"], evaluated["accuracy_at_threshold"]]]
    assert any(text.startswith(f"validation at threshold {calibration.review_threshold:.3f}") for text in legend)
    target = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert target and target[0].get_ydata()[0] == 0.8
    assert imread(plot_coverage({"validation": curve}, marks, 0.5, 0.8, tmp_path / "c.png")).shape[:2] == (460, 640)
