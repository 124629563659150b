"""The pure parts of scripts/bench_inference.py: the cases, the checks on a driver's rows, the table, the targets,
the machine summary and the memory report. Nothing here times anything or starts a process, so tests cover it fast.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import statistics
import struct
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The -bf16 / -int8 rows load the merged model with reduced-precision dense layers (an option, never the default).
PYTHON_BACKENDS = ("torch", "onnxruntime", "native-python", "native-python-runtime", "native-python-bf16",
                   "native-python-int8")
BACKENDS = PYTHON_BACKENDS + ("native-rust", "native-rust-runtime", "native-go", "native-go-runtime", "router")
RUNTIME_BACKENDS = ("native-python-runtime", "native-rust-runtime", "native-go-runtime")
SHAPES = (("1x16", 1, 16), ("1x128", 1, 128), ("32x128", 32, 128))
BANKING77 = "banking77"
CASES = tuple(name for name, _, _ in SHAPES) + (BANKING77,)
# Real data stays outside the repository (../shared/data); the case samples it at run time.
BANKING77_CSV = ROOT.parent / "shared" / "data" / "banking77" / "train.csv"
BANKING77_ROWS = 32
SEED = 77
ROW_KEYS = ("backend", "case", "batch", "seq_len", "median_ms", "seq_per_s")
ROUTER_KEYS = ("clients", "p50_ms", "p99_ms", "mean_batch")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
# Common words that are one WordPiece each, so a text of n-2 words is exactly n tokens with [CLS]/[SEP].
WORDS = ("the card bank money payment was declined when I tried to pay for my order at the shop "
         "yesterday and today again please help me understand why this happened").split()
ADAPTER_COPIES = 8


class BenchError(Exception):
    """A benchmark input, backend or driver could not be prepared or run; the message says which and why."""


def token_counter(tok: Any) -> Callable[[list[str]], list[int]]:
    """Tokens per text, special tokens included, padding excluded."""
    return lambda texts: [sum(enc.attention_mask) for enc in tok.encode_batch(texts)]


def exact_length_texts(count_tokens: Callable[[list[str]], list[int]], batch: int, seq_len: int) -> list[str]:
    texts = [" ".join(WORDS[(row + i) % len(WORDS)] for i in range(seq_len - 2)) for row in range(batch)]
    lengths = set(count_tokens(texts))
    if lengths != {seq_len}:
        raise BenchError(f"benchmark texts tokenize to {sorted(lengths)} tokens, expected {seq_len}")
    return texts


def sample_banking77(path: Path, rows: int = BANKING77_ROWS, seed: int = SEED) -> list[str]:
    """`rows` texts of the CSV's `text` column, the same ones for the same file and seed."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "text" not in reader.fieldnames:
            raise BenchError(f"{path}: no `text` column (header {reader.fieldnames})")
        texts = [row["text"] for row in reader if row["text"].strip()]
    if len(texts) < rows:
        raise BenchError(f"{path}: {len(texts)} texts, the banking77 case needs {rows}")
    return random.Random(seed).sample(texts, rows)


def mixed_case(name: str, texts: list[str], count_tokens: Callable[[list[str]], list[int]]) -> dict[str, Any]:
    lengths = count_tokens(texts)
    return {"name": name, "batch": len(texts), "seq_len": max(lengths),
            "mean_tokens": round(statistics.fmean(lengths), 2), "texts": texts}


def build_cases(count_tokens: Callable[[list[str]], list[int]], wanted: Sequence[str], banking77: Path,
                seed: int = SEED) -> tuple[list[dict[str, Any]], list[str]]:
    """The cases to time and notes on those left out (a missing data file is said, not silently dropped)."""
    cases, notes = [], []
    for name, batch, seq_len in SHAPES:
        if name in wanted:
            cases.append({"name": name, "batch": batch, "seq_len": seq_len, "mean_tokens": float(seq_len),
                          "texts": exact_length_texts(count_tokens, batch, seq_len)})
    if BANKING77 in wanted:
        if banking77.is_file():
            cases.append(mixed_case(BANKING77, sample_banking77(banking77, BANKING77_ROWS, seed), count_tokens))
        else:
            notes.append(f"case {BANKING77} skipped: {banking77} not found (pass --banking77 PATH to train.csv)")
    return cases, notes


