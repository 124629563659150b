"""ONNX export of a merged model (inputs input_ids / attention_mask / token_type_ids): output `logits` ([N, C] or
token logits [N, L, C]) or, for an embedding, `embeddings` [N, D] pooled and normalised as the manifest says."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import ExportError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def output_name(task: str) -> str:
    return "embeddings" if task == "embedding" else "logits"


class _Outputs(torch.nn.Module):
    """ONNX graphs need positional inputs and a plain tensor output."""

    def __init__(self, model: torch.nn.Module, task: str, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.model, self.task, self.pooling, self.normalize = model, task, pooling, normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> Any:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        if self.task != "embedding":
            return out.logits
        from .embedding import pool

        return pool(out.last_hidden_state, attention_mask, self.pooling, self.normalize)


def export_onnx(model: torch.nn.Module, batch: dict[str, torch.Tensor], path: Path,
                task: str = "sequence_classification", pooling: str = "mean", normalize: bool = True) -> Path:
    """Write one self-contained .onnx file with dynamic batch and sequence axes."""
    wrapper = _Outputs(model.eval(), task, pooling, normalize)
    args = tuple(batch[name] for name in INPUT_NAMES)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    output = output_name(task)
    output_axes = {0: "batch", 1: "sequence"} if task == "token_classification" else {0: "batch"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, args, str(path), input_names=list(INPUT_NAMES), output_names=[output],
                dynamic_axes={**dynamic, output: output_axes}, dynamo=False, opset_version=17,
                do_constant_folding=True,
            )
    except Exception as exc:  # the exporter raises many unrelated types; report them as one export error
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    return Path(path)
