"""Export a trained classifier as a lorakit model directory (docs/FORMAT.md), atomically."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from . import __version__
from .atomic import atomic_directory
from .errors import ExportError, UnsupportedError
from .golden import GOLDEN_FILE, compute_logits, golden_texts, tokenize, write_golden
from .manifest import (
    FORMAT_VERSION,
    AdapterInfo,
    BaseRef,
    Manifest,
    file_table,
    is_model_dir,
    sha256_file,
    write_manifest,
)
from .models import architecture

# Merged weights must reproduce the unmerged PEFT model this closely (fp32, CPU), relative to the logit scale:
# (W + sBA) x and W x + sB(Ax) round differently, and fp32 rounding grows with the magnitude of the logits.
MERGE_TOLERANCE = 1e-5
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
) -> Path:
    """Write the model directory `out_dir`; `model` is a PeftModel (LoRA) or a plain HF model (full fine-tune).

    Nothing is visible at `out_dir` until every file is written and fsynced; on any error no directory is left.
    An existing lorakit model directory is replaced; any other existing path is refused.
    """
    out_dir = Path(out_dir).absolute()
    labels = list(labels)
    base_path = Path(base_path).absolute()
    base_sha = sha256_file(base_weights_path(base_path))
    model = model.to("cpu").float().eval()
    config = model.config
    if len(labels) != config.num_labels:
        raise ExportError(f"{len(labels)} labels given but the model head has {config.num_labels} outputs")
    architecture = config.model_type
    texts = golden_texts(golden_examples, max_seq_len)
    batch = tokenize(tokenizer, texts, max_seq_len)

    with atomic_directory(out_dir, is_model_dir) as tmp:
        logits = compute_logits(model, batch)
        if isinstance(model, PeftModel):
            adapter = save_adapter(model, tmp)
            merged = copy.deepcopy(model).merge_and_unload().eval()
            check_merge(logits, compute_logits(merged, batch))
        else:
            adapter = None
            merged = model
        set_labels(merged.config, labels)
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_golden(tmp / GOLDEN_FILE, texts, batch, logits, max_seq_len)
        if onnx:
            from .onnx_export import export_onnx

            export_onnx(merged, batch, tmp / "model.onnx")
        write_report(tmp / "report", report_dir, metrics)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            name=name or out_dir.name,
            task="sequence_classification",
            architecture=architecture,
            base=BaseRef(
                path=manifest_base_path(base_path, out_dir),
                id=base_id or getattr(config, "_name_or_path", None) or base_path.name,
                weights_sha256=base_sha,
            ),
            adapter=adapter,
            labels=tuple(labels),
            max_seq_len=int(max_seq_len),
            pooling=pooling_of(config),
            metrics=metrics or {},
            files=file_table(tmp),
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            lorakit_version=__version__,
        )
        write_manifest(tmp, manifest)
    return out_dir


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
    """max |diff| <= 1e-5 * max(1, max |logit|)."""
    diff = float((unmerged - merged).abs().max())
    allowed = MERGE_TOLERANCE * max(1.0, float(unmerged.abs().max()))
    if not diff <= allowed:
        raise ExportError(f"merged model disagrees with the unmerged adapter: max |diff| {diff:.3e} > {allowed:.3e}")


def set_labels(config: Any, labels: list[str]) -> None:
    config.id2label = {i: label for i, label in enumerate(labels)}
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.num_labels = len(labels)


def manifest_base_path(base_path: Path, out_dir: Path) -> str:
    """A sibling base is recorded relative (the pair stays movable); anything else absolute."""
    if base_path.parent == out_dir.parent:
        return f"../{base_path.name}"
    return str(base_path)


def write_report(report: Path, report_dir: Path | None, metrics: dict[str, Any] | None) -> None:
    report.mkdir()
    if report_dir is not None:
        for source in sorted(Path(report_dir).iterdir()):
            if source.is_file():
                shutil.copy2(source, report / source.name)
    if metrics is not None and not (report / "metrics.json").exists():
        (report / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")