def row(backend: str, case: dict[str, Any], ms: float) -> dict[str, Any]:
    return {"backend": backend, "case": case["name"], "batch": case["batch"], "seq_len": case["seq_len"],
            "median_ms": round(ms, 3), "seq_per_s": round(case["batch"] / ms * 1e3, 2)}


def tail(text: str, lines: int = 3) -> str:
    """The gist of a failed process's output: its first `error` line (what cargo and go put first), then its last."""
    said = [line.strip() for line in text.splitlines() if line.strip()]
    first = next((line for line in said if line.lower().startswith("error")), None)
    picked = ([first] if first else []) + [line for line in said[-lines:] if line != first]
    return " | ".join(picked) or "no output"


def check_rows(backend: str, rows: Any, cases: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """A driver's rows under `backend`'s name, and notes for malformed rows and cases without a row."""
    if not isinstance(rows, list):
        return [], [f"{backend}: output is not a JSON list of rows"]
    by_name = {c["name"]: c for c in cases}
    keys = ROW_KEYS + (ROUTER_KEYS if backend == "router" else ())
    good, notes = [], []
    for r in rows:
        missing = [k for k in keys if not isinstance(r, dict) or k not in r]
        if missing:
            notes.append(f"{backend}: row {r!r:.80} lacks {', '.join(missing)}")
        elif r["case"] not in by_name:
            notes.append(f"{backend}: row for unknown case {r['case']!r}")
        elif not all(isinstance(r[k], int | float) and math.isfinite(r[k]) and r[k] > 0
                     for k in ("median_ms", "seq_per_s")):
            notes.append(f"{backend}: case {r['case']}: median_ms/seq_per_s not positive numbers")
        else:
            good.append({**r, "backend": backend, "mean_tokens": by_name[r["case"]].get("mean_tokens")})
    done = {r["case"] for r in good}
    notes += [f"{backend}: no row for case {c['name']}" for c in cases if c["name"] not in done]
    return good, notes


@dataclass
class Target:
    name: str
    value: float | None  # None: a row it needs is missing
    limit: float
    at_most: bool  # True: value <= limit is met; False: value >= limit
    unit: str = "x"
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}

    def line(self) -> str:
        state = {True: "met", False: "MISSED", None: "n/a"}[self.met]
        op = "<=" if self.at_most else ">="
        value = "-" if self.value is None else f"{self.value:.3f}{self.unit}"
        return f"{state:<7} {self.name}: {value} (target {op} {self.limit:g}{self.unit}){self.detail}"


def index(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["backend"], r["case"]): r for r in rows}


def ratio(rows: dict[tuple[str, str], dict[str, Any]], num: tuple[str, str], den: tuple[str, str],
          key: str) -> float | None:
    if num in rows and den in rows:
        return float(rows[num][key]) / float(rows[den][key])
    return None


