"""`lorakit predict` and `lorakit eval` on generative model directories: label scoring (native or torch), few-shot
examples and label overrides, and free generation (native or torch) with the JSON answer parsed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .modeldir import ModelDir
from .prompt import Example, check_labels, fewshot_labels, parse_answer


def native_generative(opened: ModelDir) -> Any:
    if opened.native is None or not hasattr(opened.native, "classify_fewshot"):
        raise UnsupportedError("this build of the native core does not serve generative models; rebuild it (make "
                               "setup) or pass --backend torch")
    return opened.native


def torch_parts(opened: ModelDir) -> tuple[Any, Any]:
    from .generative_load import load_generative_merged, prompt_tokens_of

    return load_generative_merged(opened.path, opened.manifest), prompt_tokens_of(opened.path, opened.manifest)


def record(text: str, labels: Sequence[str], probabilities: np.ndarray, top_k: int, tokens_in: int | None = None,
           tokens_used: int | None = None) -> dict[str, Any]:
    order = np.argsort(-probabilities, kind="stable")[: max(1, top_k)]
    result: dict[str, Any] = {"text": text, "label": labels[int(order[0])],
                              "top": [{"label": labels[int(j)], "probability": float(probabilities[j])}
                                      for j in order]}
    if tokens_in is not None:
        result |= {"tokens_in": tokens_in, "tokens_used": tokens_used}
    return result


def predict_generative(opened: ModelDir, texts: list[str], backend: str, top_k: int,
                       examples: Sequence[Example] | None = None, labels: Sequence[str] | None = None,
                       generate: bool = False) -> list[dict[str, Any]]:
    manifest = opened.manifest
    shots = list(examples or [])
    chosen = fewshot_labels(manifest.labels, shots, labels)
    if generate:
        return generate_answers(opened, texts, backend, shots, chosen)
    if backend == "native":
        model = native_generative(opened)
        out = []
        for text in texts:
            result = model.classify_fewshot(text, [(e.document, e.label) for e in shots],
                                            labels=list(labels) if labels is not None else None, top_k=len(chosen))
            out.append(record(text, list(result.label_names), np.asarray(result.probabilities)[0], top_k,
                              result.tokens_in[0], result.tokens_used[0]))
        return out
    from .generative import classify

    model, tokens = torch_parts(opened)
    out = []
    for text in texts:
        scored = classify(model, tokens, text, chosen, shots, max_seq_len=manifest.max_seq_len)
        out.append(record(text, chosen, scored.probabilities.numpy(), top_k, scored.tokens_in, scored.tokens_used))
    return out


def generate_answers(opened: ModelDir, texts: list[str], backend: str, shots: list[Example],
                     chosen: list[str]) -> list[dict[str, Any]]:
    """Greedy free answers, each parsed as `{"label": ...}`; an invalid one is reported, not raised."""
    if backend == "native":
        model = native_generative(opened)
        pairs = [(e.document, e.label) for e in shots]
        continuations = [model.generate(text, pairs, labels=chosen) for text in texts]
    else:
        from .generative import generate as generate_answer

        torch_model, tokens = torch_parts(opened)
        continuations = []
        for text in texts:
            tokens.check_length(tokens.prompt(text, chosen, shots).ids, chosen, opened.manifest.max_seq_len)
            continuations.append(generate_answer(torch_model, tokens, text, chosen, shots).text)
    prefix = str((opened.manifest.prompt or {}).get("answer_prefix", ""))
    results = []
    for text, continuation in zip(texts, continuations, strict=True):
        label, error = parse_answer(prefix, continuation)
        if label is not None and label not in chosen:
            error = f"label {label!r} is not among the labels"
        results.append({"text": text, "label": label, "valid": label is not None and error is None, "error": error,
                        "generated": continuation})
    return results


def generative_scores(opened: ModelDir, texts: Sequence[str], backend: str) -> np.ndarray:
    """[N, C] label scores with the manifest's labels (the logits of label scoring)."""
    labels = check_labels(opened.manifest.labels)
    if backend == "native":
        model = native_generative(opened)
        chunks = [list(texts[i:i + 16]) for i in range(0, len(texts), 16)]
        rows = [row for chunk in chunks for row in np.asarray(model.classify(chunk, top_k=len(labels)).logits)]
    else:
        from .generative_pipeline import label_scores

        model, tokens = torch_parts(opened)
        return label_scores(model, tokens, texts, labels)
    return np.stack(rows) if rows else np.zeros((0, len(labels)), dtype=np.float32)


def evaluate_generative_file(opened: ModelDir, data: Any, backend: str) -> dict[str, Any]:
    from .data import load_dataset
    from .evaluate import logits_metrics

    dataset = load_dataset(data.path, data.text_column, data.label_column, labels=list(opened.manifest.labels))
    scores = generative_scores(opened, [example.text for example in dataset.examples], backend)
    return logits_metrics(scores, dataset, dataset.examples)
