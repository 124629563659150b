"""`lorakit` command line: train, eval, export, predict, verify."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import LorakitError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorakit", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="train (LoRA or --full), evaluate and export a model directory")
    add_data_arguments(train, required=True)
    train.add_argument("--group-column", help="split by whole groups of this column instead of by label")
    train.add_argument("--base", help="base model directory (default: the offline all-MiniLM-L6-v2)")
    train.add_argument("--output", required=True, type=Path, help="model directory to write")
    train.add_argument("--name", help="model name in lorakit.json (default: the output folder name)")
    train.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    train.add_argument("--epochs", type=float, default=3.0)
    train.add_argument("--learning-rate", type=float, help="default 2e-4 (LoRA) or 5e-5 (--full)")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--gradient-accumulation", type=int, default=1)
    train.add_argument("--warmup", type=float, default=0.1, help="warmup as a fraction of the training steps")
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--max-grad-norm", type=float, default=1.0)
    train.add_argument("--max-seq-len", type=int, default=128)
    train.add_argument("--class-weighted", action="store_true", help="inverse-frequency class weights in the loss")
    train.add_argument("--best-metric", default="macro_f1", choices=["macro_f1", "accuracy", "loss"])
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--validation-fraction", type=float, default=0.1)
    train.add_argument("--test-fraction", type=float, default=0.1)
    train.add_argument("--r", type=int, default=8, help="LoRA rank")
    train.add_argument("--lora-alpha", type=int, default=16)
    train.add_argument("--lora-dropout", type=float, default=0.1)
    train.add_argument("--use-rslora", action="store_true")
    train.add_argument("--target-modules", help="comma-separated LoRA targets (default per architecture)")
    train.add_argument("--checkpoint-dir", type=Path, help="keep training checkpoints here (for `lorakit export`)")
    train.add_argument("--onnx", action="store_true", help="also write model.onnx")

    evaluate = verbs.add_parser("eval", help="evaluate a model directory on a labelled file")
    evaluate.add_argument("model_dir", type=Path)
    add_data_arguments(evaluate, required=False)
    evaluate.add_argument("--json", action="store_true", help="print metrics as JSON")

    export = verbs.add_parser("export", help="re-export a model directory from a training checkpoint")
    export.add_argument("checkpoint", type=Path, help="--checkpoint-dir of a training run, or a checkpoint in it")
    export.add_argument("--output", required=True, type=Path)
    export.add_argument("--name")
    export.add_argument("--onnx", action="store_true")

    predict = verbs.add_parser("predict", help="classify texts with a model directory")
    predict.add_argument("model_dir", type=Path)
    predict.add_argument("--text", action="append", required=True, help="text to classify (repeatable)")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--backend", choices=["native", "torch"], default="native",
                         help="native: the Rust core on the merged weights (default); torch: PyTorch")

    verify = verbs.add_parser("verify", help="recompute golden outputs with every backend and compare")
    verify.add_argument("model_dir", type=Path)
    verify.add_argument("--json", action="store_true")
    return parser


def add_data_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--data", required=True, type=Path, help=".csv, .tsv, .jsonl or .json file")
    parser.add_argument("--text-column", required=required, default=None if required else "text")
    parser.add_argument("--label-column", required=required, default=None if required else "label")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        return run(args)
    except LorakitError as exc:  # Python-side and native (Rust core) errors alike
        print(f"lorakit {args.verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # unreadable input, unwritable output, full disk: the user's to fix, not a crash
        print(f"lorakit {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lorakit {args.verb}: interrupted", file=sys.stderr)
        return 130


def quiet_libraries() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # weight-loading bars; training keeps its own progress bar
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


def run(args: argparse.Namespace) -> int:
    if args.verb == "train":
        return run_train(args)
    if args.verb == "eval":
        return run_eval(args)
    if args.verb == "export":
        from .pipeline import export_checkpoint

        print(export_checkpoint(args.checkpoint, args.output, onnx=args.onnx, name=args.name))
        return 0
    if args.verb == "predict":
        return run_predict(args)
    return run_verify(args)


def run_train(args: argparse.Namespace) -> int:
    from .evaluate import summary_line
    from .pipeline import DataSpec, resolve_base, train_and_export
    from .train import TrainConfig

    base, base_id = resolve_base(args.base)
    data = DataSpec(args.data, args.text_column, args.label_column, args.group_column,
                    args.validation_fraction, args.test_fraction, args.seed)
    config = TrainConfig(
        base=str(base), labels=[], full=args.full, epochs=args.epochs, learning_rate=args.learning_rate,
        batch_size=args.batch_size, gradient_accumulation=args.gradient_accumulation, warmup=args.warmup,
        weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm, max_seq_len=args.max_seq_len,
        class_weighted=args.class_weighted, best_metric=args.best_metric, seed=args.seed, r=args.r,
        lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, use_rslora=args.use_rslora,
        target_modules=args.target_modules.split(",") if args.target_modules else None,
    )
    metrics = train_and_export(data, config, args.output, base_id, name=args.name, onnx=args.onnx,
                               checkpoint_dir=args.checkpoint_dir)
    if metrics:
        print(summary_line("validation", metrics["validation"]))
        print(summary_line("test", metrics["test"]))
        print(f"model directory: {Path(args.output).absolute()}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .evaluate import evaluate_examples, summary_line
    from .loading import load_merged, load_tokenizer
    from .manifest import read_manifest

    manifest = read_manifest(args.model_dir)
    dataset = load_dataset(args.data, args.text_column, args.label_column, labels=list(manifest.labels))
    model = load_merged(args.model_dir, manifest)
    metrics = evaluate_examples(model, load_tokenizer(args.model_dir), dataset, dataset.examples,
                                manifest.max_seq_len)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(summary_line("eval", metrics))
        width = max(len(label) for label in dataset.labels)
        for label, row in metrics["per_class"].items():
            print(f"  {label:<{width}}  precision={row['precision']:.3f} recall={row['recall']:.3f} "
                  f"f1={row['f1']:.3f} support={row['support']}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    labels, probabilities = predict_probabilities(args.model_dir, args.text, args.backend)
    results: list[dict[str, Any]] = []
    for text, row in zip(args.text, probabilities, strict=True):
        order = row.argsort()[::-1][: max(1, args.top_k)]
        results.append({"text": text, "label": labels[order[0]],
                        "top": [{"label": labels[i], "probability": float(row[i])} for i in order]})
    if args.json:
        print(json.dumps(results, ensure_ascii=False))
    else:
        for result in results:
            top = ", ".join(f"{item['label']} {item['probability']:.3f}" for item in result["top"])
            print(f"{result['label']}\t{top}\t{result['text']}")
    return 0


def predict_probabilities(model_dir: Path, texts: list[str], backend: str) -> tuple[list[str], Any]:
    """Label names and softmax probabilities [len(texts), num_labels] from the chosen backend."""
    if backend == "native":
        from .native import Model

        model = Model.load(str(model_dir), merged=True)
        return model.labels, model.classify(texts).probabilities
    import torch

    from .evaluate import predict_logits
    from .loading import load_merged, load_tokenizer
    from .manifest import read_manifest

    manifest = read_manifest(model_dir)
    logits = predict_logits(load_merged(model_dir, manifest), load_tokenizer(model_dir), texts,
                            manifest.max_seq_len, progress=False)
    return list(manifest.labels), torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def run_verify(args: argparse.Namespace) -> int:
    from .verify import format_report, verify_model

    def progress(name: str) -> None:
        if not args.json:
            print(f"checking {name} ...", file=sys.stderr)

    report = verify_model(args.model_dir, progress=progress)
    print(json.dumps(report) if args.json else format_report(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
