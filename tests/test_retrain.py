"""lorakit retrain: corrections merge into the stored training data, the model is replaced atomically, and any
failure (the gate included) leaves the old model as it was."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lorakit import retrain as retrain_module
from lorakit.cli import main
from lorakit.data import read_split

from conftest import write_labelled_csv

OTHER = {"negative": "positive", "positive": "neutral", "neutral": "negative"}


def tree_digest(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def write_corrections(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def siblings(model: Path) -> list[str]:
    """Everything next to the model directory but the model and its data: a retrain leaves nothing there."""
    return sorted(path.name for path in model.parent.iterdir() if path.name not in (model.name, "data.csv"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("retrain")
    data = write_labelled_csv(work / "data.csv", rows=45)
    model = work / "models" / "intent"
    model.parent.mkdir()
    assert main(["train", "--data", str(data), "--base", str(fixtures_dir / "tiny_bert_base"), "--output", str(model),
                 "--epochs", "1", "--max-seq-len", "16", "--batch-size", "8", "--learning-rate", "5e-3",
                 "--min-metric", "accuracy=0"]) == 0
    with open(data, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {"work": work, "data": data, "model": model, "rows": rows}


@pytest.fixture
def model_copy(trained: dict[str, Any], tmp_path: Path) -> Path:
    """A copy of the trained model (its data path stays recorded), so each test retrains its own."""
    copy = tmp_path / "models" / "intent"
    shutil.copytree(trained["model"], copy)
    return copy


def test_retrain_merges_corrections_and_replaces_the_model(trained: dict[str, Any], model_copy: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    rows, split = trained["rows"], read_split(model_copy / "report" / "split.json")
    train_row, test_row = rows[split.train[0]], rows[split.test[0]]
    corrections = write_corrections(model_copy.parent.parent / "fix.csv", [
        (train_row["text"], OTHER[train_row["label"]]),
        (f"  {test_row['text']} ", OTHER[test_row["label"]]),  # the same text after whitespace normalisation
        ("a text the data never had", "positive"),
    ])
    before = json.loads((model_copy / "lorakit.json").read_text())
    old_test = json.loads((model_copy / "report" / "metrics.json").read_text())["test"]
    assert main(["retrain", str(model_copy), "--corrections", str(corrections), "--keep-previous"]) == 0
    out = capsys.readouterr().out
    assert "replaced 2 row(s) (train/validation/test = 1/0/1), added 1 to train" in out
    after = json.loads((model_copy / "lorakit.json").read_text())
    assert after["created_at"] >= before["created_at"] and after["files"] != before["files"]
    assert after["name"] == "intent" and after["metrics"]["gate"][0]["metric"] == "test.accuracy"  # stored gate
    new_split = read_split(model_copy / "report" / "split.json")
    # the original rows keep their parts; the new text is the row after the data's last, in train
    assert new_split.validation == split.validation and new_split.test == split.test
    assert new_split.train == sorted(split.train + [len(rows)])
    assert new_split.origin["path"] == str(trained["data"]) and new_split.origin["corrections"]["rows"] == 3
    # the test row is evaluated with its corrected label: one less of the old label, one more of the new
    new_test = json.loads((model_copy / "report" / "metrics.json").read_text())["test"]
    support = {label: (old_test["per_class"][label]["support"], new_test["per_class"][label]["support"])
               for label in old_test["per_class"]}
    assert support[test_row["label"]][1] == support[test_row["label"]][0] - 1
    assert support[OTHER[test_row["label"]]][1] == support[OTHER[test_row["label"]]][0] + 1
    kept = [line for line in (model_copy / "report" / "corrections.jsonl").read_text().splitlines()]
    assert len(kept) == 3
    backups = [name for name in siblings(model_copy) if name.startswith(".intent.prev-")]
    assert len(backups) == 1 and siblings(model_copy) == backups  # hidden backup, no temporary left
    assert json.loads((model_copy.parent / backups[0] / "lorakit.json").read_text()) == before


def test_a_second_retrain_keeps_the_latest_correction_of_each_text(trained: dict[str, Any], model_copy: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    row = trained["rows"][read_split(model_copy / "report" / "split.json").train[0]]
    first = write_corrections(model_copy.parent.parent / "first.csv", [(row["text"], OTHER[row["label"]]),
                                                                       ("brand new words", "neutral")])
    assert main(["retrain", str(model_copy), "--corrections", str(first)]) == 0
    second = write_corrections(model_copy.parent.parent / "second.csv", [("brand new words", "mixed")])
    assert main(["retrain", str(model_copy), "--corrections", str(second)]) == 2
    assert "labels not in the model: mixed" in capsys.readouterr().err
    assert main(["retrain", str(model_copy), "--corrections", str(second), "--allow-new-labels"]) == 0
    kept = [json.loads(line) for line in (model_copy / "report" / "corrections.jsonl").read_text().splitlines()]
    assert kept == [{"text": row["text"], "label": OTHER[row["label"]]}, {"text": "brand new words", "label": "mixed"}]
    assert json.loads((model_copy / "lorakit.json").read_text())["labels"] == ["mixed", "negative", "neutral",
                                                                               "positive"]
    split = read_split(model_copy / "report" / "split.json")
    assert split.train[-1] == len(trained["rows"])  # the added row again, not a second copy
    assert siblings(model_copy) == []


def test_a_retrain_below_the_gate_leaves_the_old_model_intact(trained: dict[str, Any], model_copy: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Every test text relabelled wrongly (corrections stay in their part): test accuracy falls below 0.9."""
    split = read_split(model_copy / "report" / "split.json")
    rows = trained["rows"]
    corrections = write_corrections(model_copy.parent.parent / "wrong.csv",
                                    [(rows[i]["text"], OTHER[rows[i]["label"]]) for i in split.test])
    before = tree_digest(model_copy)
    assert main(["retrain", str(model_copy), "--corrections", str(corrections), "--min-metric", "accuracy=0.9"]) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the training progress: one line
    assert err.startswith("lorakit retrain: error: model refused by --min-metric: test.accuracy ")
    assert err.endswith(f"is below the gate 0.9; {model_copy} is left as it was")
    assert tree_digest(model_copy) == before and siblings(model_copy) == []


