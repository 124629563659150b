"""Plain text out of one document: PDF (pypdf), DOCX (python-docx), HTML (beautifulsoup4), TXT/MD (UTF-8).

The libraries are the `docs` extra, imported only when a file needs them. Every way a file can fail to give text
ends as an ExtractionFailure with a kind and a one-line reason, so a folder run can report it and go on.
"""

from __future__ import annotations

import logging
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LorakitError
from .extras import MissingExtraError, missing

DOCS_INSTALL = "pip install 'lorakit[docs]'"
# Suffix -> format; the format's import name in the docs extra (None: the standard library suffices).
FORMATS = {".pdf": "pdf", ".docx": "docx", ".html": "html", ".htm": "html", ".xhtml": "html",
           ".txt": "text", ".text": "text", ".md": "text", ".markdown": "text"}
MODULES: dict[str, str | None] = {"pdf": "pypdf", "docx": "docx", "html": "bs4", "text": None}
ENCODING_POLICIES = ("fail", "replace", "latin-1")
# Suffixes people try, with what to do instead.
ADVICE = {".doc": "legacy Word .doc is not supported: save it as .docx",
          ".rtf": "RTF is not supported: save it as .docx or .txt",
          ".odt": "OpenDocument is not supported: save it as .docx"}
# Elements whose text a browser does not show.
INVISIBLE = ["script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed"]
# Elements that start a new line when shown; text inside any other element runs on.
BLOCKS = ["address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure",
          "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
          "section", "table", "title", "tr", "ul"]
CELLS = ["td", "th"]
CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


