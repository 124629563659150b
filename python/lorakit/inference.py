"""`lorakit predict` and `lorakit eval` for every task: which backend computes what, and the result records.

Sequence classification gives labels with calibrated probabilities and a `needs_review` flag (the manifest's
`calibration`; plain softmax and never under review without one) and, when the manifest declares `unsafe_labels`,
a verdict; token classification entity spans (optionally the masked text), embeddings vectors. The native paths
import neither torch nor transformers: they run in a serving install (`pip install lorakit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .manifest import EMBEDDING, GENERATIVE, SEQUENCE, TOKEN
from .modeldir import ModelDir, open_model_dir

# Texts per native call: long inputs (`predict --input`) stay under the core's max_batch.
NATIVE_BATCH = 256


def unsafe_verdicts(probabilities: np.ndarray, labels: Sequence[str],
                    unsafe_labels: Sequence[str]) -> tuple[list[bool], list[float]]:
    """Per row: unsafe = the top label is declared unsafe; unsafe_score = the summed probability of the declared
    labels. Only the manifest's declaration counts, never what a label is called."""
    columns = [labels.index(label) for label in unsafe_labels]
    scores = probabilities[:, columns].sum(axis=1) if columns else np.zeros(len(probabilities))
    top = probabilities.argmax(axis=1)
    return [labels[int(i)] in unsafe_labels for i in top], [float(s) for s in scores]


def native_model(opened: ModelDir, method: str) -> Any:
    """The merged native model `open_model_dir` loaded while checking the directory."""
    if not hasattr(opened.native, method):
        raise UnsupportedError(f"this build of lorakit._native has no Model.{method}; rebuild it (make setup) "
                               "or pass --backend torch")
    return opened.native


def batches(texts: Sequence[str]) -> list[list[str]]:
    return [list(texts[start:start + NATIVE_BATCH]) for start in range(0, len(texts), NATIVE_BATCH)]


def native_logits(opened: ModelDir, texts: Sequence[str]) -> np.ndarray:
    """Sequence classification logits [len(texts), C] from the native core."""
    model = native_model(opened, "classify")
    return np.concatenate([np.asarray(model.classify(chunk).logits) for chunk in batches(texts)])


def native_entities(opened: ModelDir,
                    texts: Sequence[str]) -> tuple[list[list[dict[str, Any]]], list[np.ndarray]]:
    """Per text: the native core's entity spans and its token logits [tokens_used, C]."""
    model = native_model(opened, "extract_entities")
    entities: list[list[dict[str, Any]]] = []
    logits: list[np.ndarray] = []
    for chunk in batches(texts):
        result = model.extract_entities(chunk)
        entities += [[dict(entity) for entity in row] for row in result.entities]
        logits += [np.asarray(row) for row in result.token_logits]
    return entities, logits


def predict(model_dir: Path, texts: list[str], backend: str, top_k: int = 3, mask: bool = False,
            **generative: Any) -> list[dict[str, Any]]:
    """`generative`: examples, labels and generate of a generative model (generative_inference.py)."""
    opened = open_model_dir(model_dir)
    manifest = opened.manifest
    if manifest.task == GENERATIVE:
        from .generative_inference import predict_generative

        return predict_generative(opened, texts, backend, top_k, **generative)
    if generative:
        from .errors import InputError

        raise InputError(f"--{next(iter(generative))} applies to generative models only, not {manifest.task}")
    if manifest.task == TOKEN:
        return predict_entities(opened, texts, backend, mask)
    if manifest.task == EMBEDDING:
        vectors = embed(opened, texts, backend)
        return [{"text": text, "embedding": [float(v) for v in row]} for text, row in zip(texts, vectors, strict=True)]
    if manifest.task != SEQUENCE:
        raise UnsupportedError(f"{model_dir}: task {manifest.task!r} cannot be predicted")
    return predict_labels(opened, texts, backend, top_k)


