"""Export a trained model of any task as a lorakit model directory (docs/FORMAT.md), atomically."""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from . import __version__
from .atomic import atomic_directory
from .errors import ExportError, UnsupportedError
from .golden import GOLDEN_FILE, golden_texts, tokenize, write_golden
from .manifest import (
    EMBEDDING,
    FORMAT_VERSION,
    SEQUENCE,
    TOKEN,
    AdapterInfo,
    BaseRef,
    Calibration,
    Manifest,
    file_table,
    is_model_dir,
    sha256_file,
    write_manifest,
)
from .models import architecture

# Merged weights must reproduce the unmerged PEFT model this closely (fp32, CPU), relative to the logit scale:
# (W + sBA) x and W x + sB(Ax) round differently, and fp32 rounding grows with the magnitude of the logits and the
# size of the update (a Presidio token adapter at lr 1e-3 differed by 9.6e-6 of its scale). A wrong merge is off by
# the whole update, orders of magnitude more.
MERGE_TOLERANCE = 1e-4
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def base_weights_path(base_dir: Path) -> Path:
    path = Path(base_dir) / "model.safetensors"
    if not path.is_file():
        raise UnsupportedError(f"{base_dir}: base model needs a single model.safetensors file")
    return path


def export_model(
    model: Any,
    tokenizer: Any,
    out_dir: Path,
    *,
    labels: Sequence[str],
    max_seq_len: int,
    base_path: Path,
    base_id: str | None = None,
    name: str | None = None,
    golden_examples: Sequence[str] = (),
    metrics: dict[str, Any] | None = None,
    report_dir: Path | None = None,
    onnx: bool = False,
    task: str = SEQUENCE,
    unsafe_labels: Sequence[str] | None = None,
    pooling: str | None = None,
    normalize: bool | None = None,
    check: Callable[[Path], None] | None = None,
    calibration: Calibration | None = None,
) -> Path:
    """Write the model directory `out_dir`; `model` is a PeftModel (LoRA) or a plain HF model (full fine-tune) of
    `task`: its head gives `labels` (none for an embedding, whose `pooling` and `normalize` are required).
    `check`, when given, runs on the complete directory before it is published; raising publishes nothing.
    `calibration` (sequence classification): temperature and review threshold (docs/calibration.md); the golden
    file then carries the calibrated probabilities too.

    Nothing is visible at `out_dir` until every file is written and fsynced; on any error no directory is left.
    An existing lorakit model directory is replaced; any other existing path is refused.
    """
    out_dir = Path(out_dir).absolute()
    labels = list(labels)
    base_path = Path(base_path).absolute()
    base_sha = sha256_file(base_weights_path(base_path))
    model = model.to("cpu").float().eval()
    config = model.config
    check_head(task, labels, config, pooling, normalize)
    architecture = config.model_type
    texts = golden_texts(golden_examples, max_seq_len)
    batch = tokenize(tokenizer, texts, max_seq_len)
    outputs = TaskOutputs(task, tokenizer, texts, batch, max_seq_len, labels, pooling, normalize)

    with atomic_directory(out_dir, is_model_dir) as tmp:
        values = outputs.compute(model)  # the reference: the unmerged PEFT model
        if isinstance(model, PeftModel):
            adapter = save_adapter(model, tmp)
            merged = copy.deepcopy(model).merge_and_unload().eval()
            check_merge(values, outputs.compute(merged))
        else:
            adapter = None
            merged = model
        set_labels(merged.config, labels)
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_golden(tmp / GOLDEN_FILE, texts, batch, values, max_seq_len, task, outputs.entities(values),
                     calibration=calibration)
        if onnx:
            from .onnx_export import export_onnx

            export_onnx(merged, batch, tmp / "model.onnx", task, pooling or "mean", bool(normalize))
        write_report(tmp / "report", report_dir, metrics)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            name=name or out_dir.name,
            task=task,
            architecture=architecture,
            base=BaseRef(
                path=manifest_base_path(base_path, out_dir),
                id=base_id or getattr(config, "_name_or_path", None) or base_path.name,
                weights_sha256=base_sha,
            ),
            adapter=adapter,
            labels=tuple(labels),
            max_seq_len=int(max_seq_len),
            pooling=pooling if task == EMBEDDING else pooling_of(config) if task == SEQUENCE else None,
            metrics=metrics or {},
            files=file_table(tmp),
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            lorakit_version=__version__,
            unsafe_labels=tuple(unsafe_labels) if unsafe_labels else None,
            normalize=normalize if task == EMBEDDING else None,
            aggregation="first" if task == TOKEN else None,
            calibration=calibration,
        )
        write_manifest(tmp, manifest)
        if check is not None:
            check(tmp)
    return out_dir


