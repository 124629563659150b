"""End-to-end flows behind the CLI: train -> evaluate -> export, and re-export from a training checkpoint.

Sequence classification lives here; token classification and embeddings in pipeline_tasks.py, on the same steps
(load once, split once, write the split, train, evaluate on exactly that split, export).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .calibration import TARGET_PRECISION, Calibration, calibrate, coverage_curve, curve_json, reliability_data, softmax
from .confusions import format_confusions, top_confusions
from .data import (
    Dataset,
    Row,
    Split,
    cross_split_duplicates,
    duplicates_warning,
    load_dataset,
    split_dataset,
    write_split,
)
from .distributed import check_same_on_every_process, is_main_process, run_directory
from .errors import DataError, LorakitError, ModelDirError
from .evaluate import logits_metrics, predict_logits
from .export import export_model
from .gate import enforce_gates
from .manifest import EMBEDDING, GENERATIVE, SEQUENCE, ManifestError, is_model_dir
from .manifest import Calibration as ManifestCalibration
from .models import MINILM_ID, check_servable, minilm_path
from .plots import plot_confusion_matrix, plot_coverage, plot_loss_curves, plot_reliability
from .prepare import record_preparation
from .tasks import TASKS, label_kwargs, load_task_model
from .train import TrainConfig, train
from .train_options import check_finite, check_train_config

RUN_FILE = "lorakit_run.json"
GOLDEN_FROM_TEST = 16


@dataclass
class DataSpec:
    path: Path
    text_column: str = "text"
    label_column: str = "label"
    group_column: str | None = None
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42
    spans_column: str = "spans"  # token classification: character spans ...
    tokens_column: str = "tokens"  # ... or pre-tokenised BIO
    tags_column: str = "ner_tags"
    text_pair_column: str = "text_pair"  # embedding pairs
    score_column: str | None = None


def resolve_base(base: str | None) -> tuple[Path, str]:
    """(directory, id) of the base model; None means the offline MiniLM. Never downloads."""
    if base is None:
        return minilm_path(), MINILM_ID
    path = Path(base).expanduser().absolute()
    if not (path / "config.json").is_file():
        raise LorakitError(f"{base}: base model directory with config.json not found (no downloads at run time)")
    check_servable(path)
    return path, path.name


def check_output(output: Path) -> None:
    """Refuse before any work when the output exists and is not a lorakit model directory we may replace."""
    if output.exists() and not (output.is_dir() and is_model_dir(output)):
        raise LorakitError(f"{output}: exists and is not a lorakit model directory; choose another --output")
    ancestor = output.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:  # a real write probe (permission bits say nothing for root or read-only mounts)
        os.rmdir(tempfile.mkdtemp(prefix=".lorakit-probe-", dir=ancestor))
    except OSError as exc:
        raise LorakitError(f"{output}: cannot create it ({ancestor}: {exc.strerror})") from None


def compact(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics[key] for key in ("n", "accuracy", "macro_f1", "loss", "ece", "calibration", "row_ids_sha256")
            if key in metrics}


def train_and_export(data: DataSpec, config: TrainConfig, output: Path, base_id: str, name: str | None = None,
                     onnx: bool = False, checkpoint_dir: Path | None = None,
                     log: Callable[[str], None] = print, calibrate: bool = True,
                     target_precision: float = TARGET_PRECISION) -> dict[str, Any]:
    """Load and split the data once, train, evaluate on exactly that split, export. Returns the metrics.

    Sequence classification is calibrated unless `calibrate` is false: a temperature fitted on the validation
    logits and a review threshold chosen there for `target_precision` (docs/calibration.md).

    Under `torchrun` / `accelerate launch` every process runs this; each splits identically (checked), trains its
    share through the Trainer's DDP, and only rank 0 evaluates, writes and logs; it returns {} elsewhere."""
    check_train_config(config, data.validation_fraction, data.test_fraction)
    check_finite("--target-precision", target_precision, low=0, high=1, low_open=True, high_open=False)
    output = Path(output).absolute()
    check_output(output)
    log = log if is_main_process() else quiet
    if config.task != SEQUENCE:
        from .pipeline_tasks import train_and_export_task

        with run_directory(checkpoint_dir) as run_dir:
            return train_and_export_task(run_dir, data, config, output, base_id, name, onnx, log)
    dataset = load_dataset(data.path, data.text_column, data.label_column, data.group_column)
    check_unsafe_labels(config.unsafe_labels, dataset.labels)
    split = split_dataset(dataset, data.validation_fraction, data.test_fraction, data.seed,
                          grouped=data.group_column is not None)
    config.labels = dataset.labels
    duplicates = warn_duplicates(dataset.examples, split)
    log(f"data: {len(dataset.examples)} rows, {len(dataset.labels)} labels, {split.strategy} split "
        f"train/validation/test = {len(split.train)}/{len(split.validation)}/{len(split.test)}")
    note = imbalance_note(dataset.label_ids(split.part(dataset, "train")), dataset.labels, config.class_weighted)
    if note:
        log(note)
    with run_directory(checkpoint_dir) as run_dir:
        check_same_on_every_process(split.digest(), "split")
        return _train_in(run_dir, dataset, split, config, output, base_id, name, onnx, log, duplicates,
                         target_precision if calibrate else None)


