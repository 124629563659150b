"""`lorakit verify`: passes on exported models and fails (worst element shown) on tampered ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from lorakit.cli import main
from lorakit.golden import GOLDEN_TOLERANCE
from lorakit.verify import verify_model


def copy_model(fixtures_dir: Path, name: str, tmp_path: Path) -> Path:
    """Copy next to a copy of the base, so the relative base path still resolves."""
    shutil.copytree(fixtures_dir / "tiny_bert_base", tmp_path / "tiny_bert_base")
    return Path(shutil.copytree(fixtures_dir / name, tmp_path / name))


def tamper(path: Path, key_part: str, delta: float = 5e-2) -> str:
    """Shift the first row of one tensor (a uniform shift would be hidden by the following LayerNorm)."""
    tensors = load_file(str(path))
    key = next(k for k in sorted(tensors) if key_part in k)
    tensors[key] = tensors[key].clone()
    tensors[key][0] += delta
    save_file(tensors, str(path), metadata={"format": "pt"})
    return key


@pytest.mark.parametrize("name", ["tiny_bert_lora_a", "tiny_bert_lora_b", "tiny_bert_full"])
def test_verify_passes_on_fixtures(fixtures_dir: Path, name: str) -> None:
    report = verify_model(fixtures_dir / name)
    assert report["ok"] is True, report
    expected = {"torch-merged", "onnxruntime"} | ({"torch-unmerged"} if name != "tiny_bert_full" else set())
    assert expected <= set(report["backends"])
    for result in report["backends"].values():
        assert result["ids_equal"] and result["argmax_equal"] and result["max_abs_diff"] <= GOLDEN_TOLERANCE


def test_cli_verify_json_shape_and_exit_zero(fixtures_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(fixtures_dir / "tiny_bert_lora_a"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    for result in report["backends"].values():
        assert {"max_abs_diff", "argmax_equal", "ids_equal", "ok"} <= set(result)


def test_tampered_merged_weights_fail(fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = copy_model(fixtures_dir, "tiny_bert_lora_a", tmp_path)
    tamper(model_dir / "model.safetensors", "encoder.layer.1.output.dense.weight")
    report = verify_model(model_dir)
    assert report["ok"] is False
    assert report["checksums"]["mismatched"] == ["model.safetensors"]
    merged = report["backends"]["torch-merged"]
    assert merged["ok"] is False and merged["max_abs_diff"] > GOLDEN_TOLERANCE
    assert report["backends"]["onnxruntime"]["ok"] is False
    assert report["backends"]["torch-unmerged"]["ok"] is True  # the adapter path does not read merged weights
    assert main(["verify", str(model_dir)]) == 1
    out = capsys.readouterr().out
    assert "worst: row" in out and "FAIL" in out


def test_tampered_adapter_fails_only_the_unmerged_path(fixtures_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_model(fixtures_dir, "tiny_bert_lora_b", tmp_path)
    tamper(model_dir / "adapter_model.safetensors", "layer.0.attention.self.query.lora_B", delta=0.5)
    report = verify_model(model_dir)
    assert report["ok"] is False
    unmerged = report["backends"]["torch-unmerged"]
    assert unmerged["ok"] is False and unmerged["max_abs_diff"] > GOLDEN_TOLERANCE
    assert {"row", "col", "expected", "actual", "text"} <= set(unmerged["worst"])
    assert report["backends"]["torch-merged"]["ok"] is True


def test_tampered_golden_logits_fail_every_backend(fixtures_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_model(fixtures_dir, "tiny_bert_full", tmp_path)
    path = model_dir / "golden.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(path))
    tensors["logits"][3, 1] += 2 * GOLDEN_TOLERANCE
    save_file(tensors, str(path), metadata=meta)
    report = verify_model(model_dir)
    for name in ("torch-merged", "onnxruntime"):
        result = report["backends"][name]
        assert result["ok"] is False and (result["worst"]["row"], result["worst"]["col"]) == (3, 1)


def test_changed_base_weights_are_refused(fixtures_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_model(fixtures_dir, "tiny_bert_lora_a", tmp_path)
    tamper(tmp_path / "tiny_bert_base" / "model.safetensors", "embeddings.word_embeddings")
    result = verify_model(model_dir)["backends"]["torch-unmerged"]
    assert result["ok"] is False and "base weights differ" in result["worst"]["error"]


def test_verify_rejects_a_non_model_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a lorakit model directory" in err and "\n" not in err
