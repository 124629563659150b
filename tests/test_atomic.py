"""Atomic publish: a replaced directory is swapped out in one step (rename exchange) or, where the filesystem
cannot, moved to a `.tmp-` name first; no step leaves a name a model server would load, nor a leftover copy."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lorakit import atomic
from lorakit.errors import LorakitError


def served_names(folder: Path) -> list[str]:
    """The names the router's discovery would load (go/discovery/scan.go ignoredName: hidden or `.tmp-`)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and ".tmp-" not in p.name)


def model(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "lorakit.json").write_text(version)
    (folder / "weights").write_text(version * 3)
    return folder


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def write(final: Path, version: str, fail: bool = False) -> None:
    with atomic.atomic_directory(final, lambda path: (path / "lorakit.json").is_file()) as tmp:
        (tmp / "lorakit.json").write_text(version)
        (tmp / "weights").write_text(version * 3)
        if fail:
            raise RuntimeError("boom")


@pytest.fixture
def renames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, list[str]]]:
    """Every os.rename (and exchange) with the names discovery would serve right after it."""
    seen: list[tuple[str, str, list[str]]] = []
    real_rename, real_exchange = os.rename, atomic.exchange

    def rename(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        real_rename(src, dst)
        seen.append(("rename", Path(dst).name, served_names(Path(dst).parent)))

    def exchange(first: Path, second: Path) -> bool:
        done = real_exchange(first, second)
        if done:
            seen.append(("exchange", second.name, served_names(second.parent)))
        return done

    monkeypatch.setattr(atomic.os, "rename", rename)
    monkeypatch.setattr(atomic, "exchange", exchange)
    return seen


def test_exchange_swaps_two_directories(tmp_path: Path) -> None:
    first, second = model(tmp_path / "a", "1"), model(tmp_path / "b", "2")
    assert atomic.exchange(first, second) is sys.platform.startswith("linux")  # ext4, tmpfs, btrfs, xfs all can
    if sys.platform.startswith("linux"):
        assert (first / "lorakit.json").read_text() == "2" and (second / "lorakit.json").read_text() == "1"


def test_exchange_of_a_missing_directory_is_an_oserror(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        assert atomic.exchange(tmp_path / "none", tmp_path / "other") is False
        return
    model(tmp_path / "a", "1")
    with pytest.raises(FileNotFoundError):
        atomic.exchange(tmp_path / "a", tmp_path / "missing")
    assert contents(tmp_path / "a") == {"lorakit.json": "1", "weights": "111"}


def test_replace_by_exchange_never_leaves_the_name_missing(tmp_path: Path,
                                                           renames: list[tuple[str, str, list[str]]]) -> None:
    final = model(tmp_path / "intent", "old")
    write(final, "new")
    assert contents(final) == {"lorakit.json": "new", "weights": "newnewnew"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["intent"]  # the replaced copy is removed
    if sys.platform.startswith("linux"):
        assert renames == [("exchange", "intent", ["intent"])]  # one step, no rename at all


def test_replace_without_exchange_moves_the_old_copy_to_a_tmp_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   renames: list[tuple[str, str, list[str]]]) -> None:
    monkeypatch.setattr(atomic, "exchange", lambda first, second: False)
    final = model(tmp_path / "intent", "old")
    write(final, "new")
    assert contents(final) == {"lorakit.json": "new", "weights": "newnewnew"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["intent"]
    (aside, aside_served), (back, back_served) = [(name, served) for _, name, served in renames]
    assert aside.startswith("intent.tmp-old-") and aside_served == []  # never served as an extra model
    assert back == "intent" and back_served == ["intent"]


def test_a_first_publish_is_one_rename(tmp_path: Path, renames: list[tuple[str, str, list[str]]]) -> None:
    write(tmp_path / "intent", "new")
    assert contents(tmp_path / "intent")["lorakit.json"] == "new"
    assert renames == [("rename", "intent", ["intent"])]


def broken_rename(real: Callable[..., None], target: str) -> Callable[..., None]:
    def rename(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if Path(src).name.startswith("intent.tmp-") and Path(dst).name == target and ".tmp-old-" not in str(src):
            raise OSError(28, "No space left on device")
        real(src, dst)
    return rename


@pytest.mark.parametrize("path", ["exchange", "renames"])
def test_a_failed_switch_leaves_the_old_model_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     path: str) -> None:
    final = model(tmp_path / "intent", "old")
    if path == "exchange":
        def failing(first: Path, second: Path) -> bool:
            raise OSError(28, "No space left on device", str(second))
        monkeypatch.setattr(atomic, "exchange", failing)
    else:  # the old copy is already aside when the new one cannot be renamed in: it is put back
        monkeypatch.setattr(atomic, "exchange", lambda first, second: False)
        monkeypatch.setattr(atomic.os, "rename", broken_rename(os.rename, "intent"))
    with pytest.raises(OSError, match="No space left"):
        write(final, "new")
    assert contents(final) == {"lorakit.json": "old", "weights": "oldoldold"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["intent"]


def test_an_error_while_writing_leaves_the_old_model_and_no_tmp(tmp_path: Path) -> None:
    final = model(tmp_path / "intent", "old")
    with pytest.raises(RuntimeError, match="boom"):
        write(final, "new", fail=True)
    assert contents(final) == {"lorakit.json": "old", "weights": "oldoldold"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["intent"]


def test_a_directory_that_may_not_be_replaced_is_refused_before_any_work(tmp_path: Path) -> None:
    final = tmp_path / "intent"
    final.mkdir()
    (final / "notes.txt").write_text("keep me")
    with pytest.raises(LorakitError, match="may replace"):
        write(final, "new")
    assert contents(final) == {"notes.txt": "keep me"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["intent"]
