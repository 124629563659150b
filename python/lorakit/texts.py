"""Texts to predict on, from a file or stdin: one text per line, or JSON Lines records with a "text" field."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import DataError

STDIN = "-"


def read_texts(source: str, input_format: str = "auto") -> list[str]:
    """The texts of `source` (a path, or "-" for stdin) in order.

    `lines`: every line is one text (an empty line is an empty text; the final line break ends the last one).
    `jsonl`: every non-blank line is a JSON object whose "text" is a string. `auto`: jsonl for a .jsonl file,
    lines otherwise. Input without any text, or not UTF-8, is refused.
    """
    name = "<stdin>" if source == STDIN else source
    raw = sys.stdin.buffer.read() if source == STDIN else Path(source).read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    if input_format == "auto":
        input_format = "jsonl" if source != STDIN and Path(source).suffix.lower() == ".jsonl" else "lines"
    texts = jsonl_texts(content, name) if input_format == "jsonl" else content.splitlines()
    if not texts:
        raise DataError(f"{name}: no texts (the input is empty)")
    return texts


def jsonl_texts(content: str, name: str) -> list[str]:
    texts = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}: line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f"{name}: line {number}: expected a JSON object with a string \"text\" field")
        texts.append(record["text"])
    return texts
