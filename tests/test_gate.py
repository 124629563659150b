"""--min-metric: a model below its gate is refused (exit 3) and nothing is written; a bad gate is refused first."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from lorakit import pipeline
from lorakit.cli import main
from lorakit.errors import LorakitError
from lorakit.gate import GATE_EXIT_CODE, GateError, enforce_gates, parse_gate, required

from conftest import write_labelled_csv, write_pairs_csv, write_token_jsonl

LABELS = ("negative", "neutral", "positive")


def tiny(data: Path, out: Path, base: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--base", str(base), "--output", str(out), "--epochs", "1",
            "--max-seq-len", "16", "--batch-size", "8", "--learning-rate", "5e-3", *extra]


def write_unlearnable_csv(path: Path, rows: int = 30) -> Path:
    """One text for every label: any model predicts one label for all rows, so test accuracy is 1/3."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(rows):
            writer.writerow(["the very same words", LABELS[i % 3]])
    return path


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse refuses a malformed option value
        return int(exc.code or 0)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if ".tmp-" in path.name or ".old-" in path.name)


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> dict[str, Any]:
    """Training below its gate onto an existing model directory (a copy of a fixture model)."""
    import contextlib
    import io
    import shutil

    work = tmp_path_factory.mktemp("refused")
    output = work / "served"
    shutil.copytree(fixtures_dir / "tiny_bert_lora_a", output)
    before = tree_digest(output)
    data = write_unlearnable_csv(work / "data.csv")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(tiny(data, output, fixtures_dir / "tiny_bert_base", "--min-metric", "accuracy=0.9",
                         "--checkpoint-dir", str(work / "run")))
    return {"code": code, "work": work, "output": output, "before": before, "run": work / "run",
            "err": err.getvalue()}


@pytest.mark.parametrize("spec", ["accuracy", "accuracy=", "accuracy=high", "accuracy=1.5", "accuracy=nan",
                                  "spearman=-2", "f1=0.5", "train.accuracy=0.5", "entity_f1=0.5",
                                  "spearman=0.1"])
