"""Torch references of the native core's reduced-precision modes (docs/precision.md).

The native `precision="bf16"` / `"int8"` options change only the encoder's dense layers; embeddings, layer
norms, attention, the head (BERT's pooler included) and runtime LoRA deltas stay f32. `reference_model` builds a
torch model that computes the same way, so native logits can be held to a tolerance of their own precision:

- `bf16`: each such `nn.Linear` computes `F.linear(bf16(x), bf16(W)) + b` with the bf16 values widened to f32
  (bf16 products are exact in f32: bf16 inputs and weights with f32 accumulation, as `vdpbf16ps` computes);
- `int8`: the native scheme in torch ops: int8 weights symmetric per output channel, inputs asymmetric u8 per row,
  exact integer sums (in f64), scaled to f32;
- `int8-dynamic`: `torch.ao.quantization.quantize_dynamic(..., {nn.Linear}, dtype=torch.qint8)` on those layers,
  torch's own int8 path (per-tensor weights, activations per tensor over the whole batch with a 7-bit range), a
  coarser scheme than the native one, so its tolerance is wider.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

PRECISIONS = ("fp32", "bf16", "int8")
REFERENCES = (*PRECISIONS, "int8-dynamic")

# Largest |native - torch reference| logit difference accepted at each precision, against the reference of the
# same precision (fp32: the golden gate). Measured on .fixtures/minilm_lora (docs/precision.md).
TOLERANCES = {"fp32": 1e-4, "bf16": 5e-2, "int8": 0.75, "int8-dynamic": 1.0}


class Bf16Linear(nn.Module):
    """`x @ W^T + b` with `x` and `W` rounded to bf16 and the products summed in f32."""

    weight: torch.Tensor

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16).float(), self.weight.float(), self.bias)


class Int8Linear(nn.Module):
    """The native int8 arithmetic: per-channel int8 weights, per-row u8 inputs, integer sums, f32 output."""

    levels: torch.Tensor
    scale: torch.Tensor

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1) / 127.0
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        levels = torch.where(scale[:, None] > 0, torch.round(weight / safe[:, None]), 0.0).clamp(-127, 127)
        self.register_buffer("levels", levels.double())
        self.register_buffer("scale", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo = x.amin(dim=-1, keepdim=True).clamp(max=0.0)
        hi = x.amax(dim=-1, keepdim=True).clamp(min=0.0)
        step = torch.where(hi > lo, (hi - lo) / 255.0, torch.ones_like(hi))
        zero = torch.round(-lo / step).clamp(0, 255)
        quantised = (torch.round(x * (1.0 / step)) + zero).clamp(0, 255) - zero
        out = (quantised.double() @ self.levels.T).float() * (step * self.scale)
        return out if self.bias is None else out + self.bias


def encoder_linear_names(model: nn.Module) -> list[str]:
    """Module names (from `model`) of the dense layers the native precision applies to: every `nn.Linear` of the
    encoder (`model.base_model`) except BERT's pooler, which belongs to the head."""
    base = getattr(model, "base_model", model)
    prefix = next((name for name, module in model.named_modules() if module is base), "")
    names = []
    for name, module in base.named_modules():
        if isinstance(module, nn.Linear) and not name.startswith("pooler"):
            names.append(f"{prefix}.{name}" if prefix else name)
    return names


def reference_model(model: nn.Module, precision: str) -> nn.Module:
    """A copy of merged torch `model` whose encoder dense layers compute at `precision` (eval mode, CPU)."""
    if precision not in REFERENCES:
        raise ValueError(f"unknown precision {precision!r} (expected one of {', '.join(REFERENCES)})")
    model = copy.deepcopy(model).float().eval()
    names = encoder_linear_names(model)
    layer = {"bf16": Bf16Linear, "int8": Int8Linear}.get(precision)
    if layer is not None:
        for name in names:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, layer(getattr(parent, child)))
    elif precision == "int8-dynamic":
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        with warnings.catch_warnings():
            # torch marks its eager quantisation API deprecated; it is still torch's int8 CPU path.
            warnings.simplefilter("ignore")
            model = quantize_dynamic(model, dict.fromkeys(names, default_dynamic_qconfig), dtype=torch.qint8)
    return model
