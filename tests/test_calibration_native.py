"""lorakit.json `calibration` through the native core (PyO3) and `lorakit predict`: calibrated probabilities and
review verdicts match the golden file and torch, and a tampered temperature or threshold fails the golden check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from lorakit import native
from lorakit.golden import GOLDEN_FILE, read_golden, write_golden
from lorakit.inference import format_predictions, predict
from lorakit.manifest import Calibration, read_manifest

TEMPERATURE, THRESHOLD = 1.7, 0.45
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def calibrated(fixtures_dir: Path, fixture_builder: ModuleType) -> Path:
    """tiny_bert_lora_a with the fixture calibration (temperature 1.7, review_threshold 0.45)."""
    out = fixtures_dir / "tiny_bert_calibrated"
    if not out.exists():
        fixture_builder.build_calibrated(fixtures_dir / "tiny_bert_lora_a", out)
    return out


def copy_with(calibrated: Path, tmp_path: Path, **changes: Any) -> Path:
    """A copy of the calibrated fixture (next to a copy of its base) with `changes` to its calibration; a
    change to None removes that key, `calibration=None` the whole object."""
    shutil.copytree(calibrated.parent / "tiny_bert_base", tmp_path / "tiny_bert_base")
    copy = Path(shutil.copytree(calibrated, tmp_path / calibrated.name))
    path = copy / "lorakit.json"
    manifest = json.loads(path.read_text("utf-8"))
    if "calibration" in changes and changes["calibration"] is None:
        del manifest["calibration"]
    else:
        manifest["calibration"] |= changes
    path.write_text(json.dumps(manifest), "utf-8")
    return copy


def softmax_over_t(logits: np.ndarray, temperature: float) -> np.ndarray:
    return torch.softmax(torch.from_numpy(np.asarray(logits, np.float64)) / temperature, dim=-1).numpy()


def assert_calibrated_parity(report: dict[str, Any], what: str) -> None:
    assert report["ok"] and report["ids_equal"] and report["argmax_equal"], (what, report)
    assert report["max_abs_diff"] <= TOLERANCE, (what, report)
    assert report["prob_max_abs_diff"] is not None and report["prob_max_abs_diff"] <= TOLERANCE, (what, report)
    assert report["prob_tolerance"] == TOLERANCE and report["review_equal"], (what, report)


def test_golden_probabilities_are_float64_softmax_of_the_torch_logits(calibrated: Path) -> None:
    golden = read_golden(calibrated)
    assert golden.review_threshold == THRESHOLD and golden.probabilities is not None
    expected = torch.softmax(golden.values.to(torch.float64) / TEMPERATURE, dim=-1).to(torch.float32)
    assert torch.equal(golden.probabilities, expected)
    top = golden.probabilities.max(dim=-1).values
    assert (top < THRESHOLD).any() and (top >= THRESHOLD).any(), "the fixture has both review verdicts"


def test_calibrated_fixture_matches_golden_merged_and_runtime(calibrated: Path) -> None:
    for merged in (True, False):
        model = native.Model.load(calibrated, merged=merged, threads=1)
        assert (model.temperature, model.review_threshold) == (TEMPERATURE, THRESHOLD)
        info = model.task_info()
        assert (info["temperature"], info["review_threshold"]) == (TEMPERATURE, THRESHOLD)
        assert_calibrated_parity(model.verify_golden(), f"merged={merged}")
    reports = native.verify_backends(calibrated, threads=1)
    assert set(reports) == {"native-merged", "native-runtime"} and all(r["ok"] for r in reports.values())


def test_probabilities_top_k_and_review_follow_the_calibration(calibrated: Path, fixtures_dir: Path) -> None:
    texts = read_golden(calibrated).texts
    model = native.Model.load(calibrated, threads=1)
    plain = native.Model.load(fixtures_dir / "tiny_bert_lora_a", threads=1)
    result, raw = model.classify(texts, top_k=3), plain.classify(texts, top_k=3)
    np.testing.assert_array_equal(result.logits, raw.logits)  # logits stay the model's raw outputs
    probabilities = softmax_over_t(result.logits, TEMPERATURE)
    np.testing.assert_allclose(result.probabilities, probabilities, atol=1e-6)
    np.testing.assert_allclose([row[0] for row in result.scores], probabilities.max(axis=1), atol=1e-6)
    assert result.needs_review == [bool(p < THRESHOLD) for p in probabilities.max(axis=1)]
    assert True in result.needs_review and False in result.needs_review
    assert (result.temperature, result.review_threshold) == (TEMPERATURE, THRESHOLD)
    assert raw.needs_review == [False] * len(texts)
    assert (raw.temperature, raw.review_threshold) == (1.0, None)
    assert plain.task_info()["review_threshold"] is None


@pytest.mark.parametrize(("changes", "what"), [
    ({"temperature": 1.0}, "probabilities"),
    ({"temperature": 2.5}, "probabilities"),
    ({"calibration": None}, "probabilities"),
    ({"review_threshold": 0.6}, "review"),
    ({"review_threshold": None}, "review"),
])
def test_tampered_calibration_fails_the_golden_check(calibrated: Path, tmp_path: Path, changes: dict[str, Any],
                                                     what: str) -> None:
    copy = copy_with(calibrated, tmp_path, **changes)
    for merged in (True, False):
        report = native.Model.load(copy, merged=merged, threads=1).verify_golden()
        assert not report["ok"], (changes, report)
        assert report["max_abs_diff"] <= TOLERANCE, "the logits are untouched"
        if what == "probabilities":
            assert report["prob_max_abs_diff"] > TOLERANCE, report
        else:
            assert not report["review_equal"] and report["prob_max_abs_diff"] <= TOLERANCE, report
    assert not any(r["ok"] for r in native.verify_backends(copy, threads=1).values())


def test_calibrated_model_without_golden_probabilities_is_refused(fixtures_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(fixtures_dir / "tiny_bert_base", tmp_path / "tiny_bert_base")
    copy = Path(shutil.copytree(fixtures_dir / "tiny_bert_lora_a", tmp_path / "tiny_bert_lora_a"))
    manifest = json.loads((copy / "lorakit.json").read_text("utf-8"))
    manifest["calibration"] = {"temperature": TEMPERATURE, "review_threshold": THRESHOLD}
    (copy / "lorakit.json").write_text(json.dumps(manifest), "utf-8")
    with pytest.raises(native.FormatError, match="no probabilities for a calibrated model"):
        native.Model.load(copy, threads=1).verify_golden()


def test_each_adapter_on_a_shared_base_has_its_own_calibration(calibrated: Path, fixtures_dir: Path) -> None:
    base = native.Model.load_base(fixtures_dir / "tiny_bert_base", threads=1)
    base.add_adapter("plain", fixtures_dir / "tiny_bert_lora_a")
    base.add_adapter("calibrated", calibrated)
    assert base.task_info("plain")["temperature"] == 1.0
    assert base.task_info("calibrated")["temperature"] == TEMPERATURE
    assert_calibrated_parity(base.verify_golden("calibrated"), "shared base")
    texts = ["my card was declined", "", "close my account please"]
    plain, tempered = base.classify(texts, adapter="plain"), base.classify(texts, adapter="calibrated")
    np.testing.assert_array_equal(plain.logits, tempered.logits)
    np.testing.assert_allclose(tempered.probabilities, softmax_over_t(plain.logits, TEMPERATURE), atol=1e-6)


def test_predict_reports_needs_review_on_both_backends(calibrated: Path, fixtures_dir: Path) -> None:
    texts = read_golden(calibrated).texts
    native_results = predict(calibrated, texts, "native", top_k=3)
    torch_results = predict(calibrated, texts, "torch", top_k=3)
    golden_top = read_golden(calibrated).probabilities.max(dim=-1).values  # type: ignore[union-attr]
    for n, t, top in zip(native_results, torch_results, golden_top.tolist(), strict=True):
        assert n["label"] == t["label"]
        assert abs(n["top"][0]["probability"] - t["top"][0]["probability"]) <= TOLERANCE
        assert abs(n["top"][0]["probability"] - top) <= TOLERANCE
        if abs(top - THRESHOLD) > TOLERANCE:
            assert n["needs_review"] is t["needs_review"] is (top < THRESHOLD)
    assert any(r["needs_review"] for r in native_results) and not all(r["needs_review"] for r in native_results)
    assert "NEEDS REVIEW" in format_predictions(native_results, mask=False)
    plain = predict(fixtures_dir / "tiny_bert_lora_a", texts[:3], "torch") + \
        predict(fixtures_dir / "tiny_bert_lora_a", texts[:3], "native")
    assert [r["needs_review"] for r in plain] == [False] * 6


def test_write_golden_stays_backward_compatible(calibrated: Path, tmp_path: Path) -> None:
    golden = read_golden(calibrated)
    batch = {"input_ids": golden.input_ids, "attention_mask": golden.attention_mask,
             "token_type_ids": golden.token_type_ids}
    path = tmp_path / GOLDEN_FILE
    write_golden(path, golden.texts, batch, golden.values, golden.max_seq_len)
    shutil.copy(path, tmp_path / "plain.safetensors")
    assert read_golden_file(tmp_path, "plain.safetensors").probabilities is None
    # The lorakit.json object works as well as a Calibration; no threshold writes no metadata.
    write_golden(path, golden.texts, batch, golden.values, golden.max_seq_len, calibration={"temperature": 2.0})
    plain_t2 = read_golden_file(tmp_path, GOLDEN_FILE)
    assert plain_t2.review_threshold is None and plain_t2.probabilities is not None
    torch.testing.assert_close(plain_t2.probabilities, torch.softmax(golden.values.double() / 2, -1).float())
    with pytest.raises(ValueError, match="only sequence classification"):
        write_golden(path, golden.texts, batch, golden.values, golden.max_seq_len, task="embedding",
                     calibration=Calibration(temperature=2.0))


def read_golden_file(directory: Path, name: str) -> Any:
    target = directory / f"dir-{name}"
    target.mkdir()
    shutil.copy(directory / name, target / GOLDEN_FILE)
    return read_golden(target)


def test_manifest_of_the_fixture_reads_back(calibrated: Path) -> None:
    calibration = read_manifest(calibrated).calibration
    assert calibration == Calibration(temperature=TEMPERATURE, review_threshold=THRESHOLD, target_precision=0.9,
                                      fitted_on="validation")


def test_cli_predict_json_carries_needs_review(calibrated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lorakit.cli import main

    texts = read_golden(calibrated).texts[:6]
    runs = {}
    for backend in ("native", "torch"):
        args = ["predict", str(calibrated), "--json", "--backend", backend]
        assert main(args + [arg for text in texts for arg in ("--text", text)]) == 0
        runs[backend] = json.loads(capsys.readouterr().out)
    assert [r["needs_review"] for r in runs["native"]] == [r["needs_review"] for r in runs["torch"]]
    assert {r["needs_review"] for r in runs["native"]} == {True, False}
