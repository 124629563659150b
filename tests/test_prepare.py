"""`lorakit prepare`: real PDF, DOCX, HTML and text files in label folders become the JSONL the trainer reads."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

import docx
import pytest
from pypdf import PdfWriter

from lorakit.cli import build_parser, main
from lorakit.data import load_dataset, split_dataset
from lorakit.extract import DOCS_INSTALL, MODULES
from lorakit.prepare import Settings, progress_for, read_sidecar, sidecar_path, spans

from conftest import ROOT

PDF_PAGES = ["Invoice number 42\nTotal due: 100 EUR", "Second page (paid)"]
PDF_TEXT = "Invoice number 42\nTotal due: 100 EUR\n\nSecond page (paid)"
DOCX_TEXT = "Quarterly invoice\nDear customer, please pay.\nItem and code Price\nWidget W-1 9.99 net 8.39\nThank you."
HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Letter</title>
<style>p { color: red }</style><script>var secret = "script text";</script></head>
<body><h1>Dear Ana</h1><p>Your <b>order</b> shipped.<br>Tracking follows.</p><noscript>enable scripts</noscript>
<div hidden>hidden text</div><!-- a comment --><template>template text</template>
<table><tr><td>qty</td><td>2</td></tr></table><p>Café &amp; more</p></body></html>"""
HTML_TEXT = "Letter\n\nDear Ana\n\nYour order shipped.\nTracking follows.\n\nqty 2\n\nCafé & more"


def pdf_bytes(pages: list[str]) -> bytes:
    """A minimal valid PDF: one Helvetica text stream per page, objects indexed by a correct xref table."""
    count = len(pages)
    font = 3 + 2 * count
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode()]
    for i, page in enumerate(pages):
        shown = " ".join(f"({line}) Tj T*" for line in page.split("\n"))
        stream = f"BT /F1 12 Tf 72 720 Td 14 TL {shown} ET".encode("latin-1")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {font} "
                       f"0 R >> >> /Contents {4 + 2 * i} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def encrypted_pdf(path: Path, plain: Path, user_password: str) -> Path:
    writer = PdfWriter(clone_from=plain)
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    writer.write(path)
    return path


