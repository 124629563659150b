"""`lorakit prepare --docs DIR --output FILE.jsonl`: a folder of documents, one sub-folder per label, as the JSONL
the trainer reads ({"text", "label", "source", ...}), with a sidecar FILE.jsonl.prepare.json of how it was made.

Layout: DIR/<label>/<file>, and deeper folders under a label belong to that label. Files straight in DIR, files
that give no text and unsupported types are reported, never fatal; hidden files and folders (".name", and "~$name"
Office lock files) are skipped. Order is the sorted relative paths, so equal folders give equal files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import fsync_dir
from .errors import DataError, LorakitError
from .extract import ENCODING_POLICIES, ExtractionFailure, extract, format_of, require_docs

LONG_MODES = ("truncate", "chunk")
DEFAULT_MAX_CHARS = 2000
DEFAULT_OVERLAP = 200
SIDECAR_SUFFIX = ".prepare.json"
SIDECAR_FORMAT = "lorakit-prepare/1"
OUTPUT_SUFFIXES = (".jsonl", ".ndjson")  # what the trainer reads as JSON Lines


@dataclass(frozen=True)
class Settings:
    max_chars: int = DEFAULT_MAX_CHARS  # 0: no limit
    long: str = "truncate"
    chunk_overlap: int = DEFAULT_OVERLAP  # chunk mode only
    encoding_errors: str = "fail"

    def check(self) -> None:
        if self.max_chars < 0:
            raise LorakitError(f"--max-chars must be 0 (no limit) or positive, not {self.max_chars}")
        if self.long not in LONG_MODES:
            raise LorakitError(f"--long must be one of {', '.join(LONG_MODES)}")
        if self.encoding_errors not in ENCODING_POLICIES:
            raise LorakitError(f"--encoding-errors must be one of {', '.join(ENCODING_POLICIES)}")
        if self.long == "chunk":
            if self.max_chars == 0:
                raise LorakitError("--long chunk needs a positive --max-chars")
            if not 0 <= self.chunk_overlap < self.max_chars:
                raise LorakitError(f"--chunk-overlap must be in [0, --max-chars) = [0, {self.max_chars}), "
                                   f"not {self.chunk_overlap}")


@dataclass(frozen=True)
class Document:
    label: str
    path: Path
    source: str  # relative to DIR, "/" separated


@dataclass(frozen=True)
class NotRead:
    source: str
    kind: str  # outside-label, unsupported, empty, encrypted, corrupt, no-text, encoding, io
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "kind": self.kind, "reason": self.reason}


@dataclass
class Scan:
    documents: list[Document] = field(default_factory=list)
    not_read: list[NotRead] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hidden: int = 0


def hidden(name: str) -> bool:
    return name.startswith((".", "~$"))


def scan(root: Path) -> Scan:
    """Every candidate file under root/<label>/ in sorted order; files outside label folders are reported."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected DIR/<label>/<file>)")
    found = Scan()
    for entry in sorted(root.iterdir(), key=lambda path: path.name):
        if hidden(entry.name):
            found.hidden += 1
        elif entry.is_dir():
            label = unicodedata.normalize("NFC", entry.name)  # macOS writes decomposed names
            files = sorted(label_files(entry, found), key=lambda path: path.relative_to(root).as_posix())
            if not files:
                found.warnings.append(f"label folder {entry.name!r} holds no files: no label {label!r}")
            found.documents += [Document(label, path, path.relative_to(root).as_posix()) for path in files]
        else:
            found.not_read.append(NotRead(entry.name, "outside-label",
                                          "not inside a label folder (expected DIR/<label>/<file>)"))
    return found


