"""Load an exported model directory back into torch (merged, or base + adapter unmerged).

Callers open the directory with `modeldir.open_model_dir` first (checksums, labels, tokenizer, the native core's
own load), so torch never runs on a directory the native core refuses. Every problem with the directory's
files becomes a one-line ModelDirError: a corrupt model is the user's to fix (re-export it), never a traceback.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from transformers import AutoConfig, AutoTokenizer

from .errors import ModelDirError, UnsupportedError
from .manifest import Manifest, sha256_file
from .modeldir import check_adapter_config as check_adapter_config  # re-exported: the importer's check
from .modeldir import open_model_dir
from .tasks import TASKS, auto_class, label_kwargs

# What transformers and safetensors raise on unreadable or malformed files.
_FILE_ERRORS = (OSError, ValueError, KeyError, SafetensorError)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (library messages often span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def load_tokenizer(model_dir: Path) -> Any:
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise ModelDirError(f"{path}: missing; re-export the model")
    try:
        return as_written(AutoTokenizer.from_pretrained(str(model_dir)), path)
    except Exception as exc:  # the tokenizers library raises bare Exception for a malformed tokenizer.json
        raise ModelDirError(f"{path}: not a usable tokenizer ({one_line(exc)})") from None


def as_written(tokenizer: Any, path: Path) -> Any:
    """`tokenizer` with the normalizer and pre-tokenizer of the tokenizer.json at `path`: transformers rebuilds
    them for some tokenizers (BERT's) from tokenizer_config.json, the native core runs the file as written (a
    line-break step, tokens.keep_line_breaks, lives only there)."""
    from tokenizers import Tokenizer

    written = Tokenizer.from_file(str(path))
    backend = tokenizer.backend_tokenizer
    backend.normalizer = written.normalizer
    backend.pre_tokenizer = written.pre_tokenizer
    return tokenizer


def load_config(model_dir: Path, manifest: Manifest) -> Any:
    """config.json, checked against the manifest: the manifest names the architecture and the labels."""
    path = Path(model_dir) / "config.json"
    if manifest.task not in TASKS:
        raise UnsupportedError(f"{model_dir}: task {manifest.task!r} has no torch loader "
                               f"(torch loads {', '.join(TASKS)})")
    if not path.is_file():
        raise ModelDirError(f"{path}: missing; re-export the model")
    try:
        config = AutoConfig.from_pretrained(str(model_dir))
    except _FILE_ERRORS as exc:
        raise ModelDirError(f"{path}: not a usable model config ({one_line(exc)})") from None
    if config.model_type != manifest.architecture:
        raise ModelDirError(f"{model_dir}: lorakit.json architecture {manifest.architecture!r} differs from "
                            f"config.json model_type {config.model_type!r}")
    id2label = {int(i): name for i, name in (config.id2label or {}).items()}
    from_config = [id2label.get(i) for i in range(len(id2label))]
    if from_config != list(manifest.labels):
        raise ModelDirError(f"{model_dir}: config.json id2label {from_config} differs from lorakit.json labels "
                            f"{list(manifest.labels)}")
    return config


def load_merged(model_dir: Path, manifest: Manifest | None = None) -> torch.nn.Module:
    """model.safetensors with every key required.

    `from_pretrained(model_dir)` is avoided on purpose: with adapter_config.json present, transformers loads the
    base and re-applies the adapter, which does not reproduce the merged weights.
    """
    manifest = manifest or open_model_dir(model_dir).manifest
    config = load_config(model_dir, manifest)
    weights = Path(model_dir) / "model.safetensors"
    if not weights.is_file():
        raise ModelDirError(f"{weights}: missing (merged weights); re-export the model")
    try:
        state = load_file(str(weights))
    except _FILE_ERRORS as exc:
        raise ModelDirError(f"{weights}: not a valid safetensors file ({one_line(exc)})") from None
    model: torch.nn.Module = auto_class(manifest.task).from_config(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # torch lists each mismatch on its own line after a generic first line
        details = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())
        raise ModelDirError(f"{weights}: weights do not match config.json ({details[:400] or one_line(exc)})") from None
    return model.float().eval()


def load_unmerged(model_dir: Path, manifest: Manifest) -> torch.nn.Module:
    """The base model (checked against base.weights_sha256) with the PEFT adapter applied at runtime."""
    from peft import PeftModel

    if manifest.adapter is None:
        raise ModelDirError(f"{model_dir}: no adapter (full fine-tune)")
    load_config(model_dir, manifest)
    check_adapter_config(Path(model_dir) / "adapter_config.json")
    base = manifest.base_dir(model_dir)
    if base is None:
        raise ModelDirError(f"{model_dir}: no base model recorded")
    expected = manifest.base.weights_sha256
    if expected and sha256_file(base / "model.safetensors") != expected:
        raise ModelDirError(f"{base}: base weights differ from the ones the adapter was trained on")
    try:
        model = auto_class(manifest.task).from_pretrained(str(base), **label_kwargs(list(manifest.labels)))
    except (*_FILE_ERRORS, RuntimeError) as exc:
        raise ModelDirError(f"{base}: cannot load the base model ({one_line(exc)})") from None
    try:
        with warnings.catch_warnings():  # PEFT only warns about missing tensors; check_adapter_keys refuses them
            warnings.filterwarnings("ignore", message="Found missing adapter keys")
            peft_model = PeftModel.from_pretrained(model, str(model_dir))
    except (*_FILE_ERRORS, RuntimeError) as exc:
        raise ModelDirError(f"{model_dir}: cannot apply the adapter ({one_line(exc)})") from None
    check_adapter_keys(peft_model, Path(model_dir) / "adapter_model.safetensors")
    return peft_model.float().eval()


def check_adapter_keys(model: Any, path: Path) -> None:
    """Every tensor the adapter model expects is in the file and every tensor in the file is used."""
    from peft import get_peft_model_state_dict

    expected = set(get_peft_model_state_dict(model))
    with safe_open(str(path), framework="pt") as handle:
        saved = set(handle.keys())
    for problem, keys in (("missing", expected - saved), ("unused", saved - expected)):
        if keys:
            listed = ", ".join(sorted(keys)[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            raise ModelDirError(f"{path}: {problem} adapter tensors {listed}; re-export the model")