IMBALANCE_NOTE_RATIO = 10  # most / least frequent training label at which training suggests --class-weighted


def imbalance_note(label_ids: list[int], labels: list[str], class_weighted: bool) -> str | None:
    """A hint when the training labels are long-tailed and the loss is not weighted (docs/quality.md measures it)."""
    counts = np.bincount(np.asarray(label_ids, dtype=np.int64), minlength=len(labels))
    present = counts[counts > 0]
    if class_weighted or len(present) < 2 or present.max() < IMBALANCE_NOTE_RATIO * present.min():
        return None
    rare = labels[int(np.flatnonzero(counts == present.min())[0])]
    return (f"note: training labels are imbalanced ({present.max()} to {present.min()} rows, {rare!r} the rarest); "
            "--class-weighted weighs the loss by inverse frequency (on a 20:1 banking77 it raised balanced "
            "macro-F1 from 0.66 to 0.82)")


def warn_duplicates(examples: Iterable[Row], split: Split) -> dict[str, Any]:
    """Texts shared by train/validation/test: warned about on stderr (once), returned for report/metrics.json."""
    duplicates = cross_split_duplicates(examples, split)
    warning = duplicates_warning(duplicates)
    if warning and is_main_process():
        print(warning, file=sys.stderr)
    return duplicates


def quiet(message: str) -> None:
    """The log of processes other than rank 0: the run's output is printed once."""


def log_training(stats: dict[str, Any], log: Callable[[str], None]) -> None:
    processes = stats["world_size"]
    launch = f"{processes} processes ({stats['ddp_backend']})" if processes > 1 else "1 process"
    log(f"trained in {stats['train_seconds']:.1f} s on {launch}; effective batch {stats['effective_batch_size']} = "
        f"{stats['per_device_batch_size']} per process x {processes} x {stats['gradient_accumulation']} accumulated; "
        f"trainable parameters {stats['trainable_params']:,} of {stats['total_params']:,} "
        f"({stats['trainable_percent']:.2f}%)")


def check_unsafe_labels(unsafe: list[str] | None, labels: list[str]) -> None:
    if unsafe is None:
        return
    unknown = [label for label in unsafe if label not in labels]
    if unknown or not unsafe:
        raise DataError(f"--unsafe-labels {', '.join(unknown) or '(empty)'} not among the data's labels "
                        f"({', '.join(labels)})")


