"""`lorakit verify` on generative model directories: prompt ids, next-token logits, label distributions and the
few-shot cases of golden.safetensors, recomputed by torch (unmerged and merged) and by the native core."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LorakitError
from .manifest import Manifest
from .prompt import Example

CaseScorer = Callable[[str, list[Example], list[str]], np.ndarray]


def compare_generative(golden: Any, input_ids: np.ndarray | None, logits: np.ndarray, label_probs: np.ndarray,
                       fewshot: Sequence[np.ndarray]) -> dict[str, Any]:
    """ids identical (when given), logits within `tolerance` with the same argmax, label and few-shot probabilities
    within `prob_tolerance` with the same chosen label."""
    expected_ids = golden.input_ids.numpy()
    ids_equal = None if input_ids is None else bool(input_ids.shape == expected_ids.shape
                                                    and np.array_equal(input_ids, expected_ids))
    expected = golden.logits.numpy()
    if logits.shape != expected.shape or label_probs.shape != golden.label_probs.shape:
        return {"max_abs_diff": float("inf"), "argmax_equal": False, "ids_equal": ids_equal, "ok": False,
                "worst": {"error": f"logits {list(logits.shape)} / label_probs {list(label_probs.shape)} != golden "
                                   f"{list(expected.shape)} / {list(golden.label_probs.shape)}"}}
    diff = np.abs(logits.astype(np.float64) - expected.astype(np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    row, col = np.unravel_index(int(np.argmax(diff)), diff.shape)
    prob_diff = float(np.nan_to_num(np.abs(label_probs - golden.label_probs.numpy()), nan=np.inf).max())
    same_labels = bool(np.array_equal(label_probs.argmax(axis=1), golden.label_probs.numpy().argmax(axis=1)))
    fewshot_diff, fewshot_same = 0.0, True
    for case, probabilities in zip(golden.fewshot, fewshot, strict=True):
        want = np.asarray(case["probabilities"], dtype=np.float64)
        if probabilities.shape != want.shape:
            fewshot_diff, fewshot_same = float("inf"), False
            continue
        fewshot_diff = max(fewshot_diff, float(np.nan_to_num(np.abs(probabilities - want), nan=np.inf).max()))
        fewshot_same = fewshot_same and int(np.argmax(probabilities)) == int(np.argmax(want))
    max_abs_diff = float(diff[row, col])
    argmax_equal = bool(np.array_equal(logits.argmax(axis=1), expected.argmax(axis=1)))
    ok = ids_equal is not False and argmax_equal and max_abs_diff <= golden.tolerance and same_labels and \
        fewshot_same and prob_diff <= golden.prob_tolerance and fewshot_diff <= golden.prob_tolerance
    return {"max_abs_diff": max_abs_diff, "argmax_equal": argmax_equal, "ids_equal": ids_equal, "ok": ok,
            "label_probs_max_abs_diff": prob_diff, "labels_equal": same_labels,
            "fewshot_max_abs_diff": fewshot_diff, "fewshot_labels_equal": fewshot_same,
            "worst": {"row": int(row), "col": int(col), "text": golden.texts[int(row)][:80],
                      "expected": float(expected[row, col]), "actual": float(logits[row, col])}}


def case_examples(case: dict[str, Any]) -> list[Example]:
    return [Example(str(e["document"]), str(e["label"])) for e in case["examples"]]


def torch_report(model_dir: Path, manifest: Manifest, golden: Any, model: Any) -> dict[str, Any]:
    from .generative import classify
    from .generative_golden import left_pad
    from .generative_load import prompt_tokens_of

    tokens = prompt_tokens_of(model_dir, manifest)
    labels = list(manifest.labels)
    rows, logits, probs = [], [], []
    for text in golden.texts:
        rows.append(tokens.prompt(text, labels).ids)
        result = classify(model, tokens, text, labels)
        logits.append(result.next_logits.numpy())
        probs.append(result.probabilities.numpy())
    fewshot = [classify(model, tokens, case["text"], case["labels"], case_examples(case)).probabilities.numpy()
               for case in golden.fewshot]
    ids, _mask = left_pad(rows, tokens.pad_id)
    return compare_generative(golden, ids.numpy(), np.stack(logits), np.stack(probs), fewshot)


def native_report(model: Any, manifest: Manifest, golden: Any) -> dict[str, Any]:
    """The native core through its public calls: next_token_logits, classify, classify_fewshot."""
    texts = list(golden.texts)
    logits = np.asarray(model.next_token_logits(texts))
    probs = np.asarray(model.classify(texts, top_k=len(manifest.labels)).probabilities)
    fewshot = []
    for case in golden.fewshot:
        result = model.classify_fewshot(case["text"], [(e.document, e.label) for e in case_examples(case)],
                                        labels=list(case["labels"]), top_k=len(case["labels"]))
        fewshot.append(np.asarray(result.probabilities)[0])
    return compare_generative(golden, None, logits, probs, fewshot)


def generative_backends(model_dir: Path, manifest: Manifest, chosen: Sequence[str],
                        progress: Callable[[str], None] | None) -> dict[str, dict[str, Any]]:
    """torch-unmerged and torch-merged rows of the report (ONNX has no generative export)."""
    from .generative_golden import read_generative_golden
    from .generative_load import load_generative_merged, load_generative_unmerged
    from .verify import failed, not_run

    golden = read_generative_golden(model_dir)
    results: dict[str, dict[str, Any]] = {}
    if "torch" in chosen:
        loaders = {"torch-unmerged": lambda: load_generative_unmerged(model_dir, manifest),
                   "torch-merged": lambda: load_generative_merged(model_dir, manifest)}
        for name, load in loaders.items():
            if progress:
                progress(name)
            try:
                results[name] = torch_report(model_dir, manifest, golden, load())
            except LorakitError as exc:
                results[name] = failed(" ".join(str(exc).split()))
    if "onnx" in chosen:
        results["onnxruntime"] = not_run("generative models have no ONNX export")
    return results


def native_generative_backends(model_dir: Path, manifest: Manifest) -> dict[str, dict[str, Any]]:
    """The core's own golden check (merged and runtime adapter) and the public calls on the merged model."""
    from .modeldir import native_decodes
    from .verify import failed, native_results, not_run

    if not native_decodes(manifest.architecture):
        return {"native": not_run("this build of the native core does not serve generative models")}
    from ._native import Model
    from .generative_golden import read_generative_golden

    results = native_results(model_dir)
    try:
        results["native-calls"] = native_report(Model.load(str(model_dir), merged=True), manifest,
                                                read_generative_golden(model_dir))
    except LorakitError as exc:
        results["native-calls"] = failed(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    return results