def speed_targets(rows: Sequence[dict[str, Any]]) -> list[Target]:
    """The speed targets from one run's rows: ratios only, so they hold across machines."""
    by = index(rows)
    out = []
    for b in ("native-python", "native-go"):
        out.append(Target(f"{b} 32x128 throughput vs onnxruntime",
                          ratio(by, (b, "32x128"), ("onnxruntime", "32x128"), "seq_per_s"), 1.1, False))
        out.append(Target(f"{b} 1x16 latency vs onnxruntime",
                          ratio(by, (b, "1x16"), ("onnxruntime", "1x16"), "median_ms"), 0.8, True))
    for lang in ("python", "rust", "go"):
        out.append(Target(f"native-{lang} runtime vs merged time at 32x128",
                          ratio(by, (f"native-{lang}-runtime", "32x128"), (f"native-{lang}", "32x128"),
                                "median_ms"), 1.1, True))
    cases = sorted({c for b, c in by if b == "native-go"}, key=lambda c: CASES.index(c) if c in CASES else 99)
    for case in cases or ["32x128"]:
        out.append(Target(f"CGO overhead native-go vs native-rust time at {case}",
                          ratio(by, ("native-go", case), ("native-rust", case), "median_ms"), 1.03, True))
    # Router rows count single requests (batch 1); they compare with native-go on the cases of 32 texts.
    for case in [c for c in CASES if by.get(("native-go", c), {}).get("batch") == 32] or ["32x128"]:
        r = by.get(("router", case))
        detail = f" (p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['clients']} clients)" if r else ""
        out.append(Target(f"router throughput vs native-go batch at {case}",
                          ratio(by, ("router", case), ("native-go", case), "seq_per_s"), 0.9, False,
                          detail=detail))
    return out


def speed_table(rows: Sequence[dict[str, Any]], skipped: dict[str, str]) -> str:
    """One line per row: time, throughput, throughput vs onnxruntime on the same case (router: vs native-go)."""
    by = index(rows)
    head = (f"{'backend':<22} {'case':<10} {'batch x len':>11} {'median ms':>10} {'seq/s':>9} {'vs ORT':>7} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'vs go':>6}")
    lines = [head]
    order = {b: i for i, b in enumerate(BACKENDS)}
    for r in sorted(rows, key=lambda r: (CASES.index(r["case"]) if r["case"] in CASES else 99,
                                         order.get(r["backend"], 99))):
        vs_ort = ratio(by, (r["backend"], r["case"]), ("onnxruntime", r["case"]), "seq_per_s")
        router = r["backend"] == "router"
        vs_go = ratio(by, ("router", r["case"]), ("native-go", r["case"]), "seq_per_s") if router else None
        cells = [f"{vs_ort:.2f}x" if vs_ort and not router else "-",
                 f"{r['p50_ms']:.2f}" if router else "-", f"{r['p99_ms']:.2f}" if router else "-",
                 f"{vs_go:.2f}x" if vs_go and by[("native-go", r["case"])]["batch"] == 32 else "-"]
        lines.append(f"{r['backend']:<22} {r['case']:<10} {r['batch']:>4} x {r['seq_len']:<4} {r['median_ms']:>10.2f} "
                     f"{r['seq_per_s']:>9.1f} {cells[0]:>7} {cells[1]:>8} {cells[2]:>8} {cells[3]:>6}")
    for backend, why in skipped.items():
        lines.append(f"{backend:<22} {'(all)':<10} skipped: {why}")
    lines.append("(vs ORT: seq/s over onnxruntime's on the same case, above 1 is faster; router: batch 1 per request,"
                 " seq/s = completed requests/s, vs go = over native-go batch seq/s)")
    return "\n".join(lines)


def speed_report(rows: Sequence[dict[str, Any]], skipped: dict[str, str], cases: Sequence[dict[str, Any]],
                 notes: Sequence[str], machine: dict[str, Any], sample: str) -> str:
    """What a speed run prints: the machine, the table, how the mixed-length batch was drawn, notes, the targets."""
    load = machine.get("loadavg_start", [None])[0], machine.get("loadavg_end", [None])[0]
    out = [machine_line(machine)]
    if None not in load:
        out.append(f"load average (1 min): {load[0]:.2f} before the run, {load[1]:.2f} after, on "
                   f"{machine.get('logical_cpus')} logical CPUs (a load before the run is other work sharing them)")
    out.append(speed_table(rows, skipped))
    out += [f"{c['name']}: {c['batch']} texts sampled with {sample}, {c['mean_tokens']:.1f} tokens on average, "
            f"longest {c['seq_len']}" for c in cases if c["name"] == BANKING77]
    out += [f"note: {note}" for note in notes]
    out += [t.line() for t in speed_targets(rows)]
    return "\n".join(out)


