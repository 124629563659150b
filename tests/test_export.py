"""Export: directory contents, manifest checksums, golden file, atomicity, refusal to clobber."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer

import lorakit.export as export_module
from lorakit.errors import ExportError, LorakitError
from lorakit.golden import EDGE_CASE_TEXTS, read_golden
from lorakit.manifest import AdapterInfo, check_files, read_manifest, sha256_file


def tiny_lora(fixture_builder: ModuleType, base: Path) -> torch.nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"],
                        modules_to_save=["classifier"])
    model = get_peft_model(fixture_builder.classifier(base, ["a", "b", "c"], seed=5), config)
    fixture_builder.randomize_lora(model, seed=6)
    return model


def export(fixture_builder: ModuleType, base: Path, out: Path, **kwargs: object) -> Path:
    return export_model_default(tiny_lora(fixture_builder, base), base, out, **kwargs)


def export_model_default(model: torch.nn.Module, base: Path, out: Path, **kwargs: object) -> Path:
    return export_module.export_model(model, AutoTokenizer.from_pretrained(base), out, labels=["a", "b", "c"],
                                      max_seq_len=32, base_path=base, golden_examples=["first real", "second"],
                                      **kwargs)  # type: ignore[arg-type]


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


def test_lora_directory_has_the_documented_files(fixtures_dir: Path) -> None:
    model_dir = fixtures_dir / "tiny_bert_lora_a"
    names = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
    assert {"lorakit.json", "config.json", "tokenizer.json", "adapter_config.json", "adapter_model.safetensors",
            "model.safetensors", "golden.safetensors"} <= names
    assert "README.md" not in names
    manifest = read_manifest(model_dir)
    assert manifest.adapter == AdapterInfo(type="lora", r=4, lora_alpha=8, use_rslora=False,
                                           target_modules=("dense", "key", "query", "value"),
                                           modules_to_save=("classifier",))
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in enumerate(manifest.labels)}
    assert config["label2id"] == {label: i for i, label in enumerate(manifest.labels)}
    with safe_open(str(model_dir / "model.safetensors"), "pt") as handle:
        keys = set(handle.keys())
    assert {"bert.encoder.layer.0.attention.self.query.weight", "bert.pooler.dense.weight",
            "classifier.weight"} <= keys
    assert not any("lora_" in key for key in keys)


def test_full_model_has_no_adapter(fixtures_dir: Path) -> None:
    model_dir = fixtures_dir / "tiny_bert_full"
    assert read_manifest(model_dir).adapter is None
    assert not (model_dir / "adapter_config.json").exists()
    assert not (model_dir / "adapter_model.safetensors").exists()


def test_manifest_lists_every_file_with_its_sha256(fixtures_dir: Path) -> None:
    model_dir = fixtures_dir / "tiny_bert_lora_b"
    manifest = read_manifest(model_dir)
    on_disk = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
    assert set(manifest.files) == on_disk - {"lorakit.json"}
    for rel, digest in manifest.files.items():
        assert sha256_file(model_dir / rel) == digest
    base = fixtures_dir / "tiny_bert_base"
    assert manifest.base.path == "../tiny_bert_base"
    assert manifest.base.weights_sha256 == sha256_file(base / "model.safetensors")
    assert check_files(model_dir, manifest) == []


def test_golden_file_contents(fixtures_dir: Path) -> None:
    model_dir = fixtures_dir / "tiny_bert_lora_a"
    golden = read_golden(model_dir)
    with safe_open(str(model_dir / "golden.safetensors"), "pt") as handle:
        meta = handle.metadata()
    assert meta["format_version"] == "1" and meta["output"] == "logits" and meta["tolerance"] == "1e-4"
    assert meta["task"] == "sequence_classification" and meta["max_seq_len"] == "32"
    n = len(golden.texts)
    assert golden.texts[0] == "my card payment was declined at the shop"  # real examples first
    for edge in EDGE_CASE_TEXTS:
        assert edge in golden.texts
    assert golden.input_ids.dtype == golden.attention_mask.dtype == golden.token_type_ids.dtype == torch.int64
    assert golden.logits.dtype == torch.float32 and golden.logits.shape == (n, 3)
    lengths = golden.attention_mask.sum(dim=1)
    assert int(lengths.max()) == 32 == golden.input_ids.shape[1]  # the long text was truncated
    assert int(lengths[golden.texts.index("")]) == 2  # [CLS] [SEP]
    assert torch.all(golden.token_type_ids == 0)
    assert len(set(golden.logits.argmax(dim=1).tolist())) > 1  # outputs depend on the text


def test_failure_mid_export_leaves_nothing(fixtures_dir: Path, fixture_builder: ModuleType, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_golden(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "write_golden", broken_golden)
    out = tmp_path / "model"
    with pytest.raises(OSError, match="disk full"):
        export(fixture_builder, fixtures_dir / "tiny_bert_base", out)
    assert siblings(out) == []


def test_failure_during_replace_keeps_the_old_model(fixtures_dir: Path, fixture_builder: ModuleType,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = export(fixture_builder, fixtures_dir / "tiny_bert_base", tmp_path / "model")
    before = read_manifest(out).files
    monkeypatch.setattr(export_module, "write_golden", lambda *a, **k: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        export(fixture_builder, fixtures_dir / "tiny_bert_base", out)
    assert siblings(out) == ["model"]
    assert read_manifest(out).files == before and check_files(out, read_manifest(out)) == []


def test_replacing_a_lorakit_directory_is_complete(fixtures_dir: Path, fixture_builder: ModuleType,
                                                   tmp_path: Path) -> None:
    out = export(fixture_builder, fixtures_dir / "tiny_bert_base", tmp_path / "model")
    (out / "stale.txt").write_text("from an older export")
    export(fixture_builder, fixtures_dir / "tiny_bert_base", out, onnx=True)
    assert not (out / "stale.txt").exists()
    assert (out / "model.onnx").is_file() and "model.onnx" in read_manifest(out).files
    assert siblings(out) == ["model"]


def test_refuses_to_overwrite_a_foreign_directory(fixtures_dir: Path, fixture_builder: ModuleType,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(LorakitError, match="not a directory this command may replace"):
        export(fixture_builder, fixtures_dir / "tiny_bert_base", out)
    assert (out / "notes.txt").read_text() == "keep me"
    assert siblings(out) == ["precious"]


def test_merge_disagreement_is_an_export_error() -> None:
    export_module.check_merge(torch.zeros(2, 3), torch.full((2, 3), 5e-5))
    export_module.check_merge(torch.full((2, 3), 20.0), torch.full((2, 3), 20.0 + 1.5e-3))  # scaled by |logit|
    with pytest.raises(ExportError):
        export_module.check_merge(torch.full((2, 3), 20.0), torch.full((2, 3), 20.0 + 3e-3))
    with pytest.raises(ExportError, match="merged model disagrees"):
        export_module.check_merge(torch.zeros(2, 3), torch.full((2, 3), 1e-3))
    with pytest.raises(ExportError):
        export_module.check_merge(torch.zeros(1, 2), torch.tensor([[0.0, float("nan")]]))


def test_label_count_must_match_the_head(fixtures_dir: Path, fixture_builder: ModuleType, tmp_path: Path) -> None:
    model = fixture_builder.classifier(fixtures_dir / "tiny_bert_base", ["x", "y"], seed=1)
    with pytest.raises(ExportError, match="3 labels given but the model head has 2"):
        export_model_default(model, fixtures_dir / "tiny_bert_base", tmp_path / "m")
    assert siblings(tmp_path / "m") == []
