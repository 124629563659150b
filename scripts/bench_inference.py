#!/usr/bin/env python3
"""Inference benchmark: lorakit's native core (via Python, Rust, Go and the router) vs PyTorch vs ONNX Runtime on
sequence classification (MiniLM by default), every backend in a fresh process of its own.

Usage: bench_inference.py [--model DIR] [--threads N] [--backends a,b] [--cases a,b] [--json OUT] [--memory]

The cases (1x16, 1x128 and 32x128 texts of exact token lengths, and 32 banking77 texts of mixed lengths) are written
to one file that every backend process reads; each goes from text to logits (tokenization included) with the same
thread count, each cell the median of repeated calls after warmup. `--json OUT` writes the rows (a JSON list) and
OUT's stem + `.machine.json` (machine, settings, cases, notes, targets). `--memory` instead measures the resident
memory of one base with 8 adapters against the base alone and 8 merged models (each in a fresh subprocess), and the
time to add an adapter to a loaded base. docs/performance.md describes the method and the latest results.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_inference_logic import (
    ADAPTER_COPIES,
    BACKENDS,
    BANKING77_CSV,
    CASES,
    PYTHON_BACKENDS,
    ROOT,
    RUNTIME_BACKENDS,
    SEED,
    BenchError,
    build_cases,
    check_rows,
    cpu_summary,
    machine_line,
    memory_report,
    memory_rows,
    memory_targets,
    names,
    row,
    speed_report,
    speed_targets,
    tail,
    tensor_bytes,
    token_counter,
    write_json,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(ROOT / "python"))
# Every process gets the same thread count through every pool a library may start.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS", "CANDLE_NUM_THREADS")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fast_tokenizer(model_dir: Path, max_seq_len: int) -> Any:
    """The model's tokenizer.json as a `tokenizers.Tokenizer` (no torch): truncate, right-pad to the longest row."""
    import tokenizers  # type: ignore[import-untyped]

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise BenchError(f"{path}: missing; the benchmark needs the model's tokenizer.json")
    tok = tokenizers.Tokenizer.from_file(str(path))
    pad = tok.padding or {}
    tok.enable_padding(direction="right", pad_id=pad.get("pad_id", 0), pad_type_id=pad.get("pad_type_id", 0),
                       pad_token=pad.get("pad_token", "[PAD]"))
    tok.enable_truncation(max_length=max_seq_len)
    return tok


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


def python_backend(name: str, model_dir: Path, threads: int, max_seq_len: int,
                   onnx_path: Path | None) -> Callable[[list[str]], Any]:
    """Text to logits for one Python backend; imports only what that backend needs."""
    if name == "torch":
        import torch

        from lorakit.golden import tokenize
        from lorakit.loading import load_merged, load_tokenizer

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        tokenizer, model = load_tokenizer(model_dir), load_merged(model_dir).eval()

        @torch.inference_mode()
        def run_torch(texts: list[str]) -> Any:
            return model(**tokenize(tokenizer, texts, max_seq_len)).logits

        return run_torch
    if name == "onnxruntime":
        import numpy as np
        import onnxruntime  # type: ignore[import-untyped]

        if onnx_path is None:
            raise BenchError("onnxruntime needs --onnx PATH")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        tok = fast_tokenizer(model_dir, max_seq_len)

        def run_onnx(texts: list[str]) -> Any:
            encs = tok.encode_batch(texts)
            feeds = {"input_ids": [e.ids for e in encs], "attention_mask": [e.attention_mask for e in encs],
                     "token_type_ids": [e.type_ids for e in encs]}
            return session.run(["logits"], {k: np.asarray(v, dtype=np.int64) for k, v in feeds.items() if k in wanted})

        return run_onnx
    if name.startswith("native-python"):
        from lorakit import native

        if name.endswith(("-bf16", "-int8")):
            model = native.Model.load(model_dir, merged=True, threads=threads, precision=name.rsplit("-", 1)[1])
        else:
            model = native.Model.load(model_dir, merged=name == "native-python", threads=threads)
        return lambda texts: model.classify(texts)
    raise BenchError(f"{name} is not a Python backend ({', '.join(PYTHON_BACKENDS)})")


def run_child(args: argparse.Namespace) -> int:
    from lorakit.manifest import read_manifest

    if args.child == "export-onnx":
        from lorakit.golden import tokenize
        from lorakit.loading import load_merged, load_tokenizer
        from lorakit.onnx_export import export_onnx

        batch = tokenize(load_tokenizer(args.model), ["warm up text"], read_manifest(args.model).max_seq_len)
        export_onnx(load_merged(args.model), batch, args.onnx)
        return 0
    call = python_backend(args.child, args.model, args.threads, read_manifest(args.model).max_seq_len, args.onnx)
    rows = []
    for case in json.loads(args.cases.read_text(encoding="utf-8")):
        rows.append(row(args.child, case, median_ms(functools.partial(call, case["texts"]), args.warmup,
                                                     args.repeats, args.budget)))
        progress(f"{args.child:<22} {case['name']:<10} {rows[-1]['median_ms']:10.2f} ms")
    args.json.write_text(json.dumps(rows) + "\n", encoding="utf-8")
    return 0


