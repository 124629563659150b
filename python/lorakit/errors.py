"""Typed errors: anything the user can fix becomes a LorakitError with a one-line message."""

from __future__ import annotations


class LorakitError(Exception):
    """A problem with the user's input, files or environment; the CLI prints it on one line and exits 2."""

    exit_code = 2


class DataError(LorakitError):
    """The dataset cannot be read or split (missing column, empty file, too few examples, bad encoding)."""


class ModelDirError(LorakitError):
    """A model directory is missing, not a lorakit directory, or inconsistent with its manifest."""


class ExportError(LorakitError):
    """Export failed (for example merged and unmerged outputs disagree); nothing is left behind."""


class UnsupportedError(LorakitError):
    """The requested architecture, file layout or option is not supported."""
