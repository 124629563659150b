"""Training options checked before any work starts: a setting that would train nothing, diverge, or export a model
no runtime can serve is refused in one line (exit 2), and nothing is written.

Needs the base directory only for what depends on it (its positions, tokenizer and module names); reads no
weights, only the safetensors header.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import LorakitError
from .manifest import EMBEDDING, GENERATIVE, MANIFEST_FILE, is_model_dir


class OptionError(LorakitError):
    """A training option is out of range, not a number, or does not fit the base model."""


def check_finite(name: str, value: float, *, low: float, high: float | None = None, low_open: bool = False,
                 high_open: bool = True) -> None:
    """`value` is a finite number in the interval; `name` is the CLI flag shown to the user."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise OptionError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise OptionError(f"{name} must be in {left}{low:g}, {'inf' if high is None else f'{high:g}'}{right}, "
                          f"got {value!r}")


def check_numbers(config: Any, validation_fraction: float = 0.1, test_fraction: float = 0.1) -> None:
    """The numeric options of a TrainConfig (and the split fractions)."""
    if config.epochs is not None:
        check_finite("--epochs", config.epochs, low=0, low_open=True)
    if config.learning_rate is not None:
        check_finite("--learning-rate", config.learning_rate, low=0, low_open=True)
    if getattr(config, "head_learning_rate", None) is not None:
        check_finite("--head-learning-rate", config.head_learning_rate, low=0, low_open=True)
    patience = getattr(config, "patience", 0)
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
        raise OptionError(f"--patience must be an integer >= 0, got {patience!r}")
    for flag, value in (("--batch-size", config.batch_size), ("--gradient-accumulation", config.gradient_accumulation),
                        ("--r", config.r)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise OptionError(f"{flag} must be an integer >= 1, got {value!r}")
    check_finite("--lora-alpha", config.lora_alpha, low=0, low_open=True)
    check_finite("--lora-dropout", config.lora_dropout, low=0, high=1)
    check_finite("--warmup", config.warmup, low=0, high=1)
    check_finite("--weight-decay", config.weight_decay, low=0)
    check_finite("--max-grad-norm", config.max_grad_norm, low=0, low_open=True)
    check_finite("--validation-fraction", validation_fraction, low=0, high=1, low_open=True)
    check_finite("--test-fraction", test_fraction, low=0, high=1, low_open=True)


def refuse_model_dir_base(base: str | Path | None) -> None:
    """A lorakit model directory holds merged weights and an adapter, not a base to train a new adapter on."""
    if base is None or not is_model_dir(Path(base)):
        return
    import json

    try:
        recorded = json.loads((Path(base) / MANIFEST_FILE).read_text("utf-8"))["base"]["path"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    hint = f" (its lorakit.json base.path: {recorded})" if isinstance(recorded, str) else ""
    raise OptionError(f"--base {base}: is a lorakit model directory, not a base model; pass the base it was "
                      f"trained on{hint}")


def check_max_seq_len(max_seq_len: int, base: Path, tokenizer: Any) -> None:
    """Room for the special tokens plus at least one text token, and no more than the base's positions."""
    from ._native import max_positions

    specials = int(tokenizer.num_special_tokens_to_add(pair=False))
    if not isinstance(max_seq_len, int) or max_seq_len < specials + 1:
        raise OptionError(f"--max-seq-len {max_seq_len} leaves no room for text: the base adds {specials} special "
                          f"token(s), so it must be at least {specials + 1}")
    limit = max_positions(Path(base) / "config.json")
    if max_seq_len > limit:
        raise OptionError(f"--max-seq-len {max_seq_len} exceeds the {limit} positions the base model accepts: "
                          f"pass --max-seq-len {limit} or less")


def base_module_names(base: Path) -> set[str] | None:
    """Module paths of the base's weights (keys without `.weight`/`.bias`), from the safetensors header alone;
    None when the base keeps no model.safetensors."""
    from safetensors import SafetensorError, safe_open

    path = Path(base) / "model.safetensors"
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="np") as handle:
            keys = list(handle.keys())
    except (OSError, SafetensorError) as exc:
        raise OptionError(f"{path}: not a readable safetensors file ({' '.join(str(exc).split())})") from None
    return {key.rsplit(".", 1)[0] for key in keys if "." in key}


def check_target_modules(targets: Iterable[str] | None, base: Path) -> None:
    """Each name non-empty and matching a module of the base the way PEFT matches (the whole name, or its last
    dotted parts), so the adapter never silently adapts nothing."""
    if targets is None:
        return
    names = list(targets)
    empty = [i for i, name in enumerate(names) if not name.strip()]
    if empty or not names:
        raise OptionError("--target-modules: empty module name (comma-separated names such as query,value)")
    modules = base_module_names(base)
    if modules is None:
        return
    missing = [name for name in names if not any(m == name or m.endswith("." + name) for m in modules)]
    if missing:
        suffixes = sorted({m.rsplit(".", 1)[-1] for m in modules})
        raise OptionError(f"--target-modules {', '.join(missing)}: no such module in the base (its module names "
                          f"end in: {', '.join(suffixes[:20])})")


def check_train_config(config: Any, validation_fraction: float = 0.1, test_fraction: float = 0.1) -> None:
    """Every option of a TrainConfig, before data is read or anything is written."""
    check_numbers(config, validation_fraction, test_fraction)
    refuse_model_dir_base(config.base)
    base = Path(config.base)
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(base))
    except Exception as exc:  # the tokenizers library raises bare Exception for a malformed tokenizer.json
        raise OptionError(f"--base {base}: no usable tokenizer ({' '.join(str(exc).split())[:300]})") from None
    if config.task == GENERATIVE:
        check_generative(config, base)
    else:
        check_max_seq_len(config.max_seq_len, base, tokenizer)
    check_target_modules(config.target_modules, base)
    check_quantize(config)


def check_quantize(config: Any) -> None:
    """QLoRA: a known scheme, LoRA only, and a task whose trainer quantizes (not the embedding trainer)."""
    if config.quantize is None:
        return
    if config.quantize != "4bit":
        raise OptionError(f"--quantize {config.quantize!r}: choose 4bit")
    if config.full:
        raise OptionError("--quantize trains LoRA on a quantized base: it does not combine with --full")
    if config.task == EMBEDDING:
        raise OptionError("--quantize is not available for --task embedding")


def check_generative(config: Any, base: Path) -> None:
    """A causal LM base the runtimes decode, LoRA only, a document budget, a known quantization."""
    import json

    from .prompt import GENERATIVE_ARCHITECTURES, decoder_positions

    model_type = json.loads((base / "config.json").read_text("utf-8")).get("model_type")
    if model_type not in GENERATIVE_ARCHITECTURES:
        raise OptionError(f"--base {base}: model_type {model_type!r} is not a generative base (supported: "
                          f"{', '.join(GENERATIVE_ARCHITECTURES)})")
    limit = decoder_positions(base)
    if not isinstance(config.max_seq_len, int) or not 2 <= config.max_seq_len <= limit:
        raise OptionError(f"--max-seq-len {config.max_seq_len} must be in [2, {limit}] (the positions of the base)")
    if config.full:
        raise OptionError("--full does not apply to --task generative (LoRA only)")
    count = config.max_document_tokens
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise OptionError(f"--max-document-tokens must be an integer >= 1, got {count!r}")
