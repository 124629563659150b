"""`lorakit import`: stock PEFT adapters (made here with peft itself) and fine-tuned HF classifiers become model
directories that pass `lorakit verify` and that the native core runs like torch; what cannot be served is refused
with one line, exit 2, and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from lorakit import native
from lorakit.cli import main
from lorakit.errors import ConfigError
from lorakit.golden import tokenize
from lorakit.importer import resolve_labels
from lorakit.manifest import read_manifest
from lorakit.verify import verify_model

from arch_fixtures import ARCH_FIXTURES
from conftest import ROOT

SEQ_LABELS = ["billing", "card", "other"]
TOKEN_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TARGETS = {"bert": ["query", "key", "value", "dense"], "roberta": ["query", "value", "dense"],
           "modernbert": ["Wqkv", "Wo", "Wi"]}
MAX_SEQ_LEN = 32


@pytest.fixture(scope="module")
def bases(fixtures_dir: Path, fixture_builder: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny bases: BERT, RoBERTa and ModernBERT as the fixtures build them, and a wider BERT for shape checks."""
    out = tmp_path_factory.mktemp("import_bases")
    built = {"bert": fixtures_dir / "tiny_bert_base"}
    for fixture in ARCH_FIXTURES:
        if fixture.name in ("roberta", "modernbert"):
            tokenizer = fixture.tokenizer(fixture_builder.FIXTURE_TEXTS)
            torch.manual_seed(sum(map(ord, fixture.name)))
            model = AutoModel.from_config(fixture.config(tokenizer)).eval()
            built[fixture.name] = fixture_builder.save_base(model, tokenizer, out / f"tiny_{fixture.name}_base")
    config = fixture_builder.tiny_bert_config()
    config.hidden_size, config.intermediate_size = 48, 96
    torch.manual_seed(5)
    built["wide_bert"] = fixture_builder.save_base(AutoModel.from_config(config).eval(),
                                                   AutoTokenizer.from_pretrained(built["bert"]), out / "wide_bert")
    return built


def stock_adapter(fixture_builder: ModuleType, base: Path, out: Path, task: str = "seq", seed: int = 3,
                  **lora: Any) -> Any:
    """A PEFT adapter as stock peft trains and saves it (lora_B and the head randomised so the adapter matters);
    returns the in-memory PeftModel, the torch reference."""
    labels = SEQ_LABELS if task == "seq" else TOKEN_LABELS
    head = AutoModelForSequenceClassification if task == "seq" else AutoModelForTokenClassification
    torch.manual_seed(seed)
    model = head.from_pretrained(base, num_labels=len(labels))
    lora.setdefault("target_modules", TARGETS[model.config.model_type])
    task_type = TaskType.SEQ_CLS if task == "seq" else TaskType.TOKEN_CLS
    peft_model = get_peft_model(model, LoraConfig(task_type=task_type, r=4, lora_alpha=8, **lora))
    fixture_builder.randomize_lora(peft_model, seed=seed + 1)
    peft_model.save_pretrained(out)
    return peft_model.eval()


def import_args(source: Path, out: Path, base: Path | None, *extra: str) -> list[str]:
    return ["import", str(source), *(["--base", str(base)] if base else []), "--output", str(out),
            "--max-seq-len", str(MAX_SEQ_LEN), *extra]


def torch_outputs(model: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(model(**tokenize(tokenizer, texts, MAX_SEQ_LEN)).logits.float().numpy())


def assert_native_equals_torch(model_dir: Path, reference: Any, tokenizer: Any, texts: list[str]) -> None:
    """Native logits (merged, and base + adapter at runtime where there is an adapter) within 1e-4 of torch."""
    expected = torch_outputs(reference, tokenizer, texts)
    task = read_manifest(model_dir).task
    modes = (True, False) if native.has_adapter(model_dir) else (True,)
    for merged in modes:
        model = native.Model.load(model_dir, merged=merged)
        if task == "token_classification":
            rows = model.extract_entities(texts).token_logits
            worst = max(float(np.abs(row - expected[i, :len(row)]).max()) for i, row in enumerate(rows))
        else:
            worst = float(np.abs(model.classify(texts).logits - expected).max())
        assert worst <= 1e-4, (model_dir.name, merged, worst)
    assert float(np.abs(expected).max()) > 0.1  # logits that say something, so equality is not trivial


def assert_verify_passes(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(model_dir)]) == 0
    report = capsys.readouterr().out
    assert report.rstrip().endswith("PASS")
    expected = {"torch-merged", "native-merged"} | ({"torch-unmerged", "native-runtime"}
                                                    if native.has_adapter(model_dir) else set())
    assert all(f"{name} " in report for name in expected), report


