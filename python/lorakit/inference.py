"""`lorakit predict` and `lorakit eval` for every task: which backend computes what, and the result records.

Sequence classification gives labels (and, when the manifest declares `unsafe_labels`, a verdict), token
classification entity spans (optionally the masked text), embeddings vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .manifest import EMBEDDING, SEQUENCE, TOKEN, Manifest, read_manifest


def unsafe_verdicts(probabilities: np.ndarray, labels: Sequence[str],
                    unsafe_labels: Sequence[str]) -> tuple[list[bool], list[float]]:
    """Per row: unsafe = the top label is declared unsafe; unsafe_score = the summed probability of the declared
    labels. Only the manifest's declaration counts, never what a label is called."""
    columns = [labels.index(label) for label in unsafe_labels]
    scores = probabilities[:, columns].sum(axis=1) if columns else np.zeros(len(probabilities))
    top = probabilities.argmax(axis=1)
    return [labels[int(i)] in unsafe_labels for i in top], [float(s) for s in scores]


def native_model(model_dir: Path, method: str) -> Any:
    from .native import Model

    if not hasattr(Model, method):
        raise UnsupportedError(f"this build of lorakit._native has no Model.{method}; rebuild it (make setup) "
                               "or pass --backend torch")
    return Model.load(str(model_dir), merged=True)


def predict(model_dir: Path, texts: list[str], backend: str, top_k: int = 3,
            mask: bool = False) -> list[dict[str, Any]]:
    manifest = read_manifest(model_dir)
    if manifest.task == TOKEN:
        return predict_entities(model_dir, manifest, texts, backend, mask)
    if manifest.task == EMBEDDING:
        vectors = embed(model_dir, manifest, texts, backend)
        return [{"text": text, "embedding": [float(v) for v in row]} for text, row in zip(texts, vectors, strict=True)]
    if manifest.task != SEQUENCE:
        raise UnsupportedError(f"{model_dir}: task {manifest.task!r} cannot be predicted")
    return predict_labels(model_dir, manifest, texts, backend, top_k)


def predict_labels(model_dir: Path, manifest: Manifest, texts: list[str], backend: str,
                   top_k: int) -> list[dict[str, Any]]:
    labels = list(manifest.labels)
    if backend == "native":
        result = native_model(model_dir, "classify").classify(texts)
        probabilities = np.asarray(result.probabilities)
        verdicts = (result.unsafe, result.unsafe_scores) if manifest.unsafe_labels else None
    else:
        import torch

        from .evaluate import predict_logits
        from .loading import load_merged, load_tokenizer

        logits = predict_logits(load_merged(model_dir, manifest), load_tokenizer(model_dir), texts,
                                manifest.max_seq_len, progress=False)
        probabilities = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        verdicts = unsafe_verdicts(probabilities, labels, manifest.unsafe_labels) if manifest.unsafe_labels else None
    results: list[dict[str, Any]] = []
    for i, (text, row) in enumerate(zip(texts, probabilities, strict=True)):
        order = row.argsort()[::-1][: max(1, top_k)]
        result = {"text": text, "label": labels[order[0]],
                  "top": [{"label": labels[j], "probability": float(row[j])} for j in order]}
        if verdicts is not None:
            result |= {"unsafe": bool(verdicts[0][i]), "unsafe_score": float(verdicts[1][i])}
        results.append(result)
    return results


def predict_entities(model_dir: Path, manifest: Manifest, texts: list[str], backend: str,
                     mask: bool) -> list[dict[str, Any]]:
    from .entities import mask_entities

    if backend == "native":
        found = native_model(model_dir, "extract_entities").extract_entities(texts).entities
    else:
        from .entities import extract_entities
        from .loading import load_merged, load_tokenizer

        found = extract_entities(load_merged(model_dir, manifest), load_tokenizer(model_dir), texts,
                                 manifest.max_seq_len, list(manifest.labels))
    results = []
    for text, entities in zip(texts, found, strict=True):
        result: dict[str, Any] = {"text": text, "entities": [dict(entity) for entity in entities]}
        if mask:
            result["masked"] = mask_entities(text, entities)
        results.append(result)
    return results


