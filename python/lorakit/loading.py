"""Load an exported model directory back into torch (merged, or base + adapter unmerged)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from .errors import ModelDirError
from .manifest import resolve_base_path, sha256_file


def load_tokenizer(model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(model_dir))


def load_merged(model_dir: Path) -> torch.nn.Module:
    """model.safetensors with every key required.

    `from_pretrained(model_dir)` is avoided on purpose: with adapter_config.json present, transformers loads the
    base and re-applies the adapter, which does not reproduce the merged weights.
    """
    weights = Path(model_dir) / "model.safetensors"
    if not weights.is_file():
        raise ModelDirError(f"{model_dir}: model.safetensors missing")
    config = AutoConfig.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_config(config)
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as exc:
        raise ModelDirError(f"{weights}: weights do not match config.json ({str(exc).splitlines()[0]})") from exc
    return model.float().eval()


def load_unmerged(model_dir: Path, manifest: dict[str, Any]) -> torch.nn.Module:
    """The base model (checked against base.weights_sha256) with the PEFT adapter applied at runtime."""
    from peft import PeftModel

    if manifest.get("adapter") is None:
        raise ModelDirError(f"{model_dir}: no adapter (full fine-tune)")
    base = resolve_base_path(model_dir, manifest)
    if base is None or not (base / "model.safetensors").is_file():
        raise ModelDirError(f"{model_dir}: base model not found at {base}")
    expected = manifest["base"].get("weights_sha256")
    if expected and sha256_file(base / "model.safetensors") != expected:
        raise ModelDirError(f"{base}: base weights differ from the ones the adapter was trained on")
    labels = manifest["labels"]
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    return PeftModel.from_pretrained(model, str(model_dir)).float().eval()
