"""NaN or Inf weights through the PyO3 binding: ComputeError naming the text by default, raw values with
allow_non_finite=True, and a golden mismatch (not an exception) from verify_golden."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from lorakit import native
from lorakit.errors import ComputeError, LorakitError


def tampered(source: Path, tmp_path: Path, key: str, value: float, file: str = "model.safetensors") -> Path:
    """A copy of `source` (beside a copy of its base) with `value` added to the first element of `key` in `file`."""
    if not (tmp_path / "tiny_bert_base").exists():
        shutil.copytree(source.parent / "tiny_bert_base", tmp_path / "tiny_bert_base")
    model_dir = Path(shutil.copytree(source, tmp_path / source.name))
    weights = model_dir / file
    tensors = load_file(str(weights))
    tensors[key] = tensors[key].copy()
    tensors[key].reshape(-1)[0] += np.float32(value)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    manifest = json.loads((model_dir / "lorakit.json").read_text())
    manifest["files"][file] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (model_dir / "lorakit.json").write_text(json.dumps(manifest))
    return model_dir


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_logits_raise_compute_error(fixtures_dir: Path, tmp_path: Path, value: float) -> None:
    model_dir = tampered(fixtures_dir / "tiny_bert_full", tmp_path, "classifier.bias", value)
    model = native.Model.load(model_dir, threads=1)
    with pytest.raises(ComputeError, match=r"classify: text 0: logit of label 0 .* is (NaN|inf).*allow_non_finite"):
        model.classify(["fine", "also fine"])
    assert issubclass(ComputeError, LorakitError)

    raw = native.Model.load(model_dir, threads=1, allow_non_finite=True)
    logits = raw.classify(["fine", "also fine"]).logits
    assert logits.shape == (2, len(raw.labels))
    assert np.isnan(logits[:, 0]).all() if np.isnan(value) else np.isposinf(logits[:, 0]).all()
    assert np.isfinite(logits[:, 1:]).all()

    report = model.verify_golden()
    assert report["ok"] is False and report["max_abs_diff"] == float("inf"), report


def test_load_base_option_covers_its_adapters(fixtures_dir: Path, tmp_path: Path) -> None:
    adapter = tampered(fixtures_dir / "tiny_bert_lora_a", tmp_path, "base_model.model.classifier.bias",
                       float("-inf"), file="adapter_model.safetensors")
    for allow in (False, True):
        base = native.Model.load_base(tmp_path / "tiny_bert_base", threads=1, allow_non_finite=allow)
        base.add_adapter("bad", adapter)
        base.add_adapter("good", fixtures_dir / "tiny_bert_lora_b")
        assert np.isfinite(base.classify(["x"], adapter="good").logits).all()
        if allow:
            assert np.isneginf(base.classify(["x"], adapter="bad").logits[0, 0])
        else:
            with pytest.raises(ComputeError, match="is -inf"):
                base.classify(["x"], adapter="bad")


def test_token_and_embedding_outputs(task_fixtures: Path, tmp_path: Path) -> None:
    token_dir = tampered(task_fixtures / "tiny_bert_token_lora", tmp_path, "classifier.bias", float("inf"))
    with pytest.raises(ComputeError, match=r"extract_entities: text 0: logit of token 0 for label 0"):
        native.Model.load(token_dir, threads=1).extract_entities(["Ana lives in Oslo"])
    raw = native.Model.load(token_dir, threads=1, allow_non_finite=True).extract_entities(["Ana lives in Oslo"])
    assert np.isposinf(raw.token_logits[0][:, 0]).all()

    embed_dir = tampered(task_fixtures / "tiny_bert_embed_lora", tmp_path, "encoder.layer.1.output.dense.bias",
                         float("nan"))
    with pytest.raises(ComputeError, match=r"embed: text 0: embedding value 0 is NaN"):
        native.Model.load(embed_dir, threads=1).embed(["a", "b"])
    vectors = native.Model.load(embed_dir, threads=1, allow_non_finite=True).embed(["a", "b"])
    assert vectors.shape[0] == 2 and np.isnan(vectors).all()
