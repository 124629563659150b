#!/usr/bin/env python3
"""Inference benchmark: native core (via Python) vs PyTorch vs ONNX Runtime on MiniLM sequence classification.

Usage: bench_inference.py [--model DIR] [--threads N] [--json OUT] [--memory]

Every backend goes from text to logits (tokenization included) on the same inputs with the same thread count;
each cell is the median of repeated calls after warmup. `--memory` instead measures the resident memory of one
Base with 8 adapters against 8 merged Models (each in a fresh subprocess).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

SHAPES = ((1, 16), (1, 128), (32, 128))
# Common words that are one WordPiece each, so a text of n-2 words is exactly n tokens with [CLS]/[SEP].
WORDS = ("the card bank money payment was declined when I tried to pay for my order at the shop "
         "yesterday and today again please help me understand why this happened").split()
ADAPTER_COPIES = 8


def load_fixture_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "scripts" / "make_fixtures.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_dir_or_build(model: Path | None, scratch: Path) -> Path:
    if model is not None:
        return model.absolute()
    shared = Path(os.environ.get("LORAKIT_FIXTURES", ROOT / ".fixtures")) / "minilm_lora"
    if (shared / "lorakit.json").is_file():
        return shared
    print("building a MiniLM LoRA model directory (a few seconds) ...", file=sys.stderr)
    return Path(load_fixture_builder().build_minilm_lora(scratch / "minilm_lora"))


def make_texts(tokenizer: Any, batch: int, seq_len: int) -> list[str]:
    texts = []
    for row in range(batch):
        words = [WORDS[(row + i) % len(WORDS)] for i in range(seq_len - 2)]
        texts.append(" ".join(words))
    lengths = {len(ids) for ids in tokenizer(texts)["input_ids"]}
    if lengths != {seq_len}:
        raise SystemExit(f"benchmark texts tokenize to {sorted(lengths)} tokens, expected {seq_len}")
    return texts


def median_ms(call: Callable[[], Any], warmup: int, repeats: int, budget_s: float) -> float:
    for _ in range(warmup):
        call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - started < budget_s):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def backends(model_dir: Path, threads: int, max_seq_len: int) -> dict[str, Callable[[list[str]], Any]]:
    import numpy as np
    import onnxruntime  # type: ignore[import-untyped]
    import torch

    from lorakit import native
    from lorakit.golden import tokenize
    from lorakit.loading import load_merged, load_tokenizer
    from lorakit.onnx_export import export_onnx

    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(model_dir)
    torch_model = load_merged(model_dir)

    @torch.inference_mode()
    def run_torch(texts: list[str]) -> Any:
        return torch_model(**tokenize(tokenizer, texts, max_seq_len)).logits

    onnx_path = model_dir / "model.onnx"
    if not onnx_path.is_file():
        onnx_path = Path(tempfile.mkdtemp(prefix="lorakit-bench-")) / "model.onnx"
        export_onnx(torch_model, tokenize(tokenizer, ["warm up text"], max_seq_len), onnx_path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}

    def run_onnx(texts: list[str]) -> Any:
        batch = tokenize(tokenizer, texts, max_seq_len)
        return session.run(["logits"], {k: v.numpy().astype(np.int64) for k, v in batch.items() if k in wanted})

    merged = native.Model.load(model_dir, merged=True, threads=threads)
    runtime = native.Model.load(model_dir, merged=False, threads=threads) if native.has_adapter(model_dir) else None
    out: dict[str, Callable[[list[str]], Any]] = {
        "torch": run_torch,
        "onnxruntime": run_onnx,
        "native-merged": merged.classify,
    }
    if runtime is not None:
        out["native-runtime"] = runtime.classify
    return out


def run_speed(args: argparse.Namespace, model_dir: Path) -> list[dict[str, Any]]:
    from lorakit.loading import load_tokenizer
    from lorakit.manifest import read_manifest

    max_seq_len = read_manifest(model_dir).max_seq_len
    if max_seq_len < max(s for _, s in SHAPES):
        raise SystemExit(f"{model_dir}: max_seq_len {max_seq_len} is below the benchmark's 128 tokens")
    tokenizer = load_tokenizer(model_dir)
    calls = backends(model_dir, args.threads, max_seq_len)
    rows: list[dict[str, Any]] = []
    for batch, seq_len in SHAPES:
        texts = make_texts(tokenizer, batch, seq_len)
        for name, call in calls.items():
            ms = median_ms(functools.partial(call, texts), args.warmup, args.repeats, args.budget)
            rows.append({"backend": name, "batch": batch, "seq_len": seq_len, "median_ms": round(ms, 3),
                         "seq_per_s": round(batch / ms * 1e3, 2), "threads": args.threads})
            print(f"  {name:<15} {batch:>3} x {seq_len:<4} {ms:9.2f} ms", file=sys.stderr)
    return rows


def speed_table(rows: Sequence[dict[str, Any]]) -> str:
    torch_ms = {(r["batch"], r["seq_len"]): r["median_ms"] for r in rows if r["backend"] == "torch"}
    lines = [f"{'backend':<15} {'batch x len':>11} {'median ms':>10} {'seq/s':>9} {'vs torch':>9}"]
    for r in rows:
        base = torch_ms.get((r["batch"], r["seq_len"]))
        ratio = f"{base / r['median_ms']:.2f}x" if base else "-"
        lines.append(f"{r['backend']:<15} {r['batch']:>4} x {r['seq_len']:<4} {r['median_ms']:>10.2f} "
                     f"{r['seq_per_s']:>9.1f} {ratio:>9}")
    lines.append("(vs torch: torch time / backend time; above 1 is faster than torch)")
    return "\n".join(lines)


MEMORY_CHILD = r"""
import json, os, sys
from lorakit import native
def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
mode, model_dir, base_dir, copies = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
before = rss_mib()
if mode == "base":
    base = native.Model.load_base(base_dir, threads=1)
    for i in range(copies):
        base.add_adapter(f"adapter{i}", model_dir)
    base.classify(["warm up"], adapter="adapter0")
else:
    models = [native.Model.load(model_dir, merged=True, threads=1) for _ in range(copies)]
    models[0].classify(["warm up"])
print(json.dumps({"mode": mode, "rss_mib": rss_mib() - before}))
"""


def run_memory(model_dir: Path) -> list[dict[str, Any]]:
    from lorakit.manifest import read_manifest

    base_dir = read_manifest(model_dir).base_dir(model_dir)
    rows = []
    for mode in ("base", "merged"):
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, mode, str(model_dir), str(base_dir),
                              str(ADAPTER_COPIES)], check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="lorakit model directory (default: a MiniLM LoRA model)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per cell before stopping early")
    parser.add_argument("--memory", action="store_true", help=f"RSS of 1 Base + {ADAPTER_COPIES} adapters vs "
                        f"{ADAPTER_COPIES} merged Models instead of speed")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-") as scratch:
        model_dir = model_dir_or_build(args.model, Path(scratch))
        if args.memory:
            rows = run_memory(model_dir)
            for r in rows:
                merged = f"{ADAPTER_COPIES} merged Models"
                label = f"1 Base + {ADAPTER_COPIES} adapters" if r["mode"] == "base" else merged
                print(f"{label:<26} {r['rss_mib']:8.1f} MiB RSS")
        else:
            print(f"model {model_dir}, {args.threads} thread(s)", file=sys.stderr)
            rows = run_speed(args, model_dir)
            print(speed_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
