"""Native inference through the Rust core (PyO3 extension `lorakit._native`).

`Model` is the one handle: `Model.load` gives a model directory's own task (merged, or its adapter applied at
runtime); `Model.load_base` gives a base that takes any number of named adapters. Every error is a subclass of
`lorakit.errors.LorakitError`, one class per error kind of the core.

Generative classification (docs/generative.md): `classify` scores the manifest's labels; `classify_fewshot(text,
examples, labels=None)` puts labelled examples (`(document, label)` pairs or `{"document", "label"}` dicts) in the
prompt and scores `labels`, or the manifest's followed by each new example label; `next_token_logits` gives the
`[n, vocab]` logits after each prompt, which golden checks compare.

NaN or Inf outputs (logits, token logits, embeddings; e.g. from NaN or Inf weights) raise `ComputeError` naming the
text and the output; `Model.load(..., allow_non_finite=True)` (and `load_base`) returns the raw values instead.
`verify_golden` always compares the raw values and reports non-finite ones as a mismatch.

A sequence classifier whose manifest carries a `calibration` (docs/FORMAT.md "Calibration") reports calibrated
`probabilities` = softmax(logits / temperature) (top-k scores and unsafe scores too; `logits` stay raw) and, per
text, `needs_review` = the top probability is below its review threshold (all False without one). The result's
and the model's `temperature` and `review_threshold` (and `task_info(adapter)`, per adapter) say which apply;
`verify_golden` also compares the golden `probabilities` (`prob_max_abs_diff`) and review verdicts
(`review_equal`).

`precision="bf16"` or `"int8"` on `Model.load` / `load_base` runs the encoder's dense layers in reduced precision
(CPU only; docs/precision.md has the references, tolerances and measured cost); the default `"fp32"` is the one
the golden files gate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._native import (
    ClassificationResult,
    ComputeError,
    ConfigError,
    FormatError,
    InputError,
    InternalError,
    IoError,
    LorakitError,
    Model,
    ShapeError,
    TokenClassificationResult,
    UnsupportedError,
    __version__,
    architectures,
    mask_entities,
)

__all__ = [
    "ClassificationResult",
    "ComputeError",
    "ConfigError",
    "FormatError",
    "InputError",
    "InternalError",
    "IoError",
    "LorakitError",
    "Model",
    "ShapeError",
    "TokenClassificationResult",
    "UnsupportedError",
    "__version__",
    "architectures",
    "has_adapter",
    "mask_entities",
    "verify_backends",
]


def has_adapter(model_dir: str | Path) -> bool:
    """True when the directory's manifest declares an adapter and the PEFT files are present."""
    directory = Path(model_dir)
    try:
        manifest = json.loads((directory / "lorakit.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(manifest, dict)
        and manifest.get("adapter") is not None
        and (directory / "adapter_config.json").is_file()
        and (directory / "adapter_model.safetensors").is_file()
    )


def verify_backends(model_dir: str | Path, threads: int | None = None) -> dict[str, dict[str, Any]]:
    """Recompute golden.safetensors natively: {"native-merged": report, "native-runtime": report}.

    Each report has max_abs_diff, argmax_equal, ids_equal, ok and worst ({row, col, expected, actual}, or
    {error} when the model could not be loaded); for a calibrated model also prob_max_abs_diff and review_equal.
    "native-runtime" is present only for adapter models.
    """
    directory = str(model_dir)
    backends: dict[str, Callable[[], Model]] = {
        "native-merged": lambda: Model.load(directory, merged=True, threads=threads),
    }
    if has_adapter(directory):
        backends["native-runtime"] = lambda: Model.load(directory, merged=False, threads=threads)
    results: dict[str, dict[str, Any]] = {}
    for name, load in backends.items():
        try:
            results[name] = dict(load().verify_golden())
        except LorakitError as exc:
            results[name] = {
                "max_abs_diff": float("inf"),
                "argmax_equal": False,
                "ids_equal": False,
                "ok": False,
                "worst": {"error": f"{type(exc).__name__}: {exc}"},
            }
    return results
