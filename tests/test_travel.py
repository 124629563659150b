"""Model directories travel: the base is recorded relative, found again by id and sha256 on LORAKIT_BASES after a
copy, and every file is written with the usual permissions."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from lorakit.errors import IoError
from lorakit.manifest import read_manifest
from lorakit.native import Model


def test_files_have_the_usual_permissions(fixtures_dir: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    model_dir = fixtures_dir / "tiny_bert_lora_a"
    for path in [model_dir, *model_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert mode == want, f"{path.relative_to(fixtures_dir)}: {mode:o}, want {want:o}"


def test_base_is_recorded_relative(fixtures_dir: Path) -> None:
    manifest = read_manifest(fixtures_dir / "tiny_bert_lora_a")
    assert manifest.base.path == "../tiny_bert_base"
    assert manifest.base.id and manifest.base.weights_sha256


def test_copied_model_finds_its_base_on_the_search_path(fixtures_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    copy = shutil.copytree(fixtures_dir / "tiny_bert_lora_a", tmp_path / "elsewhere" / "intent")
    monkeypatch.delenv("LORAKIT_BASES", raising=False)
    with pytest.raises(IoError, match="LORAKIT_BASES"):
        Model.load(copy, merged=False)
    with pytest.raises(IoError, match="LORAKIT_BASES"):
        read_manifest(copy).base_dir(copy)  # the torch backends find bases by the same rule

    bases = tmp_path / "bases"
    shutil.copytree(fixtures_dir / "tiny_bert_base", bases / "tiny_bert_base")
    monkeypatch.setenv("LORAKIT_BASES", str(bases))
    assert read_manifest(copy).base_dir(copy) == bases / "tiny_bert_base"
    report = Model.load(copy, merged=False).verify_golden()
    assert report["ok"], report
