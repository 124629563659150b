"""Golden parity vectors (docs/FORMAT.md, golden.safetensors): texts, token ids and fp32 torch logits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import ModelDirError

GOLDEN_FILE = "golden.safetensors"
GOLDEN_FORMAT_VERSION = "1"
GOLDEN_TOLERANCE_TEXT = "1e-4"
GOLDEN_TOLERANCE = float(GOLDEN_TOLERANCE_TEXT)
MAX_REAL_EXAMPLES = 16

# Edge cases every runtime must tokenize and classify exactly like the Python tokenizer and torch.
EDGE_CASE_TEXTS: tuple[str, ...] = (
    "",
    "hello",
    "Café naïve résumé Ünïcödé — déjà vu 🚀🔥 日本語のテキスト 中文测试 ñ",
    "   extra   spaces\t\tand tabs \n and\nnewlines   ",
    "UPPER case, punctuation!!! (brackets) [1,234.56] $%&*#@",
)

_LONG_WORDS = (
    "the customer reported that the card payment was declined twice while travelling abroad and asked "
    "whether the exchange rate or an extra fee explains the pending transfer"
).split()


def long_text(max_seq_len: int) -> str:
    """A text with at least 2 * max_seq_len words, so it is always truncated (each word is >= 1 token)."""
    count = 2 * max_seq_len + 8
    return " ".join(_LONG_WORDS[i % len(_LONG_WORDS)] for i in range(count))


def golden_texts(examples: Sequence[str], max_seq_len: int) -> list[str]:
    """Up to 16 real examples (first occurrence order, duplicates dropped) followed by the edge cases."""
    real: list[str] = []
    for text in examples:
        if text not in real:
            real.append(text)
        if len(real) == MAX_REAL_EXAMPLES:
            break
    return real + list(EDGE_CASE_TEXTS) + [long_text(max_seq_len)]


def tokenize(tokenizer: Any, texts: Sequence[str], max_seq_len: int) -> dict[str, torch.Tensor]:
    """The one tokenization used for golden vectors: truncate to max_seq_len, right-pad to the longest row."""
    enc = tokenizer(
        list(texts), truncation=True, max_length=max_seq_len, padding=True, padding_side="right",
        return_tensors="pt",
    )
    input_ids = enc["input_ids"].to(torch.int64)
    attention_mask = enc["attention_mask"].to(torch.int64)
    token_type_ids = enc.get("token_type_ids")
    token_type_ids = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids.to(torch.int64)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


@torch.no_grad()
def compute_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """fp32 CPU logits in eval mode (dropout off)."""
    model.eval()
    logits: torch.Tensor = model(**batch).logits
    return logits.detach().to(torch.float32).cpu().contiguous()


@dataclass(frozen=True)
class Golden:
    texts: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    logits: torch.Tensor
    max_seq_len: int
    tolerance: float
    task: str


def write_golden(
    path: Path, texts: Sequence[str], batch: dict[str, torch.Tensor], logits: torch.Tensor, max_seq_len: int
) -> None:
    tensors = {name: batch[name].contiguous() for name in ("input_ids", "attention_mask", "token_type_ids")}
    tensors["logits"] = logits.to(torch.float32).contiguous()
    metadata = {
        "format_version": GOLDEN_FORMAT_VERSION,
        "texts": json.dumps(list(texts), ensure_ascii=False),
        "task": "sequence_classification",
        "output": "logits",
        "max_seq_len": str(max_seq_len),
        "tolerance": GOLDEN_TOLERANCE_TEXT,
    }
    save_file(tensors, str(path), metadata=metadata)


def read_golden(model_dir: Path) -> Golden:
    path = Path(model_dir) / GOLDEN_FILE
    if not path.is_file():
        raise ModelDirError(f"{path}: golden file missing")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        texts = json.loads(meta["texts"])
        golden = Golden(
            texts=list(texts),
            input_ids=tensors["input_ids"],
            attention_mask=tensors["attention_mask"],
            token_type_ids=tensors["token_type_ids"],
            logits=tensors["logits"],
            max_seq_len=int(meta["max_seq_len"]),
            tolerance=float(meta["tolerance"]),
            task=meta["task"],
        )
    except (KeyError, ValueError, TypeError, OSError, SafetensorError) as exc:
        message = " ".join(str(exc).split())
        raise ModelDirError(f"{path}: not a valid golden file ({message}); re-export the model") from None
    if golden.logits.shape[0] != len(golden.texts) or golden.input_ids.shape[0] != len(golden.texts):
        raise ModelDirError(f"{path}: row count does not match the number of texts")
    return golden
