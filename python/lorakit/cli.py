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

from .errors import InputError, LorakitError
from .extras import MissingExtraError, require_train
from .gate import GATE_EXIT_CODE, parse_gate
from .gate import HELP as GATE_HELP
from .prepare import add_prepare_parser, run_prepare

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


GENERATIVE_MAX_SEQ_LEN = 1024  # default: room for a few few-shot examples of 256-token documents
TASK_CHOICES = ("sequence-classification", "token-classification", "embedding", "generative")
# Options that only some tasks read: given for another task they are refused, never silently ignored.
TASK_OPTIONS = {
    "label_column": ("sequence-classification", "generative"), "unsafe_labels": ("sequence-classification",),
    "class_weighted": ("sequence-classification",),
    "full": ("sequence-classification", "token-classification", "embedding"),
    "group_column": ("sequence-classification", "token-classification", "generative"),
    "target_modules": ("sequence-classification", "token-classification", "generative"),
    "best_metric": ("sequence-classification", "token-classification"),
    "score_column": ("embedding",), "pooling": ("embedding",), "normalize": ("embedding",),
    "line_breaks": ("token-classification",),
    "quantize": ("sequence-classification", "token-classification", "generative"),
    "max_document_tokens": ("generative",),
    "target_precision": ("sequence-classification",), "no_calibration": ("sequence-classification",),
    "no_probe_head": ("sequence-classification",),
    "head_learning_rate": ("sequence-classification", "token-classification"),
    "patience": ("sequence-classification", "token-classification"),
}


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose help shows defaults; sub-commands inherit the class, so every verb's does too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)


def version_text() -> str:
    """The package version and the native core's (or why the core cannot be loaded)."""
    from . import __version__

    try:
        from ._native import __version__ as core_version
    except ImportError as exc:
        return f"lorakit {__version__} (native core unavailable: {' '.join(str(exc).split())})"
    return f"lorakit {__version__} (native core {core_version})"


