"""`lorakit verify`: recompute the golden outputs (logits, token logits + entities, embeddings) with every
available backend and compare; for a calibrated sequence classifier also the calibrated probabilities
softmax(logits / temperature) and the needs_review verdicts.

The torch and ONNX backends need the training extra and are imported only when they run; `--backends native`
needs only the serving install.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FormatError, LorakitError, ModelDirError
from .extras import MissingExtraError, has_train, require_train
from .manifest import Manifest, check_files, read_manifest

if TYPE_CHECKING:
    import torch

    from .golden import Golden

# What `--backends` chooses from: each group is one or more rows of the report.
BACKEND_GROUPS = ("torch", "onnx", "native")
GOLDEN_FILE = "golden.safetensors"


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (library messages often span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def compare(golden: Golden, input_ids: np.ndarray, values: np.ndarray,
            entities: list[list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The parity check of docs/FORMAT.md: ids identical, max |diff| <= tolerance (token logits: on real tokens),
    the same argmax per row (per real token; embeddings have none: None), the same entities (token classification)."""
    expected_ids = golden.input_ids.numpy()
    ids_equal = input_ids.shape == expected_ids.shape and bool(np.array_equal(input_ids, expected_ids))
    expected = golden.values.numpy()
    if values.shape != expected.shape:
        return {"max_abs_diff": float("inf"), "argmax_equal": False, "ids_equal": ids_equal, "ok": False,
                "worst": {"error": f"{golden.output} shape {list(values.shape)} != golden {list(expected.shape)}"}}
    diff = np.abs(values.astype(np.float64) - expected.astype(np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    argmax_equal: bool | None = None
    if golden.task == "token_classification":
        real = golden.attention_mask.numpy().astype(bool)
        diff = np.where(real[..., None], diff, 0.0)  # padding positions are not part of the contract
        argmax_equal = bool(np.array_equal(values.argmax(axis=-1)[real], expected.argmax(axis=-1)[real]))
    elif golden.task != "embedding":
        argmax_equal = bool(np.array_equal(values.argmax(axis=1), expected.argmax(axis=1)))
    worst_index = np.unravel_index(int(np.argmax(diff)), diff.shape)
    max_abs_diff = float(diff[worst_index])
    report: dict[str, Any] = {
        "max_abs_diff": max_abs_diff,
        "argmax_equal": argmax_equal,
        "ids_equal": ids_equal,
        "worst": {"row": int(worst_index[0]), "col": int(worst_index[-1]), "text": golden.texts[worst_index[0]][:80],
                  "expected": float(expected[worst_index]), "actual": float(values[worst_index])},
    }
    if len(worst_index) == 3:
        report["worst"]["token"] = int(worst_index[1])
    ok = ids_equal and argmax_equal is not False and max_abs_diff <= golden.tolerance
    if golden.entities is not None:
        mismatch = entity_mismatch(golden.entities, entities or [], golden.tolerance)
        report["entities_equal"] = mismatch is None
        if mismatch is not None:
            report["entities_mismatch"] = mismatch
        ok = ok and mismatch is None
    report["ok"] = ok
    return report


def entity_mismatch(expected: list[list[dict[str, Any]]], actual: list[list[dict[str, Any]]],
                    tolerance: float) -> str | None:
    """The first difference: type, start, end and text equal, score within the tolerance; None when all agree."""
    if len(expected) != len(actual):
        return f"{len(actual)} entity lists for {len(expected)} texts"
    for row, (want, got) in enumerate(zip(expected, actual, strict=True)):
        keys = [(e["type"], e["start"], e["end"], e["text"]) for e in want]
        found = [(e["type"], e["start"], e["end"], e["text"]) for e in got]
        if keys != found:
            return f"text {row}: expected {keys[:3]} got {found[:3]}"
        for e, g in zip(want, got, strict=True):
            if not abs(float(e["score"]) - float(g["score"])) <= tolerance:
                return f"text {row}: {e['type']} [{e['start']}, {e['end']}) score {g['score']} != {e['score']}"
    return None


# Review thresholds are stored as text in the golden metadata and as JSON in lorakit.json: equal up to rounding.
THRESHOLD_TOLERANCE = 1e-6


def compare_calibration(golden: Golden, manifest: Manifest, logits: np.ndarray) -> dict[str, Any]:
    """softmax(logits / the manifest temperature) against the golden `probabilities` (max |diff| <= tolerance) and
    the needs_review verdicts (the same threshold; the same verdict per text except where the golden top probability
    is within the tolerance of the threshold): {prob_max_abs_diff, prob_tolerance, review_equal, ok}, with
    prob_worst / review_mismatch on a difference. A calibrated model whose golden file has no probabilities is a
    FormatError: nothing would check its calibration."""
    from .golden import calibrated_probabilities

    if golden.probabilities is None:
        raise FormatError(f"{GOLDEN_FILE}: no probabilities for a calibrated model (lorakit.json calibration); "
                          "re-export it so golden vectors cover the calibration")
    tolerance = golden.tolerance
    expected = golden.probabilities.numpy().astype(np.float64)
    report: dict[str, Any] = {"prob_max_abs_diff": float("inf"), "prob_tolerance": tolerance, "review_equal": False}
    if logits.shape != expected.shape:
        report["review_mismatch"] = f"logits {list(logits.shape)} != golden probabilities {list(expected.shape)}"
        return {**report, "ok": False}
    import torch

    actual = calibrated_probabilities(torch.from_numpy(np.ascontiguousarray(logits)), manifest.temperature)
    actual_np = actual.numpy().astype(np.float64)
    diff = np.abs(actual_np - expected)
    diff = np.where(np.isnan(diff), np.inf, diff)
    row, col = np.unravel_index(int(np.argmax(diff)), diff.shape)
    report["prob_max_abs_diff"] = float(diff[row, col])
    if not report["prob_max_abs_diff"] <= tolerance:
        report["prob_worst"] = {"row": int(row), "col": int(col), "text": golden.texts[row][:80],
                                "expected": float(expected[row, col]), "actual": float(actual_np[row, col])}
    report["review_equal"], mismatch = review_agreement(golden, manifest, expected, actual_np)
    if mismatch is not None:
        report["review_mismatch"] = mismatch
    report["ok"] = report["prob_max_abs_diff"] <= tolerance and report["review_equal"]
    return report


def review_agreement(golden: Golden, manifest: Manifest, expected: np.ndarray,
                     actual: np.ndarray) -> tuple[bool, str | None]:
    """(verdicts agree, the first difference in words); texts whose golden top probability lies within the
    tolerance of the threshold may go either way."""
    want, got = golden.review_threshold, manifest.review_threshold
    if (want is None) != (got is None) or (want is not None and got is not None
                                           and not abs(want - got) <= THRESHOLD_TOLERANCE):
        return False, f"review_threshold {got} in lorakit.json, {want} in the golden file"
    if want is None or got is None:
        return True, None
    want_top, got_top = expected.max(axis=1), actual.max(axis=1)
    want_review = want_top < want
    got_review = ~(got_top >= got)  # a NaN probability needs review, as in every runtime
    borderline = np.abs(want_top - want) <= golden.tolerance
    differ = np.flatnonzero((want_review != got_review) & ~borderline)
    if differ.size == 0:
        return True, None
    first = int(differ[0])
    return False, (f"{differ.size} text(s) judged differently, first text {first} {golden.texts[first][:40]!r}: "
                   f"top probability {got_top[first]:.6f} (golden {want_top[first]:.6f}) against threshold {got}")


def recompute(model_dir: Path, golden: Golden, manifest: Manifest, model: Any,
              onnx_path: Path | None = None) -> dict[str, Any]:
    """Recompute the golden outputs from the texts with a torch model or an ONNX file, and compare."""
    from .golden import compute_logits, tokenize
    from .loading import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    batch = tokenize(tokenizer, golden.texts, golden.max_seq_len)
    if onnx_path is not None:
        values = run_onnx(onnx_path, batch, manifest.task)
    elif manifest.task == "embedding":
        from .embedding import encode

        values = encode(model, tokenizer, golden.texts, golden.max_seq_len, str(manifest.pooling),
                        bool(manifest.normalize)).numpy()
    else:
        values = compute_logits(model, batch).numpy()
    entities = None
    if manifest.task == "token_classification":
        from .entities import padded_entities

        entities = padded_entities(tokenizer, golden.texts, values, golden.max_seq_len, list(manifest.labels))
    report = compare(golden, batch["input_ids"].numpy(), values, entities)
    if manifest.task == "sequence_classification" and (manifest.calibration is not None
                                                       or golden.probabilities is not None):
        calibration = compare_calibration(golden, manifest, values)
        report = {**report, **calibration, "ok": report["ok"] and calibration["ok"]}
    return report


def torch_backend(load: Callable[[], torch.nn.Module], manifest: Manifest) -> Callable[[Path, Golden], dict[str, Any]]:
    def run(model_dir: Path, golden: Golden) -> dict[str, Any]:
        return recompute(model_dir, golden, manifest, load())

    return run


def onnx_backend(manifest: Manifest) -> Callable[[Path, Golden], dict[str, Any]]:
    def run(model_dir: Path, golden: Golden) -> dict[str, Any]:
        from .golden import tokenize
        from .loading import load_merged, load_tokenizer

        with tempfile.TemporaryDirectory() as scratch:
            path = model_dir / "model.onnx"
            if not path.is_file():
                from .onnx_export import export_onnx

                batch = tokenize(load_tokenizer(model_dir), golden.texts, golden.max_seq_len)
                path = export_onnx(load_merged(model_dir, manifest), batch, Path(scratch) / "model.onnx",
                                   manifest.task, str(manifest.pooling or "mean"), bool(manifest.normalize))
            return recompute(model_dir, golden, manifest, None, onnx_path=path)

    return run


def run_onnx(path: Path, batch: dict[str, torch.Tensor], task: str = "sequence_classification") -> np.ndarray:
    import onnxruntime

    from .onnx_export import output_name

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors share no public base class
        raise ModelDirError(f"{path}: ONNX Runtime cannot load it ({one_line(exc)})") from None
    wanted = {node.name for node in session.get_inputs()}
    feeds = {name: tensor.numpy() for name, tensor in batch.items() if name in wanted}
    return np.asarray(session.run([output_name(task)], feeds)[0], dtype=np.float32)


def native_results(model_dir: Path) -> dict[str, dict[str, Any]]:
    """Native backends through the PyO3 extension, when it is built."""
    try:
        from . import native
    except ImportError:
        return {}
    return dict(native.verify_backends(str(model_dir)))


def verify_model(model_dir: Path, progress: Callable[[str], None] | None = None,
                 backends: Sequence[str] | None = None) -> dict[str, Any]:
    """{"ok", "checksums": {"ok", "mismatched"}, "backends": {name: {max_abs_diff, argmax_equal, ids_equal, ok,
    worst}}}; a backend that raises is reported as failed with its error, never skipped silently.

    `backends`: groups of BACKEND_GROUPS to run; each must be installed (else MissingExtraError). None: every
    group, those not installed reported as not run (never counted as a pass).
    """
    chosen = BACKEND_GROUPS if backends is None else tuple(dict.fromkeys(backends))
    explicit = backends is not None
    if explicit and {"torch", "onnx"} & set(chosen):
        require_train(f"lorakit verify --backends {','.join(chosen)}")
    if explicit and "onnx" in chosen and importlib.util.find_spec("onnxruntime") is None:
        raise MissingExtraError("lorakit verify --backends onnx needs the onnx extra: pip install 'lorakit[onnx]'")
    model_dir = Path(model_dir).absolute()
    manifest = read_manifest(model_dir)
    texts, tolerance = golden_header(model_dir)
    mismatched = check_files(model_dir, manifest)
    # A file changed after export is reported with every backend's figures; anything else is refused in one line.
    if not any((model_dir / rel).is_file() for rel in mismatched):
        from .modeldir import open_model_dir

        open_model_dir(model_dir)
    results: dict[str, dict[str, Any]] = {}
    generative = manifest.task == "generative_classification"
    if "torch" in chosen or "onnx" in chosen:
        if has_train() and generative:
            from .generative_verify import generative_backends

            results.update(generative_backends(model_dir, manifest, chosen, progress))
        elif has_train():
            results.update(python_backends(model_dir, manifest, chosen, progress))
        else:
            reason = "torch is not installed (pip install 'lorakit[train]')"
            results.update({name: not_run(reason) for name in python_backend_names(manifest, chosen)})
    if "native" in chosen:
        if progress:
            progress("native")
        try:
            if generative:
                from .generative_verify import native_generative_backends

                results.update(native_generative_backends(model_dir, manifest))
            else:
                results.update(native_results(model_dir))
        except Exception as exc:  # a broken native build must show up as a failed backend, not a crash
            results["native"] = failed(f"{type(exc).__name__}: {one_line(exc)}")
    ran = [result for result in results.values() if not result.get("not_run")]
    ok = not mismatched and bool(ran) and all(result.get("ok") is True for result in ran)
    report = {"ok": ok, "model_dir": str(model_dir), "tolerance": tolerance, "texts": texts,
              "checksums": {"ok": not mismatched, "mismatched": mismatched}, "backends": results}
    if manifest.calibration is not None:
        report["calibration"] = manifest.calibration.to_json()
    return report


def python_backend_names(manifest: Manifest, chosen: Sequence[str]) -> list[str]:
    names = (["torch-unmerged"] if manifest.adapter is not None else []) + ["torch-merged"]
    return (names if "torch" in chosen else []) + (["onnxruntime"] if "onnx" in chosen else [])


def python_backends(model_dir: Path, manifest: Manifest, chosen: Sequence[str],
                    progress: Callable[[str], None] | None) -> dict[str, dict[str, Any]]:
    """The torch (merged and unmerged) and ONNX Runtime rows of the report."""
    from .golden import read_golden
    from .loading import load_merged, load_unmerged

    golden = read_golden(model_dir)
    backends: dict[str, Callable[[Path, Golden], dict[str, Any]]] = {}
    if "torch" in chosen:
        if manifest.adapter is not None:
            backends["torch-unmerged"] = torch_backend(lambda: load_unmerged(model_dir, manifest), manifest)
        backends["torch-merged"] = torch_backend(lambda: load_merged(model_dir, manifest), manifest)
    results: dict[str, dict[str, Any]] = {}
    if "onnx" in chosen:
        if importlib.util.find_spec("onnxruntime") is None:
            results["onnxruntime"] = not_run("onnxruntime is not installed (pip install 'lorakit[onnx]')")
        else:
            backends["onnxruntime"] = onnx_backend(manifest)
    for name, backend in backends.items():
        if progress:
            progress(name)
        try:
            results[name] = backend(model_dir, golden)
        except LorakitError as exc:
            results[name] = failed(one_line(exc))
    return {name: results[name] for name in python_backend_names(manifest, chosen)}


def golden_header(model_dir: Path) -> tuple[int, float]:
    """(number of texts, tolerance) from golden.safetensors' metadata, read without torch or safetensors: the
    file starts with the little-endian u64 length of a JSON header whose `__metadata__` holds them."""
    path = Path(model_dir) / GOLDEN_FILE
    if not path.is_file():
        raise ModelDirError(f"{path}: golden file missing")
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                raise ValueError(f"header length {length} is implausible")
            metadata = json.loads(handle.read(length))["__metadata__"]
        texts = json.loads(metadata["texts"])
        if not isinstance(texts, list):
            raise ValueError("texts is not a list")
        return len(texts), float(metadata["tolerance"])
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{path}: not a valid golden file ({one_line(exc)}); re-export the model") from None


def not_run(reason: str) -> dict[str, Any]:
    """A backend that could not run here: shown in the report, never counted as a pass."""
    return {"max_abs_diff": None, "argmax_equal": None, "ids_equal": None, "ok": None, "not_run": reason}


def failed(message: str) -> dict[str, Any]:
    return {"max_abs_diff": float("inf"), "argmax_equal": False, "ids_equal": False, "ok": False,
            "worst": {"error": message}}


def format_report(report: dict[str, Any]) -> str:
    """The table `lorakit verify` prints; a calibrated model adds the prob_diff and review columns."""
    lines = [f"{report['model_dir']}: {report['texts']} golden texts, tolerance {report['tolerance']:g}"]
    calibration = report.get("calibration")
    if calibration is not None:
        lines[0] += (f", calibrated (temperature {calibration['temperature']:g}, "
                     f"review threshold {calibration.get('review_threshold')})")
    checks = report["checksums"]
    lines.append(f"  {'checksums':<16} {'ok' if checks['ok'] else 'FAIL: ' + ', '.join(checks['mismatched'])}")
    extra = f"  {'prob_diff':>12}  {'review':>6}" if calibration is not None else ""
    lines.append(f"  {'backend':<16} {'max_abs_diff':>12}  {'ids':>5}  {'argmax':>6}{extra}  result")
    for name, result in report["backends"].items():
        if result.get("not_run"):
            extra = f"  {'-':>12}  {'-':>6}" if calibration is not None else ""
            lines.append(f"  {name:<16} {'-':>12}  {'-':>5}  {'-':>6}{extra}  not run: {result['not_run']}")
            continue
        argmax = "n/a" if result["argmax_equal"] is None else str(result["argmax_equal"])
        extra = calibration_cells(result) if calibration is not None else ""
        lines.append(f"  {name:<16} {result['max_abs_diff']:>12.3e}  {str(result['ids_equal']):>5}  "
                     f"{argmax:>6}{extra}  {'ok' if result['ok'] else 'FAIL'}")
        if not result["ok"]:
            if not (calibration is not None and outputs_agree(result, report["tolerance"])):
                lines.append(f"    worst: {describe_worst(result.get('worst'))}")
            if result.get("entities_mismatch"):
                lines.append(f"    entities: {result['entities_mismatch']}")
            lines.extend(f"    {line}" for line in calibration_failures(result))
    lines.append("PASS" if report["ok"] else "FAIL")
    return "\n".join(lines)


def calibration_cells(result: dict[str, Any]) -> str:
    """The prob_diff and review cells of one backend row ("-" where the backend did not get that far)."""
    prob = result.get("prob_max_abs_diff")
    review = result.get("review_equal")
    prob_cell = "-" if prob is None else f"{prob:.3e}"
    return f"  {prob_cell:>12}  {'-' if review is None else str(review):>6}"


def outputs_agree(result: dict[str, Any], tolerance: float) -> bool:
    """The row failed on calibrated probabilities or review verdicts alone (its logits worst is no reason)."""
    worst = result.get("worst")
    return (result.get("ids_equal") is True and result.get("argmax_equal") is not False
            and result.get("max_abs_diff") is not None and result["max_abs_diff"] <= tolerance
            and not result.get("entities_mismatch") and not (isinstance(worst, dict) and "error" in worst))


def calibration_failures(result: dict[str, Any]) -> list[str]:
    """What a failing row got wrong about the calibration, one line each (native rows give only the figures)."""
    lines = []
    prob, tolerance = result.get("prob_max_abs_diff"), result.get("prob_tolerance")
    if result.get("prob_worst"):
        lines.append(f"probabilities: {describe_worst(result['prob_worst'])}")
    elif prob is not None and tolerance is not None and not prob <= tolerance:
        lines.append(f"probabilities: max |diff| {prob:.3e} > tolerance {tolerance:g}")
    if result.get("review_mismatch"):
        lines.append(f"review: {result['review_mismatch']}")
    elif result.get("review_equal") is False:
        lines.append("review: the review threshold or needs_review verdicts differ from the golden file")
    return lines


def describe_worst(worst: Any) -> str:
    if not isinstance(worst, dict):
        return str(worst)
    if "error" in worst:
        return " ".join(str(worst["error"]).split())  # one line per failing backend, whatever the message
    return (f"row {worst.get('row')} col {worst.get('col')} expected {worst.get('expected')!r} "
            f"got {worst.get('actual')!r} text {worst.get('text')!r}")