@pytest.mark.parametrize(("arch", "task"), [("bert", "seq"), ("roberta", "seq"), ("modernbert", "seq"),
                                            ("bert", "token"), ("modernbert", "token")])
def test_stock_adapter_imports_verifies_and_runs_natively_like_torch(
        bases: dict[str, Path], fixture_builder: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        arch: str, task: str) -> None:
    labels = SEQ_LABELS if task == "seq" else TOKEN_LABELS
    # ModernBERT's head (dense + norm) is not in a base checkpoint: a stock adapter must save it too.
    extra = {"modules_to_save": ["head"]} if arch == "modernbert" else {}
    reference = stock_adapter(fixture_builder, bases[arch], tmp_path / "adapter", task, **extra)
    out = tmp_path / "models" / f"{arch}_{task}"
    assert main(import_args(tmp_path / "adapter", out, bases[arch], "--labels", ",".join(labels))) == 0
    printed = capsys.readouterr()
    assert f"model directory: {out}" in printed.out and printed.err == ""
    manifest = read_manifest(out)
    assert list(manifest.labels) == labels and manifest.adapter is not None and manifest.adapter.r == 4
    assert manifest.task == ("sequence_classification" if task == "seq" else "token_classification")
    assert_verify_passes(out, capsys)
    texts = list(fixture_builder.FIXTURE_TEXTS[:6])
    assert_native_equals_torch(out, reference, AutoTokenizer.from_pretrained(bases[arch]), texts)


def test_labels_come_from_a_config_beside_the_adapter_and_a_foreign_base_name_warns(
        bases: dict[str, Path], fixture_builder: ModuleType, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    adapter = tmp_path / "adapter"
    reference = stock_adapter(fixture_builder, bases["roberta"], adapter)
    reference.config.id2label = dict(enumerate(["x", "y", "z"]))
    reference.config.save_pretrained(adapter)  # as Trainer checkpoints carry it
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "some-org/roberta-tiny"  # a hub id, not the local directory's name
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    out = tmp_path / "imported"
    assert main(import_args(adapter, out, bases["roberta"])) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "some-org/roberta-tiny" in err[0]
    manifest = read_manifest(out)
    assert list(manifest.labels) == ["x", "y", "z"] and manifest.base.id == "some-org/roberta-tiny"


def test_labels_file_and_golden_examples(bases: dict[str, Path], fixture_builder: ModuleType, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    stock_adapter(fixture_builder, bases["bert"], tmp_path / "adapter")
    (tmp_path / "labels.txt").write_text("a\nb, with a comma\n\nc\n", encoding="utf-8")
    (tmp_path / "texts.txt").write_text("first golden text\nsecond one\n", encoding="utf-8")
    out = tmp_path / "imported"
    assert main(import_args(tmp_path / "adapter", out, bases["bert"], "--labels-file", str(tmp_path / "labels.txt"),
                            "--golden-examples", str(tmp_path / "texts.txt"), "--name", "renamed")) == 0
    manifest = read_manifest(out)
    assert list(manifest.labels) == ["a", "b, with a comma", "c"] and manifest.name == "renamed"
    golden = native.Model.load(out).verify_golden()
    assert golden["ok"]
    from lorakit.golden import read_golden

    assert read_golden(out).texts[:2] == ["first golden text", "second one"]


def embedding_adapter(base: Path, out: Path, targets: list[str]) -> None:
    torch.manual_seed(7)
    model = get_peft_model(AutoModel.from_pretrained(base), LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=4,
                                                                       lora_alpha=8, target_modules=targets))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.1)
    model.save_pretrained(out)