class VersionAction(argparse.Action):
    """`--version`, computed only when asked: it loads the native extension."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lorakit", description=__doc__)
    parser.add_argument("--version", action=VersionAction, help="print the package and native core versions")
    verbs = parser.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="train (LoRA or --full), evaluate and export a model directory",
                             formatter_class=Formatter, epilog=EXIT_CODES)
    train.add_argument("--task", choices=TASK_CHOICES, default="sequence-classification",
                       help="what the model outputs: a label per text, entity spans, a vector, or a label "
                       "answered by a causal LM (generative)")
    add_data_arguments(train)
    train.add_argument("--group-column", help="split by whole groups of this column (e.g. template_id) instead of "
                       "by label")
    train.add_argument("--unsafe-labels", help="comma-separated labels that mean unsafe (sequence classification); "
                       "runtimes report unsafe / unsafe_score from this declaration")
    train.add_argument("--base", help="base model directory (default: the offline all-MiniLM-L6-v2); generative: "
                       "a Gemma 3 / Qwen3 causal LM directory or gemma-3-270m")
    train.add_argument("--output", required=True, type=Path, help="model directory to write")
    train.add_argument("--name", help="model name in lorakit.json (default: the output folder name)")
    train.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA (not generative); "
                       "embedding: default learning rate 2e-5, as sentence-transformers uses")
    train.add_argument("--epochs", type=float, help="training epochs (default: 3; sequence and token "
                       "classification on a small training set: enough for 1,000 optimizer updates, at most 20; "
                       "early stopping ends training sooner)")
    train.add_argument("--learning-rate", type=float, help="default for LoRA 2e-3 (sequence "
                       "classification), 1e-3 (token classification), 2e-4 (embedding, generative); for --full 5e-5 "
                       "(2e-5 embedding)")
    train.add_argument("--head-learning-rate", type=float, help="LoRA: rate of the freshly initialised task head; "
                       "default max(--learning-rate, 3e-3)")
    train.add_argument("--no-probe-head", action="store_true", help="sequence classification: "
                       "start the head from random weights instead of a linear probe of the frozen features")
    train.add_argument("--patience", type=int, default=2, help="stop after this many epochs without a better "
                       "validation metric (0: train every epoch)")
    train.add_argument("--batch-size", type=int, default=16, help="examples (or pairs) per step")
    train.add_argument("--gradient-accumulation", type=int, default=1, help="steps per optimizer update")
    train.add_argument("--warmup", type=float, default=0.1, help="warmup as a fraction of the training steps")
    train.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    train.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping")
    train.add_argument("--max-seq-len", type=int, help="tokens per text; default 128, embedding: the base's "
                       "sentence_bert_config.json max_seq_length (256 for MiniLM), within the base's positions")
    train.add_argument("--class-weighted", action="store_true", help="inverse-frequency class weights in the loss")
    train.add_argument("--best-metric", choices=["macro_f1", "accuracy", "entity_f1", "loss"],
                       help="epoch kept: default macro_f1 (sequence), entity_f1 (token); embeddings keep the best "
                       "validation spearman (scored pairs) or loss")
    train.add_argument("--seed", type=int, default=42, help="seed of the split and of training")
    train.add_argument("--validation-fraction", type=float, default=0.1, help="share of rows for validation")
    train.add_argument("--test-fraction", type=float, default=0.1, help="share of rows for test")
    train.add_argument("--r", type=int, default=8, help="LoRA rank")
    train.add_argument("--lora-alpha", type=int, default=16, help="LoRA alpha (scale alpha / r)")
    train.add_argument("--lora-dropout", type=float, default=0.1, help="dropout on the LoRA input")
    train.add_argument("--use-rslora", action="store_true", help="scale alpha / sqrt(r)")
    train.add_argument("--target-modules", help="comma-separated LoRA targets (default per architecture)")
    train.add_argument("--pooling", choices=["mean", "cls"], default="mean", help="embedding: how token vectors "
                       "become one vector")
    train.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                       help="embedding: L2-normalise the vector")
    train.add_argument("--line-breaks", action=argparse.BooleanOptionalAction, default=True,
                       help="token classification: keep each line break as a token (the pilcrow) where the "
                       "tokenizer drops them (BERT, MiniLM), so entities on separate lines (street, city, postcode "
                       "of an address block) stay apart; the native core reads it from tokenizer.json")
    train.add_argument("--target-precision", type=float, default=0.95, help="sequence classification: the "
                       "review threshold is the lowest calibrated top probability at which the validation texts "
                       "accepted reach this precision; texts below it are flagged needs_review")
    train.add_argument("--no-calibration", action="store_true", help="sequence classification: no temperature "
                       "scaling and no review threshold (probabilities are the raw softmax)")
    train.add_argument("--checkpoint-dir", type=Path, help="keep training checkpoints here (for `lorakit export`)")
    add_gate_argument(train)
    train.add_argument("--onnx", action="store_true", help="also write model.onnx")
    train.add_argument("--quantize", choices=["4bit"], help="LoRA on an NF4 4-bit base (QLoRA, bitsandbytes; the "
                       "task head stays fp32); evaluated and exported merged into the fp32 base")
    train.add_argument("--max-document-tokens", type=int, default=256, help="generative: document tokens kept in "
                       "the prompt (the rest is cut)")

    add_base_parser(verbs)

    evaluate = verbs.add_parser("eval", help="evaluate a model directory on a labelled file (predictions from the "
                                "native core; metrics need the training extra)",
                                formatter_class=Formatter)
    evaluate.add_argument("model_dir", type=Path, help="a lorakit model directory (any task)")
    add_data_arguments(evaluate)
    evaluate.add_argument("--group-column", help="also report the metrics of each group of this column (labelled "
                          "texts; JSON: `groups`)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object: `task` and the headline "
                          "metrics at the top level (accuracy, macro_f1; entity_f1; spearman), then the rest; "
                          "macro_f1 averages over the labels present in the file")
    evaluate.add_argument("--backend", choices=["native", "torch"], default="native",
                          help="native: the Rust core on the merged weights; torch: PyTorch (metrics need the "
                          "training extra either way)")

    export = verbs.add_parser("export", help="re-export a model directory from a training checkpoint",
                              formatter_class=Formatter, epilog=EXIT_CODES)
    export.add_argument("checkpoint", type=Path, help="--checkpoint-dir of a training run, or a checkpoint in it")
    export.add_argument("--output", required=True, type=Path, help="model directory to write")
    export.add_argument("--name", help="model name in lorakit.json (default: the output folder name)")
    export.add_argument("--onnx", action="store_true", help="also write model.onnx")
    add_gate_argument(export)
    add_retrain_parser(verbs)

    add_import_parser(verbs)
    add_prepare_parser(verbs)

    predict = verbs.add_parser("predict", help="labels, entity spans or vectors for texts",
                               formatter_class=Formatter)
    predict.add_argument("model_dir", type=Path, help="a lorakit model directory (any task)")
    texts = predict.add_mutually_exclusive_group(required=True)
    texts.add_argument("--text", action="append", help="text to run on (repeatable)")
    texts.add_argument("--input", metavar="FILE", help="file of texts, '-' for stdin: one text per line, or JSON "
                       "Lines with a \"text\" field (.jsonl, or --input-format jsonl)")
    predict.add_argument("--input-format", choices=["auto", "lines", "jsonl"], default="auto",
                         help="auto: jsonl for a .jsonl file, lines otherwise (stdin included)")
    predict.add_argument("--top-k", type=int, default=3, help="sequence classification: labels shown per text")
    predict.add_argument("--mask", action="store_true", help="token classification: print each text with its "
                         "entities replaced by [TYPE]")
    predict.add_argument("--json", action="store_true", help="print one JSON array, one object per text in input "
                         "order (labels and probabilities, entity spans, or the embedding)")
    predict.add_argument("--backend", choices=["native", "torch"], default="native",
                         help="native: the Rust core on the merged weights; torch: PyTorch")
    predict.add_argument("--examples", type=Path, help="generative: few-shot examples, JSON Lines of "
                         "{\"document\", \"label\"} (or {\"text\", \"label\"})")
    predict.add_argument("--labels", help="generative: comma-separated labels to choose from instead of the "
                         "manifest's (and the examples')")
    predict.add_argument("--generate", action="store_true", help="generative: answer freely (greedy) and "
                         "parse the JSON instead of scoring the labels")

    verify = verbs.add_parser("verify", help="recompute golden outputs with every backend and compare",
                              formatter_class=Formatter)
    verify.add_argument("model_dir", type=Path, help="a lorakit model directory (any task)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--backends", type=backend_list, help="comma-separated, from torch, onnx, native "
                        "(default: every installed one; the others are reported as not run)")
    return parser


EXIT_CODES = (f"exit codes: 0 written, 2 bad input (nothing done), {GATE_EXIT_CODE} refused by --min-metric "
              "(nothing written)")


def add_gate_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-metric", action="append", type=parse_gate, default=[], metavar="[PART.]METRIC=VALUE",
                        help=GATE_HELP)


def add_retrain_parser(verbs: Any) -> None:
    from .retrain import HELP

    retrain = verbs.add_parser("retrain", help="retrain a model directory on its training data plus corrections "
                               "and replace it atomically", description=HELP, formatter_class=Formatter,
                               epilog=EXIT_CODES)
    retrain.add_argument("model_dir", type=Path, help="the model directory to retrain and replace")
    retrain.add_argument("--corrections", required=True, type=Path, help="rows in the columns of the training "
                         "data (.csv, .tsv, .jsonl, .json): a text already in the data gets this row's label, a new "
                         "text is added to train")
    retrain.add_argument("--checkpoint-dir", type=Path, help="keep the retraining checkpoint here (default: a "
                         "scratch directory, removed afterwards)")
    retrain.add_argument("--allow-new-labels", action="store_true", help="accept labels (entity types) the model "
                         "does not have (default: refused)")
    retrain.add_argument("--keep-previous", action="store_true", help="keep the replaced model as "
                         ".NAME.prev-TIMESTAMP beside it (hidden, so a router does not serve it)")
    retrain.add_argument("--min-metric", action="append", type=parse_gate, default=[], metavar="[PART.]METRIC=VALUE",
                         help="the gate (as for train); default: the gates the model passed when published "
                         "(lorakit.json metrics.gate)")


def backend_list(value: str) -> tuple[str, ...]:
    from .verify import BACKEND_GROUPS

    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in BACKEND_GROUPS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{value!r}: choose from {', '.join(BACKEND_GROUPS)}")
    return names


def add_base_parser(verbs: Any) -> None:
    base = verbs.add_parser("base", help="write a named base model (gemma-3-270m) as a safetensors directory",
                            formatter_class=Formatter)
    base.add_argument("name", choices=["gemma-3-270m"], help="the named base")
    base.add_argument("--output", type=Path, help="directory to write (default: the lorakit cache, "
                      "$LORAKIT_CACHE/bases/NAME)")


def add_import_parser(verbs: Any) -> None:
    imported = verbs.add_parser("import", help="turn a stock PEFT adapter (with --base) or a fine-tuned Hugging "
                                "Face classifier into a model directory", formatter_class=Formatter)
    imported.add_argument("source", type=Path, help="PEFT adapter directory (adapter_config.json + "
                          "adapter_model.safetensors); without --base: a *ForSequenceClassification or "
                          "*ForTokenClassification directory (config.json, model.safetensors, tokenizer)")
    imported.add_argument("--base", type=Path, help="base model directory the adapter was trained on")
    imported.add_argument("--output", required=True, type=Path, help="model directory to write")
    names = imported.add_mutually_exclusive_group()
    names.add_argument("--labels", help="comma-separated label names in head output order (default: id2label of "
                       "a config.json beside the adapter, else of the base; LABEL_0, LABEL_1, ... are refused)")
    names.add_argument("--labels-file", type=Path, help="label names, one per line, in head output order")
    imported.add_argument("--name", help="model name in lorakit.json (default: the output folder name)")
    imported.add_argument("--max-seq-len", type=int, help="tokens per text; default 128 (embedding: the base's "
                          "sentence_bert_config.json max_seq_length, else 256), within the base's positions")
    imported.add_argument("--task", choices=TASK_CHOICES, help="default: the adapter's task_type (none: "
                          "embedding) or the head class in config.json; given, it must agree")
    imported.add_argument("--golden-examples", type=Path, help="texts for the golden vectors, one per line (up "
                          "to 16, before the built-in edge cases)")
    imported.add_argument("--pooling", choices=["mean", "cls"], help="embedding: how token vectors become one "
                          "vector (default mean)")
    imported.add_argument("--normalize", action=argparse.BooleanOptionalAction, help="embedding: L2-normalise "
                          "the vector (default on)")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="sequence classification: .csv, .tsv, .jsonl or "
                        ".json; token classification: .jsonl/.json (character spans or BIO tokens) or CoNLL "
                        "(.conll, .txt); embedding: pairs in .csv, .tsv, .jsonl or .json")
    parser.add_argument("--text-column", default="text", help="column of the text (of the first text of a pair)")
    parser.add_argument("--label-column", default="label", help="sequence classification: column of the label")
    parser.add_argument("--spans-column", default="spans", help="token classification: [{start, end, label}] "
                        "character spans")
    parser.add_argument("--tokens-column", default="tokens", help="token classification: pre-tokenised words "
                        "(BIO records)")
    parser.add_argument("--tags-column", default="ner_tags", help="token classification: one IOB2 tag per word")
    parser.add_argument("--text-pair-column", default="text_pair", help="embedding: column of the second text")
    parser.add_argument("--score-column", help="embedding: similarity score of each pair (without it: "
                        "(anchor, positive) pairs; eval reads the column the model was trained with when the "
                        "file has it)")


def data_spec(args: argparse.Namespace) -> Any:
    from .pipeline import DataSpec

    return DataSpec(args.data, args.text_column, args.label_column, getattr(args, "group_column", None),
                    getattr(args, "validation_fraction", 0.1), getattr(args, "test_fraction", 0.1),
                    getattr(args, "seed", 42), spans_column=args.spans_column, tokens_column=args.tokens_column,
                    tags_column=args.tags_column, text_pair_column=args.text_pair_column,
                    score_column=args.score_column)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not native_only(args) and args.verb != "prepare":  # prepare reads documents: no model library to quiet
        quiet_libraries()
    try:
        return run(args)
    except MissingExtraError as exc:  # already a whole sentence naming the command and the extra
        print(exc, file=sys.stderr)
        return exc.exit_code
    except LorakitError as exc:  # Python-side and native (Rust core) errors alike
        print(f"lorakit {args.verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # unreadable input, unwritable output, full disk: the user's to fix, not a crash
        print(f"lorakit {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # a broken install (native extension or numpy missing): say what, on one line
        print(f"lorakit {args.verb}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lorakit {args.verb}: interrupted", file=sys.stderr)
        return 130


def native_only(args: argparse.Namespace) -> bool:
    """Commands served by the native core alone: they must not even import transformers."""
    if args.verb == "predict":
        return bool(args.backend == "native")
    return bool(args.verb == "verify" and args.backends == ("native",))


def quiet_libraries() -> None:
    """Silence transformers' and torch's chatter, where they are installed (a serving install has neither)."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        return
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # weight-loading bars; training keeps its own progress bar
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # it warns about optional CPU kernels at import


