"""Every architecture of the native registry, end to end: the registry drives training, tiny random models of each
family pass `lorakit verify` on every backend, `lorakit train --base` trains and exports each, and an architecture
the core cannot serve is refused before training."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from lorakit import native
from lorakit.cli import main
from lorakit.models import architecture, architectures, default_target_modules, head_modules
from lorakit.verify import verify_model

from arch_fixtures import ARCH_FIXTURES, build_arch_fixture
from conftest import write_labelled_csv

NATIVE_BACKENDS = {"native-merged", "native-runtime"}


@pytest.fixture(scope="session")
def arch_fixtures(tmp_path_factory: pytest.TempPathFactory, fixture_builder: ModuleType) -> dict[str, Path]:
    """tiny_<name>_lora directories of every architecture layout, built fresh for this run."""
    out = tmp_path_factory.mktemp("arch_fixtures")
    built: dict[str, Path] = {}
    for fixture in ARCH_FIXTURES:
        _, lora = build_arch_fixture(fixture, out, fixture_builder.FIXTURE_TEXTS, fixture_builder.TINY_MAX_SEQ_LEN,
                                     fixture_builder.save_base, fixture_builder.export_default_lora)
        built[fixture.name] = lora
    return built


@pytest.fixture(scope="session")
def arch_token_fixtures(arch_fixtures: dict[str, Path], fixture_builder: ModuleType) -> dict[str, Path]:
    """tiny_<name>_token_lora on each tiny base (the head modules a token model has: no DeBERTa pooler)."""
    built = {}
    for fixture in ARCH_FIXTURES:
        out = arch_fixtures[fixture.name].parent
        built[fixture.name] = fixture_builder.export_token_lora(out / f"tiny_{fixture.name}_base",
                                                                out / f"tiny_{fixture.name}_token_lora",
                                                                fixture.token_labels)
    return built


def test_registry_is_the_native_table() -> None:
    served = {entry["model_type"] for entry in native.architectures()}
    assert {"bert", "roberta", "modernbert", "deberta-v2"} <= served
    assert architecture("xlm-roberta") is architecture("roberta")
    assert set(architectures()) >= served
    assert default_target_modules("deberta-v2") == ["query_proj", "key_proj", "value_proj", "output.dense",
                                                    "intermediate.dense"]
    # DeBERTa's context pooler is not in pretrained checkpoints: the adapter must train and save it.
    assert head_modules("deberta-v2") == ["pooler", "classifier"]
    with pytest.raises(native.UnsupportedError, match="gpt2"):
        architecture("gpt2")


@pytest.mark.parametrize("name", [fixture.name for fixture in ARCH_FIXTURES])
def test_every_backend_matches_golden(arch_fixtures: dict[str, Path], name: str) -> None:
    report = verify_model(arch_fixtures[name])
    failed = {backend: result["worst"] for backend, result in report["backends"].items() if not result["ok"]}
    assert not failed, failed
    assert NATIVE_BACKENDS <= set(report["backends"]) and "torch-unmerged" in report["backends"]
    assert report["ok"] is True
    for backend in NATIVE_BACKENDS:
        assert report["backends"][backend]["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("name", [fixture.name for fixture in ARCH_FIXTURES])
def test_every_backend_matches_golden_token_classification(arch_token_fixtures: dict[str, Path], name: str) -> None:
    report = verify_model(arch_token_fixtures[name])
    failed = {backend: (result.get("worst"), result.get("entities_mismatch"))
              for backend, result in report["backends"].items() if not result["ok"]}
    assert not failed, failed
    assert NATIVE_BACKENDS | {"torch-unmerged", "torch-merged", "onnxruntime"} <= set(report["backends"])
    manifest = json.loads((arch_token_fixtures[name] / "lorakit.json").read_text())
    expected_head = ["classifier", "head"] if manifest["architecture"] == "modernbert" else ["classifier"]
    assert manifest["adapter"]["modules_to_save"] == expected_head


def test_manifest_records_architecture_and_pooling(arch_fixtures: dict[str, Path]) -> None:
    pooling = {name: json.loads((path / "lorakit.json").read_text())["pooling"]
               for name, path in arch_fixtures.items()}
    assert pooling["roberta"] == "cls" and pooling["modernbert_mean"] == "mean" and pooling["modernbert"] == "cls"
    arch = json.loads((arch_fixtures["debertav3"] / "lorakit.json").read_text())["architecture"]
    assert arch == "deberta-v2"


@pytest.mark.parametrize("name", ["roberta", "modernbert", "debertav3"])
def test_train_accepts_any_supported_base(arch_fixtures: dict[str, Path], tmp_path: Path, name: str) -> None:
    base = arch_fixtures[name].parent / f"tiny_{name}_base"
    data = write_labelled_csv(tmp_path / "data.csv", rows=45)
    out = tmp_path / "model"
    code = main(["train", "--data", str(data), "--text-column", "text", "--label-column", "label",
                 "--base", str(base), "--output", str(out), "--epochs", "1", "--max-seq-len", "16",
                 "--batch-size", "8"])
    assert code == 0
    manifest = json.loads((out / "lorakit.json").read_text())
    assert manifest["architecture"] == architecture(manifest["architecture"]).model_type
    assert sorted(manifest["adapter"]["target_modules"]) == sorted(default_target_modules(manifest["architecture"]))
    report = verify_model(out)
    assert report["ok"] is True, {k: v["worst"] for k, v in report["backends"].items() if not v["ok"]}


def test_train_refuses_an_architecture_no_runtime_serves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "gpt2_base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 8}))
    data = write_labelled_csv(tmp_path / "data.csv")
    out = tmp_path / "model"
    code = main(["train", "--data", str(data), "--text-column", "text", "--label-column", "label",
                 "--base", str(base), "--output", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "gpt2" in err and "supported" in err and "Traceback" not in err
    assert not out.exists()
