"""Calibration: the temperature fit, ECE, the review threshold and the coverage curve on synthetic logits whose
true calibration is known; then training on the tiny base writes it all (manifest, golden, metrics, plots) and
`lorakit export` from the checkpoint keeps it."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from lorakit.calibration import (
    MIN_COVERAGE,
    TARGET_PRECISION,
    at_threshold,
    bin_index,
    calibrate,
    choose_threshold,
    coverage_curve,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
    softmax,
)
from lorakit.cli import build_parser, main
from lorakit.data import load_dataset, read_split
from lorakit.evaluate import cross_entropy, predict_logits
from lorakit.loading import load_merged, load_tokenizer
from lorakit.manifest import read_manifest

from conftest import WORDS, write_labelled_csv


def sampled(n: int, classes: int = 5, scale: float = 2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and labels drawn from softmax(z): z is perfectly calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, scale, (n, classes))
    cumulative = softmax(logits).cumsum(axis=1)
    labels = (rng.random((n, 1)) > cumulative).sum(axis=1).clip(0, classes - 1)
    return logits, labels


@pytest.mark.parametrize("k", [0.5, 1.0, 2.5, 4.0])
def test_the_fit_recovers_a_known_temperature(k: float) -> None:
    """Calibrated logits z shown as z * k are fixed by T = k exactly."""
    logits, labels = sampled(20000, seed=int(k * 10))
    fit = fit_temperature(logits * k, labels)
    assert abs(fit.temperature - k) / k < 0.03, fit
    assert fit.warning is None and fit.nll_after <= fit.nll_before
    assert fit.nll_after == pytest.approx(nll(logits * k, labels, fit.temperature))
    assert fit_temperature(logits * k, labels) == fit  # deterministic


def test_a_validation_without_errors_keeps_temperature_one() -> None:
    logits = np.array([[5.0, 0.0], [0.0, 4.0], [3.0, 1.0]])
    fit = fit_temperature(logits, [0, 1, 0])
    assert fit.temperature == 1.0 and fit.warning is not None and "no temperature can be fitted" in fit.warning


def test_a_fit_at_the_bound_is_warned_about() -> None:
    """Worse than chance: the NLL keeps falling as T grows, up to the upper bound."""
    logits = np.array([[4.0, 0.0], [0.0, 4.0]] * 10)
    fit = fit_temperature(logits, [1, 0] * 10)
    assert fit.temperature == pytest.approx(20.0, rel=1e-3) and fit.warning and "at the bound" in fit.warning


def test_bad_logits_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        fit_temperature(np.array([[np.nan, 0.0]]), [0])
    with pytest.raises(ValueError, match="N = 2"):
        fit_temperature(np.zeros((3, 2)), [0, 1])


def test_softmax_temperature_and_the_loss() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [1000.0, 0.0, 0.0]])
    assert softmax(logits, 2.0) == pytest.approx(softmax(logits / 2.0))
    assert softmax(logits).sum(axis=1) == pytest.approx([1.0, 1.0])
    assert np.isfinite(softmax(logits)).all()
    expected = -np.log(np.exp(2.0) / (np.exp(2.0) + 1 + np.exp(-1.0)))
    assert cross_entropy(logits[:1], [0]) == pytest.approx(expected)


def test_ece_by_hand() -> None:
    """Bin (0.8, 0.867]: 0.85 right, 0.85 wrong -> |0.5 - 0.85|; bin (0.6, 0.667]: 0.65 right -> |1 - 0.65|."""
    probabilities = np.array([[0.85, 0.15], [0.15, 0.85], [0.65, 0.35]])
    labels = [0, 0, 0]
    assert expected_calibration_error(probabilities, labels) == pytest.approx((2 * 0.35 + 0.35) / 3)
    rows = reliability_bins(probabilities, labels)
    assert len(rows) == 15 and sum(row["count"] for row in rows) == 3
    assert [row["count"] for row in rows if row["count"]] == [1, 2]
    assert rows[12]["accuracy"] == 0.5 and rows[12]["confidence"] == pytest.approx(0.85)
    assert rows[0]["accuracy"] is None


def test_bins_hold_their_upper_edge() -> None:
    assert bin_index(np.array([0.0, 1 / 15, 1 / 15 + 1e-9, 0.5, 1.0])).tolist() == [0, 0, 1, 7, 14]


def test_ece_of_calibrated_data_is_near_zero_and_of_overconfident_data_large() -> None:
    logits, labels = sampled(30000)
    assert expected_calibration_error(softmax(logits), labels) < 0.015
    assert expected_calibration_error(softmax(logits * 3), labels) > 0.15
    calibration = calibrate(logits * 3, labels)
    report = calibration.evaluate(logits * 3, labels)
    assert report["ece_before"] > 0.15 and report["ece_after"] < 0.015


def test_the_threshold_meets_the_target_on_validation_and_holds_on_fresh_data() -> None:
    validation, validation_labels = sampled(6000, seed=1)
    test, test_labels = sampled(6000, seed=2)
    calibration = calibrate(validation * 2, validation_labels, target_precision=0.9)
    choice = calibration.choice
    assert choice.reached and choice.warning is None and 0 < choice.threshold < 1
    probabilities = softmax(validation * 2, calibration.temperature)
    accepted = at_threshold(probabilities, validation_labels, choice.threshold)
    assert accepted["accuracy_at_threshold"] >= 0.9 and accepted["coverage"] >= MIN_COVERAGE
    assert accepted["coverage"] == pytest.approx(choice.coverage)
    # the smallest such threshold: every lower point of the curve accepts more texts at a precision below target
    curve = coverage_curve(probabilities, validation_labels)
    lower = curve.thresholds < choice.threshold
    assert lower.any() and (curve.accuracy[lower] < 0.9).all()
    held_out = calibration.evaluate(test * 2, test_labels)
    assert held_out["accuracy_at_threshold"] == pytest.approx(0.9, abs=0.03)
    assert held_out["coverage"] == pytest.approx(choice.coverage, abs=0.05)


def test_a_target_every_text_meets_needs_no_review() -> None:
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    choice = choose_threshold(probabilities, [0, 1, 0], target_precision=0.95)
    assert choice.threshold == 0.0 and choice.reached and choice.coverage == 1.0 and choice.accuracy == 1.0


def test_an_unreachable_target_gives_the_best_precision_at_minimum_coverage_and_a_warning() -> None:
    # 20 texts; the most confident one is right, then a wrong one, then alternating
    confidence = np.linspace(0.99, 0.6, 20)
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    labels = [0, 1] * 10  # precision at top k: 1, 1/2, 2/3, 2/4, 3/5, ... below 0.95 from k = 2 on
    choice = choose_threshold(probabilities, labels, target_precision=0.95, min_coverage=0.1)
    assert not choice.reached and choice.warning and "not reached" in choice.warning
    # coverage >= 0.1 means k >= 2; the best precision there is 2/3 at k = 3
    assert choice.coverage == pytest.approx(3 / 20) and choice.accuracy == pytest.approx(2 / 3)
    assert choice.threshold == pytest.approx(confidence[2])


def test_tied_confidences_are_accepted_together() -> None:
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.7, 0.3]])
    curve = coverage_curve(probabilities, [0, 1, 0])
    assert curve.thresholds.tolist() == [0.9, 0.7] and curve.accepted.tolist() == [2, 3]
    assert curve.accuracy.tolist() == pytest.approx([0.5, 2 / 3])


def test_a_threshold_that_accepts_nothing_has_no_accuracy() -> None:
    result = at_threshold(np.array([[0.6, 0.4]]), [0], 0.99)
    assert result == {"accepted": 0, "coverage": 0.0, "accuracy_at_threshold": None}


def test_the_cli_default_is_the_library_default() -> None:
    args = build_parser().parse_args(["train", "--data", "x", "--output", "y"])
    assert args.target_precision == TARGET_PRECISION and args.no_calibration is False


# --- training on the tiny base ------------------------------------------------------------------------------

def train_args(data: Path, out: Path, base: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--base", str(base), "--output", str(out), "--epochs", "2",
            "--max-seq-len", "16", "--batch-size", "8", "--learning-rate", "5e-3", *extra]


def write_noisy_csv(path: Path, rows: int, noise_every: int = 5) -> Path:
    """The conftest sentiment words, every `noise_every`-th row labelled as the next class instead."""
    write_labelled_csv(path, rows=rows)
    with open(path, newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    labels = list(WORDS)
    for i, row in enumerate(table[1:]):
        if i % noise_every == 0:
            row[1] = labels[(labels.index(row[1]) + 1) % len(labels)]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(table)
    return path


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> dict[str, Any]:
    import contextlib
    import io

    work = tmp_path_factory.mktemp("calibrated")
    data = write_noisy_csv(work / "data.csv", rows=120)
    out = work / "model"
    stdout, stderr = io.StringIO(), io.StringIO()
    # 30 validation texts, some mislabelled: a model cannot be right on all of them, so T has a finite optimum
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(train_args(data, out, fixtures_dir / "tiny_bert_base", "--checkpoint-dir", str(work / "run"),
                               "--target-precision", "0.9", "--epochs", "3", "--learning-rate", "1e-2",
                               "--validation-fraction", "0.25"))
    assert code == 0, stderr.getvalue()[-3000:]
    return {"data": data, "model": out, "run": work / "run", "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


def manifest_calibration(model: Path) -> dict[str, Any] | None:
    value: dict[str, Any] | None = json.loads((model / "lorakit.json").read_text("utf-8")).get("calibration")
    return value


def test_training_records_the_calibration(calibrated: dict[str, Any]) -> None:
    model = calibrated["model"]
    entry = manifest_calibration(model)
    assert entry is not None and set(entry) == {"temperature", "review_threshold", "target_precision", "fitted_on"}
    assert entry["target_precision"] == 0.9 and entry["fitted_on"] == "validation"
    assert 0.05 < entry["temperature"] < 20
    summary = json.loads((model / "report" / "metrics.json").read_text("utf-8"))["calibration"]
    assert not any("temperature" in warning for warning in summary["warnings"])  # fitted inside the bounds
    assert summary["target_reached"] == (not summary["warnings"])  # the threshold warns iff the target is missed
    for warning in summary["warnings"]:
        assert f"calibration warning: {warning}" in calibrated["stderr"].splitlines()
    assert 0.0 <= entry["review_threshold"] <= 1.0
    metrics = json.loads((model / "report" / "metrics.json").read_text("utf-8"))
    assert {key: metrics["calibration"][key] for key in entry} == entry
    for part in ("validation", "test"):
        block = metrics[part]["calibration"]
        assert block["temperature"] == entry["temperature"] and block["threshold"] == entry["review_threshold"]
        assert 0 <= block["ece_before"] <= 1 and 0 <= block["ece_after"] <= 1
        assert 0 <= block["coverage"] <= 1 and block["n"] == metrics[part]["n"]
        assert metrics[part]["ece"] == block["ece_after"]  # the served probabilities are the calibrated ones
    # fitted on validation alone: refitting on the validation rows of split.json gives the same temperature
    split = read_split(model / "report" / "split.json")
    dataset = load_dataset(calibrated["data"], "text", "label")
    validation = [dataset.examples[i] for i in split.validation]
    logits = predict_logits(load_merged(model, read_manifest(model)), load_tokenizer(model),
                            [example.text for example in validation], 16, progress=False)
    refit = fit_temperature(logits, dataset.label_ids(validation))
    assert refit.temperature == pytest.approx(entry["temperature"], rel=1e-3)
    for name in ("reliability.png", "coverage.png", "calibration.json"):
        assert (model / "report" / name).is_file(), name
    assert imread(model / "report" / "reliability.png").shape[1] == 1000
    lines = calibrated["stdout"].splitlines()
    [fit_line] = [line for line in lines if line.startswith("calibration: temperature")]
    assert f"{entry['temperature']:.4f}" in fit_line
    assert f"{metrics['test']['calibration']['ece_before']:.4f} -> " \
           f"{metrics['test']['calibration']['ece_after']:.4f}" in fit_line
    [threshold_line] = [line for line in lines if line.startswith("review threshold")]
    assert f"{entry['review_threshold']:.4f}" in threshold_line and "test coverage" in threshold_line


def test_the_golden_carries_calibrated_probabilities(calibrated: dict[str, Any]) -> None:
    from safetensors import safe_open

    model = calibrated["model"]
    entry = manifest_calibration(model)
    assert entry is not None
    with safe_open(str(model / "golden.safetensors"), framework="np") as handle:
        logits, probabilities = handle.get_tensor("logits"), handle.get_tensor("probabilities")
        metadata = handle.metadata()
    assert probabilities == pytest.approx(softmax(logits, entry["temperature"]), abs=1e-6)
    assert float(metadata["review_threshold"]) == pytest.approx(entry["review_threshold"])
    assert main(["verify", str(model)]) == 0


def test_eval_reports_the_ece_at_the_manifest_temperature(calibrated: dict[str, Any], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`lorakit eval` on exactly the test rows reproduces the test ECE the training recorded (calibrated)."""
    model = calibrated["model"]
    split = read_split(model / "report" / "split.json")
    dataset = load_dataset(calibrated["data"], "text", "label")
    rows = tmp_path / "test.csv"
    with open(rows, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in split.test:
            writer.writerow([dataset.examples[i].text, dataset.examples[i].label])
    capsys.readouterr()
    assert main(["eval", str(model), "--data", str(rows), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    recorded = json.loads((model / "report" / "metrics.json").read_text("utf-8"))["test"]
    assert result["accuracy"] == recorded["accuracy"] and result["macro_f1"] == recorded["macro_f1"]
    assert result["ece"] == pytest.approx(recorded["calibration"]["ece_after"], abs=1e-5)


def test_export_from_the_checkpoint_keeps_the_calibration(calibrated: dict[str, Any], tmp_path: Path) -> None:
    run = json.loads((calibrated["run"] / "lorakit_run.json").read_text("utf-8"))
    assert run["calibration"] == manifest_calibration(calibrated["model"])
    out = tmp_path / "again"
    assert main(["export", str(calibrated["run"]), "--output", str(out)]) == 0
    assert manifest_calibration(out) == manifest_calibration(calibrated["model"])
    assert (out / "report" / "reliability.png").is_file()
    assert main(["verify", str(out)]) == 0


def test_an_epoch_checkpoint_is_exported_uncalibrated(calibrated: dict[str, Any], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    epochs = sorted((calibrated["run"] / "trainer").glob("checkpoint-*"))
    assert epochs
    out = tmp_path / "epoch"
    assert main(["export", str(epochs[0]), "--output", str(out)]) == 0
    assert manifest_calibration(out) is None
    assert "exported uncalibrated" in capsys.readouterr().err


def test_a_damaged_run_calibration_is_one_line(calibrated: dict[str, Any], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(calibrated["run"], run, ignore=shutil.ignore_patterns("trainer"))
    recorded = json.loads((run / "lorakit_run.json").read_text("utf-8"))
    recorded["calibration"] = {"temperature": -1}
    (run / "lorakit_run.json").write_text(json.dumps(recorded), "utf-8")
    assert main(["export", str(run), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "lorakit_run.json: calibration.temperature: must be finite and > 0" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_no_calibration_writes_none(fixtures_dir: Path, tmp_path: Path) -> None:
    data = write_labelled_csv(tmp_path / "d.csv", rows=45)
    out = tmp_path / "plain"
    assert main(train_args(data, out, fixtures_dir / "tiny_bert_base", "--epochs", "1", "--no-calibration")) == 0
    assert manifest_calibration(out) is None
    assert not (out / "report" / "reliability.png").exists()
    metrics = json.loads((out / "report" / "metrics.json").read_text("utf-8"))
    assert metrics["calibration"] is None and "calibration" not in metrics["test"]
    assert 0 <= metrics["test"]["ece"] <= 1  # at T = 1


@pytest.mark.parametrize(("extra", "message"), [
    (["--target-precision", "1.5"], "--target-precision must be in (0, 1], got 1.5"),
    (["--target-precision", "0"], "--target-precision must be in (0, 1]"),
    (["--target-precision", "nan"], "--target-precision must be a finite number"),
    (["--no-calibration", "--target-precision", "0.9"], "drop it or --no-calibration"),
    (["--task", "token-classification", "--target-precision", "0.9"], "--target-precision does not apply"),
    (["--task", "embedding", "--no-calibration"], "--no-calibration does not apply"),
])
def test_bad_calibration_options_are_refused_before_training(fixtures_dir: Path, tmp_path: Path, extra: list[str],
                                                             message: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_labelled_csv(tmp_path / "d.csv")
    out = tmp_path / "out"
    assert main(train_args(data, out, fixtures_dir / "tiny_bert_base", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("lorakit train: error:")
    assert not out.exists()
