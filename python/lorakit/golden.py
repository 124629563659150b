"""Golden parity vectors (docs/FORMAT.md, golden.safetensors): texts, token ids and fp32 torch logits; for a
calibrated sequence classifier also `probabilities` = softmax(logits / temperature) and its `review_threshold`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import ModelDirError
from .manifest import Calibration

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
    """fp32 CPU logits in eval mode (dropout off): [N, C] for sequence, [N, L, C] for token classification."""
    model.eval()
    logits: torch.Tensor = model(**batch).logits
    return logits.detach().to(torch.float32).cpu().contiguous()


# What each task stores: the metadata `output` and the tensor name (docs/FORMAT.md "Tasks").
OUTPUTS = {
    "sequence_classification": ("logits", "logits"),
    "token_classification": ("token_logits", "logits"),
    "embedding": ("embeddings", "embeddings"),
}


@dataclass(frozen=True)
class Golden:
    texts: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    values: torch.Tensor  # logits [N, C], token logits [N, L, C] or embeddings [N, D]
    max_seq_len: int
    tolerance: float
    task: str
    output: str = "logits"
    entities: list[list[dict[str, Any]]] | None = None  # token classification: the reference decoder's spans
    probabilities: torch.Tensor | None = None  # calibrated sequence classification: softmax(logits / T) [N, C]
    review_threshold: float | None = None  # the threshold `probabilities` were judged with

    @property
    def logits(self) -> torch.Tensor:
        return self.values


def calibrated_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / temperature) per row, computed in float64 and cast to float32 (the golden reference)."""
    return torch.softmax(logits.to(torch.float64) / float(temperature), dim=-1).to(torch.float32).contiguous()


def write_golden(
    path: Path, texts: Sequence[str], batch: dict[str, torch.Tensor], values: torch.Tensor, max_seq_len: int,
    task: str = "sequence_classification", entities: Sequence[Sequence[dict[str, Any]]] | None = None,
    calibration: Calibration | Mapping[str, Any] | None = None,
) -> None:
    """`calibration` (a sequence classifier's manifest calibration, or its lorakit.json object) adds
    `probabilities` = softmax(values / temperature) and the `review_threshold` metadata (absent when None)."""
    output, tensor_name = OUTPUTS[task]
    expected_rank = 3 if task == "token_classification" else 2
    if values.dim() != expected_rank or values.shape[0] != len(texts):
        raise ValueError(f"{task} golden output must be rank {expected_rank} with one row per text, "
                         f"got {list(values.shape)}")
    tensors = {name: batch[name].contiguous() for name in ("input_ids", "attention_mask", "token_type_ids")}
    tensors[tensor_name] = values.to(torch.float32).contiguous()
    metadata = {
        "format_version": GOLDEN_FORMAT_VERSION,
        "texts": json.dumps(list(texts), ensure_ascii=False),
        "task": task,
        "output": output,
        "max_seq_len": str(max_seq_len),
        "tolerance": GOLDEN_TOLERANCE_TEXT,
    }
    if task == "token_classification":
        if entities is None or len(entities) != len(texts):
            raise ValueError("token classification golden files need one entity list per text")
        metadata["entities"] = json.dumps([list(row) for row in entities], ensure_ascii=False)
    if calibration is not None:
        if task != "sequence_classification":
            raise ValueError(f"only sequence classification golden files carry calibrated probabilities, not {task}")
        if not isinstance(calibration, Calibration):
            calibration = Calibration.from_json(calibration)
        tensors["probabilities"] = calibrated_probabilities(values, calibration.temperature)
        if calibration.review_threshold is not None:
            metadata["review_threshold"] = repr(float(calibration.review_threshold))
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
        task = meta["task"]
        if task not in OUTPUTS:
            raise ValueError(f"unknown task {task!r}")
        output, tensor_name = OUTPUTS[task]
        if meta.get("output", output) != output:
            raise ValueError(f"output {meta['output']!r} does not belong to task {task!r} (expected {output!r})")
        entities = json.loads(meta["entities"]) if task == "token_classification" else None
        threshold = meta.get("review_threshold")
        golden = Golden(
            texts=list(texts),
            input_ids=tensors["input_ids"],
            attention_mask=tensors["attention_mask"],
            token_type_ids=tensors["token_type_ids"],
            values=tensors[tensor_name],
            max_seq_len=int(meta["max_seq_len"]),
            tolerance=float(meta["tolerance"]),
            task=task,
            output=output,
            entities=entities,
            probabilities=tensors.get("probabilities"),
            review_threshold=None if threshold is None else float(threshold),
        )
    except (KeyError, ValueError, TypeError, OSError, SafetensorError) as exc:
        message = " ".join(str(exc).split())
        raise ModelDirError(f"{path}: not a valid golden file ({message}); re-export the model") from None
    rows = {golden.values.shape[0], golden.input_ids.shape[0], len(golden.entities or golden.texts)}
    if rows != {len(golden.texts)}:
        raise ModelDirError(f"{path}: row count does not match the number of texts")
    return golden
