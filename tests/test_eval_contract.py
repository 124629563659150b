"""`lorakit eval --json`: one JSON object per run with `task` and each task's headline metrics at the top level;
macro_f1 over the labels present in the file; per-group metrics with --group-column."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import accuracy_score, f1_score

from lorakit.cli import main
from lorakit.data import Split, data_origin

from conftest import write_labelled_csv, write_pairs_csv, write_token_jsonl

HEADLINE = {"sequence_classification": {"accuracy", "macro_f1"}, "token_classification": {"entity_f1"},
            "embedding": {"spearman"}, "generative_classification": {"accuracy", "macro_f1"}}


def eval_json(capsys: pytest.CaptureFixture[str], model: Path, *args: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["eval", str(model), *args, "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1  # one JSON object
    result: dict[str, Any] = json.loads(out)
    return result


def predicted_labels(capsys: pytest.CaptureFixture[str], model: Path, texts: list[str]) -> list[str]:
    capsys.readouterr()
    assert main(["predict", str(model), "--json", *[arg for text in texts for arg in ("--text", text)]]) == 0
    return [row["label"] for row in json.loads(capsys.readouterr().out)]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_sequence_eval_json_has_the_headline_metrics_and_groups(task_fixtures: Path, tmp_path: Path, backend: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    model = task_fixtures / "tiny_bert_lora_a"
    data = write_labelled_csv(tmp_path / "d.csv", rows=30, groups=4)
    result = eval_json(capsys, model, "--data", str(data), "--group-column", "group", "--backend", backend)
    assert result["task"] == "sequence_classification" and HEADLINE[result["task"]] <= set(result)
    rows = read_rows(data)
    truth, predicted = [row["label"] for row in rows], predicted_labels(capsys, model, [row["text"] for row in rows])
    assert result["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert result["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert set(result["groups"]) == {f"g{i}" for i in range(4)}
    for group, metrics in result["groups"].items():
        members = [i for i, row in enumerate(rows) if row["group"] == group]
        assert metrics["n"] == len(members)
        assert metrics["accuracy"] == pytest.approx(accuracy_score([truth[i] for i in members],
                                                                   [predicted[i] for i in members]))
        assert metrics["macro_f1"] == pytest.approx(f1_score([truth[i] for i in members],
                                                             [predicted[i] for i in members], average="macro"))


def test_macro_f1_averages_over_the_labels_present_in_the_file(task_fixtures: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Rows of one label, each predicted as it: perfect on what the file holds, so macro_f1 is 1 (averaging over
    the model's three labels would give 1/3)."""
    model = task_fixtures / "tiny_bert_lora_a"
    rows = read_rows(write_labelled_csv(tmp_path / "all.csv", rows=60))
    predicted = predicted_labels(capsys, model, [row["text"] for row in rows])
    label = max(set(predicted), key=predicted.count)
    kept = [row for row, guess in zip(rows, predicted, strict=True) if row["label"] == guess == label]
    assert kept, "the fixture predicts some row right"
    data = tmp_path / "one_label.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label", "group"])
        writer.writeheader()
        writer.writerows(kept)
    result = eval_json(capsys, model, "--data", str(data))
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0 and result["macro_f1_labels"] == [label]
    assert len(result["per_class"]) == 3  # the per-class table still lists every label of the model


def test_token_eval_json_has_entity_f1_and_groups(task_fixtures: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = write_token_jsonl(tmp_path / "d.jsonl", rows=18)
    model = task_fixtures / "tiny_bert_token_lora"
    whole = eval_json(capsys, model, "--data", str(data))
    result = eval_json(capsys, model, "--data", str(data), "--group-column", "template_id")
    assert result["task"] == "token_classification" and HEADLINE[result["task"]] <= set(result)
    assert {key: result[key] for key in ("n", "entity_f1", "precision", "recall")} == \
        {key: whole[key] for key in ("n", "entity_f1", "precision", "recall")} and "groups" not in whole
    assert set(result["groups"]) == {str(i) for i in range(6)}
    assert sum(group["n"] for group in result["groups"].values()) == result["n"] == 18
    torch_result = eval_json(capsys, model, "--data", str(data), "--group-column", "template_id", "--backend", "torch")
    assert torch_result["groups"].keys() == result["groups"].keys()
    for group, metrics in result["groups"].items():
        assert metrics["entity_f1"] == pytest.approx(torch_result["groups"][group]["entity_f1"], abs=1e-6)


def test_embedding_eval_json_has_spearman_and_refuses_groups(task_fixtures: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = write_pairs_csv(tmp_path / "p.csv", rows=12)
    model = task_fixtures / "tiny_bert_embed_lora"
    result = eval_json(capsys, model, "--data", str(data), "--score-column", "score")
    assert result["task"] == "embedding" and HEADLINE[result["task"]] <= set(result)
    assert isinstance(result["spearman"], float)
    assert main(["eval", str(model), "--data", str(data), "--score-column", "score", "--group-column", "x"]) == 2
    assert "embedding pairs have no groups" in capsys.readouterr().err


def test_embedding_eval_reads_the_score_column_the_model_was_trained_with(
        task_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_pairs_csv(tmp_path / "p.csv", rows=12)
    model = tmp_path / "model"
    shutil.copytree(task_fixtures / "tiny_bert_embed_lora", model)
    assert eval_json(capsys, model, "--data", str(data))["spearman"] is None  # no record: (anchor, positive) pairs
    (model / "report").mkdir(exist_ok=True)
    split = Split([0], [1], [2], "stratified", 42, origin=data_origin(data, {"text": "text", "score": "score"}))
    (model / "report" / "split.json").write_text(json.dumps(split.to_json()))
    named = eval_json(capsys, model, "--data", str(data), "--score-column", "score")
    assert eval_json(capsys, model, "--data", str(data)) == named and isinstance(named["spearman"], float)
    unscored = tmp_path / "unscored.csv"
    unscored.write_text("\n".join(",".join(line.split(",")[:2]) for line in data.read_text().splitlines()) + "\n")
    assert eval_json(capsys, model, "--data", str(unscored))["spearman"] is None  # the file has no score: pairs


def test_generative_eval_json_has_the_label_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from decoder_fixtures import build_tiny_decoder_base
    from generative_fixtures import GENERATIVE_LABELS, build_generative_fixture

    model = build_generative_fixture("qwen3", build_tiny_decoder_base("qwen3", tmp_path / "base"), tmp_path / "gen")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"{label} question {i}", "label": label, "group": f"g{i % 2}"}) + "\n"
                            for i, label in enumerate(GENERATIVE_LABELS * 2)))
    result = eval_json(capsys, model, "--data", str(data), "--group-column", "group")
    assert result["task"] == "generative_classification" and HEADLINE[result["task"]] <= set(result)
    assert result["n"] == 6 and set(result["groups"]) == {"g0", "g1"}
    assert sum(group["n"] for group in result["groups"].values()) == 6
