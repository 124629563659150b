"""Evaluation: accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from tqdm.auto import tqdm

from .data import Dataset, Example, ids_digest
from .golden import tokenize


@torch.no_grad()
def predict_logits(model: Any, tokenizer: Any, texts: Sequence[str], max_seq_len: int,
                   batch_size: int = 64, progress: bool = True, desc: str = "predict") -> np.ndarray:
    """fp32 logits [len(texts), num_labels], batched, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress or len(starts) < 2, leave=False):
        batch = tokenize(tokenizer, texts[start:start + batch_size], max_seq_len)
        logits = model(**{name: tensor.to(device) for name, tensor in batch.items()}).logits
        chunks.append(logits.float().cpu().numpy())
    if not chunks:
        return np.zeros((0, model.config.num_labels), dtype=np.float32)
    return np.concatenate(chunks)


def classification_metrics(true_ids: Sequence[int], pred_ids: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    indices = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        true_ids, pred_ids, labels=indices, zero_division=0)
    return {
        "n": len(true_ids),
        "accuracy": float(accuracy_score(true_ids, pred_ids)),
        "macro_f1": float(f1_score(true_ids, pred_ids, labels=indices, average="macro", zero_division=0)),
        "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                              "support": int(support[i])} for i, label in enumerate(labels)},
        "confusion_matrix": confusion_matrix(true_ids, pred_ids, labels=indices).tolist(),
    }


def evaluate_examples(model: torch.nn.Module, tokenizer: Any, dataset: Dataset, examples: Sequence[Example],
                      max_seq_len: int, desc: str = "evaluate") -> dict[str, Any]:
    """Metrics on `examples`, plus the fingerprint of the row ids they came from."""
    logits = predict_logits(model, tokenizer, [example.text for example in examples], max_seq_len, desc=desc)
    true_ids = dataset.label_ids(examples)
    metrics = classification_metrics(true_ids, logits.argmax(axis=1).tolist(), dataset.labels)
    metrics["loss"] = cross_entropy(logits, true_ids)
    metrics["row_ids_sha256"] = ids_digest([example.row_id for example in examples])
    return metrics


def cross_entropy(logits: np.ndarray, true_ids: Sequence[int]) -> float:
    if len(true_ids) == 0:
        return float("nan")
    tensor = torch.from_numpy(logits)
    return float(torch.nn.functional.cross_entropy(tensor, torch.tensor(list(true_ids))))


def summary_line(name: str, metrics: dict[str, Any]) -> str:
    return f"{name:<10} n={metrics['n']:<6} accuracy={metrics['accuracy']:.4f} macro_f1={metrics['macro_f1']:.4f}"
