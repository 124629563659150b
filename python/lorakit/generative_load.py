"""Load a generative model directory back into torch: merged weights, or the fp32 base with the adapter unmerged,
and its prompt over the directory's own tokenizer."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .errors import ModelDirError
from .loading import _FILE_ERRORS, check_adapter_config, check_adapter_keys, load_tokenizer, one_line
from .manifest import Manifest, sha256_file
from .prompt import PromptSpec, PromptTokens, special_ids


def load_config(model_dir: Path, manifest: Manifest) -> Any:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(model_dir))
    except _FILE_ERRORS as exc:
        raise ModelDirError(f"{Path(model_dir) / 'config.json'}: not a usable model config ({one_line(exc)})") \
            from None
    if config.model_type != manifest.architecture:
        raise ModelDirError(f"{model_dir}: lorakit.json architecture {manifest.architecture!r} differs from "
                            f"config.json model_type {config.model_type!r}")
    return config


def load_generative_merged(model_dir: Path, manifest: Manifest) -> torch.nn.Module:
    """model.safetensors into the *ForCausalLM of config.json; only a tied lm_head may be absent."""
    from transformers import AutoModelForCausalLM

    config = load_config(model_dir, manifest)
    weights = Path(model_dir) / "model.safetensors"
    try:
        state = load_file(str(weights))
    except _FILE_ERRORS as exc:
        raise ModelDirError(f"{weights}: not a valid safetensors file ({one_line(exc)})") from None
    model: torch.nn.Module = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        listed = ", ".join(sorted(missing)[:3] + sorted(result.unexpected_keys)[:3])
        raise ModelDirError(f"{weights}: weights do not match config.json (missing or unexpected: {listed})")
    if tied:
        getattr(model, "tie_weights")()  # noqa: B009 (a transformers method torch's Module typing does not know)
    return model.float().eval()


def load_generative_unmerged(model_dir: Path, manifest: Manifest) -> torch.nn.Module:
    """The fp32 base (checked against base.weights_sha256) with the adapter applied at runtime."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    load_config(model_dir, manifest)
    check_adapter_config(Path(model_dir) / "adapter_config.json")
    base = find_base(model_dir, manifest)
    if base is None:
        raise ModelDirError(f"{model_dir}: no base model recorded")
    expected = manifest.base.weights_sha256
    if expected and sha256_file(base / "model.safetensors") != expected:
        raise ModelDirError(f"{base}: base weights differ from the ones the adapter was trained on")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Found missing adapter keys")
            peft_model = PeftModel.from_pretrained(model, str(model_dir))
    except (*_FILE_ERRORS, RuntimeError) as exc:
        raise ModelDirError(f"{model_dir}: cannot load the base with the adapter ({one_line(exc)})") from None
    check_adapter_keys(peft_model, Path(model_dir) / "adapter_model.safetensors")
    return peft_model.float().eval()


def find_base(model_dir: Path, manifest: Manifest) -> Path | None:
    """The native core's rule (docs/FORMAT.md "Finding the base"); where this build of the core cannot read a
    generative manifest, the same rule in Python."""
    import os

    from .errors import IoError, UnsupportedError

    try:
        return manifest.base_dir(model_dir)
    except UnsupportedError:
        pass
    recorded, expected = manifest.base.path, manifest.base.weights_sha256
    if recorded and (Path(model_dir) / recorded / "model.safetensors").is_file():
        return (Path(model_dir) / recorded).resolve()
    names = [name for name in (manifest.base.id, Path(manifest.base.id or "").name, Path(recorded or "").name)
             if name and ".." not in Path(name).parts and not Path(name).is_absolute()]
    for root in filter(None, os.environ.get("LORAKIT_BASES", "").split(":")):
        for candidate in [Path(root)] + [Path(root) / name for name in names]:
            weights = candidate / "model.safetensors"
            if weights.is_file() and (expected is None or sha256_file(weights) == expected):
                return candidate
    raise IoError(f"{model_dir}: base model not found (base.path {recorded!r}, LORAKIT_BASES); put the base "
                  "back or list its parent directory in LORAKIT_BASES")


def prompt_tokens_of(model_dir: Path, manifest: Manifest, tokenizer: Any | None = None) -> PromptTokens:
    """The manifest's prompt over the directory's tokenizer and config.json's special tokens."""
    spec = PromptSpec.from_json(manifest.prompt)
    config = json.loads((Path(model_dir) / "config.json").read_text("utf-8"))
    return PromptTokens(tokenizer if tokenizer is not None else load_tokenizer(model_dir), spec,
                        *special_ids(config))
