"""lorakit.json: the manifest tying a model directory together (docs/FORMAT.md)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import ModelDirError

MANIFEST_FILE = "lorakit.json"
FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(model_dir: Path) -> dict[str, str]:
    """sha256 of every file under model_dir (relative '/' paths, sorted), except the manifest itself."""
    table: dict[str, str] = {}
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        if rel != MANIFEST_FILE:
            table[rel] = sha256_file(path)
    return table


def is_model_dir(path: Path) -> bool:
    return (Path(path) / MANIFEST_FILE).is_file()


def read_manifest(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / MANIFEST_FILE
    if not Path(model_dir).is_dir():
        raise ModelDirError(f"{model_dir}: not a directory")
    if not path.is_file():
        raise ModelDirError(f"{model_dir}: not a lorakit model directory (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(f"{path}: unsupported format_version {manifest.get('format_version')!r}")
    for key in ("labels", "max_seq_len", "files", "architecture", "task"):
        if key not in manifest:
            raise ModelDirError(f"{path}: missing key {key!r}")
    return manifest


def check_files(model_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Names of files whose sha256 differs from the manifest (or that are missing)."""
    bad = []
    for rel, expected in manifest["files"].items():
        path = Path(model_dir) / rel
        if not path.is_file() or sha256_file(path) != expected:
            bad.append(rel)
    return bad


def resolve_base_path(model_dir: Path, manifest: dict[str, Any]) -> Path | None:
    """The base model directory: absolute, or relative to the model directory."""
    base = manifest.get("base") or {}
    raw = base.get("path")
    if not raw:
        return None
    path = Path(raw)
    return path if path.is_absolute() else (Path(model_dir) / path).resolve()