def cpu_summary(cpuinfo: str) -> dict[str, Any]:
    """CPU model, physical cores and the SIMD flags that pick kernels, from /proc/cpuinfo text."""
    model, flags, cores = "unknown", set(), set()
    physical, core = "0", "0"
    for line in cpuinfo.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name":
            model = value
        elif key == "flags":
            flags = set(value.split())
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
            cores.add((physical, core))
    return {"cpu": model, "flags": [f for f in CPU_FLAGS if f in flags], "physical_cores": len(cores) or None}


def machine_line(machine: dict[str, Any]) -> str:
    return (f"{machine['cpu']}; flags {' '.join(machine['flags']) or 'none of ' + ','.join(CPU_FLAGS)}; "
            f"{machine['physical_cores']} cores, {machine['logical_cpus']} logical CPUs; {machine['threads']} "
            f"thread(s); torch {machine['versions']['torch']}, onnxruntime {machine['versions']['onnxruntime']}")


def tensor_bytes(path: Path) -> int:
    """Bytes of the tensors of a .safetensors file (its size less the JSON header)."""
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return sum(end - begin for key, t in header.items() if key != "__metadata__" for begin, end in [t["data_offsets"]])


def memory_targets(m: dict[str, Any]) -> list[Target]:
    budget = (m["base_mib"] + m["copies"] * m["adapter_tensor_mib"]) * 1.1
    return [
        Target(f"RSS of base + {m['copies']} adapters", m["adapters_mib"], round(budget, 2), True, " MiB",
               f" (base {m['base_mib']:.1f} MiB + {m['copies']} x adapter {m['adapter_tensor_mib']:.2f} MiB, +10 %)"),
        Target("adding one adapter to a loaded base (median)", m["add_ms_median"], 50.0, True, " ms",
               f" (over {len(m['add_ms'])} adds)"),
    ]


def memory_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    """The --json rows of --memory: one per process measured."""
    return [{"mode": "base", "rss_mib": m["base_mib"]},
            {"mode": "adapters", "copies": m["copies"], "rss_mib": m["adapters_mib"],
             "add_ms_median": m["add_ms_median"]},
            {"mode": "merged", "copies": m["copies"], "rss_mib": m["merged_mib"]}]


def memory_report(m: dict[str, Any]) -> str:
    n = m["copies"]
    return "\n".join([
        f"{'base alone':<26} {m['base_mib']:8.1f} MiB RSS (growth from loading, before any call)",
        f"{f'base + {n} adapters':<26} {m['adapters_mib']:8.1f} MiB RSS ({m['adapters_after_call_mib']:.1f} after "
        "one call)",
        f"{f'{n} merged models':<26} {m['merged_mib']:8.1f} MiB RSS ({m['merged_after_call_mib']:.1f} after one call)",
        f"{'adapter':<26} {m['adapter_file_mib']:8.2f} MiB file, {m['adapter_tensor_mib']:.2f} MiB tensors",
        f"{'add adapter':<26} {m['add_ms_median']:8.2f} ms median ({', '.join(f'{t:.1f}' for t in m['add_ms'])})",
        *(t.line() for t in memory_targets(m)),
    ])


def names(value: str, allowed: Sequence[str], what: str) -> list[str]:
    picked = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in picked if v not in allowed]
    if unknown or not picked:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or '(none)'}; choose from "
                                         f"{', '.join(allowed)}")
    return picked


def machine_path(out: Path) -> Path:
    return out.with_name(out.stem + ".machine.json")


def write_json(out: Path, rows: Sequence[dict[str, Any]], sidecar: dict[str, Any]) -> Path:
    """The rows as a plain JSON list (what consumers of --json read) and the run's machine and targets beside it."""
    out.write_text(json.dumps(list(rows), indent=2) + "\n", encoding="utf-8")
    side = machine_path(out)
    side.write_text(json.dumps(sidecar, indent=2, default=str) + "\n", encoding="utf-8")
    return side

