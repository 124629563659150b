"""golden.safetensors of a generative classifier (docs/generative.md): left-padded prompt ids, next-token logits,
label distributions, and few-shot cases with their probabilities."""

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
from .generative import classify
from .golden import GOLDEN_FILE, GOLDEN_FORMAT_VERSION
from .manifest import GENERATIVE
from .prompt import Example, PromptTokens, fewshot_labels

OUTPUT = "next_token_logits"
PROB_TOLERANCE_TEXT = "1e-4"
# Next-token logits are compared within 1e-4 on tiny test bases and 1e-3 on real ones: a base of 10 million
# parameters or more counts as real (fp32 sums over a 640-wide hidden state and a 262144-row head drift further).
REAL_MODEL_PARAMETERS = 10_000_000


def tolerance_for(parameters: int) -> str:
    return "1e-3" if parameters >= REAL_MODEL_PARAMETERS else "1e-4"


@dataclass
class FewshotCase:
    text: str
    examples: list[Example]
    labels: list[str]
    probabilities: list[float]

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "examples": [{"document": e.document, "label": e.label} for e in self.examples],
                "labels": self.labels, "probabilities": self.probabilities}


@dataclass
class GenerativeGolden:
    texts: list[str]
    input_ids: torch.Tensor  # [N, L] left padded
    attention_mask: torch.Tensor
    logits: torch.Tensor  # [N, V]
    label_probs: torch.Tensor  # [N, C]
    max_seq_len: int
    tolerance: float
    prob_tolerance: float
    fewshot: list[dict[str, Any]]
    task: str = GENERATIVE
    output: str = OUTPUT


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.int64)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(list(row))
            mask[i, width - len(row):] = 1
    return ids, mask


def compute_golden(model: Any, tokens: PromptTokens, texts: Sequence[str], labels: Sequence[str],
                   cases: Sequence[tuple[str, list[Example], list[str] | None]], max_seq_len: int,
                   tolerance: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of the golden file from the unmerged model, each text scored alone."""
    rows, logits, probs = [], [], []
    for text in texts:
        result = classify(model, tokens, text, labels, max_seq_len=max_seq_len)
        rows.append(tokens.prompt(text, labels).ids)
        logits.append(result.next_logits)
        probs.append(result.probabilities)
    fewshot = []
    for text, examples, chosen in cases:
        case_labels = fewshot_labels(labels, examples, chosen)
        result = classify(model, tokens, text, case_labels, examples, max_seq_len=max_seq_len)
        fewshot.append(FewshotCase(text, examples, case_labels, [float(p) for p in result.probabilities]).to_json())
    ids, mask = left_pad(rows, tokens.pad_id)
    tensors = {"input_ids": ids, "attention_mask": mask, "logits": torch.stack(logits).contiguous(),
               "label_probs": torch.stack(probs).to(torch.float32).contiguous()}
    metadata = {"format_version": GOLDEN_FORMAT_VERSION, "task": GENERATIVE, "output": OUTPUT,
                "texts": json.dumps(list(texts), ensure_ascii=False), "max_seq_len": str(max_seq_len),
                "tolerance": tolerance, "prob_tolerance": PROB_TOLERANCE_TEXT,
                "fewshot": json.dumps(fewshot, ensure_ascii=False)}
    return tensors, metadata


def write_generative_golden(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    save_file(tensors, str(path), metadata=metadata)


def read_generative_golden(model_dir: Path) -> GenerativeGolden:
    path = Path(model_dir) / GOLDEN_FILE
    if not path.is_file():
        raise ModelDirError(f"{path}: golden file missing")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        if meta.get("task") != GENERATIVE or meta.get("output") != OUTPUT:
            raise ValueError(f"task {meta.get('task')!r} / output {meta.get('output')!r} is not {GENERATIVE} / "
                             f"{OUTPUT}")
        fewshot = json.loads(meta["fewshot"])
        if not isinstance(fewshot, list):
            raise ValueError("fewshot is not a list")
        golden = GenerativeGolden(
            texts=list(json.loads(meta["texts"])), input_ids=tensors["input_ids"],
            attention_mask=tensors["attention_mask"], logits=tensors["logits"], label_probs=tensors["label_probs"],
            max_seq_len=int(meta["max_seq_len"]), tolerance=float(meta["tolerance"]),
            prob_tolerance=float(meta["prob_tolerance"]), fewshot=fewshot)
    except (KeyError, ValueError, TypeError, OSError, SafetensorError) as exc:
        message = " ".join(str(exc).split())
        raise ModelDirError(f"{path}: not a valid golden file ({message}); re-export the model") from None
    n = len(golden.texts)
    if {golden.input_ids.shape[0], golden.logits.shape[0], golden.label_probs.shape[0]} != {n}:
        raise ModelDirError(f"{path}: row count does not match the number of texts")
    return golden