def test_embedding_adapter_imports(bases: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    embedding_adapter(bases["bert"], tmp_path / "adapter", ["query", "value"])
    out = tmp_path / "emb"
    assert main(import_args(tmp_path / "adapter", out, bases["bert"], "--pooling", "cls")) == 0
    manifest = read_manifest(out)
    assert manifest.task == "embedding" and manifest.pooling == "cls" and manifest.normalize is True
    assert_verify_passes(out, capsys)
    # "dense" also selects BERT's pooler, which feeds no embedding: refused with the fix, not half-applied.
    embedding_adapter(bases["bert"], tmp_path / "with_pooler", ["query", "dense"])
    assert_refused(import_args(tmp_path / "with_pooler", tmp_path / "emb2", bases["bert"]), tmp_path / "emb2",
                   capsys, "pooler.dense", "exclude_modules")


def fine_tuned_dir(base: Path, out: Path, labels: list[str] | None) -> Any:
    """A full fine-tune as transformers saves it: config.json (with id2label when named), weights, tokenizer."""
    torch.manual_seed(9)
    kwargs: dict[str, Any] = {"num_labels": 2}
    if labels:
        kwargs.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    model = AutoModelForSequenceClassification.from_pretrained(base, **kwargs)
    generator = torch.Generator().manual_seed(10)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return model.eval()


def test_fine_tuned_classifier_imports_as_a_full_model(bases: dict[str, Path], fixture_builder: ModuleType,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reference = fine_tuned_dir(bases["bert"], tmp_path / "hf", ["benign", "malicious"])
    out = tmp_path / "full"
    assert main(import_args(tmp_path / "hf", out, None)) == 0
    manifest = read_manifest(out)
    assert manifest.adapter is None and list(manifest.labels) == ["benign", "malicious"]
    assert not (out / "adapter_config.json").exists()
    assert_verify_passes(out, capsys)
    assert_native_equals_torch(out, reference, AutoTokenizer.from_pretrained(bases["bert"]),
                               list(fixture_builder.FIXTURE_TEXTS[:6]))


def test_generic_label_names_need_labels(bases: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    fine_tuned_dir(bases["bert"], tmp_path / "hf", None)  # id2label LABEL_0, LABEL_1
    assert_refused(import_args(tmp_path / "hf", tmp_path / "out", None), tmp_path / "out", capsys, "--labels")
    assert main(import_args(tmp_path / "hf", tmp_path / "out", None, "--labels", "no,yes")) == 0
    assert list(read_manifest(tmp_path / "out").labels) == ["no", "yes"]


def assert_refused(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """Exit 2, one line on stderr naming the problem, no output directory and no temporary left beside it."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("lorakit import: error: ")
    for word in words:
        assert word in err, err
    assert not out.exists()
    if out.parent.exists():
        assert not [p.name for p in out.parent.iterdir() if p.name.startswith(out.name)]
    return err


@pytest.mark.parametrize(("case", "lora", "words"), [
    ("dora", {"use_dora": True}, ("use_dora",)),
    ("bias", {"bias": "all"}, ("trained biases",)),
    ("layers", {"layers_to_transform": [0]}, ("layers_to_transform",)),  # refused by the native core
])
def test_unsupported_adapter_variants_are_refused(bases: dict[str, Path], fixture_builder: ModuleType,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str,
                                                  lora: dict[str, Any], words: tuple[str, ...]) -> None:
    stock_adapter(fixture_builder, bases["bert"], tmp_path / "adapter", **lora)
    out = tmp_path / "models" / case
    assert_refused(import_args(tmp_path / "adapter", out, bases["bert"], "--labels", "a,b,c"), out, capsys, *words)


def test_a_target_module_the_base_lacks_is_refused(bases: dict[str, Path], fixture_builder: ModuleType,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    adapter = tmp_path / "adapter"
    stock_adapter(fixture_builder, bases["bert"], adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["target_modules"] = [*config["target_modules"], "not_a_module"]
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert_refused(import_args(adapter, out, bases["bert"], "--labels", "a,b,c"), out, capsys, "not_a_module")
    # An adapter of another architecture targets modules this base has none of.
    stock_adapter(fixture_builder, bases["modernbert"], tmp_path / "modern", modules_to_save=["head"])
    assert_refused(import_args(tmp_path / "modern", out, bases["bert"], "--labels", "a,b,c"), out, capsys, "Wqkv")


def test_lora_shapes_of_another_base_are_refused_in_one_line(bases: dict[str, Path], fixture_builder: ModuleType,
                                                             tmp_path: Path) -> None:
    """Run as a real process: stderr must be exactly one line (no library warnings, no traceback)."""
    stock_adapter(fixture_builder, bases["bert"], tmp_path / "adapter")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lorakit.cli", *import_args(tmp_path / "adapter", out,
                                                                              bases["wide_bert"], "--labels", "a,b,c")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={"PYTHONPATH": str(ROOT / "python"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "shape" in lines[0] and "[4, 32]" in lines[0] and "[4, 48]" in lines[0], proc.stderr
    assert not out.exists()


def test_missing_head_weights_labels_and_bad_outputs_are_refused(bases: dict[str, Path], fixture_builder: ModuleType,
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    stock_adapter(fixture_builder, bases["modernbert"], tmp_path / "modern")  # head.* not saved
    out = tmp_path / "models" / "out"
    assert_refused(import_args(tmp_path / "modern", out, bases["modernbert"], "--labels", "a,b,c"), out, capsys,
                   "head.dense.weight", "modules_to_save")
    stock_adapter(fixture_builder, bases["bert"], tmp_path / "adapter")
    assert_refused(import_args(tmp_path / "adapter", out, bases["bert"]), out, capsys, "--labels")
    assert_refused(import_args(tmp_path / "adapter", out, bases["bert"], "--labels", "a,b"), out, capsys,
                   "2 labels", "3 outputs")
    assert_refused(import_args(tmp_path / "adapter", out, None, "--labels", "a,b,c"), out, capsys, "--base")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    assert main(import_args(tmp_path / "adapter", taken, bases["bert"], "--labels", "a,b,c")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a lorakit model directory" in err
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"] and (taken / "notes.txt").read_text() == "keep me"


def test_label_sources_in_order(tmp_path: Path) -> None:
    def config(name: str, labels: list[str]) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({"id2label": {str(i): label for i, label in enumerate(labels)}}))
        return path

    beside, base, generic = config("beside.json", ["p", "q"]), config("base.json", ["u", "v"]), \
        config("generic.json", ["LABEL_0", "LABEL_1"])
    missing = tmp_path / "absent.json"
    assert resolve_labels(None, 2, [(beside, True), (base, False)]) == ["p", "q"]
    assert resolve_labels(None, 2, [(missing, True), (generic, True), (base, False)]) == ["u", "v"]
    assert resolve_labels(["m", "n"], 2, [(beside, True)]) == ["m", "n"]
    with pytest.raises(ConfigError, match="3 outputs"):
        resolve_labels(None, 3, [(beside, True)])  # a config saved with the adapter must match its head
    with pytest.raises(ConfigError, match="--labels"):
        resolve_labels(None, 3, [(missing, True), (base, False)])  # the base's own head size is no evidence
    with pytest.raises(ConfigError, match="duplicate"):
        resolve_labels(["a", "a"], 2, [])


@pytest.mark.slow
def test_stock_adapter_on_the_real_minilm(fixture_builder: ModuleType, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from lorakit.models import minilm_path

    base = minilm_path()
    reference = stock_adapter(fixture_builder, base, tmp_path / "adapter", target_modules=["query", "value"])
    out = tmp_path / "minilm"
    assert main(import_args(tmp_path / "adapter", out, base, "--labels", ",".join(SEQ_LABELS))) == 0
    report = verify_model(out)
    assert report["ok"], report
    assert_native_equals_torch(out, reference, AutoTokenizer.from_pretrained(base),
                               list(fixture_builder.FIXTURE_TEXTS))
