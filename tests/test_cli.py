"""CLI end to end on the tiny base: train -> split/report -> eval -> predict -> export -> verify; bad input."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from lorakit.cli import Formatter, build_parser, main
from lorakit.data import ids_digest, load_dataset, read_split, split_dataset
from lorakit.golden import read_golden
from lorakit.manifest import check_files, read_manifest

from conftest import ROOT, write_labelled_csv


def train_args(data: Path, out: Path, base: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--text-column", "text", "--label-column", "label", "--base", str(base),
            "--output", str(out), "--epochs", "2", "--max-seq-len", "16", "--batch-size", "8",
            "--learning-rate", "5e-3", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("trained")
    data = write_labelled_csv(work / "data.csv", rows=90, groups=9)
    out = work / "model"
    code = main(train_args(data, out, fixtures_dir / "tiny_bert_base", "--group-column", "group",
                           "--checkpoint-dir", str(work / "run"), "--class-weighted"))
    assert code == 0
    return {"data": data, "model": out, "run": work / "run", "work": work}


def test_train_writes_a_complete_model_directory(trained: dict[str, Path]) -> None:
    model = trained["model"]
    manifest = read_manifest(model)
    assert manifest.labels == ("negative", "neutral", "positive")
    assert manifest.adapter is not None and manifest.adapter.r == 8 and manifest.max_seq_len == 16
    for name in ("split.json", "metrics.json", "confusion_matrix.png", "loss_curves.png"):
        assert (model / "report" / name).is_file()
        assert f"report/{name}" in manifest.files
    assert check_files(model, manifest) == []
    training = manifest.metrics["training"]
    assert 0 < training["trainable_percent"] < 100 and training["train_seconds"] > 0


def test_evaluation_used_exactly_the_written_split(trained: dict[str, Path]) -> None:
    """Fails on the "split, recombine, split again" bug: evaluated rows must be the rows in split.json."""
    model = trained["model"]
    split = read_split(model / "report" / "split.json")
    metrics = json.loads((model / "report" / "metrics.json").read_text())
    assert metrics["validation"]["row_ids_sha256"] == ids_digest(split.validation)
    assert metrics["test"]["row_ids_sha256"] == ids_digest(split.test)
    assert metrics["validation"]["n"] == len(split.validation) and metrics["test"]["n"] == len(split.test)
    assert metrics["training"]["train_examples"] == len(split.train)
    assert not set(split.train) & (set(split.validation) | set(split.test))
    dataset = load_dataset(trained["data"], "text", "label", "group")
    again = split_dataset(dataset, seed=split.seed, grouped=True)
    assert again.to_json() == split.to_json()  # reloading gives identical ids
    groups = {part: {dataset.examples[i].group for i in getattr(split, part)} for part in ("train", "test")}
    assert not groups["train"] & groups["test"]


def test_verify_eval_and_predict_on_the_trained_model(trained: dict[str, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    model = trained["model"]
    assert main(["verify", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["eval", str(model), "--data", str(trained["data"]), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["macro_f1"] <= 1.0 and metrics["n"] == 90
    assert main(["predict", str(model), "--text", "great lovely superb", "--text", "", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["text"] for r in results] == ["great lovely superb", ""]
    for result in results:
        assert result["label"] in ("negative", "neutral", "positive")
        assert abs(sum(item["probability"] for item in result["top"]) - 1.0) < 1e-5


def test_predict_native_and_torch_agree(trained: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    texts = ["great lovely superb", "awful", "", "a neutral sentence about the weather " * 40]
    runs = {}
    for backend in ("native", "torch"):
        args = ["predict", str(trained["model"]), "--json", "--top-k", "3", "--backend", backend]
        assert main(args + [arg for text in texts for arg in ("--text", text)]) == 0
        runs[backend] = json.loads(capsys.readouterr().out)
    for native, reference in zip(runs["native"], runs["torch"], strict=True):
        assert native["label"] == reference["label"]
        for a, b in zip(native["top"], reference["top"], strict=True):
            assert a["label"] == b["label"] and abs(a["probability"] - b["probability"]) < 1e-5


def test_predict_on_a_corrupt_model_is_one_line_exit_2(trained: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16])
    assert main(["predict", str(model), "--text", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert "checksum mismatch" in err and "\n" not in err


def test_export_from_checkpoint_reproduces_the_model(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "reexported"
    assert main(["export", str(trained["run"]), "--output", str(out), "--onnx"]) == 0
    original, again = read_manifest(trained["model"]), read_manifest(out)
    assert again.labels == original.labels and again.adapter == original.adapter
    assert again.files["adapter_model.safetensors"] == original.files["adapter_model.safetensors"]
    first, second = read_golden(trained["model"]), read_golden(out)  # bytes differ: metadata order is free
    assert first.texts == second.texts and torch.equal(first.input_ids, second.input_ids)
    assert torch.equal(first.logits, second.logits)
    assert (out / "model.onnx").is_file()
    assert main(["verify", str(out)]) == 0


def test_full_fine_tuning(fixtures_dir: Path, tmp_path: Path) -> None:
    data = write_labelled_csv(tmp_path / "d.csv", rows=45)
    out = tmp_path / "full"
    args = train_args(data, out, fixtures_dir / "tiny_bert_base", "--full", "--epochs", "1")
    assert main(args) == 0
    manifest = read_manifest(out)
    assert manifest.adapter is None and manifest.metrics["training"]["trainable_percent"] == 100.0
    assert not (out / "adapter_config.json").exists()
    assert main(["verify", str(out)]) == 0


BAD_INPUTS = [
    ("missing.csv", b"text,category\nhello,a\n", "label column 'label' not found"),
    ("data.parquet", b"PAR1", "unknown file type"),
    ("empty.csv", b"", "empty"),
    ("few.csv", b"text,label\n" + b"".join(b"t%d,a\n" % i for i in range(6)) + b"x,b\ny,b\n",
     "label 'b' has 2 example"),
    ("latin1.csv", "text,label\ncafé,a\n".encode("latin-1"), "not UTF-8"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_no_output(fixtures_dir: Path, tmp_path: Path, name: str,
                                                    content: bytes, message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / name
    data.write_bytes(content)
    out = tmp_path / "out"
    assert main(train_args(data, out, fixtures_dir / "tiny_bert_base")) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("lorakit train: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_existing_foreign_output_is_refused_before_training(fixtures_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = write_labelled_csv(tmp_path / "d.csv")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(train_args(data, out, fixtures_dir / "tiny_bert_base")) == 2
    assert "not a lorakit model directory" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_max_seq_len_beyond_the_base_positions_is_refused(fixtures_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = write_labelled_csv(tmp_path / "d.csv")
    out = tmp_path / "out"
    assert main(train_args(data, out, fixtures_dir / "tiny_bert_base", "--max-seq-len", "128")) == 2
    assert "exceeds the 64 positions the base model accepts" in capsys.readouterr().err
    assert not out.exists()


def test_console_entry_reports_errors_on_one_line(tmp_path: Path) -> None:
    """A real process: stderr carries exactly one line and the exit status is 2."""
    (tmp_path / "d.tsv").write_bytes(b"\xff\xfe\x00bad")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    proc = subprocess.run([sys.executable, "-m", "lorakit.cli", "eval", str(tmp_path), "--data",
                           str(tmp_path / "d.tsv")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "error:" in proc.stderr


def test_unwritable_output_is_refused_before_training(fixtures_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = write_labelled_csv(tmp_path / "d.csv")
    assert main(train_args(data, data / "model", fixtures_dir / "tiny_bert_base")) == 2
    err = capsys.readouterr()
    assert "cannot create it" in err.err and "Not a directory" in err.err
    assert "trained in" not in err.out


def test_export_from_an_epoch_checkpoint(trained: dict[str, Path], tmp_path: Path) -> None:
    epochs = sorted((trained["run"] / "trainer").glob("checkpoint-*"))
    assert epochs, "the trainer kept no epoch checkpoints"
    out = tmp_path / "epoch"
    assert main(["export", str(epochs[0]), "--output", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest.metrics == {"checkpoint": epochs[0].name}  # never evaluated: no borrowed metrics
    assert main(["verify", str(out)]) == 0


def test_export_refuses_a_directory_that_is_not_a_checkpoint(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    assert "not a lorakit training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_version_names_the_package_and_the_native_core(capsys: pytest.CaptureFixture[str]) -> None:
    import lorakit
    import lorakit._native

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == (f"lorakit {lorakit.__version__} "
                                               f"(native core {lorakit._native.__version__})")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [verbs] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(verbs.choices)


def test_every_subcommand_help_shows_its_defaults() -> None:
    verbs = subcommands()
    assert {"train", "eval", "export", "predict", "verify"} <= set(verbs)
    for name, sub in verbs.items():
        assert issubclass(sub.formatter_class, Formatter), name
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if action.help and action.default not in (None, argparse.SUPPRESS):
                assert f"(default: {action.default})" in text, (name, action.dest)
    assert "(default: 3)" in " ".join(verbs["predict"].format_help().split())  # --top-k


def predict_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["predict", *args, "--json"]) == 0
    results: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return results


def test_predict_input_file_lines_jsonl_and_stdin_agree_with_text(
        fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    model = str(fixtures_dir / "tiny_bert_lora_a")
    texts = ["great lovely day", "", "awful – terrible ünïcode"]
    expected = predict_json(capsys, model, *[arg for text in texts for arg in ("--text", text)])
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(texts) + "\n", "utf-8")
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "id": i}) + "\n\n" for i, t in enumerate(texts)), "utf-8")
    assert predict_json(capsys, model, "--input", str(lines)) == expected
    assert predict_json(capsys, model, "--input", str(jsonl)) == expected
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\n".join(texts).encode())))
    assert predict_json(capsys, model, "--input", "-") == expected
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(jsonl.read_bytes())))
    assert predict_json(capsys, model, "--input", "-", "--input-format", "jsonl") == expected


def test_predict_input_beyond_one_native_batch_keeps_order(fixtures_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """More texts than the core's max_batch (1024): the CLI splits them, every result in input order."""
    texts = [f"text number {i} " + ("great " if i % 2 else "awful ") * (i % 5) for i in range(1100)]
    path = tmp_path / "many.txt"
    path.write_text("\n".join(texts), "utf-8")
    results = predict_json(capsys, str(fixtures_dir / "tiny_bert_lora_a"), "--input", str(path))
    assert [r["text"] for r in results] == texts
    sample = predict_json(capsys, str(fixtures_dir / "tiny_bert_lora_a"), "--text", texts[777])
    assert results[777]["label"] == sample[0]["label"]  # alone it is padded differently: equal within 1e-5
    for batched, alone in zip(results[777]["top"], sample[0]["top"], strict=True):
        assert batched["label"] == alone["label"] and batched["probability"] == pytest.approx(alone["probability"],
                                                                                              abs=1e-5)