def _train_in(run_dir: Path, dataset: Dataset, split: Split, config: TrainConfig, output: Path, base_id: str,
              name: str | None, onnx: bool, log: Callable[[str], None],
              duplicates: dict[str, Any] | None = None,
              target_precision: float | None = TARGET_PRECISION) -> dict[str, Any]:
    """`target_precision` None: no calibration."""
    train_part, validation_part, test_part = (split.part(dataset, part) for part in ("train", "validation", "test"))
    result = train(config, train_part, dataset.label_ids(train_part), validation_part,
                   dataset.label_ids(validation_part), run_dir / "trainer")
    if not result.stats["world_process_zero"]:
        return {}
    log_training(result.stats, log)
    logits = {name: predict_logits(result.model, result.tokenizer, [example.text for example in part],
                                   config.max_seq_len, desc=name)
              for name, part in (("validation", validation_part), ("test", test_part))}
    true_ids = {"validation": dataset.label_ids(validation_part), "test": dataset.label_ids(test_part)}
    calibration = None if target_precision is None else \
        calibrate(logits["validation"], true_ids["validation"], target_precision)
    temperature = calibration.temperature if calibration else 1.0
    validation = logits_metrics(logits["validation"], dataset, validation_part, temperature)
    test = logits_metrics(logits["test"], dataset, test_part, temperature)
    for part in (validation, test):
        part["top_confusions"] = top_confusions(part["confusion_matrix"], dataset.labels)
    report = run_dir / "report"
    report.mkdir(exist_ok=True)
    if calibration is not None:
        report_calibration(calibration, logits, true_ids, {"validation": validation, "test": test}, report, log)
    log("top confusions (test, true -> predicted):\n" + "\n".join(format_confusions(test["top_confusions"])))
    write_split(report / "split.json", split)
    documents = record_preparation(Path(dataset.source), report)
    full_metrics = {"validation": validation, "test": test, "training": result.stats,
                    "calibration": calibration.summary() if calibration else None,
                    "config": config.to_json(), "data": {"source": dataset.source, "labels": dataset.labels,
                             "cross_split_duplicates": duplicates}}
    (report / "metrics.json").write_text(json.dumps(full_metrics, indent=2) + "\n", "utf-8")
    (report / "history.json").write_text(json.dumps(result.history, indent=2) + "\n", "utf-8")
    plot_confusion_matrix(test["confusion_matrix"], dataset.labels, report / "confusion_matrix.png",
                          title="Confusion matrix (test)")
    plot_loss_curves(result.history, report / "loss_curves.png")
    metrics = {"validation": compact(validation), "test": compact(test), "training": result.stats,
               **({"documents": documents} if documents else {})}
    golden_examples = [example.text for example in test_part[:GOLDEN_FROM_TEST]]
    entry = ManifestCalibration.from_json(calibration.manifest_entry()) if calibration else None
    save_checkpoint(run_dir, result.model, result.tokenizer, config, base_id, metrics, golden_examples, entry)
    enforce_gates(metrics)
    export_model(result.model, result.tokenizer, output, labels=dataset.labels, max_seq_len=config.max_seq_len,
                 base_path=Path(config.base), base_id=base_id, name=name, golden_examples=golden_examples,
                 metrics=metrics, report_dir=report, onnx=onnx, unsafe_labels=config.unsafe_labels,
                 calibration=entry)
    return metrics


def report_calibration(calibration: Calibration, logits: dict[str, np.ndarray], true_ids: dict[str, list[int]],
                       parts: dict[str, dict[str, Any]], report: Path, log: Callable[[str], None]) -> None:
    """Each part's ECE before/after and coverage/accuracy at the review threshold (into `parts`), the reliability
    and coverage plots and their data (report/calibration.json), and the log lines."""
    data: dict[str, Any] = {"calibration": calibration.summary()}
    curves = {}
    for name, metrics in parts.items():
        metrics["calibration"] = calibration.evaluate(logits[name], true_ids[name])
        curves[name] = curve_json(coverage_curve(softmax(logits[name], calibration.temperature), true_ids[name]))
        data[name] = {"reliability": reliability_data(logits[name], true_ids[name], calibration.temperature),
                      "coverage_curve": curves[name]}
    (report / "calibration.json").write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    plot_reliability(data["test"]["reliability"], report / "reliability.png", title="Reliability (test)")
    marks = {name: (parts[name]["calibration"]["coverage"], parts[name]["calibration"]["accuracy_at_threshold"])
             for name in parts}
    plot_coverage(curves, marks, calibration.review_threshold, calibration.choice.target_precision,
                  report / "coverage.png")
    test = parts["test"]["calibration"]
    log(f"calibration: temperature {calibration.temperature:.4f} (fitted on validation); test ECE "
        f"{test['ece_before']:.4f} -> {test['ece_after']:.4f}")
    accuracy = "n/a" if test["accuracy_at_threshold"] is None else f"{test['accuracy_at_threshold']:.4f}"
    log(f"review threshold {calibration.review_threshold:.4f} for target precision "
        f"{calibration.choice.target_precision:g}{'' if calibration.choice.reached else ' (not reached)'}: test "
        f"coverage {test['coverage']:.4f}, accuracy {accuracy} at it")
    for warning in calibration.warnings:
        print(f"calibration warning: {warning}", file=sys.stderr)