class ExtractionFailure(LorakitError):
    """One file gave no text. kind: unsupported, empty, encrypted, corrupt, no-text, encoding, io."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class Extracted:
    text: str  # cleaned: see clean()
    encoding: str | None = None  # TXT/MD only, when not plain UTF-8: "utf-16", "latin-1", "utf-8 (replaced)"


def format_of(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def require_docs(formats: set[str]) -> None:
    """MissingExtraError (one line naming the extra) when a format present in the folder lacks its library."""
    needed = {module: name for name in sorted(formats) if (module := MODULES.get(name))}
    absent = missing(tuple(needed))
    if absent:
        kinds = ", ".join(sorted(needed[module].upper() for module in absent))
        raise MissingExtraError(f"lorakit prepare needs the docs extra for {kinds} files: {DOCS_INSTALL} "
                                f"(not installed: {', '.join(absent)})")


def extract(path: Path, encoding_errors: str = "fail") -> Extracted:
    """The cleaned text of `path`, or ExtractionFailure; never another exception."""
    kind = format_of(path)
    if kind is None:
        suffix = path.suffix.lower()
        raise ExtractionFailure("unsupported", ADVICE.get(suffix) or
                                f"unsupported file type {suffix or '(no extension)'!r} (supported: "
                                f"{', '.join(sorted(FORMATS))})")
    try:
        if not path.is_file():
            raise ExtractionFailure("unsupported", "not a regular file")
        if path.stat().st_size == 0:
            raise ExtractionFailure("empty", "empty file (0 bytes)")
        with warnings.catch_warnings(), quiet_logger("pypdf"):
            warnings.simplefilter("ignore")
            raw, encoding = read_any(kind, path, encoding_errors)
    except ExtractionFailure:
        raise
    except OSError as exc:
        raise ExtractionFailure("io", f"cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # the parsers raise many types on damaged files; each is this file's problem only
        raise ExtractionFailure("corrupt", f"damaged {kind.upper()} file ({one_line(exc)})") from None
    text = clean(raw)
    if not text:
        hint = " (a scanned PDF has no text layer: run OCR first)" if kind == "pdf" else ""
        raise ExtractionFailure("no-text", f"no text found{hint}")
    return Extracted(text, encoding)


def read_any(kind: str, path: Path, encoding_errors: str) -> tuple[str, str | None]:
    if kind == "pdf":
        return pdf_text(path), None
    if kind == "docx":
        return docx_text(path), None
    if kind == "html":
        return html_text(path.read_bytes(), encoding_errors)
    return decode_text(path.read_bytes(), encoding_errors)


def pdf_text(path: Path) -> str:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    reader = PdfReader(path)
    if reader.is_encrypted:
        try:  # many PDFs are encrypted with an empty user password only to restrict printing or copying
            opened = reader.decrypt("")
        except DependencyError:
            raise ExtractionFailure("encrypted", "encrypted PDF (AES needs the cryptography package)") from None
        if opened == PasswordType.NOT_DECRYPTED:
            raise ExtractionFailure("encrypted", "encrypted PDF: a password is needed")
    return "\n\n".join(page.extract_text() or "" for page in reader.pages)


def docx_text(path: Path) -> str:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError):  # python-docx names the path, not the problem
        raise ExtractionFailure("corrupt", "damaged DOCX file (not a Word .docx package)") from None
    return "\n".join(block_lines(document))


def block_lines(container: Any) -> list[str]:
    """Paragraphs and tables in document order; a table row is one line of its cells (merged cells once)."""
    from docx.table import Table

    lines: list[str] = []
    for block in container.iter_inner_content():
        if not isinstance(block, Table):
            lines.append(block.text)
            continue
        # A merged cell is returned once per grid column it spans. The elements are kept, not just their ids: a
        # freed lxml proxy's id is reused by the next one, which would then be skipped as seen.
        seen: dict[int, Any] = {}
        for row in block.rows:
            cells = []
            for cell in row.cells:
                if id(cell._tc) not in seen:
                    seen[id(cell._tc)] = cell._tc
                    cells.append(" ".join(block_lines(cell)))
            lines.append(" ".join(cells))
    return lines


def html_text(data: bytes, encoding_errors: str = "fail") -> tuple[str, str | None]:
    """Visible text. Encoding: a BOM or the page's own charset declaration, else as TXT (UTF-8, then the policy):
    a guess by byte statistics would differ between installs."""
    from bs4 import BeautifulSoup
    from bs4.dammit import EncodingDetector

    declared = EncodingDetector.find_declared_encoding(data, is_html=True)
    if declared or data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        soup = BeautifulSoup(data, "html.parser")
        encoding = None
    else:
        markup, encoding = decode_text(data, encoding_errors)
        soup = BeautifulSoup(markup, "html.parser")
    for element in soup(INVISIBLE):
        element.decompose()
    for element in soup.find_all(hidden=True):
        element.decompose()
    for element in soup.find_all("br"):
        element.replace_with("\n")
    for element in soup.find_all(BLOCKS):
        element.insert_before("\n")
        element.insert_after("\n")
    for element in soup.find_all(CELLS):
        element.insert_after(" ")
    return str(soup.get_text()), encoding


def decode_text(data: bytes, policy: str) -> tuple[str, str | None]:
    """UTF-8 (a BOM is dropped), UTF-16 with a BOM; anything else per `policy` (fail, replace, latin-1)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        if policy == "replace":
            return data.decode("utf-8-sig", errors="replace"), "utf-8 (replaced)"
        if policy == "latin-1":
            return data.decode("latin-1"), "latin-1"
        raise ExtractionFailure("encoding", f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
                                "save it as UTF-8, or pass --encoding-errors replace or latin-1") from None


def clean(text: str) -> str:
    """Whitespace runs within a line become one space, blank-line runs one blank line; control characters go,
    and so do lone surrogates, which no JSON writer or tokenizer takes."""
    text = text.encode("utf-8", errors="replace").decode("utf-8")  # lone surrogates (broken PDF strings) -> "?"
    lines = [" ".join(line.split()) for line in CONTROL.sub("", text).splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class quiet_logger:
    """Silence a library logger (pypdf logs every repaired cross-reference table) for the duration."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)
        self.level = self.logger.level

    def __enter__(self) -> None:
        self.logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)