def test_predict_json_for_every_task(task_fixtures: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("Ana Lopez lives in Oslo\nnothing here\n", "utf-8")
    labels = predict_json(capsys, str(task_fixtures / "tiny_bert_lora_a"), "--input", str(path))
    assert [r["text"] for r in labels] == ["Ana Lopez lives in Oslo", "nothing here"]
    for result in labels:  # an uncalibrated model without unsafe labels: no text needs review, no unsafe keys
        assert set(result) == {"text", "label", "top", "needs_review"} and len(result["top"]) == 3
        assert result["needs_review"] is False and result["label"] == result["top"][0]["label"]
    entities = predict_json(capsys, str(task_fixtures / "tiny_bert_token_lora"), "--input", str(path), "--mask")
    assert [r["text"] for r in entities] == ["Ana Lopez lives in Oslo", "nothing here"]
    for result in entities:
        assert set(result) == {"text", "entities", "masked"}
        for entity in result["entities"]:
            assert result["text"][entity["start"]:entity["end"]] == entity["text"]
    vectors = predict_json(capsys, str(task_fixtures / "tiny_bert_embed_lora"), "--input", str(path))
    assert [len(r["embedding"]) for r in vectors] == [32, 32]


BAD_TEXT_INPUTS = [
    ("empty.txt", b"", "no texts"),
    ("blank.jsonl", b"\n\n", "no texts"),
    ("latin1.txt", "café\n".encode("latin-1"), "not UTF-8 (byte 0xe9 at offset 3)"),
    ("nofield.jsonl", b'{"text": "ok"}\n{"body": "x"}\n', 'line 2: expected a JSON object with a string "text"'),
    ("broken.jsonl", b'{"text": \n', "line 1: not valid JSON"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_TEXT_INPUTS)
def test_predict_refuses_bad_input_on_one_line(fixtures_dir: Path, tmp_path: Path, name: str, content: bytes,
                                               message: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["predict", str(fixtures_dir / "tiny_bert_lora_a"), "--input", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert message in err and "\n" not in err and err.startswith("lorakit predict: error:")
    assert captured.out == ""


def test_predict_refuses_empty_stdin_and_text_with_input(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    model = str(fixtures_dir / "tiny_bert_lora_a")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert main(["predict", model, "--input", "-"]) == 2
    assert "<stdin>: no texts" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", model, "--input", "-", "--text", "hi"])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_eval_predicts_natively_by_default_and_agrees_with_torch(
        task_fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import write_pairs_csv, write_token_jsonl

    cases = [("tiny_bert_lora_a", write_labelled_csv(tmp_path / "d.csv", rows=30), ()),
             ("tiny_bert_token_lora", write_token_jsonl(tmp_path / "d.jsonl", rows=12), ()),
             ("tiny_bert_embed_lora", write_pairs_csv(tmp_path / "p.csv", rows=12), ("--score-column", "score"))]
    for name, data, extra in cases:
        args = ["eval", str(task_fixtures / name), "--data", str(data), *extra, "--json"]
        assert main([*args, "--backend", "torch"]) == 0
        reference = json.loads(capsys.readouterr().out)
        with monkeypatch.context() as patch:  # the default backend must not load the torch model
            import lorakit.loading

            def no_torch(*_: object, **__: object) -> None:
                raise AssertionError("eval loaded the torch model")

            patch.setattr(lorakit.loading, "load_merged", no_torch)
            assert main(args) == 0
        native = json.loads(capsys.readouterr().out)
        assert native.keys() == reference.keys(), name
        for key, value in reference.items():
            if isinstance(value, float):
                assert native[key] == pytest.approx(value, abs=1e-4), (name, key)
            else:
                assert native[key] == value, (name, key)


def test_verify_backends_chooses_rows(fixtures_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = str(fixtures_dir / "tiny_bert_lora_a")
    assert main(["verify", model, "--backends", "native", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["backends"]) == ["native-merged", "native-runtime"] and report["ok"] is True
    assert report["texts"] == len(read_golden(Path(model)).texts) and report["tolerance"] == 1e-4
    assert main(["verify", model, "--backends", "torch", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["backends"]) == ["torch-unmerged", "torch-merged"]
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", model, "--backends", "native,cuda"])
    assert exit_info.value.code == 2 and "choose from torch, onnx, native" in capsys.readouterr().err
