"""ONNX export of a merged classifier (inputs input_ids / attention_mask / token_type_ids, output logits)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import ExportError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class _LogitsOnly(torch.nn.Module):
    """ONNX graphs need positional inputs and a plain tensor output."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> Any:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def export_onnx(model: torch.nn.Module, batch: dict[str, torch.Tensor], path: Path) -> Path:
    """Write one self-contained .onnx file with dynamic batch and sequence axes."""
    wrapper = _LogitsOnly(model.eval())
    args = tuple(batch[name] for name in INPUT_NAMES)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, args, str(path), input_names=list(INPUT_NAMES), output_names=["logits"],
                dynamic_axes={**dynamic, "logits": {0: "batch"}}, dynamo=False, opset_version=17,
                do_constant_folding=True,
            )
    except Exception as exc:  # the exporter raises many unrelated types; report them as one export error
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    return Path(path)