def run_process(argv: list[str], env: dict[str, str], timeout: float, cwd: Path = ROOT) -> str:
    """Run one process to the end; its stderr (progress), or BenchError with the last lines of what it said."""
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise BenchError(f"{argv[0]} not found ({exc.strerror})") from None
    except subprocess.TimeoutExpired:
        raise BenchError(f"{Path(argv[0]).name} ran past {timeout:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"{Path(argv[0]).name} exited {done.returncode}: {tail(done.stderr or done.stdout)}")
    return done.stderr


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def build_rust(env: dict[str, str]) -> Path:
    if not (ROOT / "rust" / "lorakit-core" / "examples" / "bench_classify.rs").is_file():
        raise BenchError("rust/lorakit-core/examples/bench_classify.rs not found")
    progress("building the Rust driver (cargo build --release --example bench_classify) ...")
    run_process(["cargo", "build", "--release", "-q", "-p", "lorakit-core", "--example", "bench_classify"],
                env, 3600)
    return target_dir() / "release" / "examples" / "bench_classify"


def build_go(scratch: Path, env: dict[str, str]) -> Path:
    if not (ROOT / "go" / "cmd" / "lorakit-bench").is_dir():
        raise BenchError("go/cmd/lorakit-bench not found")
    progress("building the Go driver (go build ./cmd/lorakit-bench) ...")
    out = scratch / "lorakit-bench"
    go_env = {**env, "CGO_ENABLED": "1", "PKG_CONFIG_PATH": str(target_dir() / "pkgconfig")}
    run_process(["go", "build", "-o", str(out), "./cmd/lorakit-bench"], go_env, 1800, cwd=ROOT / "go")
    return out


def driver_binary(kind: str, built: dict[str, Path | BenchError], scratch: Path, env: dict[str, str]) -> Path | None:
    """The compiled driver of `kind`, built once per run; a failed build fails every backend it times, once."""
    if not kind:
        return None
    if kind not in built:
        try:
            built[kind] = build_rust(env) if kind == "rust" else build_go(scratch, env)
        except BenchError as exc:
            built[kind] = BenchError(f"{kind} driver build failed: {exc}")
    binary = built[kind]
    if isinstance(binary, BenchError):
        raise binary
    return binary


def driver_kind(backend: str) -> str:
    """Which compiled driver times a backend: "rust", "go", or "" for a Python child process."""
    if backend.startswith("native-rust"):
        return "rust"
    return "go" if backend.startswith("native-go") or backend == "router" else ""


def driver_argv(backend: str, args: argparse.Namespace, binary: Path | None, cases_file: Path, out: Path,
                onnx_path: Path | None) -> list[str]:
    common = ["--model", str(args.model), "--threads", str(args.threads), "--cases", str(cases_file)]
    timing = ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    runtime = ["--runtime"] if backend in RUNTIME_BACKENDS else []
    if backend in PYTHON_BACKENDS:
        extra = ["--onnx", str(onnx_path)] if backend == "onnxruntime" and onnx_path else []
        return [sys.executable, str(Path(__file__).resolve()), "--child", backend, *common, *timing,
                "--budget", f"{args.budget:g}", *extra, "--json", str(out)]
    assert binary is not None
    if driver_kind(backend) == "rust":
        return [str(binary), *common, "--json", str(out), *runtime, *timing, "--budget", f"{args.budget:g}"]
    if backend == "router":
        return [str(binary), *common, "--mode", "router", "--clients", str(args.clients),
                "--duration", f"{args.router_duration:g}s", "--warmup", str(args.warmup), "--json", str(out)]
    return [str(binary), *common, "--mode", "native", *runtime, *timing, "--budget", f"{args.budget:g}s",
            "--json", str(out)]


def onnx_model(args: argparse.Namespace, scratch: Path, env: dict[str, str]) -> Path:
    existing = args.model / "model.onnx"
    if existing.is_file():
        return existing
    progress("exporting the model to ONNX in a separate process ...")
    out = scratch / "model.onnx"
    run_process([sys.executable, str(Path(__file__).resolve()), "--child", "export-onnx", "--model",
                 str(args.model), "--onnx", str(out)], env, 900)
    return out


def run_speed(args: argparse.Namespace, cases: list[dict[str, Any]], scratch: Path,
              notes: list[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every wanted backend in its own process on the same cases file; rows and {backend: why it was skipped}."""
    from lorakit import native

    cases_file = scratch / "cases.json"
    cases_file.write_text(json.dumps(cases) + "\n", encoding="utf-8")
    env = {**os.environ, **{name: str(args.threads) for name in THREAD_ENV}}
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    binaries: dict[str, Path | BenchError] = {}
    per_case = 6 * max(args.budget, args.router_duration) + 30
    for backend in args.backends:
        if backend in RUNTIME_BACKENDS and not native.has_adapter(args.model):
            skipped[backend] = "the model has no adapter to apply at runtime"
            continue
        kind = driver_kind(backend)
        progress(f"{backend}: fresh process, {args.threads} thread(s)")
        try:
            binary = driver_binary(kind, binaries, scratch, env)
            onnx_path = onnx_model(args, scratch, env) if backend == "onnxruntime" else None
            out = scratch / f"{backend}.json"
            out.unlink(missing_ok=True)
            said = run_process(driver_argv(backend, args, binary, cases_file, out, onnx_path), env,
                               120 + per_case * len(cases))
            for line in said.strip().splitlines()[-20:]:
                progress(f"  {line.strip()}")
            try:
                produced = json.loads(out.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise BenchError(f"no readable rows in {out.name}: {exc}") from None
        except BenchError as exc:
            skipped[backend] = str(exc)
            progress(f"  {backend} skipped: {exc}")
            continue
        good, bad = check_rows(backend, produced, cases)
        rows += good
        notes += bad
    return rows, skipped


def tool_version(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def machine_info(threads: int) -> dict[str, Any]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        cpuinfo = ""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("lorakit", "torch", "onnxruntime", "transformers", "tokenizers", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    versions["go"] = tool_version(["go", "version"])
    versions["rustc"] = tool_version(["rustc", "--version"])
    return {**cpu_summary(cpuinfo), "logical_cpus": os.cpu_count(), "available_cpus": len(os.sched_getaffinity(0)),
            "threads": threads, "platform": platform.platform(), "loadavg_start": list(os.getloadavg()),
            "versions": versions}


def rss_mib() -> float:
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError("/proc/self/status has no VmRSS line")


def memory_child(mode: str, model_dir: Path, base_dir: Path, copies: int) -> dict[str, Any]:
    """RSS growth of loading one way, measured before any call (a bare base takes no call), then after one call."""
    from lorakit import native

    before = rss_mib()
    add_ms: list[float] = []
    if mode == "merged":
        models = [native.Model.load(model_dir, merged=True, threads=1) for _ in range(copies)]
        loaded = rss_mib() - before
        models[0].classify(["warm up"])
    else:
        base = native.Model.load_base(base_dir, threads=1)
        for i in range(copies if mode == "adapters" else 0):
            t0 = time.perf_counter()
            base.add_adapter(f"adapter{i}", model_dir)
            add_ms.append((time.perf_counter() - t0) * 1e3)
        loaded = rss_mib() - before
        if add_ms:
            base.classify(["warm up"], adapter="adapter0")
    return {"mode": mode, "copies": copies, "rss_mib": round(loaded, 2),
            "rss_after_call_mib": round(rss_mib() - before, 2), "add_ms": add_ms}


def run_memory(model_dir: Path, copies: int) -> dict[str, Any]:
    from lorakit import native
    from lorakit.manifest import read_manifest

    if not native.has_adapter(model_dir):
        raise BenchError(f"{model_dir}: --memory needs a model with an adapter (adapter_model.safetensors)")
    base_dir = read_manifest(model_dir).base_dir(model_dir)
    results = {}
    for mode in ("base", "adapters", "merged"):
        progress(f"memory: {mode} in a fresh process ...")
        argv = [sys.executable, str(Path(__file__).resolve()), "--memory-child", mode, "--model", str(model_dir),
                "--base", str(base_dir), "--copies", str(copies)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise BenchError(f"memory child {mode} exited {done.returncode}: {tail(done.stderr)}")
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    adapter = model_dir / "adapter_model.safetensors"
    add_ms = results["adapters"]["add_ms"]
    return {"copies": copies, "base_mib": results["base"]["rss_mib"], "adapters_mib": results["adapters"]["rss_mib"],
            "merged_mib": results["merged"]["rss_mib"],
            "adapters_after_call_mib": results["adapters"]["rss_after_call_mib"],
            "merged_after_call_mib": results["merged"]["rss_after_call_mib"],
            "adapter_file_mib": round(adapter.stat().st_size / 2**20, 3),
            "adapter_tensor_mib": round(tensor_bytes(adapter) / 2**20, 3), "add_ms": [round(t, 3) for t in add_ms],
            "add_ms_median": round(statistics.median(add_ms), 3)}


def model_dir_or_build(model: Path | None, scratch: Path) -> Path:
    if model is not None:
        return model.absolute()
    shared = Path(os.environ.get("LORAKIT_FIXTURES", ROOT / ".fixtures")) / "minilm_lora"
    if (shared / "lorakit.json").is_file():
        return shared
    import importlib.util

    progress("building a MiniLM LoRA model directory (a few seconds) ...")
    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "scripts" / "make_fixtures.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.build_minilm_lora(scratch / "minilm_lora"))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="lorakit model directory (default: a MiniLM LoRA model)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--backends", type=lambda v: names(v, BACKENDS, "backend"), default=list(BACKENDS),
                        help=f"comma-separated subset of {','.join(BACKENDS)} (default: all)")
    parser.add_argument("--cases", type=lambda v: names(v, CASES, "case"), default=list(CASES),
                        help=f"comma-separated subset of {','.join(CASES)} (default: all)")
    parser.add_argument("--banking77", type=Path, default=BANKING77_CSV, help="banking77 train.csv to sample from")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the banking77 sample")
    parser.add_argument("--json", type=Path, help="write the rows here (and the machine to STEM.machine.json)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per cell before stopping early")
    parser.add_argument("--clients", type=int, default=32, help="concurrent loopback clients of the router")
    parser.add_argument("--router-duration", type=float, default=10.0, help="seconds the router is driven per case")
    parser.add_argument("--memory", action="store_true", help=f"RSS of a base alone, with {ADAPTER_COPIES} "
                        f"adapters and {ADAPTER_COPIES} merged models, and adapter add time, instead of speed")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or args.warmup < 0 or args.clients < 1:
        parser.error("--threads, --repeats and --clients must be at least 1, --warmup at least 0")
    return args


def parse_child_args(argv: Sequence[str]) -> argparse.Namespace:
    """The subprocess side, with the drivers' flags: one backend (or one memory measurement) in this process."""
    parser = argparse.ArgumentParser(prog="bench_inference.py --child")
    parser.add_argument("--child", choices=(*PYTHON_BACKENDS, "export-onnx"))
    parser.add_argument("--memory-child", choices=("base", "adapters", "merged"))
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", type=Path, help="cases JSON file")
    parser.add_argument("--json", type=Path, help="rows out")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--base", type=Path)
    parser.add_argument("--copies", type=int, default=ADAPTER_COPIES)
    args = parser.parse_args(argv)
    if args.child not in (None, "export-onnx") and (args.cases is None or args.json is None):
        parser.error("--child BACKEND needs --cases FILE and --json OUT")
    if args.memory_child and args.base is None:
        parser.error("--memory-child needs --base DIR")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--child" in argv or "--memory-child" in argv:
        child = parse_child_args(argv)
        if child.memory_child:
            print(json.dumps(memory_child(child.memory_child, child.model, child.base, child.copies)))
            return 0
        return run_child(child)
    args = parse_args(argv)
    from lorakit.manifest import read_manifest

    with tempfile.TemporaryDirectory(prefix="lorakit-bench-") as tmp:
        scratch = Path(tmp)
        args.model = model_dir_or_build(args.model, scratch)
        machine = machine_info(args.threads)
        progress(f"model {args.model}\n{machine_line(machine)}")
        try:
            if args.memory:
                memory = run_memory(args.model, ADAPTER_COPIES)
                print(machine_line(machine))
                print(memory_report(memory))
                rows: list[dict[str, Any]] = memory_rows(memory)
                meta: dict[str, Any] = {"memory": memory, "targets": [t.as_json() for t in memory_targets(memory)]}
            else:
                manifest = read_manifest(args.model)
                if manifest.task != "sequence_classification" or manifest.max_seq_len < 128:
                    raise BenchError(f"{args.model}: the benchmark needs a sequence classifier with max_seq_len >= "
                                     f"128 (task {manifest.task}, max_seq_len {manifest.max_seq_len})")
                count = token_counter(fast_tokenizer(args.model, manifest.max_seq_len))
                cases, notes = build_cases(count, args.cases, args.banking77, args.seed)
                rows, skipped = run_speed(args, cases, scratch, notes)
                machine["loadavg_end"] = list(os.getloadavg())
                print(speed_report(rows, skipped, cases, notes, machine, f"seed {args.seed} from {args.banking77}"))
                meta = {"cases": [{k: v for k, v in c.items() if k != "texts"} for c in cases], "notes": notes,
                        "skipped": skipped, "targets": [t.as_json() for t in speed_targets(rows)]}
        except BenchError as exc:
            print(f"bench_inference: error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        machine.setdefault("loadavg_end", list(os.getloadavg()))
        settings = {k: getattr(args, k) for k in ("threads", "warmup", "repeats", "budget", "clients",
                                                   "router_duration", "seed", "backends")}
        side = write_json(args.json, rows, {"machine": machine, "settings": settings, **meta})
        progress(f"wrote {args.json} and {side}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