def write_docx(path: Path) -> Path:
    """Heading, paragraphs and a table with a merged cell and a table nested in a cell."""
    document = docx.Document()
    document.add_heading("Quarterly invoice", level=1)
    document.add_paragraph("Dear customer,   please   pay.")
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 1)).text = "Item and code"
    table.cell(0, 2).text = "Price"
    for column, text in enumerate(["Widget", "W-1", "9.99"]):
        table.cell(1, column).text = text
    nested = table.cell(1, 2).add_table(rows=1, cols=2)
    nested.cell(0, 0).text, nested.cell(0, 1).text = "net", "8.39"
    document.add_paragraph("Thank you.")
    document.save(str(path))
    return path


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, "utf-8")
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Two labels with every format, nested, hidden and broken files, an empty label folder, a stray file."""
    root = tmp_path / "docs"
    invoice, letter = root / "invoice", root / "letter"
    plain = write(invoice / "a.pdf", pdf_bytes(PDF_PAGES))
    write_docx(invoice / "b.docx")
    write(invoice / "2024" / "q1.txt", "Nested   invoice\r\n\r\n\r\ntext")
    write(invoice / ".notes.txt", "hidden")
    write(invoice / "~$b.docx", b"\x00lock")
    write(invoice / ".cache" / "c.txt", "hidden folder")
    write(letter / "page.html", HTML)
    write(letter / "notes.md", "\ufeff# Notes\n\nÜber alles".encode())
    write(letter / "legacy.txt", "caf\xe9 au lait".encode("latin-1"))
    write(letter / "broken.pdf", b"%PDF-1.4\n1 0 obj garbage")
    write(letter / "broken.docx", b"PK not really a zip")
    encrypted_pdf(letter / "secret.pdf", plain, "secret")
    encrypted_pdf(letter / "open.pdf", plain, "")  # an owner password only: readable
    write(letter / "empty.txt", b"")
    write(letter / "blank.html", "<html><script>only()</script><p>   </p></html>")
    write(letter / "data.xyz", "?")
    write(letter / "old.doc", "?")
    write(root / "README.txt", "not in a label folder")
    write(root / "unused" / ".DS_Store", b"\x00")
    write(root / ".git" / "HEAD", "ref")
    (letter / "linked").symlink_to(invoice, target_is_directory=True)
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["prepare", *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_every_format_gives_its_text_with_the_folder_as_label(corpus: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "docs.jsonl"
    code, err = run(capsys, "--docs", str(corpus), "--output", str(out))
    assert code == 0, err
    rows = read_rows(out)
    by_source = {row["source"]: row for row in rows}
    assert [row["source"] for row in rows] == ["invoice/2024/q1.txt", "invoice/a.pdf", "invoice/b.docx",
                                               "letter/notes.md", "letter/open.pdf", "letter/page.html"]
    assert by_source["invoice/a.pdf"]["text"] == PDF_TEXT
    assert by_source["letter/open.pdf"]["text"] == PDF_TEXT
    assert by_source["invoice/b.docx"]["text"] == DOCX_TEXT
    assert by_source["letter/page.html"]["text"] == HTML_TEXT
    assert by_source["letter/notes.md"]["text"] == "# Notes\n\nÜber alles"  # BOM dropped
    assert by_source["invoice/2024/q1.txt"] == {"text": "Nested invoice\n\ntext", "label": "invoice",
                                                "source": "invoice/2024/q1.txt", "chars": 20, "truncated": False}
    assert {row["label"] for row in rows} == {"invoice", "letter"}
    for hidden in ("hidden", "script text", "enable scripts", "template text", "a comment", "color"):
        assert not any(hidden in row["text"] for row in rows), hidden


def test_files_not_read_are_reported_on_stderr_in_the_report_and_the_sidecar(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, report = tmp_path / "docs.jsonl", tmp_path / "report.json"
    code, err = run(capsys, "--docs", str(corpus), "--output", str(out), "--report", str(report))
    assert code == 0
    expected = {"README.txt": "outside-label", "letter/blank.html": "no-text", "letter/broken.docx": "corrupt",
                "letter/broken.pdf": "corrupt", "letter/linked": "unsupported",
                "letter/data.xyz": "unsupported", "letter/empty.txt": "empty", "letter/legacy.txt": "encoding",
                "letter/old.doc": "unsupported", "letter/secret.pdf": "encrypted"}
    summary = json.loads(report.read_text("utf-8"))
    assert {item["source"]: item["kind"] for item in summary["not_read"]} == expected
    assert [item["source"] for item in summary["not_read"]] == sorted(expected)
    reasons = {item["source"]: item["reason"] for item in summary["not_read"]}
    assert reasons["letter/secret.pdf"] == "encrypted PDF: a password is needed"
    assert reasons["letter/empty.txt"] == "empty file (0 bytes)"
    assert reasons["letter/broken.docx"] == "damaged DOCX file (not a Word .docx package)"
    assert reasons["letter/broken.pdf"].startswith("damaged PDF file (")
    assert "save it as .docx" in reasons["letter/old.doc"]
    assert "byte 0xe9 at offset 3" in reasons["letter/legacy.txt"]
    assert summary["ok"] is True and summary["rows"] == 6
    assert summary["files"] == {"read": 6, "not_read": 10, "hidden_skipped": 5}
    assert summary["labels"] == {"invoice": {"files": 3, "rows": 3, "cut": 0},
                                 "letter": {"files": 3, "rows": 3, "cut": 0}}
    assert summary["warnings"] == ["label folder 'unused' holds no files: no label 'unused'"]
    sidecar = json.loads(sidecar_path(out).read_text("utf-8"))
    assert sidecar["not_read"] == summary["not_read"] and sidecar["labels"] == summary["labels"]
    assert sidecar["settings"] == {"max_chars": 2000, "long": "truncate", "chunk_overlap": None,
                                   "encoding_errors": "fail"}
    table = err[err.index("not read (10):"):]
    for source, kind in expected.items():
        assert any(line.split()[:2] == [source, kind] for line in table.splitlines()), source
    assert "6 file(s) read, 10 not read, 6 row(s)" in err
    assert "warning: label folder 'unused' holds no files" in err
    assert "lorakit prepare: 14/14 files" in err  # plain progress lines: stderr is not a terminal here


def test_text_that_is_not_utf8_is_refused_replaced_or_read_as_latin1(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "docs"
    write(root / "a" / "legacy.txt", "caf\xe9 au lait".encode("latin-1"))
    write(root / "a" / "page.html", "<p>na\xefve</p>".encode("latin-1"))  # no charset declaration
    write(root / "b" / "wide.txt", "\ufeffwide text".encode("utf-16-le"))
    out = tmp_path / "out.jsonl"
    code, err = run(capsys, "--docs", str(root), "--output", str(out))
    assert code == 0 and [row["source"] for row in read_rows(out)] == ["b/wide.txt"]
    assert read_rows(out)[0]["text"] == "wide text"
    assert "a/legacy.txt" in err and "--encoding-errors replace or latin-1" in err
    expected = {"replace": ["caf\ufffd au lait", "na\ufffdve"], "latin-1": ["café au lait", "naïve"]}
    for policy, texts in expected.items():
        code, err = run(capsys, "--docs", str(root), "--output", str(out), "--encoding-errors", policy)
        assert code == 0, err
        assert [row["text"] for row in read_rows(out)][:2] == texts
        encodings = json.loads(sidecar_path(out).read_text("utf-8"))["encodings"]
        named = "utf-8 (replaced)" if policy == "replace" else "latin-1"
        assert encodings == {"a/legacy.txt": named, "a/page.html": named, "b/wide.txt": "utf-16"}


def test_a_declared_html_charset_is_honoured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "docs"
    write(root / "a" / "page.html", b'<meta charset="windows-1252"><p>caf\xe9 \x80 5</p>')
    out = tmp_path / "out.jsonl"
    assert run(capsys, "--docs", str(root), "--output", str(out))[0] == 0
    assert read_rows(out)[0]["text"] == "café € 5"


def words_text(count: int) -> str:
    return " ".join(f"w{i:03d}" for i in range(count))  # 4-character words: boundaries are easy to check


def test_chunks_end_on_word_boundaries_and_overlap_by_whole_words(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    text = words_text(60)  # 299 characters
    root = tmp_path / "docs"
    write(root / "a" / "long.txt", text)
    write(root / "b" / "short.txt", "short one")
    out = tmp_path / "out.jsonl"
    code, err = run(capsys, "--docs", str(root), "--output", str(out), "--max-chars", "52", "--long", "chunk",
                    "--chunk-overlap", "12")
    assert code == 0, err
    rows = read_rows(out)
    chunks = [row for row in rows if row["source"] == "a/long.txt"]
    # 52 characters hold ten 4-character words and their spaces (49 characters, then a space at 49 ... ends at 49);
    # the next chunk repeats the last 12 characters in whole words: "w007 w008 w009" would be 14, so two words.
    assert [(row["start"], row["end"]) for row in chunks[:2]] == [(0, 49), (40, 89)]
    assert chunks[0]["text"] == words_text(10) and chunks[1]["text"].startswith("w008 w009 w010")
    assert [row["chunk"] for row in chunks] == list(range(len(chunks)))
    assert {row["chunks"] for row in chunks} == {len(chunks)} and {row["chars"] for row in chunks} == {len(text)}
    assert chunks[-1]["end"] == len(text) and chunks[0]["start"] == 0
    for previous, row in zip(chunks, chunks[1:], strict=False):
        assert row["text"] == text[row["start"]:row["end"]] and len(row["text"]) <= 52
        assert previous["end"] - 12 <= row["start"] < previous["end"]  # overlap of at most 12 characters
        assert text[row["start"] - 1] == " " and (row["end"] == len(text) or text[row["end"]] == " ")
    covered = set().union(*(range(row["start"], row["end"]) for row in chunks))
    assert {i for i, char in enumerate(text) if char != " "} <= covered
    assert [row for row in rows if row["source"] == "b/short.txt"] == [
        {"text": "short one", "label": "b", "source": "b/short.txt", "chars": 9, "chunk": 0, "chunks": 1,
         "start": 0, "end": 9}]
    summary = json.loads(sidecar_path(out).read_text("utf-8"))
    assert summary["labels"]["a"] == {"files": 1, "rows": len(chunks), "cut": 1}
    assert summary["settings"]["chunk_overlap"] == 12 and summary["settings"]["long"] == "chunk"


def test_chunk_spans_of_edge_cases() -> None:
    chunk = Settings(max_chars=10, long="chunk", chunk_overlap=3)
    assert spans("abcdefghijklmnopqrstuvwxy", chunk) == [(0, 10), (7, 17), (14, 24), (21, 25)]  # no space: hard cuts
    assert spans("aaaa bbbb cccc dddd", chunk) == [(0, 9), (10, 19)]  # overlap 3 < one word: none
    assert spans("aa bb cc dd ee ff", chunk) == [(0, 8), (6, 14), (12, 17)]
    assert spans("x" * 10, chunk) == [(0, 10)]
    assert spans("aa bb cc dd ee ff", Settings(max_chars=10, long="chunk", chunk_overlap=0)) == \
        [(0, 8), (9, 17)]
    assert spans("para one\n\npara two words", chunk) == [(0, 8), (5, 14), (15, 24)]  # "one" fits in 3


def test_truncate_keeps_the_start_up_to_a_word_boundary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = words_text(30)
    root = tmp_path / "docs"
    write(root / "a" / "long.txt", text)
    write(root / "b" / "short.txt", "short")
    out = tmp_path / "out.jsonl"
    assert run(capsys, "--docs", str(root), "--output", str(out), "--max-chars", "22")[0] == 0
    assert read_rows(out)[0] == {"text": "w000 w001 w002 w003", "label": "a", "source": "a/long.txt",
                                 "chars": 149, "truncated": True}
    assert read_rows(out)[1]["truncated"] is False
    assert json.loads(sidecar_path(out).read_text("utf-8"))["labels"]["a"]["cut"] == 1
    assert run(capsys, "--docs", str(root), "--output", str(out), "--max-chars", "0")[0] == 0
    assert read_rows(out)[0] == {"text": text, "label": "a", "source": "a/long.txt", "chars": 149}


def test_a_folder_where_nothing_can_be_read_exits_non_zero_and_writes_no_data(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "docs"
    write(root / "a" / "broken.pdf", b"%PDF-1.7 not really")
    write(root / "b" / "empty.md", b"")
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    code, err = run(capsys, "--docs", str(root), "--output", str(out), "--report", str(report))
    assert code == 2
    assert err.rstrip().splitlines()[-1] == f"lorakit prepare: error: {root}: no document could be read; nothing " \
        "written"
    assert "a/broken.pdf" in err and "b/empty.md" in err
    assert not out.exists() and not sidecar_path(out).exists()
    summary = json.loads(report.read_text("utf-8"))
    assert summary["ok"] is False and summary["rows"] == 0 and len(summary["not_read"]) == 2
    assert summary["warnings"][:2] == ["label 'a': no file could be read, so the label is missing from the output",
                                       "label 'b': no file could be read, so the label is missing from the output"]
    assert sorted(os.listdir(tmp_path)) == ["docs", "report.json"]  # no temp file left behind


@pytest.mark.parametrize(("argv", "message"), [
    (["--chunk-overlap", "5"], "--chunk-overlap applies to --long chunk only"),
    (["--long", "chunk", "--max-chars", "10", "--chunk-overlap", "10"],
     "--chunk-overlap must be in [0, --max-chars) = [0, 10)"),
    (["--long", "chunk", "--max-chars", "0"], "--long chunk needs a positive --max-chars"),
    (["--max-chars", "-1"], "--max-chars must be 0 (no limit) or positive"),
])
def test_bad_options_are_one_line_errors(argv: list[str], message: str, corpus: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "--docs", str(corpus), "--output", str(tmp_path / "o.jsonl"), *argv)
    assert code == 2 and err.startswith(f"lorakit prepare: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "o.jsonl").exists()


def test_bad_folders_and_outputs_are_one_line_errors(corpus: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cases = [(corpus, tmp_path / "out.csv", "must end in .jsonl"),
             (corpus, corpus / "invoice" / "out.jsonl", "inside --docs"),
             (tmp_path / "missing", tmp_path / "out.jsonl", "not a folder"),
             (corpus / "README.txt", tmp_path / "out.jsonl", "not a folder")]
    for docs, out, message in cases:
        code, err = run(capsys, "--docs", str(docs), "--output", str(out))
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not out.exists()


def test_missing_docs_libraries_name_the_extra_on_one_line(corpus: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pypdf", None)  # find_spec answers None, as on an install without it
    monkeypatch.setitem(sys.modules, "bs4", None)
    code, err = run(capsys, "--docs", str(corpus), "--output", str(tmp_path / "o.jsonl"))
    assert code == 2 and err == f"lorakit prepare needs the docs extra for HTML, PDF files: {DOCS_INSTALL} " \
        "(not installed: bs4, pypdf)\n"
    text_only = tmp_path / "text"
    write(text_only / "a" / "1.txt", "one")
    write(text_only / "b" / "2.md", "two")
    monkeypatch.setitem(sys.modules, "docx", None)
    code, err = run(capsys, "--docs", str(text_only), "--output", str(tmp_path / "t.jsonl"))
    assert code == 0, err  # text needs none of them


def test_the_docs_extra_check_knows_every_module_of_the_extra() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["optional-dependencies"]["docs"]
    distributions = {spec.split("==")[0] for spec in extra}
    imports = {"pypdf": "pypdf", "python-docx": "docx", "beautifulsoup4": "bs4"}
    assert distributions == set(imports)
    assert {module for module in MODULES.values() if module} == set(imports.values())


def test_runs_are_deterministic_atomic_and_the_sidecar_pins_the_data(corpus: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("old contents\n", "utf-8")
    assert run(capsys, "--docs", str(corpus), "--output", str(out))[0] == 0
    first = out.read_bytes()
    assert run(capsys, "--docs", str(corpus), "--output", str(out))[0] == 0
    assert out.read_bytes() == first
    assert sorted(os.listdir(tmp_path)) == ["docs", "out.jsonl", "out.jsonl.prepare.json"]
    summary = read_sidecar(out)
    assert summary is not None and summary["output"] == "out.jsonl" and summary["rows"] == 6
    out.write_bytes(first.replace(b"invoice", b"receipt"))
    assert read_sidecar(out) is None  # the data changed since the sidecar was written
    assert read_sidecar(tmp_path / "other.jsonl") is None


def test_label_names_are_nfc_whatever_the_file_system_wrote(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "docs"
    write(root / unicodedata.normalize("NFD", "café") / "a.txt", "one")
    write(root / "thé" / "b.txt", "two")
    out = tmp_path / "out.jsonl"
    assert run(capsys, "--docs", str(root), "--output", str(out))[0] == 0
    assert [row["label"] for row in read_rows(out)] == ["café", "thé"]


def test_help_shows_the_defaults() -> None:
    verbs = next(action for action in build_parser()._actions if action.dest == "verb")
    text = verbs.choices["prepare"].format_help()  # type: ignore[attr-defined]
    for shown in ("(default: 2000)", "(default: truncate)", "(default: fail)", "(default 200)",
                  "lorakit[docs]"):
        assert shown in " ".join(text.split()), shown


def test_the_trainer_reads_the_output_and_chunks_split_by_document(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "docs"
    for label, word in (("invoice", "payment"), ("letter", "greetings")):
        for number in range(6):
            write(root / label / f"{number}.txt", " ".join(f"{word} {number} {i}" for i in range(20)))
    out = tmp_path / "out.jsonl"
    assert run(capsys, "--docs", str(root), "--output", str(out), "--max-chars", "80", "--long", "chunk",
               "--chunk-overlap", "10")[0] == 0
    dataset = load_dataset(out, "text", "label", group_column="source")
    assert dataset.labels == ["invoice", "letter"] and len(dataset.examples) == len(read_rows(out)) > 12
    split = split_dataset(dataset, grouped=True)
    part_of_source: dict[str, set[str]] = {}
    for part in ("train", "validation", "test"):
        for example in split.part(dataset, part):
            part_of_source.setdefault(str(example.group), set()).add(part)
    assert all(len(parts) == 1 for parts in part_of_source.values())  # no document in two parts


def test_lorakit_train_trains_on_prepared_documents(fixtures_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "docs"
    for label, word in (("invoice", "payment due"), ("letter", "kind regards")):
        for number in range(6):
            write(root / label / f"{number}.txt", f"{word} number {number}")
    out = tmp_path / "out.jsonl"
    assert run(capsys, "--docs", str(root), "--output", str(out))[0] == 0
    code = main(["train", "--data", str(out), "--base", str(fixtures_dir / "tiny_bert_base"), "--output",
                 str(tmp_path / "model"), "--epochs", "1", "--max-seq-len", "16", "--batch-size", "8"])
    assert code == 0
    manifest = json.loads((tmp_path / "model" / "lorakit.json").read_text("utf-8"))
    assert manifest["labels"] == ["invoice", "letter"]
    # The manifest records how the documents became rows; the whole sidecar travels in report/.
    documents = manifest["metrics"]["documents"]
    assert documents["settings"] == {"max_chars": 2000, "long": "truncate", "chunk_overlap": None,
                                     "encoding_errors": "fail"}
    assert documents["rows"] == 12 and documents["files"]["read"] == 12
    assert documents["data_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert "report/prepare.json" in manifest["files"]
    # Data edited after prepare no longer matches its sidecar: nothing is claimed about it.
    out.write_text(out.read_text("utf-8") + json.dumps({"text": "payment due again", "label": "invoice"}) + "\n",
                   "utf-8")
    assert main(["train", "--data", str(out), "--base", str(fixtures_dir / "tiny_bert_base"), "--output",
                 str(tmp_path / "edited"), "--epochs", "1", "--max-seq-len", "16", "--batch-size", "8"]) == 0
    edited = json.loads((tmp_path / "edited" / "lorakit.json").read_text("utf-8"))
    assert "documents" not in edited["metrics"] and "report/prepare.json" not in edited["files"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_about_twenty_plain_lines_otherwise() -> None:
    from tqdm.auto import tqdm

    items = [object()] * 45
    log = io.StringIO()
    assert list(progress_for(log)(items, len(items))) == items  # type: ignore[arg-type]
    lines = log.getvalue().splitlines()
    assert lines == [f"lorakit prepare: {n}/45 files" for n in range(3, 46, 3)]
    bar = progress_for(Terminal())(items, len(items))  # type: ignore[arg-type]
    assert isinstance(bar, tqdm) and list(bar) == items


def test_folders_and_files_the_os_refuses_are_reported_as_io(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "docs"
    write(root / "a" / "ok.txt", "fine")
    write(root / "a" / "locked" / "x.txt", "never listed")
    write(root / "b" / "locked.txt", "never read")
    write(root / "b" / "ok.txt", "fine too")
    # Permissions do not stop root, so the refusals come from the calls themselves, as the OS would raise them.
    real_scandir, real_read_bytes = os.scandir, Path.read_bytes

    def scandir(path: Any) -> Any:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    code, err = run(capsys, "--docs", str(root), "--output", str(out), "--report", str(report))
    assert code == 0, err
    assert [row["source"] for row in read_rows(out)] == ["a/ok.txt", "b/ok.txt"]
    assert json.loads(report.read_text("utf-8"))["not_read"] == [
        {"source": "a/locked", "kind": "io", "reason": "cannot list folder: Permission denied"},
        {"source": "b/locked.txt", "kind": "io", "reason": "cannot read: Permission denied"}]


def test_cleaning_keeps_words_and_paragraphs_and_drops_what_json_cannot_carry() -> None:
    from lorakit.extract import clean

    assert clean("  a\tb \u00a0 c\r\n\r\n\r\n\x0c d\x07e\ud800 ") == "a b c\n\nde?"
