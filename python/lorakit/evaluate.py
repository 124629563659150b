"""Evaluation: accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (scikit-learn, of the
training extra), the expected calibration error of the served probabilities and, when the rows have groups, the
metrics per group, from logits of any backend.

macro_f1 averages over the labels present in the part (true or predicted, scikit-learn's default), as
`lorakit eval` does, so a label absent from a (grouped) test part is not averaged in as a zero; `per_class` and
the confusion matrix still list every label of the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from .calibration import expected_calibration_error, nll, softmax
from .data import Dataset, Example, ids_digest
from .groups import label_macro_f1, with_label_groups


def predict_logits(model: Any, tokenizer: Any, texts: Sequence[str], max_seq_len: int,
                   batch_size: int = 64, progress: bool = True, desc: str = "predict") -> np.ndarray:
    """fp32 logits [len(texts), num_labels] of a torch model, batched, on the model's device."""
    import torch
    from tqdm.auto import tqdm

    from .golden import tokenize

    model.eval()
    device = next(model.parameters()).device
    chunks = []
    starts = range(0, len(texts), batch_size)
    # disable=None: tqdm draws no bar when stderr is not a terminal (logs, pipes)
    for start in tqdm(starts, desc=desc, disable=True if not progress or len(starts) < 2 else None, leave=False):
        batch = tokenize(tokenizer, texts[start:start + batch_size], max_seq_len)
        with torch.no_grad():
            logits = model(**{name: tensor.to(device) for name, tensor in batch.items()}).logits
        chunks.append(logits.float().cpu().numpy())
    if not chunks:
        return np.zeros((0, model.config.num_labels), dtype=np.float32)
    return np.concatenate(chunks)


def classification_metrics(true_ids: Sequence[int], pred_ids: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Label metrics of one part; macro_f1 over the labels present (named in macro_f1_labels)."""
    indices = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        true_ids, pred_ids, labels=indices, zero_division=0)
    present = sorted(set(true_ids) | set(pred_ids))
    return {
        "n": len(true_ids),
        "accuracy": float(accuracy_score(true_ids, pred_ids)),
        "macro_f1": label_macro_f1(true_ids, pred_ids),
        "macro_f1_labels": [labels[i] for i in present],
        "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                              "support": int(support[i])} for i, label in enumerate(labels)},
        "confusion_matrix": confusion_matrix(true_ids, pred_ids, labels=indices).tolist(),
    }


def evaluate_examples(model: Any, tokenizer: Any, dataset: Dataset, examples: Sequence[Example],
                      max_seq_len: int, desc: str = "evaluate", temperature: float = 1.0) -> dict[str, Any]:
    """Metrics of a torch model on `examples`, plus the fingerprint of the row ids they came from."""
    logits = predict_logits(model, tokenizer, [example.text for example in examples], max_seq_len, desc=desc)
    return logits_metrics(logits, dataset, examples, temperature)


def logits_metrics(logits: np.ndarray, dataset: Dataset, examples: Sequence[Example],
                   temperature: float = 1.0) -> dict[str, Any]:
    """Metrics of logits [len(examples), C] (any backend), the loss (of the raw logits), the ECE of the served
    probabilities softmax(logits / temperature) (the manifest's calibration temperature, 1 without one), the row
    ids' fingerprint and, when the examples carry a group (--group-column), `groups` (n, accuracy, macro_f1 each)."""
    true_ids = dataset.label_ids(examples)
    metrics = classification_metrics(true_ids, logits.argmax(axis=1).tolist(), dataset.labels)
    metrics["loss"] = cross_entropy(logits, true_ids)
    metrics["ece"] = expected_calibration_error(softmax(logits, temperature), true_ids) if len(true_ids) else None
    metrics["row_ids_sha256"] = ids_digest([example.row_id for example in examples])
    return with_label_groups(metrics, logits, dataset, examples)


def cross_entropy(logits: np.ndarray, true_ids: Sequence[int]) -> float:
    """Mean cross-entropy of the true labels (log-softmax in float64, shifted by the row maximum)."""
    return nll(logits, true_ids)


def summary_line(name: str, metrics: dict[str, Any]) -> str:
    ece = f" ece={metrics['ece']:.4f}" if isinstance(metrics.get("ece"), float) else ""
    return (f"{name:<10} n={metrics['n']:<6} accuracy={metrics['accuracy']:.4f} "
            f"macro_f1={metrics['macro_f1']:.4f}{ece}")
