"""Sequence classification training: per-group test metrics with --group-column, and macro_f1 over the labels
present in a part (the rule `lorakit eval` uses), so the gate and eval read the same number."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import accuracy_score, f1_score

from lorakit.cli import main
from lorakit.evaluate import classification_metrics

from conftest import WORDS

LABELS = sorted(WORDS)


def write_pure_groups_csv(path: Path, per_group: int = 4, groups_per_label: int = 6, seed: int = 0) -> Path:
    """Every group holds one label, so a grouped split leaves some label out of the small test part."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "group"])
        for index in range(groups_per_label):
            for label in LABELS:
                for _ in range(per_group):
                    writer.writerow([" ".join(rng.choice(WORDS[label]) for _ in range(5)), label, f"{label}-{index}"])
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("grouped")
    data = write_pure_groups_csv(work / "data.csv")
    model = work / "model"
    assert main(["train", "--data", str(data), "--base", str(fixtures_dir / "tiny_bert_base"), "--output",
                 str(model), "--epochs", "3", "--max-seq-len", "16", "--batch-size", "8", "--learning-rate", "2e-2",
                 "--group-column", "group"]) == 0
    report = model / "report"
    split = json.loads((report / "split.json").read_text("utf-8"))
    rows = read_rows(data)
    test_rows = work / "test.csv"
    with open(test_rows, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label", "group"])
        writer.writeheader()
        writer.writerows(rows[i] for i in split["test"])
    return {"model": model, "split": split, "rows": [rows[i] for i in split["test"]], "test_rows": test_rows,
            "metrics": json.loads((report / "metrics.json").read_text("utf-8")),
            "manifest": json.loads((model / "lorakit.json").read_text("utf-8"))}


def predicted(capsys: pytest.CaptureFixture[str], model: Path, texts: list[str]) -> list[str]:
    capsys.readouterr()
    assert main(["predict", str(model), "--json", *[arg for text in texts for arg in ("--text", text)]]) == 0
    return [row["label"] for row in json.loads(capsys.readouterr().out)]


def test_training_reports_metrics_per_test_group(trained: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert trained["split"]["strategy"] == "grouped"
    test, rows = trained["metrics"]["test"], trained["rows"]
    assert sorted(test["groups"]) == sorted({row["group"] for row in rows})
    assert sum(group["n"] for group in test["groups"].values()) == test["n"] == len(rows)
    truth, labels = [row["label"] for row in rows], predicted(capsys, trained["model"], [row["text"] for row in rows])
    for group, metrics in test["groups"].items():
        members = [i for i, row in enumerate(rows) if row["group"] == group]
        assert metrics["n"] == len(members)
        assert metrics["accuracy"] == pytest.approx(accuracy_score([truth[i] for i in members],
                                                                   [labels[i] for i in members]))
        assert metrics["macro_f1"] == pytest.approx(f1_score([truth[i] for i in members],
                                                             [labels[i] for i in members], average="macro"))
    validation = trained["metrics"]["validation"]
    assert sum(group["n"] for group in validation["groups"].values()) == validation["n"]


def test_training_macro_f1_is_the_one_eval_reports(trained: dict[str, Any],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The grouped test part lacks a label: both average over the labels present, and agree per group too."""
    test, rows = trained["metrics"]["test"], trained["rows"]
    assert len({row["label"] for row in rows}) < len(LABELS)
    # averaging over every label of the model would give a different (smaller) number here
    assert len(test["macro_f1_labels"]) < len(LABELS) and test["macro_f1"] > 0
    assert set(test["per_class"]) == set(LABELS)  # every label is still listed
    truth, labels = [row["label"] for row in rows], predicted(capsys, trained["model"], [row["text"] for row in rows])
    assert test["macro_f1"] == pytest.approx(f1_score(truth, labels, average="macro"))
    assert test["macro_f1_labels"] == [label for label in trained["manifest"]["labels"] if label in {*truth, *labels}]
    capsys.readouterr()
    assert main(["eval", str(trained["model"]), "--data", str(trained["test_rows"]), "--group-column", "group",
                 "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["macro_f1"] == pytest.approx(test["macro_f1"], abs=1e-9)
    assert evaluated["macro_f1_labels"] == test["macro_f1_labels"]
    assert evaluated["accuracy"] == pytest.approx(test["accuracy"], abs=1e-9)
    assert evaluated["groups"].keys() == test["groups"].keys()
    for group, metrics in test["groups"].items():
        assert evaluated["groups"][group] == pytest.approx(metrics)


def test_macro_f1_leaves_out_labels_absent_from_the_part() -> None:
    """Labels 0 and 1 only (of three): macro_f1 is their mean, not a third of the sum."""
    metrics = classification_metrics([0, 0, 1, 1], [0, 0, 1, 0], ["a", "b", "c"])
    expected = f1_score([0, 0, 1, 1], [0, 0, 1, 0], average="macro")
    assert metrics["macro_f1"] == pytest.approx(expected) and metrics["macro_f1"] > 0.7
    assert metrics["macro_f1_labels"] == ["a", "b"]
    assert set(metrics["per_class"]) == {"a", "b", "c"} and metrics["per_class"]["c"]["support"] == 0
    assert len(metrics["confusion_matrix"]) == 3
    predicted_only = classification_metrics([0, 0], [0, 2], ["a", "b", "c"])  # a predicted label counts as present
    assert predicted_only["macro_f1_labels"] == ["a", "c"]