def test_corrections_that_cannot_merge_are_refused_before_training(trained: dict[str, Any], model_copy: Path,
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from lorakit import pipeline

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(pipeline, "train_and_export", no_training)
    wrong_column = tmp_path / "wrong.csv"
    wrong_column.write_text("sentence,label\nhello,positive\n")
    assert main(["retrain", str(model_copy), "--corrections", str(wrong_column)]) == 2
    assert "text column 'text' not found" in capsys.readouterr().err
    assert main(["retrain", str(model_copy), "--corrections", str(tmp_path / "missing.csv")]) == 2
    # a model directory whose recorded data changed since training
    split_file = model_copy / "report" / "split.json"
    split = json.loads(split_file.read_text())
    split["data"]["sha256"] = "0" * 64
    split_file.write_text(json.dumps(split))
    assert main(["retrain", str(model_copy), "--corrections", str(wrong_column)]) == 2
    assert "changed since intent was trained" in capsys.readouterr().err
    assert siblings(model_copy) == []


def test_a_model_without_a_training_run_is_refused(fixtures_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    corrections = write_corrections(tmp_path / "fix.csv", [("hello", "positive")])
    assert main(["retrain", str(fixtures_dir / "tiny_bert_lora_a"), "--corrections", str(corrections)]) == 2
    assert "no training config in report/metrics.json" in capsys.readouterr().err


@pytest.mark.parametrize("exchange", [True, False])
@pytest.mark.parametrize("keep", [True, False])
def test_replace_directory_swaps_in_one_step_or_two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    exchange: bool, keep: bool) -> None:
    if not exchange:
        monkeypatch.setattr(retrain_module, "exchange", lambda first, second: False)
    final, new = tmp_path / "model", tmp_path / "model.tmp-retrain-1"
    for folder, text in ((final, "old"), (new, "new")):
        folder.mkdir()
        (folder / "lorakit.json").write_text(text)
    backup = retrain_module.replace_directory(new, final, keep)
    assert (final / "lorakit.json").read_text() == "new" and not new.exists()
    if keep:
        assert backup is not None and backup.name.startswith(".model.prev-")
        assert (backup / "lorakit.json").read_text() == "old"
    else:
        assert backup is None
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["model"] + ([backup.name] if backup else []))


def test_replace_directory_that_fails_leaves_the_old_model(tmp_path: Path) -> None:
    final = tmp_path / "model"
    final.mkdir()
    (final / "lorakit.json").write_text("old")
    with pytest.raises(OSError):
        retrain_module.replace_directory(tmp_path / "absent.tmp-retrain-1", final, False)
    assert (final / "lorakit.json").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model"]