def check_head(task: str, labels: list[str], config: Any, pooling: str | None, normalize: bool | None) -> None:
    if task == EMBEDDING:
        if labels:
            raise ExportError("an embedding model has no labels; pass labels=[]")
        if pooling not in ("mean", "cls") or normalize is None:
            raise ExportError("an embedding export needs pooling ('mean' or 'cls') and normalize (true or false)")
    elif len(labels) != config.num_labels:
        raise ExportError(f"{len(labels)} labels given but the model head has {config.num_labels} outputs")


class TaskOutputs:
    """The golden output of a task for fixed texts: logits, token logits (+ decoded entities) or embeddings."""

    def __init__(self, task: str, tokenizer: Any, texts: list[str], batch: dict[str, torch.Tensor], max_seq_len: int,
                 labels: list[str], pooling: str | None, normalize: bool | None) -> None:
        self.task, self.tokenizer, self.texts, self.batch = task, tokenizer, texts, batch
        self.max_seq_len, self.labels, self.pooling, self.normalize = max_seq_len, labels, pooling, normalize

    def compute(self, model: Any) -> torch.Tensor:
        if self.task == EMBEDDING:
            from .embedding import encode

            return encode(model, self.tokenizer, self.texts, self.max_seq_len, str(self.pooling), bool(self.normalize))
        from .golden import compute_logits

        return compute_logits(model, self.batch)

    def entities(self, values: torch.Tensor) -> list[list[dict[str, Any]]] | None:
        if self.task != TOKEN:
            return None
        from .entities import padded_entities

        return padded_entities(self.tokenizer, self.texts, values.numpy(), self.max_seq_len, self.labels)


def pooling_of(config: Any) -> str:
    """How the head reads the sequence: the architecture's own way, or `classifier_pooling` where it is a choice."""
    choice = getattr(config, "classifier_pooling", None)
    return choice if isinstance(choice, str) else architecture(config.model_type).pooling


def save_adapter(model: PeftModel, tmp: Path) -> AdapterInfo:
    """Write exactly the two PEFT adapter files (save_pretrained also writes a README we do not ship)."""
    peft_config: Any = model.peft_config[model.active_adapter]
    if str(getattr(peft_config, "peft_type", "")).split(".")[-1] != "LORA":
        raise UnsupportedError(f"only LoRA adapters can be exported, not {peft_config.peft_type}")
    if getattr(peft_config, "use_dora", False) or getattr(peft_config, "bias", "none") != "none":
        raise UnsupportedError("adapters with use_dora or trained biases cannot be served; use plain LoRA")
    with tempfile.TemporaryDirectory(dir=tmp) as scratch:
        model.save_pretrained(scratch)
        for name in ADAPTER_FILES:
            source = Path(scratch) / name
            if not source.is_file():
                raise ExportError(f"PEFT did not write {name}")
            shutil.move(str(source), tmp / name)
    target = peft_config.target_modules
    target_list = sorted(target) if isinstance(target, (set, list, tuple)) else [str(target)]
    alpha = peft_config.lora_alpha
    return AdapterInfo(
        type="lora",
        r=int(peft_config.r),
        lora_alpha=int(alpha) if float(alpha).is_integer() else float(alpha),
        use_rslora=bool(peft_config.use_rslora),
        target_modules=tuple(target_list),
        modules_to_save=tuple(saved_modules(model, peft_config.modules_to_save or [])),
    )


def saved_modules(model: PeftModel, requested: Sequence[str]) -> list[str]:
    """PEFT lists every head name it knows ("classifier", "score", duplicates); keep the ones really saved."""
    keys = model.state_dict().keys()
    return sorted({name for name in requested if any(f".{name}.modules_to_save." in key for key in keys)})


def check_merge(unmerged: torch.Tensor, merged: torch.Tensor) -> None:
    """max |diff| <= MERGE_TOLERANCE * max(1, max |output|) (logits, token logits or embeddings)."""
    diff = float((unmerged - merged).abs().max())
    allowed = MERGE_TOLERANCE * max(1.0, float(unmerged.abs().max()))
    if not diff <= allowed:
        raise ExportError(f"merged model disagrees with the unmerged adapter: max |diff| {diff:.3e} > {allowed:.3e}")


def set_labels(config: Any, labels: list[str]) -> None:
    config.id2label = {i: label for i, label in enumerate(labels)}
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.num_labels = len(labels)


def manifest_base_path(base_path: Path, out_dir: Path) -> str:
    """Relative to the model directory, never an absolute path into this machine: the pair moves together, and a
    copy elsewhere finds its base by id and sha256 on LORAKIT_BASES (docs/FORMAT.md, "Finding the base")."""
    return Path(os.path.relpath(base_path, out_dir)).as_posix()


def write_report(report: Path, report_dir: Path | None, metrics: dict[str, Any] | None) -> None:
    report.mkdir()
    if report_dir is not None:
        for source in sorted(Path(report_dir).iterdir()):
            if source.is_file():
                shutil.copy2(source, report / source.name)
    if metrics is not None and not (report / "metrics.json").exists():
        (report / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")
