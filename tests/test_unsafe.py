"""Security verdicts: `unsafe_labels` declared at training, verdicts from the declaration only, never label text."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from lorakit.cli import main
from lorakit.golden import read_golden
from lorakit.inference import predict, unsafe_verdicts
from lorakit.manifest import read_manifest

from conftest import GUARD_LABELS, GUARD_UNSAFE, export_guard, write_labelled_csv

LABELS, UNSAFE = GUARD_LABELS, GUARD_UNSAFE


def test_verdicts_sum_the_declared_labels_and_follow_the_top_label() -> None:
    probabilities = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.45, 0.35]])
    unsafe, scores = unsafe_verdicts(probabilities, LABELS, ["positive", "negative"])
    assert unsafe == [True, True, False]
    assert scores == pytest.approx([0.7, 0.8, 0.55])
    # unsafe_score over one half while the top label is safe: the verdict still follows the top label
    assert scores[2] > 0.5 and unsafe[2] is False


@pytest.fixture(scope="module")
def unsafe_model(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path, fixture_builder: ModuleType) -> Path:
    return export_guard(fixture_builder, fixtures_dir / "tiny_bert_base", tmp_path_factory.mktemp("unsafe") / "guard")


def test_torch_predictions_carry_the_declared_verdict(unsafe_model: Path) -> None:
    manifest = read_manifest(unsafe_model)
    assert manifest.unsafe_labels == tuple(UNSAFE)
    assert json.loads((unsafe_model / "lorakit.json").read_text())["unsafe_labels"] == UNSAFE
    results = predict(unsafe_model, read_golden(unsafe_model).texts, "torch", top_k=3)
    assert {r["unsafe"] for r in results} == {True, False}  # both verdicts occur
    for result in results:
        probabilities = {item["label"]: item["probability"] for item in result["top"]}
        assert result["unsafe"] is (result["label"] in UNSAFE)
        assert result["unsafe_score"] == pytest.approx(probabilities["positive"] + probabilities["neutral"])


def test_no_declaration_no_verdict(fixtures_dir: Path) -> None:
    results = predict(fixtures_dir / "tiny_bert_lora_a", ["hello"], "torch")
    assert "unsafe" not in results[0] and "unsafe_score" not in results[0]


def test_cli_prints_the_verdict(unsafe_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(unsafe_model), "--backend", "torch", "--text", "awful terrible"]) == 0
    line = capsys.readouterr().out.strip()
    assert ("\tUNSAFE " in line) or ("\tsafe " in line)


def test_train_writes_unsafe_labels(fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_labelled_csv(tmp_path / "d.csv", rows=45)
    out = tmp_path / "model"
    args = ["train", "--data", str(data), "--base", str(fixtures_dir / "tiny_bert_base"), "--output", str(out),
            "--epochs", "1", "--max-seq-len", "16", "--batch-size", "8", "--unsafe-labels", "negative, neutral"]
    assert main(args) == 0
    assert read_manifest(out).unsafe_labels == ("negative", "neutral")
    capsys.readouterr()
    assert main(["predict", str(out), "--backend", "torch", "--json", "--text", "bad awful"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert isinstance(result["unsafe"], bool) and 0.0 <= result["unsafe_score"] <= 1.0


def test_train_refuses_unsafe_labels_not_in_the_data(fixtures_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = write_labelled_csv(tmp_path / "d.csv", rows=45)
    out = tmp_path / "model"
    args = ["train", "--data", str(data), "--base", str(fixtures_dir / "tiny_bert_base"), "--output", str(out),
            "--epochs", "1", "--max-seq-len", "16", "--unsafe-labels", "jailbreak,negative"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--unsafe-labels jailbreak not among the data's labels" in err and "\n" not in err
    assert not out.exists()