def predict_labels(opened: ModelDir, texts: list[str], backend: str, top_k: int) -> list[dict[str, Any]]:
    model_dir, manifest = opened.path, opened.manifest
    labels = list(manifest.labels)
    if backend == "native":
        model = native_model(opened, "classify")
        parts = [model.classify(chunk) for chunk in batches(texts)]
        probabilities = np.concatenate([np.asarray(part.probabilities) for part in parts])
        review = [flag for part in parts for flag in part.needs_review]
        verdicts = None
        if manifest.unsafe_labels:
            verdicts = ([flag for part in parts for flag in part.unsafe or []],
                        [score for part in parts for score in part.unsafe_scores or []])
    else:
        import torch

        from .evaluate import predict_logits
        from .loading import load_merged, load_tokenizer

        logits = predict_logits(load_merged(model_dir, manifest), load_tokenizer(model_dir), texts,
                                manifest.max_seq_len, progress=False)
        # The manifest's calibration, as the native core applies it: softmax(logits / temperature).
        probabilities = torch.softmax(torch.from_numpy(logits) / manifest.temperature, dim=1).numpy()
        calibration = manifest.calibration
        review = [calibration is not None and calibration.needs_review(float(row.max())) for row in probabilities]
        verdicts = unsafe_verdicts(probabilities, labels, manifest.unsafe_labels) if manifest.unsafe_labels else None
    results: list[dict[str, Any]] = []
    for i, (text, row) in enumerate(zip(texts, probabilities, strict=True)):
        order = row.argsort()[::-1][: max(1, top_k)]
        result = {"text": text, "label": labels[order[0]],
                  "top": [{"label": labels[j], "probability": float(row[j])} for j in order],
                  "needs_review": bool(review[i])}
        if verdicts is not None:
            result |= {"unsafe": bool(verdicts[0][i]), "unsafe_score": float(verdicts[1][i])}
        results.append(result)
    return results


def predict_entities(opened: ModelDir, texts: list[str], backend: str, mask: bool) -> list[dict[str, Any]]:
    model_dir, manifest = opened.path, opened.manifest
    if backend == "native":
        from ._native import mask_entities

        found = native_entities(opened, texts)[0]
    else:
        from .entities import extract_entities, mask_entities
        from .loading import load_merged, load_tokenizer

        found = extract_entities(load_merged(model_dir, manifest), load_tokenizer(model_dir), texts,
                                 manifest.max_seq_len, list(manifest.labels))
    results = []
    for text, entities in zip(texts, found, strict=True):
        result: dict[str, Any] = {"text": text, "entities": [dict(entity) for entity in entities]}
        if mask:
            result["masked"] = mask_entities(text, [dict(entity) for entity in entities])
        results.append(result)
    return results


def embed(opened: ModelDir, texts: list[str], backend: str) -> np.ndarray:
    model_dir, manifest = opened.path, opened.manifest
    if backend == "native":
        model = native_model(opened, "embed")
        return np.concatenate([np.asarray(model.embed(chunk)) for chunk in batches(texts)])
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
        elif "generated" in result:
            verdict = result["label"] if result["valid"] else f"INVALID ({result['error']})"
            lines.append(f"{verdict}\t{result['generated']!r}\t{result['text']}")
        elif "embedding" in result:
            vector = ", ".join(f"{v:.6g}" for v in result["embedding"])
            lines.append(f"{result['text']}\t[{vector}]")
        else:
            top = ", ".join(f"{item['label']} {item['probability']:.3f}" for item in result["top"])
            verdict = f"\t{'UNSAFE' if result['unsafe'] else 'safe'} {result['unsafe_score']:.3f}" \
                if "unsafe" in result else ""
            review = "\tNEEDS REVIEW" if result.get("needs_review") else ""
            lines.append(f"{result['label']}\t{top}{verdict}{review}\t{result['text']}")
    return "\n".join(lines)


def evaluate_model_dir(model_dir: Path, data: Any, backend: str = "native") -> dict[str, Any]:
    """Metrics of the merged model on a labelled file (`data`: a pipeline.DataSpec), predicted by the native core
    (default) or torch. The metrics themselves need the training extra (scikit-learn, seqeval, scipy).

    Every task's result holds `task` and its headline metrics at the top level: `accuracy` and `macro_f1`
    (sequence and generative classification), `entity_f1` (token classification), `spearman` (embedding).
    macro_f1 averages over the labels present in the file (true or predicted; scikit-learn's default), not over
    every label of the model. With `data.group_column`, `groups` holds the metrics of each group."""
    opened = open_model_dir(model_dir)
    task = opened.manifest.task
    if task == EMBEDDING:
        if data.group_column:
            from .errors import InputError

            raise InputError("--group-column applies to labelled texts; embedding pairs have no groups")
        metrics = evaluate_pair_file(opened, data, backend)
    elif task == TOKEN:
        metrics = evaluate_token_file(opened, data, backend)
    elif task in (SEQUENCE, GENERATIVE):
        metrics = evaluate_label_file(opened, data, backend)
    else:
        raise UnsupportedError(f"{model_dir}: task {task!r} cannot be evaluated")
    return {"task": task, **metrics}


