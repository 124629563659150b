"""Native core (PyO3) on the new tasks: entities and token logits, embeddings, masking and unsafe verdicts equal
the Python references, merged and at runtime, alone and as adapters on one shared base."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from lorakit import native
from lorakit.cli import main
from lorakit.entities import mask_entities
from lorakit.golden import read_golden
from lorakit.inference import predict
from lorakit.manifest import read_manifest

from arch_fixtures import ARCH_FIXTURES, build_arch_fixture
from conftest import export_guard

TOKEN = "tiny_bert_token_lora"
EMBED = "tiny_bert_embed_lora"


@pytest.fixture(scope="module")
def roberta(tmp_path_factory: pytest.TempPathFactory, fixture_builder: ModuleType) -> Path:
    """tiny_roberta_base with its token and (cls, unnormalised) embedding fixtures."""
    out = tmp_path_factory.mktemp("roberta_tasks")
    fixture = next(f for f in ARCH_FIXTURES if f.name == "roberta")
    base, _ = build_arch_fixture(fixture, out, fixture_builder.FIXTURE_TEXTS, fixture_builder.TINY_MAX_SEQ_LEN,
                                 fixture_builder.save_base, fixture_builder.export_default_lora)
    fixture_builder.export_token_lora(base, out / "tiny_roberta_token_lora", fixture.token_labels)
    fixture_builder.export_embed_lora(base, out / "tiny_roberta_embed_lora", pooling="cls", normalize=False)
    return out


def model_dirs(task_fixtures: Path, roberta: Path, kind: str) -> list[Path]:
    return [task_fixtures / (TOKEN if kind == "token" else EMBED), roberta / f"tiny_roberta_{kind}_lora"]


def keys(entities: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(e["type"], e["start"], e["end"], e["text"]) for e in entities]


@pytest.mark.parametrize("merged", [True, False])
def test_entities_and_token_logits_equal_golden(task_fixtures: Path, roberta: Path, merged: bool) -> None:
    for model_dir in model_dirs(task_fixtures, roberta, "token"):
        golden = read_golden(model_dir)
        model = native.Model.load(model_dir, merged=merged, threads=2)
        assert model.task == "token_classification" and model.runtime_adapter is not merged
        result = model.extract_entities(golden.texts)
        assert result.labels == list(read_manifest(model_dir).labels)
        assert golden.entities is not None
        for i, (want, got) in enumerate(zip(golden.entities, result.entities, strict=True)):
            assert keys(got) == keys(want), (model_dir.name, i, golden.texts[i])
            for a, b in zip(want, got, strict=True):
                assert abs(float(a["score"]) - float(b["score"])) <= 1e-4
        lengths = golden.attention_mask.sum(dim=1).tolist()
        for i, logits in enumerate(result.token_logits):
            assert logits.dtype == np.float32 and logits.shape == (lengths[i], len(result.labels))
            np.testing.assert_allclose(logits, golden.values[i, : lengths[i]].numpy(), atol=1e-4, rtol=0)
        report = model.verify_golden()
        assert report["ok"] is True, (model_dir.name, report)


@pytest.mark.parametrize("merged", [True, False])
def test_embeddings_equal_golden(task_fixtures: Path, roberta: Path, merged: bool) -> None:
    for model_dir in model_dirs(task_fixtures, roberta, "embed"):
        golden = read_golden(model_dir)
        manifest = read_manifest(model_dir)
        model = native.Model.load(model_dir, merged=merged, threads=2)
        vectors = model.embed(golden.texts)
        assert vectors.dtype == np.float32 and vectors.shape == tuple(golden.values.shape)
        np.testing.assert_allclose(vectors, golden.values.numpy(), atol=1e-4, rtol=0)
        norms = np.linalg.norm(vectors, axis=1)
        assert np.allclose(norms, 1.0, atol=1e-5) is bool(manifest.normalize)
        assert model.verify_golden()["ok"] is True


def test_native_masking_equals_python(task_fixtures: Path) -> None:
    golden = read_golden(task_fixtures / TOKEN)
    assert golden.entities is not None
    for text, entities in zip(golden.texts, golden.entities, strict=True):
        assert native.mask_entities(text, entities) == mask_entities(text, entities)
    text = "Zoë Müller lives in Köln."
    entities = [{"type": "PER", "start": 0, "end": 10, "text": "Zoë Müller", "score": 0.9},
                {"type": "LOC", "start": 20, "end": 24, "text": "Köln", "score": 0.8}]
    assert native.mask_entities(text, entities) == "[PER] lives in [LOC]."


def test_one_base_serves_every_task(task_fixtures: Path) -> None:
    base = native.Model.load_base(task_fixtures / "tiny_bert_base", threads=2)
    base.add_adapter("pii", task_fixtures / TOKEN)
    base.add_adapter("embed", task_fixtures / EMBED)
    base.add_adapter("intent", task_fixtures / "tiny_bert_lora_a")
    texts = read_golden(task_fixtures / TOKEN).texts
    alone = native.Model.load(task_fixtures / TOKEN, merged=False, threads=2).extract_entities(texts)
    shared = base.extract_entities(texts, adapter="pii")
    assert [keys(row) for row in shared.entities] == [keys(row) for row in alone.entities]
    embedded = base.embed(texts, adapter="embed")
    expected = native.Model.load(task_fixtures / EMBED, merged=False, threads=2).embed(texts)
    np.testing.assert_allclose(embedded, expected, atol=1e-5, rtol=0)
    assert base.classify(texts, adapter="intent").logits.shape == (len(texts), 3)
    for adapter in ("pii", "embed", "intent"):
        assert base.verify_golden(adapter=adapter)["ok"] is True


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path, fixture_builder: ModuleType) -> Path:
    return export_guard(fixture_builder, fixtures_dir / "tiny_bert_base", tmp_path_factory.mktemp("guard") / "guard")


def test_unsafe_verdicts_native_equal_torch(guard: Path, fixtures_dir: Path) -> None:
    texts = read_golden(guard).texts
    result = native.Model.load(guard, threads=2).classify(texts)
    reference = predict(guard, texts, "torch")
    assert result.unsafe == [r["unsafe"] for r in reference]
    assert result.unsafe_scores is not None
    np.testing.assert_allclose(result.unsafe_scores, [r["unsafe_score"] for r in reference], atol=1e-5)
    plain = native.Model.load(fixtures_dir / "tiny_bert_lora_a", threads=2).classify(["hello"])
    assert plain.unsafe is None and plain.unsafe_scores is None


def test_cli_predict_native_equals_torch(task_fixtures: Path, guard: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {TOKEN: ["--mask"], EMBED: [], "guard": []}
    for name, extra in cases.items():
        model_dir = guard if name == "guard" else task_fixtures / name
        texts = read_golden(model_dir).texts[:6]
        runs = {}
        for backend in ("native", "torch"):
            args = ["predict", str(model_dir), "--json", "--backend", backend, *extra]
            assert main(args + [a for text in texts for a in ("--text", text)]) == 0
            runs[backend] = json.loads(capsys.readouterr().out)
        for a, b in zip(runs["native"], runs["torch"], strict=True):
            if "entities" in a:
                assert keys(a["entities"]) == keys(b["entities"]) and a["masked"] == b["masked"]
            elif "embedding" in a:
                np.testing.assert_allclose(a["embedding"], b["embedding"], atol=1e-4)
            else:
                assert a["label"] == b["label"] and a["unsafe"] == b["unsafe"]
                assert abs(a["unsafe_score"] - b["unsafe_score"]) < 1e-5
