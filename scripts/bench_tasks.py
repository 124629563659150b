#!/usr/bin/env python3
"""Quality figures of the new tasks: entity F1 (micro, strict IOB2, seqeval) of LoRA on the offline MiniLM.

Usage: bench_tasks.py --task token [--dataset presidio|wnut17|all] [--epochs N] [--json PATH] [--data DIR]

Defaults are the settings of the reported run: 8 epochs on Presidio (966 training texts, about 5 min on 2 CPU
cores), 5 on WNUT-17 (2,714 sentences, about 7.5 min); everything else as `lorakit train --task
token-classification` (LoRA r=8, alpha 16, learning rate 1e-3, batch 16, max_seq_len 128, seed 42).

presidio: synth_dataset_v2.bio.jsonl split once by whole templates (--group-column template_id); the figure is
          the test part, templates never seen in training (validation picks the epoch).
wnut17:   wnut17train.conll split once (validation picks the epoch); the figure is emerging.dev.conll, never
          trained or selected on.
Default training settings of `lorakit train` except the epoch count. Each run also checks the native core: the
share of evaluated texts whose entities (type, start, end) the Rust core reproduces from the merged weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

import torch  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from lorakit.entities import extract_entities  # noqa: E402
from lorakit.inference import evaluate_model_dir  # noqa: E402
from lorakit.loading import load_merged, load_tokenizer  # noqa: E402
from lorakit.manifest import read_manifest  # noqa: E402
from lorakit.models import MINILM_ID, minilm_path  # noqa: E402
from lorakit.pipeline import DataSpec, train_and_export  # noqa: E402
from lorakit.tokens import load_token_dataset  # noqa: E402
from lorakit.train import TrainConfig  # noqa: E402

DATASETS = {
    "presidio": {"train": "presidio_synth_pii/synth_dataset_v2.bio.jsonl", "group_column": "template_id",
                 "evaluate": None, "figure": "test part: held-out templates", "epochs": 8.0},
    "wnut17": {"train": "wnut17/wnut17train.conll", "group_column": None, "evaluate": "wnut17/emerging.dev.conll",
               "figure": "emerging.dev.conll", "epochs": 5.0},
}


def native_agreement(model_dir: Path, texts: list[str]) -> float | None:
    """Share of texts whose native entities equal torch's reference decoder (None without the extension)."""
    try:
        from lorakit.native import Model
    except ImportError:
        return None
    manifest = read_manifest(model_dir)
    reference = extract_entities(load_merged(model_dir, manifest), load_tokenizer(model_dir), texts,
                                 manifest.max_seq_len, list(manifest.labels))
    native = Model.load(str(model_dir), merged=True).extract_entities(texts).entities

    def keys(row: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(e["type"], e["start"], e["end"]) for e in row]

    return sum(keys(a) == keys(b) for a, b in zip(reference, native, strict=True)) / max(1, len(texts))


def run_token(name: str, data_dir: Path, epochs: float | None, work: Path) -> dict[str, Any]:
    spec = DATASETS[name]
    epochs = float(spec["epochs"]) if epochs is None else epochs  # type: ignore[arg-type]
    data = DataSpec(data_dir / str(spec["train"]), group_column=spec["group_column"])  # type: ignore[arg-type]
    config = TrainConfig(base=str(minilm_path()), labels=[], epochs=epochs, task="token_classification",
                         best_metric="entity_f1")
    out = work / f"{name}_token"
    started = time.perf_counter()
    metrics = train_and_export(data, config, out, MINILM_ID, log=lambda line: print(f"[{name}] {line}"))
    seconds = time.perf_counter() - started
    if spec["evaluate"]:
        evaluation = evaluate_model_dir(out, DataSpec(data_dir / str(spec["evaluate"])))
        texts = [e.text for e in load_token_dataset(data_dir / str(spec["evaluate"]),
                                                    labels=list(read_manifest(out).labels)).examples]
    else:
        report = json.loads((out / "report" / "metrics.json").read_text("utf-8"))
        evaluation = report["test"]
        split = json.loads((out / "report" / "split.json").read_text("utf-8"))
        dataset = load_token_dataset(data.path, group_column=data.group_column)
        texts = [dataset.examples[i].text for i in split["test"]]
    return {
        "dataset": name, "figure": spec["figure"], "n": evaluation["n"],
        "entity_f1": evaluation["entity_f1"], "precision": evaluation["precision"], "recall": evaluation["recall"],
        "per_type": evaluation["per_type"], "validation_entity_f1": metrics["validation"]["entity_f1"],
        "epochs": epochs, "train_examples": metrics["training"]["train_examples"],
        "train_seconds": metrics["training"]["train_seconds"], "total_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(), "native_agreement": native_agreement(out, texts),
        "settings": {key: value for key, value in config.to_json().items() if key not in ("labels", "extra")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["token"], default="token", help="which task's figures")
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all", help="which data set")
    parser.add_argument("--epochs", type=float, help="training epochs (default: 8 Presidio, 5 WNUT-17)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--json", type=Path, default=Path("bench_tasks.json"), help="where to write the results")
    parser.add_argument("--keep", type=Path, help="keep the model directories here (default: a temp folder)")
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    results = []
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-tasks-") as scratch:
        work = args.keep.absolute() if args.keep else Path(scratch)
        for name in names:
            results.append(run_token(name, args.data, args.epochs, work))
    print(f"{'dataset':<10} {'figure':<32} {'n':>5} {'entity_f1':>9} {'precision':>9} {'recall':>7} "
          f"{'train s':>8} {'native':>7}")
    for r in results:
        agree = "n/a" if r["native_agreement"] is None else f"{r['native_agreement']:.3f}"
        print(f"{r['dataset']:<10} {r['figure']:<32} {r['n']:>5} {r['entity_f1']:>9.4f} {r['precision']:>9.4f} "
              f"{r['recall']:>7.4f} {r['train_seconds']:>8.1f} {agree:>7}")
    args.json.write_text(json.dumps({"task": args.task, "results": results}, indent=2) + "\n", "utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