def evaluate_label_file(opened: ModelDir, data: Any, backend: str) -> dict[str, Any]:
    """Sequence or generative classification: label metrics of the model's logits (label scores) on the file."""
    from .data import load_dataset
    from .evaluate import logits_metrics

    model_dir, manifest = opened.path, opened.manifest
    dataset = load_dataset(data.path, data.text_column, data.label_column, data.group_column,
                           labels=list(manifest.labels))
    texts = [example.text for example in dataset.examples]
    if manifest.task == GENERATIVE:
        from .generative_inference import generative_scores

        logits = generative_scores(opened, texts, backend)
    elif backend == "native":
        logits = native_logits(opened, texts)
    else:
        from .evaluate import predict_logits
        from .loading import load_merged, load_tokenizer

        logits = predict_logits(load_merged(model_dir, manifest), load_tokenizer(model_dir), texts,
                                manifest.max_seq_len)
    return logits_metrics(logits, dataset, dataset.examples, manifest.temperature)


def evaluate_token_file(opened: ModelDir, data: Any, backend: str) -> dict[str, Any]:
    from .entities import decode_entities, token_logits, token_metrics
    from .groups import token_group_metrics
    from .loading import load_merged, load_tokenizer
    from .tokens import load_token_dataset

    model_dir, manifest = opened.path, opened.manifest
    labels = list(manifest.labels)
    tokens = load_token_dataset(data.path, text_column=data.text_column, spans_column=data.spans_column,
                                tokens_column=data.tokens_column, tags_column=data.tags_column,
                                group_column=data.group_column, labels=labels)
    tokenizer = load_tokenizer(model_dir)  # the words gold spans are tagged on, as in training
    texts = [example.text for example in tokens.examples]
    if backend == "native":
        entities, logits = native_entities(opened, texts)
    else:
        rows = token_logits(load_merged(model_dir, manifest), tokenizer, texts, manifest.max_seq_len)
        entities = [decode_entities(text, row["logits"], row["word_ids"], row["offsets"], labels)
                    for text, row in zip(texts, rows, strict=True)]
        logits = [row["logits"] for row in rows]
    metrics = token_metrics(tokenizer, tokens.examples, labels, manifest.max_seq_len, entities, logits)
    groups = token_group_metrics(tokenizer, tokens.examples, labels, manifest.max_seq_len, entities, logits)
    return metrics | ({"groups": groups} if groups else {})


def evaluate_pair_file(opened: ModelDir, data: Any, backend: str) -> dict[str, Any]:
    from .embedding import evaluate_embedding, load_pairs, vector_metrics

    model_dir, manifest = opened.path, opened.manifest
    pairs = load_pairs(data.path, data.text_column, data.text_pair_column, data.score_column,
                       score_if_present=trained_score_column(model_dir))
    if backend == "native":
        vectors = embed(opened, [text for pair in pairs for text in (pair.text, pair.text_pair)], backend)
        return vector_metrics(vectors[0::2], vectors[1::2], pairs)
    from .loading import load_merged, load_tokenizer

    return evaluate_embedding(load_merged(model_dir, manifest), load_tokenizer(model_dir), pairs,
                              manifest.max_seq_len, str(manifest.pooling), bool(manifest.normalize))


def trained_score_column(model_dir: Path) -> str | None:
    """The score column the model was trained with (report/split.json), if it recorded one."""
    from .data import read_split
    from .errors import DataError

    path = Path(model_dir) / "report" / "split.json"
    try:
        return read_split(path).origin.get("columns", {}).get("score") if path.is_file() else None
    except DataError:
        return None


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