def save_checkpoint(run_dir: Path, model: Any, tokenizer: Any, config: TrainConfig, base_id: str,
                    metrics: dict[str, Any], golden_examples: list[str],
                    calibration: ManifestCalibration | None = None) -> None:
    """run_dir/best (weights + tokenizer) and run_dir/lorakit_run.json: everything `lorakit export` needs,
    the calibration fitted for the best weights included."""
    best = run_dir / "best"
    shutil.rmtree(best, ignore_errors=True)
    model.save_pretrained(best)
    tokenizer.save_pretrained(best)
    run = {"config": config.to_json(), "base_id": base_id, "metrics": metrics, "golden_examples": golden_examples,
           "calibration": calibration.to_json() if calibration else None}
    (run_dir / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", "utf-8")


def find_run(checkpoint: Path) -> tuple[Path, Path]:
    """(run dir, weights dir) for a run dir, its `best/`, or a trainer `checkpoint-N` inside it."""
    checkpoint = Path(checkpoint).absolute()
    if not checkpoint.is_dir():
        raise ModelDirError(f"{checkpoint}: checkpoint directory not found")
    for run_dir in (checkpoint, checkpoint.parent, checkpoint.parent.parent):
        if (run_dir / RUN_FILE).is_file():
            weights = checkpoint if checkpoint != run_dir else run_dir / "best"
            return run_dir, weights
    raise ModelDirError(f"{checkpoint}: not a lorakit training checkpoint (no {RUN_FILE}; train with --checkpoint-dir)")


def export_checkpoint(checkpoint: Path, output: Path, onnx: bool = False, name: str | None = None) -> Path:
    """Re-export a model directory from a saved training checkpoint (for example another epoch's weights).

    A damaged checkpoint (unreadable run file, missing fields, weights that do not fit) is a one-line
    ModelDirError, raised before anything is written."""
    output = Path(output).absolute()
    check_output(output)
    run_dir, weights = find_run(checkpoint)
    run = read_run(run_dir / RUN_FILE)
    config: TrainConfig = run["config"]
    model = load_checkpoint_model(config, weights)
    tokenizer = load_checkpoint_tokenizer(weights if (weights / "tokenizer_config.json").is_file()
                                          else run_dir / "best")
    report = run_dir / "report"
    # The recorded metrics and calibration belong to the best epoch; another checkpoint's weights were never
    # evaluated, and a temperature fitted on one epoch's logits says nothing about another's.
    best = weights == run_dir / "best"
    metrics = run["metrics"] if best else {"checkpoint": weights.name}
    calibration = run["calibration"] if best else None
    if run["calibration"] is not None and not best:
        print(f"note: {weights.name} is exported uncalibrated: the run's calibration was fitted on the best "
              f"weights ({run_dir / 'best'})", file=sys.stderr)
    enforce_gates(metrics)
    if config.task == GENERATIVE:
        from .generative_pipeline import export_generative_checkpoint

        return export_generative_checkpoint(run, model, tokenizer, output, name,
                                            report if report.is_dir() else None, metrics)
    embedding = config.task == EMBEDDING
    return export_model(model, tokenizer, output, labels=config.labels, max_seq_len=config.max_seq_len,
                        base_path=Path(config.base), base_id=run["base_id"], name=name,
                        golden_examples=run["golden_examples"], metrics=metrics,
                        report_dir=report if report.is_dir() else None, onnx=onnx, task=config.task,
                        unsafe_labels=config.unsafe_labels, pooling=config.pooling if embedding else None,
                        normalize=config.normalize if embedding else None,
                        calibration=calibration if config.task == SEQUENCE else None)


def recorded_config(recorded: dict[str, Any], source: Path) -> TrainConfig:
    """A TrainConfig from its recorded JSON (fields it no longer has are ignored); ModelDirError naming `source`
    when a field it needs is missing."""
    fields = TrainConfig.__dataclass_fields__
    try:
        return TrainConfig(**{key: value for key, value in recorded.items() if key in fields})
    except TypeError as exc:
        raise ModelDirError(f"{source}: config is incomplete ({exc})") from None


def read_run(path: Path) -> dict[str, Any]:
    """lorakit_run.json with its fields typed; `config` becomes a TrainConfig."""
    try:
        run = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path}: not a readable run file ({' '.join(str(exc).split())}); train again with "
                            "--checkpoint-dir") from None
    expected = {"config": dict, "base_id": str, "metrics": dict, "golden_examples": list}
    problems = [key for key, kind in expected.items()
                if not isinstance(run, dict) or not isinstance(run.get(key), kind)]
    if problems:
        raise ModelDirError(f"{path}: run file lacks {', '.join(problems)} (or has the wrong type); train again "
                            "with --checkpoint-dir")
    config = recorded_config(run["config"], path)
    if not isinstance(config.base, str) or not isinstance(config.labels, list) or \
            not isinstance(config.max_seq_len, int) or config.task not in TASKS:
        raise ModelDirError(f"{path}: config has a wrong base, labels, max_seq_len or task")
    calibration = run.get("calibration")  # absent from runs written before calibration existed
    try:
        typed_calibration = None if calibration is None else ManifestCalibration.from_json(calibration, str(path))
    except ManifestError as exc:
        raise ModelDirError(f"{exc}; train again with --checkpoint-dir") from None
    typed: dict[str, Any] = {**run, "config": config, "calibration": typed_calibration}
    return typed


