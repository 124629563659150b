"""QLoRA: train LoRA on a base whose linear layers are 4-bit NF4 (bitsandbytes, CPU or GPU), then serve the adapter
merged into the fp32 base, because that is what every runtime loads. Embeddings and the task head stay fp32."""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .errors import LorakitError

QUANTIZE_CHOICES = ("4bit",)


def load_4bit(auto_class: Any, base: str, keep_fp32: Sequence[str], **kwargs: Any) -> Any:
    """`auto_class.from_pretrained(base)` with NF4 linear layers, except the modules named in `keep_fp32`, ready
    for k-bit training (fp32 norms, input gradients)."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise LorakitError("--quantize 4bit needs bitsandbytes: pip install 'lorakit[generative]'")
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                                bnb_4bit_use_double_quant=False, llm_int8_skip_modules=list(keep_fp32))
    model = auto_class.from_pretrained(base, dtype=torch.float32, quantization_config=config,
                                       device_map={"": 0 if torch.cuda.is_available() else "cpu"}, **kwargs)
    from bitsandbytes.nn.modules import Linear4bit

    for module in model.modules():
        # bitsandbytes repacks CPU weights to bf16 blocks in eval mode, which needs widths divisible by 64 and
        # changes the numbers between training and evaluation steps; the plain NF4 kernel serves both.
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def check_quantize(quantize: str | None) -> None:
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise LorakitError(f"--quantize {quantize!r}: choose from {', '.join(QUANTIZE_CHOICES)}")


def reload_on_fp32_base(model: Any, load_base: Callable[[], Any]) -> Any:
    """A (possibly quantized) PeftModel's adapter, saved and applied again to the fp32 base `load_base()` returns."""
    from peft import PeftModel

    with tempfile.TemporaryDirectory() as scratch:
        model.save_pretrained(scratch)
        fp32 = load_base()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Found missing adapter keys")
            return PeftModel.from_pretrained(fp32, scratch).to("cpu").float().eval()
