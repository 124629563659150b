#!/usr/bin/env python3
"""GPU check of the native core: golden vectors on a CUDA device, and throughput against torch CUDA.

Usage: gpu_check.py [--fixtures DIR] [--device cuda:0] [--bench-model DIR] [--batches 1,256] [--seq-len 128]
                    [--repeats 20] [--binary PATH] [--json OUT]

1. Every model directory under --fixtures with a lorakit.json and golden.safetensors is loaded on --device (merged,
   and with its adapter applied at runtime where its base is found) and its golden vectors are recomputed there;
   each must match within the tolerance stored in its golden.safetensors.
2. --bench-model (default FIXTURES/minilm_lora) is classified at each batch size with texts of exactly --seq-len
   tokens, text to logits (tokenization and the copy back included), by the native core on --device and by torch on
   the same GPU in fp32 (TF32 off) with the same merged weights and texts; each cell is the median of --repeats
   calls after warmup, the native one in a process of its own. The two backends' logits must agree within that
   model's golden tolerance.

The native side is the `gpu_check` example of lorakit-core built with `--features cuda`
(`make cuda-build`, into target/cuda). Without an NVIDIA GPU the script says so and exits 0: nothing is checked.
Exit status 1 when a golden check, the parity of the two backends or a run fails. docs/gpu.md has the details.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "target" / "cuda" / "release" / "examples" / "gpu_check"
TOOLKIT_LIB = ROOT / "target" / "cuda" / "toolkit" / "site" / "nvidia" / "cu13" / "lib"
# The CUDA libraries the binary needs besides the driver (its NEEDED entries, and cublas's own cublasLt).
CUDA_LIBS = ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10")
WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches near "
         "old stone bridges and rivers").split()
WARMUP = 3


class CheckError(Exception):
    """The check could not run: the message says what is missing and how to get it."""


def gpu_names() -> list[str]:
    """NVIDIA GPUs that nvidia-smi lists (empty when there is no driver or no GPU)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.startswith("GPU ")] if out.returncode == 0 else []


def library_dirs() -> list[str]:
    """Folders holding the CUDA 13 libraries: this checkout's toolkit, NVIDIA's wheels on sys.path, a system CUDA."""
    candidates = [TOOLKIT_LIB]
    for entry in map(Path, sys.path):
        candidates += [entry / "nvidia" / "cu13" / "lib", *sorted((entry / "nvidia").glob("*/lib"))]
    candidates += [Path("/usr/local/cuda/lib64"), Path("/usr/local/cuda/targets/x86_64-linux/lib")]
    found: list[str] = []
    for d in candidates:
        if any((d / lib).exists() for lib in CUDA_LIBS) and str(d) not in found:
            found.append(str(d))
    return found


def native_env() -> dict[str, str]:
    env = dict(os.environ)
    dirs = library_dirs() + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    env["LD_LIBRARY_PATH"] = ":".join(dirs)
    missing = [lib for lib in CUDA_LIBS if not any((Path(d) / lib).exists() for d in dirs)]
    if missing:
        raise CheckError(f"CUDA libraries not found: {', '.join(missing)} (install CUDA 13 or its NVIDIA wheels, "
                         f"or run `make cuda-build`, which installs them under {TOOLKIT_LIB.parent})")
    return env