def run(args: argparse.Namespace) -> int:
    if args.verb == "train":
        return run_train(args)
    if args.verb == "eval":
        return run_eval(args)
    if args.verb == "export":
        return run_export(args)
    if args.verb == "retrain":
        require_train("lorakit retrain")
        from .retrain import retrain

        retrain(args.model_dir, args.corrections, checkpoint_dir=args.checkpoint_dir, gates=args.min_metric,
                allow_new_labels=args.allow_new_labels, keep_previous=args.keep_previous)
        return 0
    if args.verb == "predict":
        return run_predict(args)
    if args.verb == "import":
        return run_import(args)
    if args.verb == "base":
        require_train("lorakit base")
        from .gguf_base import materialise

        print(materialise(args.name, args.output))
        return 0
    if args.verb == "prepare":
        return run_prepare(args)
    return run_verify(args)


def check_task_options(args: argparse.Namespace, defaults: argparse.Namespace) -> None:
    for option, tasks in TASK_OPTIONS.items():
        if args.task not in tasks and getattr(args, option) != getattr(defaults, option):
            flag = "--" + option.replace("_", "-")
            raise LorakitError(f"{flag} does not apply to --task {args.task} (only {', '.join(tasks)})")


def run_train(args: argparse.Namespace) -> int:
    require_train("lorakit train")
    from .gate import check_gates, gate_lines, gated
    from .manifest import EMBEDDING
    from .pipeline import resolve_base, train_and_export
    from .tasks import BY_CLI
    from .train import TrainConfig
    from .train_options import refuse_model_dir_base

    defaults = build_parser().parse_args(["train", "--data", "x", "--output", "x"])
    check_task_options(args, defaults)
    if args.no_calibration and args.target_precision != defaults.target_precision:
        raise LorakitError("--target-precision chooses the review threshold of the calibration; drop it or "
                           "--no-calibration")
    refuse_model_dir_base(args.base)  # before resolve_base: a model directory has a config.json too
    task = BY_CLI[args.task].name
    check_gates(args.min_metric, task)
    if task == "generative_classification":
        base, base_id = generative_base(args.base)
    else:
        base, base_id = resolve_base(args.base)
    max_seq_len = args.max_seq_len
    if max_seq_len is None:
        if task == EMBEDDING:
            from .embedding import resolve_max_seq_len

            max_seq_len = resolve_max_seq_len(base, None)
        elif task == "generative_classification":
            from .prompt import decoder_positions

            max_seq_len = min(GENERATIVE_MAX_SEQ_LEN, decoder_positions(base))
        else:
            max_seq_len = 128
    best_metric = args.best_metric or {"token_classification": "entity_f1",
                                       "generative_classification": "loss"}.get(task, "macro_f1")
    config = TrainConfig(
        base=str(base), labels=[], full=args.full, epochs=args.epochs, learning_rate=args.learning_rate,
        head_learning_rate=args.head_learning_rate, probe_head=not args.no_probe_head, patience=args.patience,
        batch_size=args.batch_size, gradient_accumulation=args.gradient_accumulation, warmup=args.warmup,
        weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm, max_seq_len=max_seq_len,
        class_weighted=args.class_weighted, best_metric=best_metric, seed=args.seed, r=args.r,
        lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, use_rslora=args.use_rslora,
        target_modules=args.target_modules.split(",") if args.target_modules else None, task=task,
        unsafe_labels=[label.strip() for label in args.unsafe_labels.split(",")] if args.unsafe_labels else None,
        pooling=args.pooling, normalize=args.normalize, quantize=args.quantize,
        max_document_tokens=args.max_document_tokens, line_breaks=args.line_breaks,
    )
    with gated(args.min_metric, args.output, args.checkpoint_dir):
        metrics = train_and_export(data_spec(args), config, args.output, base_id, name=args.name, onnx=args.onnx,
                                   checkpoint_dir=args.checkpoint_dir, calibrate=not args.no_calibration,
                                   target_precision=args.target_precision)
    if metrics:
        from .inference import summary_line

        for part in ("validation", "test"):
            print(summary_line(part, metrics[part]))
        for line in gate_lines(metrics):
            print(line)
        print(f"model directory: {Path(args.output).absolute()}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    require_train("lorakit export")
    from .gate import check_export_gates, gate_lines, gated
    from .manifest import read_manifest
    from .pipeline import export_checkpoint

    check_export_gates(args.min_metric, args.checkpoint)
    with gated(args.min_metric, args.output):
        output = export_checkpoint(args.checkpoint, args.output, onnx=args.onnx, name=args.name)
    print(output)
    for line in gate_lines(dict(read_manifest(output).metrics)):
        print(line)
    return 0


def generative_base(base: str | None) -> tuple[Path, str]:
    """A generative base: a named one (materialised into the cache on first use) or a causal LM directory."""
    from .gguf_base import NAMED_BASES, resolve_base

    if base is None:
        raise LorakitError(f"--task generative needs --base (a Gemma 3 / Qwen3 directory or {', '.join(NAMED_BASES)})")
    path = resolve_base(base).expanduser().absolute()
    return path, base if base in NAMED_BASES else path.name


def run_eval(args: argparse.Namespace) -> int:
    from .inference import evaluate_model_dir, format_metrics

    require_train("lorakit eval", "metrics come from scikit-learn, seqeval and scipy")
    metrics = evaluate_model_dir(args.model_dir, data_spec(args), backend=args.backend)
    print(json.dumps(metrics) if args.json else format_metrics(metrics))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from .inference import format_predictions, predict
    from .texts import read_texts

    if args.backend == "torch":
        require_train("lorakit predict --backend torch")
    texts = args.text if args.input is None else read_texts(args.input, args.input_format)
    check_utf8(texts)
    fewshot = read_fewshot(args)
    results = predict(args.model_dir, texts, args.backend, top_k=args.top_k, mask=args.mask, **fewshot)
    print(json.dumps(results, ensure_ascii=False) if args.json else format_predictions(results, args.mask))
    return 0


def read_fewshot(args: argparse.Namespace) -> dict[str, Any]:
    """predict's generative options, only when given: other tasks refuse them."""
    options: dict[str, Any] = {}
    if args.examples is not None:
        from .prompt import read_examples

        options["examples"] = read_examples(args.examples)
    if args.labels is not None:
        options["labels"] = [label.strip() for label in args.labels.split(",")]
    if args.generate:
        options["generate"] = True
    return options


def check_utf8(texts: Sequence[str]) -> None:
    """Undecodable bytes in argv arrive as lone surrogates (PEP 383); no tokenizer can take them."""
    for number, text in enumerate(texts, start=1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(text[exc.start])
            what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
            raise InputError(f"text {number}: not valid UTF-8 ({what} at character {exc.start}); pass UTF-8 "
                             "text") from None


def run_import(args: argparse.Namespace) -> int:
    require_train("lorakit import")
    from .importer import import_adapter, import_full, parse_labels, read_lines
    from .manifest import read_manifest
    from .tasks import BY_CLI

    labels = parse_labels(args.labels) if args.labels is not None else \
        read_lines(args.labels_file, "labels") if args.labels_file is not None else None
    examples = read_lines(args.golden_examples, "golden examples") if args.golden_examples is not None else []
    task = BY_CLI[args.task].name if args.task else None
    common: dict[str, Any] = {"labels": labels, "name": args.name, "max_seq_len": args.max_seq_len, "task": task,
                              "golden_examples": examples}
    if args.base is not None:
        output = import_adapter(args.source, args.base, args.output, pooling=args.pooling, normalize=args.normalize,
                                log=lambda line: print(f"lorakit import: {line}", file=sys.stderr), **common)
    elif args.pooling is not None or args.normalize is not None:
        raise LorakitError("--pooling and --normalize apply to embedding adapters, which need --base")
    else:
        output = import_full(args.source, args.output, **common)
    manifest = read_manifest(output)
    kind = f"LoRA r={manifest.adapter.r}" if manifest.adapter else "full"
    print(f"imported {manifest.task} ({kind}, {manifest.architecture}), labels: {', '.join(manifest.labels) or '-'}")
    print(f"model directory: {output}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from .verify import format_report, verify_model

    def progress(name: str) -> None:
        if not args.json:
            print(f"checking {name} ...", file=sys.stderr)

    report = verify_model(args.model_dir, progress=progress, backends=args.backends)
    print(json.dumps(report) if args.json else format_report(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
