"""Token classification and embeddings end to end on the tiny base: train -> split/report -> export -> verify ->
eval -> predict, re-export, the verifier failing on tampered golden outputs, and options refused per task."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lorakit.cli import main
from lorakit.data import cross_split_duplicates, ids_digest, read_split
from lorakit.golden import read_golden
from lorakit.manifest import check_files, read_manifest
from lorakit.tokens import load_token_dataset
from lorakit.verify import format_report, verify_model

from conftest import write_pairs_csv, write_token_jsonl

TORCH_BACKENDS = {"torch-unmerged", "torch-merged", "onnxruntime"}


def tiny_train(task: str, data: Path, out: Path, base: Path, *extra: str) -> list[str]:
    return ["train", "--task", task, "--data", str(data), "--base", str(base), "--output", str(out),
            "--epochs", "2", "--max-seq-len", "32", "--batch-size", "8", "--learning-rate", "5e-3", *extra]


@pytest.fixture(scope="module")
def token_model(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("token")
    data = write_token_jsonl(work / "pii.jsonl", rows=90)
    out = work / "model"
    code = main(tiny_train("token-classification", data, out, fixtures_dir / "tiny_bert_base", "--group-column",
                           "template_id", "--checkpoint-dir", str(work / "run")))
    assert code == 0
    return {"data": data, "model": out, "run": work / "run"}


@pytest.fixture(scope="module")
def embedding_model(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("embedding")
    data = write_pairs_csv(work / "pairs.csv")
    out = work / "model"
    code = main(tiny_train("embedding", data, out, fixtures_dir / "tiny_bert_base", "--score-column", "score",
                           "--epochs", "1", "--pooling", "cls", "--checkpoint-dir", str(work / "run")))
    assert code == 0
    return {"data": data, "model": out, "run": work / "run"}


def test_token_training_writes_a_token_model_directory(token_model: dict[str, Path]) -> None:
    model = token_model["model"]
    manifest = read_manifest(model)
    assert manifest.task == "token_classification" and manifest.aggregation == "first"
    assert manifest.labels == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER") and manifest.pooling is None
    assert manifest.adapter is not None and manifest.adapter.modules_to_save == ("classifier",)
    config = json.loads((model / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert config["id2label"] == {str(i): label for i, label in enumerate(manifest.labels)}
    for name in ("split.json", "metrics.json", "history.json", "loss_curves.png"):
        assert f"report/{name}" in manifest.files
    assert check_files(model, manifest) == []
    golden = read_golden(model)
    assert golden.output == "token_logits" and golden.values.dim() == 3
    assert golden.values.shape[:2] == golden.input_ids.shape and golden.values.shape[2] == 5
    assert golden.entities is not None and len(golden.entities) == len(golden.texts)


def test_token_metrics_are_on_the_written_grouped_split(token_model: dict[str, Path]) -> None:
    model = token_model["model"]
    split = read_split(model / "report" / "split.json")
    metrics = json.loads((model / "report" / "metrics.json").read_text())
    assert split.strategy == "grouped"
    assert metrics["test"]["row_ids_sha256"] == ids_digest(split.test) and metrics["test"]["n"] == len(split.test)
    assert metrics["validation"]["row_ids_sha256"] == ids_digest(split.validation)
    assert metrics["training"]["train_examples"] == len(split.train)
    for part in ("validation", "test"):
        assert 0.0 <= metrics[part]["entity_f1"] <= 1.0 and set(metrics[part]["per_type"]) <= {"PER", "LOC"}
    dataset = load_token_dataset(token_model["data"], group_column="template_id")
    groups = {part: {dataset.examples[i].group for i in getattr(split, part)} for part in ("train", "test")}
    assert not groups["train"] & groups["test"]
    # Texts shared across parts are counted on the written split, as for sequence classification.
    recorded = metrics["data"]["cross_split_duplicates"]
    assert recorded == cross_split_duplicates(dataset.examples, split)


def test_token_model_verifies_on_every_backend(token_model: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(token_model["model"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and TORCH_BACKENDS <= set(report["backends"])
    for name in TORCH_BACKENDS:
        assert report["backends"][name]["entities_equal"] is True
        assert report["backends"][name]["argmax_equal"] is True


def test_token_eval_and_predict(token_model: dict[str, Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    model = token_model["model"]
    assert main(["eval", str(model), "--data", str(token_model["data"]), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 90 and 0.0 <= metrics["entity_f1"] <= 1.0
    assert {"precision", "recall", "per_type", "loss"} <= set(metrics)
    conll = tmp_path / "d.conll"
    conll.write_text("Ana\tB-PER\nLopez\tI-PER\nin\tO\nOslo\tB-LOC\n", "utf-8")
    assert main(["eval", str(model), "--data", str(conll)]) == 0
    assert capsys.readouterr().out.startswith("eval       n=1 ")
    text = "yesterday Ana Lopez flew to Oslo again"
    assert main(["predict", str(model), "--backend", "torch", "--json", "--mask", "--text", text]) == 0
    [result] = json.loads(capsys.readouterr().out)
    for entity in result["entities"]:
        assert set(entity) == {"type", "start", "end", "text", "score"}
        assert text[entity["start"]:entity["end"]] == entity["text"] and entity["type"] in ("PER", "LOC")
        assert f"[{entity['type']}]" in result["masked"]
    assert main(["predict", str(model), "--backend", "torch", "--mask", "--text", text]) == 0
    assert capsys.readouterr().out.strip() == result["masked"]


def test_token_reexport_from_the_checkpoint(token_model: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "again"
    assert main(["export", str(token_model["run"]), "--output", str(out), "--onnx"]) == 0
    first, second = read_golden(token_model["model"]), read_golden(out)
    assert read_manifest(out).task == "token_classification" and first.entities == second.entities
    assert torch.equal(first.values, second.values)
    assert verify_model(out)["ok"] is True


def test_embedding_training_export_verify_eval_predict(embedding_model: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    model = embedding_model["model"]
    manifest = read_manifest(model)
    assert manifest.task == "embedding" and manifest.labels == () and manifest.max_seq_len == 32
    assert manifest.pooling == "cls" and manifest.normalize is True
    assert json.loads((model / "config.json").read_text())["id2label"] == {}
    golden = read_golden(model)
    assert golden.output == "embeddings" and golden.values.shape == (len(golden.texts), 32)
    assert torch.allclose(golden.values.norm(dim=1), torch.ones(len(golden.texts)), atol=1e-5)
    report = verify_model(model)
    assert report["ok"] is True and TORCH_BACKENDS <= set(report["backends"])
    assert report["backends"]["torch-merged"]["argmax_equal"] is None  # embeddings have no argmax
    assert main(["eval", str(model), "--data", str(embedding_model["data"]), "--score-column", "score",
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 48 and -1.0 <= metrics["spearman"] <= 1.0
    assert main(["predict", str(model), "--backend", "torch", "--json", "--text", "good", "--text", "bad"]) == 0
    vectors = np.array([r["embedding"] for r in json.loads(capsys.readouterr().out)])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embedding_report_counts_pairs_shared_across_splits(embedding_model: dict[str, Path]) -> None:
    from lorakit.embedding import load_pairs
    from lorakit.pipeline_tasks import pair_rows

    model = embedding_model["model"]
    pairs = load_pairs(embedding_model["data"], "text", "text_pair", "score")
    split = read_split(model / "report" / "split.json")
    recorded = json.loads((model / "report" / "metrics.json").read_text())["data"]["cross_split_duplicates"]
    assert recorded == cross_split_duplicates(pair_rows(pairs), split)


def test_embedding_reexport_from_the_checkpoint(embedding_model: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "again"
    assert main(["export", str(embedding_model["run"]), "--output", str(out)]) == 0
    first, again = read_manifest(embedding_model["model"]), read_manifest(out)
    assert (again.task, again.pooling, again.normalize, again.labels) == ("embedding", "cls", True, ())
    assert again.files["adapter_model.safetensors"] == first.files["adapter_model.safetensors"]
    assert torch.equal(read_golden(out).values, read_golden(embedding_model["model"]).values)
    assert verify_model(out)["ok"] is True


@pytest.mark.parametrize("name", ["tiny_bert_token_lora", "tiny_bert_embed_lora"])
def test_task_fixtures_verify(task_fixtures: Path, name: str) -> None:
    report = verify_model(task_fixtures / name)
    assert report["ok"] is True, {k: v.get("worst") for k, v in report["backends"].items() if not v["ok"]}
    assert TORCH_BACKENDS <= set(report["backends"])


def test_the_token_fixture_has_entities_in_its_golden_file(task_fixtures: Path) -> None:
    golden = read_golden(task_fixtures / "tiny_bert_token_lora")
    assert golden.entities is not None
    found = [entity for row in golden.entities for entity in row]
    assert sum(1 for row in golden.entities if row) >= len(golden.texts) // 2
    assert {entity["type"] for entity in found} == {"PER", "LOC"}
    assert any(" " in entity["text"] for entity in found)  # entities over several words
    for text, row in zip(golden.texts, golden.entities, strict=True):
        for entity in row:
            assert text[entity["start"]:entity["end"]] == entity["text"] and 0 < entity["score"] <= 1


def copy_with_base(fixtures: Path, name: str, tmp_path: Path) -> Path:
    shutil.copytree(fixtures / "tiny_bert_base", tmp_path / "tiny_bert_base")
    return Path(shutil.copytree(fixtures / name, tmp_path / name))


def test_tampered_golden_entities_fail_every_backend(task_fixtures: Path, tmp_path: Path) -> None:
    model = copy_with_base(task_fixtures, "tiny_bert_token_lora", tmp_path)
    path = model / "golden.safetensors"
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    entities = json.loads(meta["entities"])
    row = next(i for i, r in enumerate(entities) if r)
    entities[row][0]["end"] += 1
    save_file(load_file(str(path)), str(path), metadata=meta | {"entities": json.dumps(entities)})
    report = verify_model(model)
    assert report["ok"] is False
    for name in ("torch-merged", "torch-unmerged", "onnxruntime"):
        result = report["backends"][name]
        assert result["ok"] is False and result["entities_equal"] is False
        assert result["max_abs_diff"] <= 1e-4  # the logits still agree: the entity check is what fails
    assert "entities: text" in format_report(report)


def test_tampered_golden_embeddings_fail(task_fixtures: Path, tmp_path: Path) -> None:
    model = copy_with_base(task_fixtures, "tiny_bert_embed_lora", tmp_path)
    path = model / "golden.safetensors"
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(path))
    tensors["embeddings"][2, 5] += 1e-3
    save_file(tensors, str(path), metadata=meta)
    report = verify_model(model)
    for name in ("torch-merged", "torch-unmerged", "onnxruntime"):
        result = report["backends"][name]
        assert result["ok"] is False and (result["worst"]["row"], result["worst"]["col"]) == (2, 5)


def test_missing_onnxruntime_is_reported_as_not_run(task_fixtures: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if it were not installed
    report = verify_model(task_fixtures / "tiny_bert_token_lora")
    assert report["backends"]["onnxruntime"]["ok"] is None
    assert "not installed" in report["backends"]["onnxruntime"]["not_run"]
    assert report["ok"] is True  # the backends that ran passed; the table says which did not run
    assert "onnxruntime" in format_report(report) and "not run" in format_report(report)


@pytest.mark.parametrize(("task", "option", "message"), [
    ("token-classification", ["--unsafe-labels", "PER"], "--unsafe-labels does not apply to --task token"),
    ("token-classification", ["--class-weighted"], "--class-weighted does not apply"),
    ("sequence-classification", ["--pooling", "cls"], "--pooling does not apply"),
    ("embedding", ["--group-column", "g"], "--group-column does not apply"),
    ("embedding", ["--no-probe-head"], "--no-probe-head does not apply"),
    ("generative", ["--full"], "--full does not apply"),
])
def test_options_of_other_tasks_are_refused(fixtures_dir: Path, tmp_path: Path, task: str, option: list[str],
                                            message: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_token_jsonl(tmp_path / "d.jsonl", rows=12)
    out = tmp_path / "out"
    assert main(tiny_train(task, data, out, fixtures_dir / "tiny_bert_base", *option)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not out.exists()


def test_train_help_shows_the_task_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{sequence-classification,token-classification,embedding,generative}" in text
    assert "(default: sequence-classification)" in text and "(default: mean)" in text
    assert "--normalize, --no-normalize" in text and "(default: True)" in text