def embed(model_dir: Path, manifest: Manifest, texts: list[str], backend: str) -> np.ndarray:
    if backend == "native":
        return np.asarray(native_model(model_dir, "embed").embed(texts))
    from .embedding import encode
    from .loading import load_merged, load_tokenizer

    return encode(load_merged(model_dir, manifest), load_tokenizer(model_dir), texts, manifest.max_seq_len,
                  str(manifest.pooling), bool(manifest.normalize)).numpy()


def format_predictions(results: list[dict[str, Any]], mask: bool) -> str:
    lines = []
    for result in results:
        if "entities" in result:
            if mask:
                lines.append(result["masked"])
                continue
            lines.append(result["text"])
            for e in result["entities"]:
                lines.append(f"  {e['type']}\t{e['start']}-{e['end']}\t{e['score']:.3f}\t{e['text']!r}")
        elif "embedding" in result:
            vector = ", ".join(f"{v:.6g}" for v in result["embedding"])
            lines.append(f"{result['text']}\t[{vector}]")
        else:
            top = ", ".join(f"{item['label']} {item['probability']:.3f}" for item in result["top"])
            verdict = f"\t{'UNSAFE' if result['unsafe'] else 'safe'} {result['unsafe_score']:.3f}" \
                if "unsafe" in result else ""
            lines.append(f"{result['label']}\t{top}{verdict}\t{result['text']}")
    return "\n".join(lines)


def evaluate_model_dir(model_dir: Path, data: Any) -> dict[str, Any]:
    """Metrics of the merged model on a labelled file (`data`: a pipeline.DataSpec)."""
    from .loading import load_merged, load_tokenizer

    manifest = read_manifest(model_dir)
    if manifest.task == TOKEN:
        from .entities import evaluate_tokens
        from .tokens import load_token_dataset

        tokens = load_token_dataset(data.path, text_column=data.text_column, spans_column=data.spans_column,
                                    tokens_column=data.tokens_column, tags_column=data.tags_column,
                                    labels=list(manifest.labels))
        return evaluate_tokens(load_merged(model_dir, manifest), load_tokenizer(model_dir), tokens.examples,
                               list(manifest.labels), manifest.max_seq_len)
    if manifest.task == EMBEDDING:
        from .embedding import evaluate_embedding, load_pairs

        pairs = load_pairs(data.path, data.text_column, data.text_pair_column, data.score_column)
        return evaluate_embedding(load_merged(model_dir, manifest), load_tokenizer(model_dir), pairs,
                                  manifest.max_seq_len, str(manifest.pooling), bool(manifest.normalize))
    from .data import load_dataset
    from .evaluate import evaluate_examples

    dataset = load_dataset(data.path, data.text_column, data.label_column, labels=list(manifest.labels))
    return evaluate_examples(load_merged(model_dir, manifest), load_tokenizer(model_dir), dataset, dataset.examples,
                             manifest.max_seq_len)


def summary_line(name: str, metrics: dict[str, Any]) -> str:
    """One line of the headline metrics of any task."""
    if "entity_f1" in metrics:
        from .entities import summary_line as entity_summary

        return entity_summary(name, metrics)
    if "spearman" in metrics:
        shown = {key: metrics.get(key) for key in ("spearman", "pearson", "auc_roc")}
        return f"{name:<10} n={metrics['n']:<6} " + " ".join(
            f"{key}={'n/a' if value is None else f'{value:.4f}'}" for key, value in shown.items())
    from .evaluate import summary_line as label_summary

    return label_summary(name, metrics)


def format_metrics(metrics: dict[str, Any]) -> str:
    """The summary line and one line per entity type or class."""
    lines = [summary_line("eval", metrics)]
    rows = metrics.get("per_type", metrics.get("per_class", {}))
    width = max([len(name) for name in rows] or [1])
    for name, row in rows.items():
        lines.append(f"  {name:<{width}}  precision={row['precision']:.3f} recall={row['recall']:.3f} "
                     f"f1={row['f1']:.3f} support={row['support']}")
    return "\n".join(lines)
