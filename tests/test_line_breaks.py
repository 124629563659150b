"""Line breaks kept as a token for token classification: the tokenizer step, its round trip through tokenizer.json
into the Python reload and the native core, and the golden vectors that catch a model served without it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from lorakit import native
from lorakit.cli import main
from lorakit.loading import load_tokenizer
from lorakit.tokens import LINE_BREAK, keep_line_breaks
from lorakit.verify import verify_model

from conftest import write_token_jsonl

# Every template spans lines, so the golden texts do too; names and cities on their own lines are separate entities.
LETTERS = ["{name}\n{city}", "to:\n{name}\n  {city}\nthanks", "{name} lives in\n{city}", "nothing\nto see here",
           "{name}\n\n{city} welcomed {name2}"]
TEXTS = ["Ana Lopez\nOslo", "a\n\nb c\r\nd", "no breaks here"]


def train_args(data: Path, out: Path, base: Path, *extra: str) -> list[str]:
    return ["train", "--task", "token-classification", "--data", str(data), "--base", str(base), "--output",
            str(out), "--epochs", "2", "--max-seq-len", "32", "--batch-size", "8", "--learning-rate", "5e-3",
            "--group-column", "template_id", *extra]


@pytest.fixture(scope="module")
def letters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_token_jsonl(tmp_path_factory.mktemp("letters") / "letters.jsonl", rows=60, templates=LETTERS)


@pytest.fixture(scope="module")
def line_model(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path, letters: Path) -> Path:
    out = tmp_path_factory.mktemp("line_model") / "model"
    assert main(train_args(letters, out, fixtures_dir / "tiny_bert_base")) == 0
    return out


def test_each_line_break_becomes_one_token_at_its_own_offset(fixtures_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(fixtures_dir / "tiny_bert_base")
    text = "Ana Lopez\n12 Main St\r\nOslo"
    assert LINE_BREAK not in tokenizer.tokenize(text)
    assert keep_line_breaks(tokenizer) is True
    encoding = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    marked = [text[start:end] for (start, end), token in zip(encoding["offset_mapping"], tokens, strict=True)
              if token == LINE_BREAK]
    assert marked == ["\n", "\n"]  # offsets point into the original text; "\r" stays a space
    assert [token for token in tokens if token != LINE_BREAK] == AutoTokenizer.from_pretrained(
        fixtures_dir / "tiny_bert_base").tokenize(text)
    assert keep_line_breaks(tokenizer) is False and tokenizer.tokenize(text).count(LINE_BREAK) == 2  # not twice


def test_a_tokenizer_without_the_marker_is_left_unchanged() -> None:
    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    assert keep_line_breaks(tokenizer) is False
    assert isinstance(tokenizer.backend_tokenizer.normalizer, normalizers.Lowercase)
    assert tokenizer.tokenize("A\nb") == ["a", "b"]


def test_python_and_native_tokenize_line_breaks_alike(line_model: Path) -> None:
    written = json.loads((line_model / "tokenizer.json").read_text("utf-8"))["normalizer"]
    assert written["type"] == "Sequence" and written["normalizers"][0]["type"] == "Replace"
    python = load_tokenizer(line_model)(TEXTS, truncation=True, max_length=32, padding=True)["input_ids"]
    served = native.Model.load(line_model, threads=1).tokenize(TEXTS)["input_ids"]
    assert served.tolist() == python
    marker = load_tokenizer(line_model).convert_tokens_to_ids(LINE_BREAK)
    assert [ids.count(marker) for ids in python] == [1, 3, 0]
    for entities, text in zip(native.Model.load(line_model, threads=1).extract_entities(TEXTS).entities, TEXTS,
                              strict=True):
        assert all(text[entity["start"]:entity["end"]] == entity["text"] for entity in entities)


def test_the_line_break_model_verifies_and_fails_without_the_step(line_model: Path) -> None:
    assert verify_model(line_model)["ok"] is True
    stripped = line_model.parent / "stripped"  # a sibling: the relative base path still resolves
    shutil.copytree(line_model, stripped)
    path = stripped / "tokenizer.json"
    tokenizer = json.loads(path.read_text("utf-8"))
    tokenizer["normalizer"] = tokenizer["normalizer"]["normalizers"][1]  # the BERT normalizer alone
    path.write_text(json.dumps(tokenizer), "utf-8")
    manifest = json.loads((stripped / "lorakit.json").read_text("utf-8"))
    manifest["files"]["tokenizer.json"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (stripped / "lorakit.json").write_text(json.dumps(manifest, indent=2), "utf-8")  # only the numbers can tell
    report = native.Model.load(stripped).verify_golden()
    assert report["ok"] is False, report


def test_no_line_breaks_keeps_the_base_tokenizer(tmp_path: Path, fixtures_dir: Path, letters: Path) -> None:
    out = tmp_path / "model"
    assert main(train_args(letters, out, fixtures_dir / "tiny_bert_base", "--no-line-breaks")) == 0
    assert json.loads((out / "tokenizer.json").read_text("utf-8"))["normalizer"]["type"] == "BertNormalizer"
    assert LINE_BREAK not in load_tokenizer(out).tokenize(TEXTS[0])
    metrics = json.loads((out / "report" / "metrics.json").read_text("utf-8"))
    assert metrics["training"]["line_breaks"] is False


def test_line_breaks_is_refused_for_other_tasks(tmp_path: Path, fixtures_dir: Path, letters: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    args = train_args(letters, tmp_path / "out", fixtures_dir / "tiny_bert_base", "--no-line-breaks")
    args[args.index("token-classification")] = "sequence-classification"
    assert main(args) == 2
    assert "--line-breaks does not apply to --task sequence-classification" in capsys.readouterr().err