def native(binary: Path, args: Sequence[str], env: dict[str, str], timeout: float) -> list[dict[str, Any]]:
    """Runs the gpu_check example; its stdout is one JSON object per line."""
    try:
        out = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CheckError(f"{binary.name} {args[0]} ran past {timeout:.0f} s") from None
    if out.returncode != 0:
        raise CheckError(f"{binary.name} {args[0]} exited {out.returncode}: {out.stderr.strip()[-2000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def model_dirs(fixtures: Path) -> list[Path]:
    return sorted(d for d in fixtures.iterdir()
                  if (d / "lorakit.json").is_file() and (d / "golden.safetensors").is_file())


def golden_ok(line: dict[str, Any]) -> bool | None:
    """True/False for a check that ran, None for one skipped (a runtime adapter whose base is not here)."""
    return None if "skipped" in line else bool(line.get("ok"))


def exact_texts(tokenizer_json: Path, batch: int, seq_len: int) -> list[str]:
    """`batch` distinct texts of exactly `seq_len` tokens (special tokens included) for this tokenizer."""
    import tokenizers  # type: ignore[import-untyped]

    tok = tokenizers.Tokenizer.from_file(str(tokenizer_json))
    tok.no_padding()
    tok.no_truncation()
    texts = []
    for row in range(batch):
        words = [WORDS[(row * 7 + i) % len(WORDS)] for i in range(seq_len)]
        while len(tok.encode(" ".join(words)).ids) > seq_len:
            words.pop()
        while len(tok.encode(" ".join(words)).ids) < seq_len:
            words.append("a")
        text = " ".join(words)
        if len(tok.encode(text).ids) != seq_len:
            raise CheckError(f"cannot build a text of exactly {seq_len} tokens for {tokenizer_json}")
        texts.append(text)
    return texts


def torch_runner(model_dir: Path, device: str, seq_len: int) -> Any:
    """Text to host logits with transformers on `device`: the merged fp32 weights, loaded strictly."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    torch.set_float32_matmul_precision("highest")  # fp32 products: no TF32
    torch.backends.cudnn.allow_tf32 = False
    config = AutoConfig.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_config(config)
    model.load_state_dict(load_file(str(model_dir / "model.safetensors")), strict=True)
    model = model.float().eval().to(device)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))

    @torch.inference_mode()
    def run(texts: list[str]) -> Any:
        enc = tokenizer(texts, truncation=True, max_length=seq_len, padding=True, return_tensors="pt")
        return model(**{k: v.to(device) for k, v in enc.items()}).logits.float().cpu().numpy()

    return run


def torch_bench(run: Any, texts: list[str], repeats: int) -> tuple[float, Any]:
    for _ in range(WARMUP):
        run(texts)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        logits = run(texts)  # .cpu() waits for the GPU
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), logits


def bench(args: argparse.Namespace, env: dict[str, str], tolerance: float) -> tuple[list[dict[str, Any]], bool]:
    import numpy as np

    model = args.bench_model
    texts = exact_texts(model / "tokenizer.json", max(args.batches), args.seq_len)
    run = torch_runner(model, args.device, args.seq_len)
    rows: list[dict[str, Any]] = []
    ok = True
    with tempfile.TemporaryDirectory() as scratch:
        texts_file = Path(scratch) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        for batch in args.batches:
            [nat] = native(args.binary, ["bench", args.device, str(model), str(texts_file), str(batch),
                                         str(args.repeats)], env, args.timeout)
            torch_ms, torch_logits = torch_bench(run, texts[:batch], args.repeats)
            diff = float(np.abs(np.asarray(nat["logits"], dtype=np.float32).reshape(torch_logits.shape)
                                - torch_logits).max())
            ok &= diff <= tolerance
            for backend, ms in (("native-cuda", nat["median_ms"]), ("torch-cuda", torch_ms)):
                rows.append({"backend": backend, "batch": batch, "seq_len": args.seq_len, "median_ms": round(ms, 3),
                             "seq_per_s": round(batch / ms * 1e3, 1), "max_abs_diff_vs_other": diff,
                             "tolerance": tolerance})
    return rows, ok


def table(golden: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    lines = ["golden vectors:", f"  {'model':<34} {'mode':<8} {'result':<8} {'max|diff|':>10} {'tolerance':>10}"]
    for g in golden:
        verdict = {True: "ok", False: "FAIL", None: "skipped"}[golden_ok(g)]
        diff = f"{g['max_abs_diff']:.2e}" if "max_abs_diff" in g else "-"
        tol = f"{g['tolerance']:.0e}" if "tolerance" in g else "-"
        note = g.get("error") or g.get("skipped") or ""
        lines.append(f"  {Path(g['dir']).name:<34} {g['mode']:<8} {verdict:<8} {diff:>10} {tol:>10}  {note}".rstrip())
    if rows:
        lines += ["throughput (text to logits):",
                  f"  {'backend':<12} {'batch':>5} {'seq':>4} {'median ms':>10} {'seq/s':>10} {'max|diff|':>10}"]
        lines += [f"  {r['backend']:<12} {r['batch']:>5} {r['seq_len']:>4} {r['median_ms']:>10.3f} "
                  f"{r['seq_per_s']:>10.1f} {r['max_abs_diff_vs_other']:>10.2e}" for r in rows]
        by = {(r["backend"], r["batch"]): r for r in rows}
        for batch in sorted({r["batch"] for r in rows}):
            ratio = by[("native-cuda", batch)]["seq_per_s"] / by[("torch-cuda", batch)]["seq_per_s"]
            lines.append(f"  batch {batch}: native-cuda throughput {ratio:.2f}x torch-cuda")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    fixtures = Path(os.environ.get("LORAKIT_FIXTURES", ROOT / ".fixtures"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixtures", type=Path, default=fixtures)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--bench-model", type=Path, default=None, help="default: FIXTURES/minilm_lora")
    p.add_argument("--batches", default="1,256", type=lambda s: [int(b) for b in s.split(",")])
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--binary", type=Path, default=BINARY)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for each native run")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    args.bench_model = args.bench_model or args.fixtures / "minilm_lora"
    if not args.device.startswith("cuda") or min(args.batches) < 1 or args.repeats < 1:
        p.error("--device must be cuda or cuda:N, batches and --repeats at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    gpus = gpu_names()
    if not gpus:
        print("gpu_check: no NVIDIA GPU on this machine (nvidia-smi lists none): nothing was checked, "
              "and nothing passed. Run this on a machine with a GPU.")
        if args.json:
            args.json.write_text(json.dumps({"status": "no-gpu"}) + "\n")
        return 0
    try:
        if not args.binary.is_file():
            raise CheckError(f"{args.binary}: missing; build it with `make cuda-build`")
        if not args.fixtures.is_dir():
            raise CheckError(f"{args.fixtures}: no fixtures folder (`make fixtures`, or pass --fixtures)")
        env = native_env()
        dirs = model_dirs(args.fixtures)
        golden = native(args.binary, ["golden", args.device, *map(str, dirs)], env, args.timeout)
        golden_pass = all(golden_ok(g) is not False for g in golden) and bool(golden)
        if not (args.bench_model / "model.safetensors").is_file():
            raise CheckError(f"{args.bench_model}: no merged model.safetensors to time (pass --bench-model)")
        bench_dir = args.bench_model.resolve()
        tolerance = next((g["tolerance"] for g in golden
                          if Path(g["dir"]).resolve() == bench_dir and "tolerance" in g), 1e-4)
        rows, parity = bench(args, env, tolerance)
    except CheckError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 1
    print(f"gpu_check on {args.device}: {gpus[0]}")
    print(table(golden, rows))
    result = {"status": "pass" if golden_pass and parity else "fail", "device": args.device, "gpu": gpus[0],
              "golden": golden, "golden_pass": golden_pass, "bench": rows, "bench_parity": parity,
              "bench_model": str(bench_dir)}
    print(json.dumps({k: v for k, v in result.items() if k != "golden"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"gpu_check: {result['status']} (golden {'ok' if golden_pass else 'FAILED'}, "
          f"native vs torch logits {'within' if parity else 'NOT within'} {tolerance:g})")
    return 0 if result["status"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
