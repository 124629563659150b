"""Typed errors: anything the user can fix becomes a LorakitError with a one-line message.

The native core raises the same classes (one per error kind of `lorakit-core`), so one `except LorakitError`
covers Python-side and native failures alike.
"""

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
    """The requested architecture, file layout or option is not supported (native kind: unsupported)."""


class IoError(ModelDirError):
    """Native: a file could not be read (missing, permissions)."""


class FormatError(ModelDirError):
    """Native: a file exists but is malformed (bad JSON, corrupt safetensors, checksum mismatch)."""


class ConfigError(ModelDirError):
    """Native: a configuration is invalid or inconsistent (config.json, adapter_config.json, manifest)."""


class ShapeError(ModelDirError):
    """Native: tensor shapes do not agree (weights vs config, adapter vs base)."""


class InputError(LorakitError):
    """Native: bad caller input (empty batch, unknown adapter name, batch too large)."""


class ComputeError(LorakitError):
    """Native: a numerical or backend failure inside the compute library."""


class InternalError(LorakitError):
    """Native: an internal bug (for example a caught panic)."""
