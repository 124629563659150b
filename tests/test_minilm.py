"""The real offline base (all-MiniLM-L6-v2): a short LoRA fit exports and verifies within tolerance."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from lorakit.evaluate import predict_logits
from lorakit.loading import load_merged, load_tokenizer
from lorakit.manifest import read_manifest
from lorakit.verify import verify_model


@pytest.mark.slow
def test_minilm_lora_fits_exports_and_verifies(fixture_builder: ModuleType, tmp_path: Path) -> None:
    model_dir = fixture_builder.build_minilm_lora(tmp_path / "minilm_lora")
    manifest = read_manifest(model_dir)
    assert manifest.base.id == "sentence-transformers/all-MiniLM-L6-v2"
    report = verify_model(model_dir)
    assert report["ok"] is True, report
    assert report["backends"]["torch-merged"]["max_abs_diff"] <= 1e-5
    texts = [text for text, _ in fixture_builder.MINILM_TRAIN]
    targets = [label for _, label in fixture_builder.MINILM_TRAIN]
    predicted = predict_logits(load_merged(model_dir), load_tokenizer(model_dir), texts, 128).argmax(axis=1)
    assert sum(int(p == t) for p, t in zip(predicted, targets, strict=True)) >= 10  # it learned the training set
