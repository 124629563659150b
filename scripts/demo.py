#!/usr/bin/env python3
"""`make demo`: train a LoRA prompt-injection classifier on the offline MiniLM and the embedded bastioncorpus,
evaluate, export, then prove parity with every backend (torch, ONNX Runtime, native) and the Go verifier.

Needs no network. Writes demo-out/ (data file, model directory). Exit status is non-zero when any parity check
fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from lorakit.cli import quiet_libraries  # noqa: E402
from lorakit.models import MINILM_ID, minilm_path  # noqa: E402
from lorakit.pipeline import DataSpec, train_and_export  # noqa: E402
from lorakit.train import TrainConfig  # noqa: E402
from lorakit.verify import format_report, verify_model  # noqa: E402


def write_corpus(path: Path) -> int:
    """bastioncorpus (PyPI, offline): prompts labelled malicious / benign, with an attack category."""
    import bastioncorpus

    rows = [{"id": item.id, "text": item.text, "label": item.label, "category": item.category}
            for item in bastioncorpus.load_corpus()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")
    return len(rows)


def run_go_verifier(model_dir: Path) -> bool | None:
    """True/False for the Go verifier's verdict; None when Go or the command is not available here."""
    command_dir = ROOT / "go" / "cmd" / "lorakit-verify"
    if shutil.which("go") is None or not command_dir.is_dir():
        print("go verifier: not available (needs `go` and go/cmd/lorakit-verify); skipped")
        return None
    # go/lorakit finds liblorakit through pkg-config; `make ffi` writes the in-tree lorakit.pc here.
    pc_path = os.pathsep.join(filter(None, [str(ROOT / "target" / "pkgconfig"), os.environ.get("PKG_CONFIG_PATH")]))
    env = dict(os.environ, CGO_ENABLED="1", PKG_CONFIG_PATH=pc_path)
    proc = subprocess.run(["go", "run", "./cmd/lorakit-verify", str(model_dir)], cwd=ROOT / "go", env=env,
                          capture_output=True, text=True)
    print((proc.stdout + proc.stderr).rstrip())
    print(f"go verifier: {'PASS' if proc.returncode == 0 else f'FAILED (exit {proc.returncode})'}")
    return proc.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "demo-out")
    parser.add_argument("--epochs", type=float, default=6)
    args = parser.parse_args()
    quiet_libraries()
    started = time.perf_counter()
    out = args.out.absolute()
    data = out / "bastioncorpus.jsonl"
    print(f"dataset: bastioncorpus, {write_corpus(data)} prompts -> {data}")
    config = TrainConfig(base=str(minilm_path()), labels=[], epochs=args.epochs, learning_rate=1e-3,
                         batch_size=16, max_seq_len=128, r=8, lora_alpha=16, seed=42,
                         class_weighted=True)  # 118 malicious vs 63 benign prompts
    model_dir = out / "bastion_injection_minilm_lora"
    metrics = train_and_export(DataSpec(data, "text", "label", validation_fraction=0.2, test_fraction=0.2),
                               config, model_dir, MINILM_ID)
    print("\n== metrics ==")
    for part in ("validation", "test"):
        m = metrics[part]
        print(f"{part:<10} n={m['n']:<4} accuracy={m['accuracy']:.4f} macro_f1={m['macro_f1']:.4f}")
    training = metrics["training"]
    print(f"trainable parameters {training['trainable_params']:,} / {training['total_params']:,} "
          f"({training['trainable_percent']:.2f}%), train time {training['train_seconds']:.1f} s")
    print(f"report: {model_dir / 'report'}")
    print("\n== parity (lorakit verify) ==")
    report = verify_model(model_dir)
    print(format_report(report))
    if not any(name.startswith("native") for name in report["backends"]):
        print("native backends: lorakit._native is not built (run `make native`)")
    print("\n== parity (Go) ==")
    go_ok = run_go_verifier(model_dir)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s")
    return 0 if report["ok"] and go_ok is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
