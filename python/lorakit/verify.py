"""`lorakit verify`: recompute the golden outputs with every available backend and compare."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import LorakitError, ModelDirError
from .golden import Golden, compute_logits, read_golden, tokenize
from .loading import load_merged, load_tokenizer, load_unmerged, one_line
from .manifest import Manifest, check_files, read_manifest


def compare(golden: Golden, input_ids: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """The parity check of docs/FORMAT.md: ids identical, max |diff| <= tolerance, argmax identical."""
    expected_ids = golden.input_ids.numpy()
    ids_equal = input_ids.shape == expected_ids.shape and bool(np.array_equal(input_ids, expected_ids))
    expected = golden.logits.numpy()
    if logits.shape != expected.shape:
        return {"max_abs_diff": float("inf"), "argmax_equal": False, "ids_equal": ids_equal, "ok": False,
                "worst": {"error": f"logits shape {list(logits.shape)} != golden {list(expected.shape)}"}}
    diff = np.abs(logits.astype(np.float64) - expected.astype(np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    row, col = np.unravel_index(int(np.argmax(diff)), diff.shape)
    max_abs_diff = float(diff[row, col])
    argmax_equal = bool(np.array_equal(logits.argmax(axis=1), expected.argmax(axis=1)))
    return {
        "max_abs_diff": max_abs_diff,
        "argmax_equal": argmax_equal,
        "ids_equal": ids_equal,
        "ok": ids_equal and argmax_equal and max_abs_diff <= golden.tolerance,
        "worst": {"row": int(row), "col": int(col), "text": golden.texts[row][:80],
                  "expected": float(expected[row, col]), "actual": float(logits[row, col])},
    }


def torch_backend(load: Callable[[], torch.nn.Module]) -> Callable[[Path, Golden], dict[str, Any]]:
    def run(model_dir: Path, golden: Golden) -> dict[str, Any]:
        batch = tokenize(load_tokenizer(model_dir), golden.texts, golden.max_seq_len)
        logits = compute_logits(load(), batch)
        return compare(golden, batch["input_ids"].numpy(), logits.numpy())

    return run


def onnx_backend(manifest: Manifest) -> Callable[[Path, Golden], dict[str, Any]]:
    def run(model_dir: Path, golden: Golden) -> dict[str, Any]:
        batch = tokenize(load_tokenizer(model_dir), golden.texts, golden.max_seq_len)
        with tempfile.TemporaryDirectory() as scratch:
            path = model_dir / "model.onnx"
            if not path.is_file():
                from .onnx_export import export_onnx

                path = export_onnx(load_merged(model_dir, manifest), batch, Path(scratch) / "model.onnx")
            logits = run_onnx(path, batch)
        return compare(golden, batch["input_ids"].numpy(), logits)

    return run


def run_onnx(path: Path, batch: dict[str, torch.Tensor]) -> np.ndarray:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors share no public base class
        raise ModelDirError(f"{path}: ONNX Runtime cannot load it ({one_line(exc)})") from None
    wanted = {node.name for node in session.get_inputs()}
    feeds = {name: tensor.numpy() for name, tensor in batch.items() if name in wanted}
    return np.asarray(session.run(["logits"], feeds)[0], dtype=np.float32)


def native_results(model_dir: Path) -> dict[str, dict[str, Any]]:
    """Native backends through the PyO3 extension, when it is built."""
    try:
        from . import native
    except ImportError:
        return {}
    return dict(native.verify_backends(str(model_dir)))


def verify_model(model_dir: Path, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """{"ok", "checksums": {"ok", "mismatched"}, "backends": {name: {max_abs_diff, argmax_equal, ids_equal, ok,
    worst}}}; a backend that raises is reported as failed with its error, never skipped silently."""
    model_dir = Path(model_dir).absolute()
    manifest = read_manifest(model_dir)
    golden = read_golden(model_dir)
    mismatched = check_files(model_dir, manifest)
    backends: dict[str, Callable[[Path, Golden], dict[str, Any]]] = {}
    if manifest.adapter is not None:
        backends["torch-unmerged"] = torch_backend(lambda: load_unmerged(model_dir, manifest))
    backends["torch-merged"] = torch_backend(lambda: load_merged(model_dir, manifest))
    try:
        import onnxruntime  # noqa: F401

        backends["onnxruntime"] = onnx_backend(manifest)
    except ImportError:
        pass
    results: dict[str, dict[str, Any]] = {}
    for name, backend in backends.items():
        if progress:
            progress(name)
        try:
            results[name] = backend(model_dir, golden)
        except LorakitError as exc:
            results[name] = failed(one_line(exc))
    if progress:
        progress("native")
    try:
        results.update(native_results(model_dir))
    except Exception as exc:  # a broken native build must show up as a failed backend, not a crash
        results["native"] = failed(f"{type(exc).__name__}: {one_line(exc)}")
    ok = not mismatched and all(result.get("ok") is True for result in results.values())
    return {"ok": ok, "model_dir": str(model_dir), "tolerance": golden.tolerance, "texts": len(golden.texts),
            "checksums": {"ok": not mismatched, "mismatched": mismatched}, "backends": results}


def failed(message: str) -> dict[str, Any]:
    return {"max_abs_diff": float("inf"), "argmax_equal": False, "ids_equal": False, "ok": False,
            "worst": {"error": message}}


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['model_dir']}: {report['texts']} golden texts, tolerance {report['tolerance']:g}"]
    checks = report["checksums"]
    lines.append(f"  {'checksums':<16} {'ok' if checks['ok'] else 'FAIL: ' + ', '.join(checks['mismatched'])}")
    lines.append(f"  {'backend':<16} {'max_abs_diff':>12}  {'ids':>5}  {'argmax':>6}  result")
    for name, result in report["backends"].items():
        lines.append(f"  {name:<16} {result['max_abs_diff']:>12.3e}  {str(result['ids_equal']):>5}  "
                     f"{str(result['argmax_equal']):>6}  {'ok' if result['ok'] else 'FAIL'}")
        if not result["ok"]:
            lines.append(f"    worst: {describe_worst(result.get('worst'))}")
    lines.append("PASS" if report["ok"] else "FAIL")
    return "\n".join(lines)


def describe_worst(worst: Any) -> str:
    if not isinstance(worst, dict):
        return str(worst)
    if "error" in worst:
        return " ".join(str(worst["error"]).split())  # one line per failing backend, whatever the message
    return (f"row {worst.get('row')} col {worst.get('col')} expected {worst.get('expected')!r} "
            f"got {worst.get('actual')!r} text {worst.get('text')!r}")