def test_a_malformed_or_foreign_gate_is_refused_before_training(fixtures_dir: Path, tmp_path: Path, spec: str,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(pipeline, "train_and_export", no_training)
    data = write_labelled_csv(tmp_path / "data.csv", rows=30)
    output = tmp_path / "model"
    assert exit_code(tiny(data, output, fixtures_dir / "tiny_bert_base", "--min-metric", spec)) == 2
    assert "--min-metric" in capsys.readouterr().err
    assert not output.exists() and leftovers(tmp_path) == []


def test_a_model_below_its_gate_is_refused_with_exit_3(refused: dict[str, Any]) -> None:
    assert refused["code"] == GATE_EXIT_CODE == 3
    last = refused["err"].strip().splitlines()[-1]  # after the training progress: one line naming metric and gate
    assert last == (f"lorakit train: error: model refused by --min-metric: test.accuracy 0.3333 is below the gate "
                    f"0.9; nothing written to {refused['output']}; the training checkpoint stays in {refused['run']}")


def test_a_refused_model_leaves_an_existing_model_untouched(refused: dict[str, Any]) -> None:
    assert tree_digest(refused["output"]) == refused["before"]
    assert leftovers(refused["work"]) == []


def test_the_checkpoint_of_a_refused_model_stays(refused: dict[str, Any]) -> None:
    run = refused["run"]
    assert (run / "lorakit_run.json").is_file() and (run / "best").is_dir()
    assert json.loads((run / "report" / "metrics.json").read_text())["test"]["accuracy"] == pytest.approx(1 / 3)


def test_export_below_the_gate_writes_nothing(refused: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    output = refused["work"] / "fresh" / "nested" / "model"
    assert main(["export", str(refused["run"]), "--output", str(output), "--min-metric", "accuracy=0.5"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "test.accuracy 0.3333 is below the gate 0.5" in err and f"nothing written to {output}" in err
    assert not (refused["work"] / "fresh").exists()


def test_export_at_or_above_the_gate_writes_and_records_it(refused: dict[str, Any], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "model"
    assert main(["export", str(refused["run"]), "--output", str(output), "--min-metric", "accuracy=0.3",
                 "--min-metric", "validation.accuracy=0"]) == 0
    assert "gate passed: test.accuracy 0.3333 >= 0.3" in capsys.readouterr().out
    gate = json.loads((output / "lorakit.json").read_text())["metrics"]["gate"]
    assert gate == [{"metric": "test.accuracy", "minimum": 0.3, "value": pytest.approx(1 / 3)},
                    {"metric": "validation.accuracy", "minimum": 0.0, "value": pytest.approx(1 / 3)}]


def test_export_of_an_unevaluated_epoch_refuses_a_gate(refused: dict[str, Any], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    epoch = next((refused["run"] / "trainer").glob("checkpoint-*"))
    assert main(["export", str(epoch), "--output", str(tmp_path / "m"), "--min-metric", "accuracy=0"]) == 2
    assert "never evaluated" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_a_model_at_its_gate_is_written_with_the_gate_recorded(fixtures_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = write_labelled_csv(tmp_path / "data.csv", rows=30)
    output = tmp_path / "model"
    assert main(tiny(data, output, fixtures_dir / "tiny_bert_base", "--min-metric", "accuracy=0",
                     "--min-metric", "validation.macro_f1=0")) == 0
    out = capsys.readouterr().out
    metrics = json.loads((output / "lorakit.json").read_text())["metrics"]
    assert [entry["metric"] for entry in metrics["gate"]] == ["test.accuracy", "validation.macro_f1"]
    assert metrics["gate"][0]["value"] == metrics["test"]["accuracy"]
    assert "gate passed: test.accuracy" in out and "gate passed: validation.macro_f1" in out


def test_token_and_generative_pipelines_record_their_gate(fixtures_dir: Path, tmp_path: Path) -> None:
    data = write_token_jsonl(tmp_path / "pii.jsonl", rows=40)
    output = tmp_path / "token"
    assert main(tiny(data, output, fixtures_dir / "tiny_bert_base", "--task", "token-classification",
                     "--group-column", "template_id", "--min-metric", "entity_f1=0")) == 0
    gate = json.loads((output / "lorakit.json").read_text())["metrics"]["gate"]
    assert [entry["metric"] for entry in gate] == ["test.entity_f1"]
    groups = json.loads((output / "report" / "metrics.json").read_text())["test"]["groups"]
    assert groups and all({"n", "entity_f1", "precision", "recall"} <= set(row) for row in groups.values())


def test_generative_pipeline_records_its_gate(tmp_path: Path) -> None:
    from decoder_fixtures import build_tiny_decoder_base

    base = build_tiny_decoder_base("qwen3", tmp_path / "base")
    rows = [{"text": f"{word} {i}", "label": label, "group": f"g{i % 3}"} for i in range(6)
            for word, label in (("card declined", "card"), ("refund fee", "billing"), ("tell a joke", "other"))]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "model"
    assert main(["train", "--task", "generative", "--base", str(base), "--data", str(data), "--output", str(output),
                 "--epochs", "0.5", "--max-document-tokens", "8", "--group-column", "group",
                 "--min-metric", "accuracy=0"]) == 0
    gate = json.loads((output / "lorakit.json").read_text())["metrics"]["gate"]
    assert [entry["metric"] for entry in gate] == ["test.accuracy"]
    groups = json.loads((output / "report" / "metrics.json").read_text())["test"]["groups"]
    assert groups and all({"n", "accuracy", "macro_f1"} <= set(row) for row in groups.values())


def test_an_embedding_without_scores_fails_a_spearman_gate(fixtures_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Anchor-positive pairs have no spearman (n/a): a gate on it refuses rather than passes."""
    data = write_pairs_csv(tmp_path / "pairs.csv", rows=24)
    output = tmp_path / "model"
    assert main(tiny(data, output, fixtures_dir / "tiny_bert_base", "--task", "embedding",
                     "--min-metric", "spearman=-1")) == 3
    assert "test.spearman is n/a" in capsys.readouterr().err
    assert not output.exists() and leftovers(tmp_path) == []


def test_enforce_gates_names_every_failing_metric() -> None:
    metrics: dict[str, Any] = {"test": {"accuracy": 0.8, "macro_f1": 0.7}, "validation": {"accuracy": 0.95}}
    gates = [parse_gate("accuracy=0.9"), parse_gate("macro_f1=0.6"), parse_gate("validation.accuracy=0.99")]
    with required(gates), pytest.raises(GateError) as refused:
        enforce_gates(metrics)
    assert str(refused.value) == ("model refused by --min-metric: test.accuracy 0.8000 is below the gate 0.9; "
                                  "validation.accuracy 0.9500 is below the gate 0.99")
    assert "gate" not in metrics
    with required([parse_gate("test.accuracy=0.8")]):
        enforce_gates(metrics)  # at the gate passes
    assert metrics["gate"] == [{"metric": "test.accuracy", "minimum": 0.8, "value": 0.8}]
    with required([parse_gate("spearman=0")]), pytest.raises(LorakitError, match="no test.spearman"):
        enforce_gates({"test": {"accuracy": 1.0}})


def test_help_documents_the_gate_and_its_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    for verb in ("train", "export", "retrain"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--min-metric" in text and "exit codes" in text and "3 refused by --min-metric" in text
        if verb != "retrain":
            assert "TEST part" in text