def label_files(folder: Path, found: Scan) -> Iterator[Path]:
    """Files under one label folder, nested folders included, hidden ones skipped."""
    def unreadable(error: OSError) -> None:  # os.walk would skip a folder it cannot list without a word
        where = Path(error.filename).relative_to(folder.parent).as_posix() if error.filename else folder.name
        found.not_read.append(NotRead(where, "io", f"cannot list folder: {error.strerror or error}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        found.hidden += sum(hidden(name) for name in dirnames + filenames)
        for name in dirnames:
            if not hidden(name) and os.path.islink(os.path.join(dirpath, name)):
                source = (Path(dirpath) / name).relative_to(folder.parent).as_posix()
                found.not_read.append(NotRead(source, "unsupported", "a link to a folder (not followed)"))
        dirnames[:] = [name for name in dirnames if not hidden(name)]
        for name in filenames:
            if not hidden(name):
                yield Path(dirpath) / name


def spans(text: str, settings: Settings) -> list[tuple[int, int]]:
    """[start, end) character ranges of the rows of one document.

    truncate: the first max_chars characters, cut back to the last word boundary in the window's second half.
    chunk: windows of at most max_chars cut the same way; each next window starts chunk_overlap characters
    before the previous end, moved forward to a word start, so the overlap is whole words of at most
    chunk_overlap characters (exact characters after a cut through an unspaced run)."""
    limit = settings.max_chars
    if limit == 0 or len(text) <= limit:
        return [(0, len(text))]
    if settings.long == "truncate":
        return [(0, word_end(text, 0, limit, 0))]
    overlap = settings.chunk_overlap
    ranges: list[tuple[int, int]] = []
    start = 0
    while True:
        end = word_end(text, start, limit, overlap)
        ranges.append((start, end))
        if end >= len(text):
            return ranges
        following = word_start(text, end - overlap, end) if overlap else end
        start = following if following > start else end  # always forward, if need be without overlap
        while start < len(text) and text[start].isspace():
            start += 1


def word_end(text: str, start: int, limit: int, overlap: int) -> int:
    """End of a window from `start` of at most `limit` characters, on a word boundary when one lies past both the
    window's middle and `overlap` (so the next window still moves forward); trailing whitespace excluded."""
    end = start + limit
    if end >= len(text):
        return len(text)
    floor = start + max(overlap, limit // 2)
    for cut in range(end, floor, -1):
        if text[cut].isspace():
            end = cut
            break
    while end > start + 1 and text[end - 1].isspace():
        end -= 1
    return end


def word_start(text: str, position: int, end: int) -> int:
    """`position`, or the next word start after it when it falls inside a word. When no word starts before `end`:
    `end` (no overlap) if the window ended on a word boundary, else `position` (a hard cut through a long
    unspaced run, such as a URL or text without spaces, keeps its overlap in characters)."""
    if position <= 0 or text[position - 1].isspace():
        return position
    cursor = position
    while cursor < end and not text[cursor].isspace():
        cursor += 1
    if cursor < end:
        return cursor
    return end if end < len(text) and text[end].isspace() else position


def rows_of(document: Document, text: str, settings: Settings) -> list[dict[str, Any]]:
    ranges = spans(text, settings)
    rows: list[dict[str, Any]] = []
    for index, (start, end) in enumerate(ranges):
        row: dict[str, Any] = {"text": text[start:end], "label": document.label, "source": document.source,
                               "chars": len(text)}
        if settings.long == "chunk":
            row |= {"chunk": index, "chunks": len(ranges), "start": start, "end": end}
        elif settings.max_chars:
            row["truncated"] = end < len(text)
        rows.append(row)
    return rows


@dataclass
class Outcome:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]  # the sidecar / --report document


def prepare(root: Path, settings: Settings, progress: Callable[[Iterable[Document], int], Iterable[Document]]
            | None = None) -> Outcome:
    """Read every document of `root` (nothing written): the rows and the summary."""
    settings.check()
    found = scan(root)
    require_docs({kind for document in found.documents if (kind := format_of(document.path))})
    rows: list[dict[str, Any]] = []
    labels: dict[str, dict[str, int]] = {}
    encodings: dict[str, str] = {}
    documents: Iterable[Document] = found.documents
    if progress is not None:
        documents = progress(found.documents, len(found.documents))
    for document in documents:
        try:
            extracted = extract(document.path, settings.encoding_errors)
        except ExtractionFailure as failure:
            found.not_read.append(NotRead(document.source, failure.kind, failure.reason))
            continue
        if extracted.encoding:
            encodings[document.source] = extracted.encoding
        made = rows_of(document, extracted.text, settings)
        counts = labels.setdefault(document.label, {"files": 0, "rows": 0, "cut": 0})
        counts["files"] += 1
        counts["rows"] += len(made)
        counts["cut"] += len(made) > 1 or bool(made[0].get("truncated"))
        rows += made
    for label in sorted({document.label for document in found.documents} - set(labels)):
        found.warnings.append(f"label {label!r}: no file could be read, so the label is missing from the output")
    if len(labels) == 1:
        found.warnings.append(f"only one label ({next(iter(labels))!r}): training needs at least 2")
    found.not_read.sort(key=lambda item: item.source)
    summary = {
        "format": SIDECAR_FORMAT, "docs": str(root.absolute()),
        "settings": {"max_chars": settings.max_chars, "long": settings.long,
                     "chunk_overlap": settings.chunk_overlap if settings.long == "chunk" else None,
                     "encoding_errors": settings.encoding_errors},
        "files": {"read": sum(counts["files"] for counts in labels.values()), "not_read": len(found.not_read),
                  "hidden_skipped": found.hidden},
        "rows": len(rows),
        "labels": {label: labels[label] for label in sorted(labels)},
        "not_read": [item.to_json() for item in found.not_read],
        "encodings": encodings, "warnings": found.warnings,
    }
    return Outcome(rows, summary)


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside `path`, fsync, rename over it: a reader sees the old file or the whole new one."""
    path = path.absolute()
    tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def sidecar_path(data: Path) -> Path:
    return data.with_name(data.name + SIDECAR_SUFFIX)


def read_sidecar(data: Path) -> dict[str, Any] | None:
    """The sidecar of a prepared data file, or None when there is none or it describes another version of the
    file (its data_sha256 differs): what training records about where its JSONL came from."""
    path = sidecar_path(Path(data))
    try:
        summary = json.loads(path.read_text("utf-8"))
        digest = hashlib.sha256(Path(data).read_bytes()).hexdigest()
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("format") != SIDECAR_FORMAT or \
            summary.get("data_sha256") != digest:
        return None
    return summary


def record_preparation(data: Path, report: Path) -> dict[str, Any] | None:
    """When `data` came from `lorakit prepare` (its sidecar matches): the whole sidecar to report/prepare.json,
    and the part the manifest keeps (how long documents were cut or chunked, what was read) returned."""
    summary = read_sidecar(data)
    if summary is None:
        return None
    report.mkdir(parents=True, exist_ok=True)
    (report / "prepare.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return {"settings": summary.get("settings"), "files": summary.get("files"), "rows": summary.get("rows"),
            "data_sha256": summary.get("data_sha256")}


def check_output(output: Path, root: Path) -> None:
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise LorakitError(f"--output {output}: must end in .jsonl (the trainer reads it as JSON Lines)")
    if output.absolute().resolve().is_relative_to(root.absolute().resolve()):
        raise LorakitError(f"--output {output}: inside --docs {root}; the next run would read it as a document")
    if output.is_dir():
        raise LorakitError(f"--output {output}: is a folder")


def summary_lines(summary: dict[str, Any], output: Path | None) -> list[str]:
    """The table printed at the end: rows per label, then every file not read with its reason."""
    files = summary["files"]
    destination = f" -> {output}" if output is not None else ""
    lines = [f"lorakit prepare: {files['read']} file(s) read, {files['not_read']} not read, "
             f"{summary['rows']} row(s){destination}"]
    labels = summary["labels"]
    if labels:
        width = max(5, *(len(label) for label in labels))
        lines.append(f"  {'label':<{width}}  {'files':>6}  {'rows':>6}  {'cut':>6}")
        lines += [f"  {label:<{width}}  {c['files']:>6}  {c['rows']:>6}  {c['cut']:>6}" for label, c in labels.items()]
    if summary["not_read"]:
        width = max(4, *(len(item["source"]) for item in summary["not_read"]))
        lines.append(f"not read ({len(summary['not_read'])}):")
        lines.append(f"  {'file':<{width}}  {'kind':<13}  reason")
        lines += [f"  {item['source']:<{width}}  {item['kind']:<13}  {item['reason']}"
                  for item in summary["not_read"]]
    lines += [f"warning: {warning}" for warning in summary["warnings"]]
    return lines


def progress_for(stream: Any) -> Callable[[Iterable[Document], int], Iterable[Document]]:
    """A tqdm bar on a terminal (when tqdm is installed), plain lines otherwise (logs, pipes)."""

    def plain(items: Iterable[Document], total: int) -> Iterator[Document]:
        step = max(1, -(-total // 20))  # about twenty lines, whatever the count
        for number, item in enumerate(items, start=1):
            yield item
            if number % step == 0 or number == total:
                print(f"lorakit prepare: {number}/{total} files", file=stream, flush=True)

    def bar(items: Iterable[Document], total: int) -> Iterable[Document]:
        from tqdm.auto import tqdm

        shown: Iterable[Document] = tqdm(items, total=total, desc="prepare", unit="file", file=stream, leave=False)
        return shown

    if stream.isatty():
        import importlib.util

        if importlib.util.find_spec("tqdm") is not None:
            return bar
    return plain


def add_prepare_parser(verbs: Any) -> None:
    prepare_parser = verbs.add_parser(
        "prepare", help="turn a folder of documents (DIR/<label>/<file>: PDF, DOCX, HTML, TXT, MD) into training "
        "JSONL", description="Reads DIR/<label>/<file> (deeper folders belong to their label; hidden files are "
        "skipped) in sorted order and writes {text, label, source, chars, ...} rows, a FILE.jsonl.prepare.json "
        "sidecar, and a table of files not read. PDF, DOCX and HTML need pip install 'lorakit[docs]'.")
    prepare_parser.add_argument("--docs", required=True, type=Path, metavar="DIR",
                                help="folder with one sub-folder per label")
    prepare_parser.add_argument("--output", required=True, type=Path, metavar="FILE.jsonl", help="JSONL to write "
                                "(replaced atomically), with FILE.jsonl.prepare.json beside it")
    prepare_parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="characters per row, "
                                "0 for no limit (the default is more than a 128-token encoder or a 256-token "
                                "generative prompt reads)")
    prepare_parser.add_argument("--long", choices=LONG_MODES, default="truncate", help="a longer document: keep "
                                "its start (one row per document), or split it into chunks (several rows, each "
                                "with chunk/chunks/start/end; train with --group-column source)")
    prepare_parser.add_argument("--chunk-overlap", type=int, help=f"--long chunk: characters each chunk repeats "
                                f"from the previous one, in whole words (default {DEFAULT_OVERLAP})")
    prepare_parser.add_argument("--encoding-errors", choices=ENCODING_POLICIES, default="fail", help="TXT/MD "
                                "that is not UTF-8 (or UTF-16 with a BOM): report it as not read, replace bad "
                                "bytes with U+FFFD, or read the whole file as Latin-1")
    prepare_parser.add_argument("--report", type=Path, metavar="FILE.json", help="also write the summary (settings, "
                                "counts per label, files not read) here, even when nothing could be read")


def run_prepare(args: argparse.Namespace) -> int:
    if args.chunk_overlap is not None and args.long != "chunk":
        raise LorakitError("--chunk-overlap applies to --long chunk only")
    settings = Settings(max_chars=args.max_chars, long=args.long, encoding_errors=args.encoding_errors,
                        chunk_overlap=DEFAULT_OVERLAP if args.chunk_overlap is None else args.chunk_overlap)
    settings.check()
    check_output(args.output, args.docs)
    outcome = prepare(args.docs, settings, progress_for(sys.stderr))
    summary = outcome.summary
    if outcome.rows:
        data = jsonl_bytes(outcome.rows)
        summary = {**summary, "output": args.output.name, "data_sha256": hashlib.sha256(data).hexdigest()}
        args.output.absolute().parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.output, data)
        write_atomic(sidecar_path(args.output), (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
    if args.report is not None:
        args.report.absolute().parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.report, (json.dumps(summary | {"ok": bool(outcome.rows)}, indent=2, ensure_ascii=False)
                                   + "\n").encode())
    for line in summary_lines(summary, args.output if outcome.rows else None):
        print(line, file=sys.stderr)
    if not outcome.rows:
        raise DataError(f"{args.docs}: no document could be read; nothing written")
    return 0
