"""scripts/paired_test.py: the paired comparison of two models on one split (McNemar, bootstrap interval)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import paired_test
import pytest

from lorakit.cli import main as lorakit_main
from lorakit.errors import LorakitError

from conftest import write_labelled_csv


def test_mcnemar_counts_only_the_discordant_texts() -> None:
    assert paired_test.mcnemar_p(0, 10) == pytest.approx(2 * 0.5 ** 10)  # all ten go one way
    assert paired_test.mcnemar_p(5, 5) == pytest.approx(1.0)
    assert paired_test.mcnemar_p(0, 0) == 1.0
    assert paired_test.mcnemar_p(30, 10) < 0.01 < paired_test.mcnemar_p(12, 8)


def test_paired_summary_reports_the_gap_its_interval_and_the_discordant_pairs() -> None:
    a = [True] * 80 + [False] * 20
    b = [True] * 60 + [False] * 20 + [True] * 5 + [False] * 15
    summary = paired_test.paired_summary(a, b)
    assert (summary["n"], summary["only_a_right"], summary["only_b_right"]) == (100, 20, 5)
    assert summary["gap_points"] == pytest.approx(15.0)
    low, high = summary["gap_ci95"]
    assert low < 15.0 < high and low > 0  # 20 against 5 discordant: the interval stays above zero
    assert summary["mcnemar_p"] == pytest.approx(paired_test.mcnemar_p(20, 5)) and summary["mcnemar_p"] < 0.01
    with pytest.raises(LorakitError, match="equally long"):
        paired_test.paired_summary([True], [True, False])


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Path:
    work = tmp_path_factory.mktemp("paired")
    out = work / "model"
    assert lorakit_main(["train", "--data", str(write_labelled_csv(work / "d.csv")), "--base",
                         str(fixtures_dir / "tiny_bert_base"), "--output", str(out), "--epochs", "1",
                         "--max-seq-len", "16", "--batch-size", "8"]) == 0
    return out


def test_a_model_against_its_copy_has_no_gap(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = model.parent / "copy"
    shutil.copytree(model, copy)
    assert paired_test.main([str(model), str(copy), "--part", "validation", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    split = json.loads((model / "report" / "split.json").read_text("utf-8"))
    assert summary["n"] == len(split["validation"]) and summary["gap_points"] == 0
    assert summary["mcnemar_p"] == 1.0 and summary["part"] == "validation"


def test_models_from_different_splits_are_refused(model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    shutil.copytree(model, other)
    split = json.loads((other / "report" / "split.json").read_text("utf-8"))
    split["test"] = split["test"][1:]
    (other / "report" / "split.json").write_text(json.dumps(split), "utf-8")
    assert paired_test.main([str(model), str(other)]) == 2
    err = capsys.readouterr().err
    assert "not trained on the same data and split" in err and err.count("\n") == 1
