"""`lorakit verify` on a calibrated model: every backend also checks softmax(logits / T) against the golden
probabilities and the needs_review verdicts, and a changed calibration fails every row."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lorakit.cli import main
from lorakit.golden import GOLDEN_TOLERANCE, read_golden
from lorakit.manifest import read_manifest
from lorakit.verify import compare_calibration, format_report, verify_model

BACKENDS = {"torch-unmerged", "torch-merged", "onnxruntime", "native-merged", "native-runtime"}


@pytest.fixture(scope="session")
def calibrated(fixtures_dir: Path, fixture_builder: ModuleType) -> Path:
    """tiny_bert_lora_a with the fixture calibration (temperature 1.7, review threshold 0.45)."""
    out = fixtures_dir / "tiny_bert_calibrated"
    if not out.is_dir():
        fixture_builder.build_calibrated(fixtures_dir / "tiny_bert_lora_a", out)
    return out


def copy_calibrated(calibrated: Path, tmp_path: Path) -> Path:
    """A copy next to a copy of its base, so the relative base path still resolves."""
    shutil.copytree(calibrated.parent / "tiny_bert_base", tmp_path / "tiny_bert_base")
    return Path(shutil.copytree(calibrated, tmp_path / calibrated.name))


def edit_calibration(model_dir: Path, **changes: Any) -> None:
    path = model_dir / "lorakit.json"
    manifest = json.loads(path.read_text("utf-8"))
    manifest["calibration"].update(changes)
    path.write_text(json.dumps(manifest, indent=2), "utf-8")


def test_calibrated_fixture_passes_with_probability_and_review_checks(
        calibrated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = verify_model(calibrated)
    assert report["ok"] is True, report
    assert report["calibration"]["temperature"] == pytest.approx(1.7)
    assert set(report["backends"]) == BACKENDS
    for name, result in report["backends"].items():
        assert result["ok"] is True, (name, result)
        assert 0 <= result["prob_max_abs_diff"] <= GOLDEN_TOLERANCE and result["review_equal"] is True, name
    table = format_report(report)
    assert "prob_diff" in table and "review" in table and table.splitlines()[-1] == "PASS"
    assert "calibrated (temperature 1.7, review threshold 0.45)" in table.splitlines()[0]
    assert main(["verify", str(calibrated), "--json", "--backends", "torch"]) == 0
    rows = json.loads(capsys.readouterr().out)["backends"]
    assert all(row["review_equal"] is True for row in rows.values())


def test_uncalibrated_report_has_no_calibration_columns(fixtures_dir: Path) -> None:
    report = verify_model(fixtures_dir / "tiny_bert_lora_a", backends=["torch"])
    assert report["ok"] is True and "calibration" not in report
    for result in report["backends"].values():
        assert not {"prob_max_abs_diff", "review_equal"} & set(result)
    header = format_report(report).splitlines()[2].split()
    assert header == ["backend", "max_abs_diff", "ids", "argmax", "result"]


def test_tampered_temperature_fails_every_backend(calibrated: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = copy_calibrated(calibrated, tmp_path)
    edit_calibration(model_dir, temperature=3.0)
    report = verify_model(model_dir)
    assert report["ok"] is False and report["checksums"]["ok"] is True  # lorakit.json carries no checksum of itself
    assert set(report["backends"]) == BACKENDS
    for name, result in report["backends"].items():
        assert result["ok"] is False, name
        assert result["max_abs_diff"] <= GOLDEN_TOLERANCE, name  # the raw logits are unchanged
        assert result["prob_max_abs_diff"] > GOLDEN_TOLERANCE, name
    assert {"row", "col", "expected", "actual"} <= set(report["backends"]["torch-merged"]["prob_worst"])
    assert main(["verify", str(model_dir)]) == 1
    out = capsys.readouterr().out
    assert out.count("    probabilities: row ") == 3 and out.splitlines()[-1] == "FAIL"  # torch and ONNX rows
    assert out.count("    probabilities: max |diff| ") == 2  # the native rows report figures only
    assert "worst:" not in out  # the logits agree: their worst element explains nothing


def test_tampered_review_threshold_fails_on_review_alone(calibrated: Path, tmp_path: Path) -> None:
    model_dir = copy_calibrated(calibrated, tmp_path)
    edit_calibration(model_dir, review_threshold=0.9)
    report = verify_model(model_dir, backends=["torch", "native"])
    for name, result in report["backends"].items():
        assert result["ok"] is False and result["review_equal"] is False, name
        assert result["prob_max_abs_diff"] <= GOLDEN_TOLERANCE, name
    assert "review_threshold 0.9 in lorakit.json" in report["backends"]["torch-merged"]["review_mismatch"]


def test_golden_without_probabilities_is_refused_for_a_calibrated_model(calibrated: Path, tmp_path: Path) -> None:
    model_dir = copy_calibrated(calibrated, tmp_path)
    path = model_dir / "golden.safetensors"
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(path))
    del tensors["probabilities"]
    save_file(tensors, str(path), metadata=meta)
    report = verify_model(model_dir, backends=["torch"])
    for name, result in report["backends"].items():
        assert result["ok"] is False and "no probabilities for a calibrated model" in result["worst"]["error"], name


def calibrated_logits(probabilities: list[float], temperature: float) -> Any:
    """Logits whose softmax(logits / temperature) is `probabilities` (which sum to 1)."""
    return (torch.log(torch.tensor([probabilities], dtype=torch.float64)) * temperature).float().numpy()


def test_review_verdicts_may_differ_only_at_the_threshold(calibrated: Path) -> None:
    """A text whose golden top probability is within the tolerance of the threshold may go either way."""
    golden, manifest = read_golden(calibrated), read_manifest(calibrated)
    assert manifest.review_threshold == pytest.approx(0.45)
    one_text = replace(golden, texts=golden.texts[:1], values=golden.values[:1])
    # golden top 0.45005 (no review, 5e-5 above the threshold), here 0.44998 (review): within the tolerance
    near = replace(one_text, probabilities=torch.tensor([[0.45005, 0.3, 0.24995]]))
    result = compare_calibration(near, manifest, calibrated_logits([0.44998, 0.30001, 0.25001], manifest.temperature))
    assert result["ok"] is True and result["review_equal"] is True, result
    # golden top 0.5 (no review), here 0.4 (review): a real disagreement
    far = replace(one_text, probabilities=torch.tensor([[0.5, 0.3, 0.2]]))
    result = compare_calibration(far, manifest, calibrated_logits([0.4, 0.35, 0.25], manifest.temperature))
    assert result["ok"] is False and result["review_equal"] is False
    assert result["review_mismatch"].startswith("1 text(s) judged differently, first text 0")
