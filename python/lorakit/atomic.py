"""Atomic directory writes: build a sibling temp dir, fsync, then swap it into place."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LorakitError


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under root, so a rename publishes complete contents."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def usual_permissions(root: Path) -> None:
    """Files 0666 and directories 0777 minus the umask, as `cp` or `touch` would make them: some writers
    (safetensors among them) create files 0600, which would hide a published model from its server's user."""
    mask = os.umask(0)
    os.umask(mask)
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o777 & ~mask)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o666 & ~mask)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_directory(final: Path, may_replace: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield a fresh temp dir next to `final`; on success publish it as `final`, on any error remove it.

    An existing `final` is replaced only when `may_replace(final)` is true (otherwise LorakitError before any
    work). Replacement moves the old directory aside first, so `final` is never a mix of old and new files.
    """
    final = Path(final).absolute()
    if final.exists() and not (final.is_dir() and may_replace(final)):
        raise LorakitError(f"{final}: exists and is not a directory this command may replace")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{final.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
        usual_permissions(tmp)
        fsync_tree(tmp)
        publish(tmp, final, may_replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(tmp: Path, final: Path, may_replace: Callable[[Path], bool]) -> None:
    old: Path | None = None
    if final.exists():
        if not may_replace(final):
            raise LorakitError(f"{final}: appeared during the write and may not be replaced")
        old = final.parent / f"{final.name}.old-{secrets.token_hex(4)}"
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except OSError:
        if old is not None:
            os.rename(old, final)
        raise
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