def load_checkpoint_model(config: TrainConfig, weights: Path) -> torch.nn.Module:
    """The checkpoint's PEFT adapter on its base, or its full weights; every tensor used and present."""
    from .loading import check_adapter_keys, one_line

    try:
        if (weights / "adapter_config.json").is_file():
            from peft import PeftModel
            from safetensors import safe_open

            with safe_open(str(weights / "adapter_model.safetensors"), framework="pt") as handle:
                if not list(handle.keys()):
                    raise ModelDirError(f"{weights / 'adapter_model.safetensors'}: holds no tensors; export "
                                        "another checkpoint or train again")
            base_model = load_task_model(config.task, config.base, config.labels)
            with warnings.catch_warnings():  # PEFT only warns about missing tensors; check_adapter_keys refuses them
                warnings.filterwarnings("ignore", message="Found missing adapter keys")
                model: torch.nn.Module = PeftModel.from_pretrained(base_model, str(weights))
            check_adapter_keys(model, weights / "adapter_model.safetensors")
            return model
        if (weights / "model.safetensors").is_file():
            from .tasks import auto_class

            full: torch.nn.Module = auto_class(config.task).from_pretrained(str(weights), **label_kwargs(config.labels))
            return full
    except LorakitError:
        raise
    except KeyError as exc:  # peft looks tensors up by name
        raise ModelDirError(f"{weights}: cannot load the checkpoint (tensor {exc} missing)") from None
    except Exception as exc:  # transformers, peft and safetensors share no base class for a damaged file
        raise ModelDirError(f"{weights}: cannot load the checkpoint ({one_line(exc)[:300]})") from None
    raise ModelDirError(f"{weights}: no adapter or model weights in the checkpoint")


def load_checkpoint_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    from .loading import as_written, one_line

    if not (path / "tokenizer.json").is_file():
        raise ModelDirError(f"{path / 'tokenizer.json'}: missing from the checkpoint (no fallback tokenizer)")
    try:
        return as_written(AutoTokenizer.from_pretrained(str(path)), path / "tokenizer.json")
    except Exception as exc:  # the tokenizers library raises bare Exception for a malformed tokenizer.json
        raise ModelDirError(f"{path}: not a usable tokenizer ({one_line(exc)[:300]})") from None
