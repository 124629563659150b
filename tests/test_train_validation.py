"""`lorakit train` refuses useless settings before it starts (one line, exit 2, nothing written), and its data
loading copes with huge CSV fields, warns about texts shared between splits and refuses mixed label types."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lorakit.cli import main
from lorakit.data import Dataset, Example, Split, cross_split_duplicates, load_dataset

from conftest import WORDS, write_labelled_csv

HUGE = 140_000  # over csv's default field limit of 131,072 characters


def train_argv(data: Path, out: Path, base: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--base", str(base), "--output", str(out), "--epochs", "1",
            "--max-seq-len", "16", "--batch-size", "8", "--checkpoint-dir", str(out.parent / "run"), *extra]


def assert_refused_nothing_written(code: int, err: str, work: Path, *kept: str) -> str:
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("lorakit train: error: ") and "Traceback" not in err, err
    assert sorted(p.name for p in work.iterdir()) == sorted(kept), "a refused run wrote files"
    return lines[0].removeprefix("lorakit train: error: ")


BAD_OPTIONS = {
    "epochs_zero": (["--epochs", "0"], "--epochs must be in (0, inf)"),
    "epochs_negative": (["--epochs=-2"], "--epochs must be in (0, inf)"),
    "epochs_nan": (["--epochs", "nan"], "--epochs must be a finite number"),
    "epochs_inf": (["--epochs", "inf"], "--epochs must be a finite number"),
    "learning_rate_zero": (["--learning-rate", "0"], "--learning-rate must be in (0, inf)"),
    "learning_rate_negative": (["--learning-rate=-1e-3"], "--learning-rate must be in (0, inf)"),
    "learning_rate_nan": (["--learning-rate", "nan"], "--learning-rate must be a finite number"),
    "batch_size_zero": (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
    "gradient_accumulation_zero": (["--gradient-accumulation", "0"], "--gradient-accumulation must be an integer"),
    "r_zero": (["--r", "0"], "--r must be an integer >= 1"),
    "lora_dropout_nan": (["--lora-dropout", "nan"], "--lora-dropout must be a finite number"),
    "lora_dropout_one": (["--lora-dropout", "1"], "--lora-dropout must be in [0, 1)"),
    "warmup_nan": (["--warmup", "nan"], "--warmup must be a finite number"),
    "weight_decay_nan": (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
    "max_grad_norm_zero": (["--max-grad-norm", "0"], "--max-grad-norm must be in (0, inf)"),
    "validation_fraction_nan": (["--validation-fraction", "nan"], "--validation-fraction must be a finite number"),
    "max_seq_len_only_specials": (["--max-seq-len", "2"], "--max-seq-len 2 leaves no room for text"),
    "max_seq_len_zero": (["--max-seq-len", "0"], "--max-seq-len 0 leaves no room for text"),
    "max_seq_len_beyond_positions": (["--max-seq-len", "65"],
                                     "--max-seq-len 65 exceeds the 64 positions the base model accepts"),
    "target_modules_empty_name": (["--target-modules", "query,,value"], "--target-modules: empty module name"),
    "target_modules_only_commas": (["--target-modules", ","], "--target-modules: empty module name"),
    "target_modules_blank": (["--target-modules", " "], "--target-modules: empty module name"),
    "target_modules_unknown": (["--target-modules", "query,frobnicator"],
                               "--target-modules frobnicator: no such module in the base"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS, ids=list(BAD_OPTIONS))
def test_a_useless_option_is_refused_before_training(fixtures_dir: Path, tmp_path: Path, case: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = write_labelled_csv(tmp_path / "data.csv")
    extra, message = BAD_OPTIONS[case]
    code = main(train_argv(data, tmp_path / "model", fixtures_dir / "tiny_bert_base", *extra))  # the last one counts
    assert message in assert_refused_nothing_written(code, capsys.readouterr().err, tmp_path, "data.csv")


def test_a_model_directory_as_base_names_its_base(fixtures_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = write_labelled_csv(tmp_path / "data.csv")
    code = main(train_argv(data, tmp_path / "model", fixtures_dir / "tiny_bert_lora_a"))
    message = assert_refused_nothing_written(code, capsys.readouterr().err, tmp_path, "data.csv")
    assert "is a lorakit model directory, not a base model; pass the base it was trained on" in message
    assert "../tiny_bert_base" in message


def write_jsonl(path: Path, labels: list[object]) -> Path:
    words = [w for group in WORDS.values() for w in group]
    rows = [{"text": f"{words[i % len(words)]} row {i}", "label": label} for i, label in enumerate(labels)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")
    return path


def test_mixed_label_types_are_refused_in_train_and_eval(fixtures_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", [1, 2, 3, "1", 2, 3] * 4)
    code = main(train_argv(data, tmp_path / "model", fixtures_dir / "tiny_bert_base"))
    message = assert_refused_nothing_written(code, capsys.readouterr().err, tmp_path, "data.jsonl")
    assert "labels mix JSON types: number (record 0: 1), string (record 3: '1')" in message
    code = main(["eval", str(fixtures_dir / "tiny_bert_full"), "--data", str(data)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "labels mix JSON types" in err


def test_non_finite_and_structured_labels_are_refused(tmp_path: Path) -> None:
    from lorakit.errors import DataError

    (tmp_path / "nan.json").write_text('[{"text": "a", "label": NaN}, {"text": "b", "label": 1}]', "utf-8")
    with pytest.raises(DataError, match="label nan is not a finite number"):
        load_dataset(tmp_path / "nan.json", "text", "label")
    with pytest.raises(DataError, match="label 'label' is a list"):
        load_dataset(write_jsonl(tmp_path / "list.jsonl", [["a"], ["b"]]), "text", "label")
    assert load_dataset(write_jsonl(tmp_path / "ints.jsonl", [1, 2, 1, 2]), "text", "label").labels == ["1", "2"]


def test_cross_split_duplicates_are_counted_after_whitespace_normalisation() -> None:
    texts = ["same  text", "same text\n", "other", " other ", "unique a", "unique b"]
    dataset = Dataset([Example(i, text, "x") for i, text in enumerate(texts)], ["x", "y"])
    split = Split(train=[0, 2, 4], validation=[1], test=[3, 5], strategy="stratified", seed=0)
    found = cross_split_duplicates(dataset.examples, split)
    assert found["count"] == 2 and found["rows"] == 4
    assert found["examples"] == [{"text": "same text", "parts": ["train", "validation"]},
                                 {"text": "other", "parts": ["train", "test"]}]
    alone = Split(train=[0, 1, 2, 3], validation=[4], test=[5], strategy="stratified", seed=0)
    assert cross_split_duplicates(dataset.examples, alone)["count"] == 0


def write_duplicated_csv(path: Path) -> Path:
    """60 rows, a text over the csv field limit, and one text repeated (with odd spacing) in every label's rows."""
    rows = list(csv.reader(write_labelled_csv(path).read_text("utf-8").splitlines()))
    header, body = rows[0], rows[1:]
    body[0][0] = "word " * (HUGE // 5)
    for i in range(3, 60, 6):
        body[i][0] = "  the  repeated   text " if i % 2 else "the repeated text"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *body])
    return path


def test_train_reads_huge_fields_and_reports_shared_texts(fixtures_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = write_duplicated_csv(tmp_path / "data.csv")
    assert max(len(line) for line in data.read_text("utf-8").splitlines()) > 131_072
    out = tmp_path / "model"
    assert main(train_argv(data, out, fixtures_dir / "tiny_bert_base")) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "1 text(s) (10 rows) appear in more than one of train/validation/test" in warning[0]
    assert "'the repeated text' in train+" in warning[0]
    recorded = json.loads((out / "report" / "metrics.json").read_text("utf-8"))["data"]["cross_split_duplicates"]
    assert recorded["count"] == 1 and recorded["rows"] == 10 and recorded["examples"][0]["text"] == "the repeated text"
    code = main(["eval", str(out), "--data", str(data), "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["n"] == 60
