"""The one reading of a model directory that every Python path goes through (native and torch backends alike).

`open_model_dir` checks what the native core checks before anything computes: the manifest's types, the sha256
of every file in its `files` table, config.json against the manifest (architecture, labels in order), the
tokenizer and golden file present and readable, and the weights loadable by the native core (merged, and the
adapter on its base when that base is found). A torch path that ran on a directory the native core refuses
would give an answer no other runtime reproduces, so it never gets the chance. Needs no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, FormatError, IoError, UnsupportedError
from .manifest import EMBEDDING, GENERATIVE, Manifest, read_manifest, sha256_file

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
GOLDEN_FILE = "golden.safetensors"


@dataclass
class ModelDir:
    """A model directory that passed every check; `native` is the merged native model loaded while checking."""

    path: Path
    manifest: Manifest
    config: dict[str, Any]
    native: Any = field(default=None, repr=False)


def open_model_dir(model_dir: Path) -> ModelDir:
    """Read and check `model_dir`; any problem is a one-line ModelDirError (IoError, FormatError, ConfigError,
    UnsupportedError, ShapeError: the native core's kinds).

    The adapter is loaded on its base when the base is found with its recorded weights. A base that is missing
    or different lies outside the directory: merged paths do not need it, and verify reports it per backend.
    """
    path = Path(model_dir).absolute()
    manifest = read_manifest(path)
    check_checksums(path, manifest)
    config = read_config(path, manifest)
    require_file(path, TOKENIZER_FILE, "the tokenizer; runtimes never substitute another")
    native = load_native(path, manifest)
    if (path / GOLDEN_FILE).is_file():
        from .verify import golden_header

        golden_header(path)
    return ModelDir(path, manifest, config, native)


def check_checksums(path: Path, manifest: Manifest) -> None:
    """Every file of the manifest's table exists and has its recorded sha256."""
    for rel, expected in manifest.files.items():
        file = path / rel
        if not file.is_file():
            raise IoError(f"{file}: missing (listed in lorakit.json files); re-export the model")
        try:
            actual = sha256_file(file)
        except OSError as exc:
            raise IoError(f"{file}: cannot read it ({exc.strerror})") from None
        if actual != expected:
            raise FormatError(f"checksum mismatch for {file}: expected sha256 {expected}, got {actual} (modified "
                              "after export); re-export the model")


def require_file(path: Path, rel: str, what: str) -> Path:
    file = path / rel
    if not file.is_file():
        raise IoError(f"{file}: missing ({what}); re-export the model")
    return file


def read_config(path: Path, manifest: Manifest) -> dict[str, Any]:
    """config.json as a JSON object whose model_type and id2label agree with the manifest."""
    from .models import architecture

    if manifest.task == GENERATIVE:
        from .prompt import GENERATIVE_ARCHITECTURES

        if manifest.architecture not in GENERATIVE_ARCHITECTURES:
            raise UnsupportedError(f"{path}: architecture {manifest.architecture!r} is not a generative decoder "
                                   f"(supported: {', '.join(GENERATIVE_ARCHITECTURES)})")
    else:
        architecture(manifest.architecture)  # UnsupportedError naming what the core serves
    file = require_file(path, CONFIG_FILE, "the model config")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{file}: invalid JSON ({' '.join(str(exc).split())})") from None
    except OSError as exc:
        raise IoError(f"{file}: cannot read it ({exc.strerror})") from None
    if not isinstance(config, dict):
        raise FormatError(f"{file}: expected a JSON object")
    if config.get("model_type") != manifest.architecture:
        raise ConfigError(f"{path}: lorakit.json architecture {manifest.architecture!r} differs from config.json "
                          f"model_type {config.get('model_type')!r}")
    if manifest.task not in (EMBEDDING, GENERATIVE):  # a generative model's labels are in its prompt
        labels = config_labels(file, config)
        if labels != list(manifest.labels):
            raise ConfigError(f"{path}: config.json id2label {labels} differs from lorakit.json labels "
                              f"{list(manifest.labels)} (label order is the head's output order)")
    return config


def config_labels(file: Path, config: dict[str, Any]) -> list[Any]:
    id2label = config.get("id2label")
    if not isinstance(id2label, dict):
        raise ConfigError(f"{file}: id2label missing or not an object")
    try:
        by_index = {int(key): name for key, name in id2label.items()}
    except ValueError:
        raise ConfigError(f"{file}: id2label keys must be integers") from None
    return [by_index.get(i) for i in range(len(by_index))]


def load_native(path: Path, manifest: Manifest) -> Any:
    """The native core's own strict load (weights, tokenizer, head), merged; the adapter on its base too."""
    from ._native import Model

    if manifest.task == GENERATIVE and not native_decodes(manifest.architecture):
        return None  # this build of the core predates generative models; verify reports native as not run
    merged = Model.load(str(path), merged=True)
    if manifest.adapter is None:
        return merged
    check_adapter_config(path / "adapter_config.json")
    if base_matches(path, manifest):
        Model.load(str(path), merged=False)
    return merged


def native_decodes(architecture: str) -> bool:
    """The native core of this build serves the causal LM `architecture` (and the bindings its few-shot call)."""
    from ._native import Model, architectures

    known = {entry["model_type"] for entry in architectures()} | {alias for entry in architectures()
                                                                  for alias in entry["aliases"]}
    return architecture in known and hasattr(Model, "classify_fewshot")


def base_matches(path: Path, manifest: Manifest) -> bool:
    """The adapter's base is found and has the weights it was trained on."""
    try:
        base = manifest.base_dir(path)
    except IoError:
        return False
    expected = manifest.base.weights_sha256
    weights = None if base is None else base / "model.safetensors"
    return weights is not None and weights.is_file() and (expected is None or sha256_file(weights) == expected)


def check_adapter_config(path: Path) -> None:
    """Refuse what PEFT would load into something else than the exported model (as export and the core do)."""
    if not path.is_file():
        raise IoError(f"{path}: missing (the manifest declares an adapter); re-export the model")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not readable JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(config, dict):
        raise FormatError(f"{path}: expected a JSON object")
    if config.get("use_dora") or config.get("bias", "none") != "none":
        raise UnsupportedError(f"{path}: use_dora or trained biases cannot be reproduced; export plain LoRA")
