"""Atomic directory writes: build a sibling temp dir, fsync, then swap it into place.

A replaced directory never goes missing where the filesystem can exchange two names in one step (Linux renameat2
RENAME_EXCHANGE); elsewhere it is absent only for the instant between two renames. Every transient name holds
`.tmp-`, which model servers (the Go router's discovery) never load.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import sys
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
    """Put the finished `tmp` at `final`; a replaced `final` is swapped out in one step where supported (else moved
    to `NAME.tmp-old-XXXX` first), then removed. On an error before the switch `final` is as it was."""
    if not final.exists():
        os.rename(tmp, final)
        fsync_dir(final.parent)
        return
    if not may_replace(final):
        raise LorakitError(f"{final}: appeared during the write and may not be replaced")
    if exchange(tmp, final):
        old = tmp  # now holds the replaced model, still under its .tmp- name
    else:
        old = final.parent / f"{final.name}.tmp-old-{secrets.token_hex(4)}"
        os.rename(final, old)
        try:
            os.rename(tmp, final)
        except OSError:
            os.rename(old, final)
            raise
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


RENAME_EXCHANGE = 2
AT_FDCWD = -100


def exchange(first: Path, second: Path) -> bool:
    """Swap two directories in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported, so
    the caller falls back to two renames."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without the wrapper (glibc < 2.28, some musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a filesystem without exchange
        return False
    raise OSError(code, os.strerror(code), str(second))
