"""lorakit.json: the manifest tying a model directory together (docs/FORMAT.md), as a typed, validated value.

Reading and writing both go through `Manifest`, so the writer cannot produce what the reader refuses. Unknown
fields are ignored on reading, like the Rust and Go readers do, so a newer writer may add some.

A sequence classifier may carry a `Calibration` (temperature scaling and a review threshold; docs/FORMAT.md
"Calibration"). Build one from the lorakit.json object or from its fields, and pass it to `Manifest`:

    Calibration.from_json({"temperature": 1.42, "review_threshold": 0.71, "target_precision": 0.95,
                           "fitted_on": "validation"})
    Calibration(temperature=1.42, review_threshold=0.71, target_precision=0.95, fitted_on="validation")
    Manifest(..., calibration=calibration)   # None (the default): no calibration, temperature 1

Both constructors raise ManifestError naming `calibration.<field>` for a value the format refuses.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ConfigError, FormatError, IoError, ModelDirError, UnsupportedError

MANIFEST_FILE = "lorakit.json"
FORMAT_VERSION = 1
# Task kinds of format_version 1 (the Go reader knows the same list); the torch loaders run the first three.
KNOWN_TASKS = ("sequence_classification", "token_classification", "embedding", "generative_classification")
SEQUENCE, TOKEN, EMBEDDING = "sequence_classification", "token_classification", "embedding"
GENERATIVE = "generative_classification"
EMBEDDING_POOLINGS = ("mean", "cls")
AGGREGATIONS = ("first",)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_IOB2 = re.compile(r"^(O|[BI]-\S.*)$")


class ManifestError(ModelDirError):
    """One field of a manifest is wrong; the message names the file and the field. Raised as one of the
    subclasses below, which carry the native core's error kind too."""

    def __init__(self, source: str, field_name: str, problem: str) -> None:
        super().__init__(f"{source}: {field_name}: {problem}")
        self.field_name, self.problem = field_name, problem


class ManifestConfigError(ManifestError, ConfigError):
    """A field has the right type but a value the format refuses (empty, duplicate, out of range)."""


class ManifestFormatError(ManifestError, FormatError):
    """A field is missing or has the wrong JSON type."""


class ManifestUnsupportedError(ManifestError, UnsupportedError):
    """A valid choice this release cannot read (format_version, task, adapter type)."""


@dataclass(frozen=True)
class BaseRef:
    """The base model an adapter was trained on. `path` is absolute or relative to the model directory."""

    path: str | None
    id: str | None
    weights_sha256: str | None


@dataclass(frozen=True)
class AdapterInfo:
    """A summary of adapter_config.json (the PEFT file stays the source of truth for loaders)."""

    type: str
    r: int
    lora_alpha: int | float
    use_rslora: bool
    target_modules: tuple[str, ...]
    modules_to_save: tuple[str, ...]


@dataclass(frozen=True)
class Calibration:
    """lorakit.json `calibration` of a sequence classifier: every runtime's probabilities are
    softmax(logits / temperature), and a text needs review when its top probability is below review_threshold
    (never when it is None). target_precision and fitted_on record what the threshold was chosen for."""

    temperature: float
    review_threshold: float | None = None
    target_precision: float | None = None
    fitted_on: str | None = None

    def __post_init__(self) -> None:
        _check_calibration(self, MANIFEST_FILE)

    @classmethod
    def from_json(cls, raw: object, source: str = MANIFEST_FILE) -> Calibration:
        """Validate the decoded `calibration` object; problems are ManifestErrors naming `source` and the field."""
        fields = _Fields(raw, source, "calibration")
        number = (int, float)
        try:
            return cls(temperature=fields.get("temperature", number),
                       review_threshold=fields.get("review_threshold", number, optional=True),
                       target_precision=fields.get("target_precision", number, optional=True),
                       fitted_on=fields.get("fitted_on", str, optional=True))
        except ManifestError as exc:
            raise type(exc)(source, exc.field_name, exc.problem) from None

    def to_json(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "review_threshold": self.review_threshold,
                "target_precision": self.target_precision, "fitted_on": self.fitted_on}

    def needs_review(self, top_probability: float) -> bool:
        """The review verdict of a text whose top calibrated probability is `top_probability`."""
        return self.review_threshold is not None and not top_probability >= self.review_threshold


def _finite_positive_f32(value: float) -> bool:
    """Runtimes divide in float32: 1e300 (infinite there) and 1e-300 (zero there) are no temperatures."""
    try:  # struct, not numpy: the manifest is read where numpy is not installed
        narrowed = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return False
    return bool(value > 0 and math.isfinite(narrowed) and narrowed > 0)


def _check_calibration(c: Calibration, source: str) -> None:
    def finite_number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if not (finite_number(c.temperature) and _finite_positive_f32(c.temperature)):
        raise ManifestConfigError(source, "calibration.temperature",
                                  f"must be finite and > 0 as a 32-bit float, got {c.temperature!r}")
    if c.review_threshold is not None and not (finite_number(c.review_threshold) and 0 <= c.review_threshold <= 1):
        raise ManifestConfigError(source, "calibration.review_threshold",
                                  f"must be null or in [0, 1], got {c.review_threshold!r}")
    if c.target_precision is not None and not (finite_number(c.target_precision) and 0 < c.target_precision <= 1):
        raise ManifestConfigError(source, "calibration.target_precision",
                                  f"must be in (0, 1], got {c.target_precision!r}")
    if c.fitted_on is not None and not isinstance(c.fitted_on, str):
        raise ManifestFormatError(source, "calibration.fitted_on", f"expected a string, got {_json_type(c.fitted_on)}")


@dataclass(frozen=True)
class Manifest:
    format_version: int
    name: str
    task: str
    architecture: str
    base: BaseRef
    adapter: AdapterInfo | None
    labels: tuple[str, ...]
    max_seq_len: int
    files: Mapping[str, str]
    pooling: str | None = "unknown"  # sequence classification: informational; embedding: mean or cls
    metrics: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    lorakit_version: str | None = None
    unsafe_labels: tuple[str, ...] | None = None  # sequence classification only
    normalize: bool | None = None  # embedding only
    aggregation: str | None = None  # token classification only
    prompt: Mapping[str, Any] | None = None  # generative classification only (docs/generative.md)
    calibration: Calibration | None = None  # sequence classification only (docs/FORMAT.md "Calibration")

    def __post_init__(self) -> None:
        _check_invariants(self, MANIFEST_FILE)

    @classmethod
    def from_json(cls, raw: object, source: str = MANIFEST_FILE) -> Manifest:
        """Validate decoded JSON; any problem is a ManifestError naming `source` and the field."""
        return _parse(raw, source)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to lorakit.json (key order as in docs/FORMAT.md)."""
        adapter = None
        if self.adapter is not None:
            a = self.adapter
            adapter = {"type": a.type, "r": a.r, "lora_alpha": a.lora_alpha, "use_rslora": a.use_rslora,
                       "target_modules": list(a.target_modules), "modules_to_save": list(a.modules_to_save)}
        task_fields: dict[str, Any] = {}  # only the fields of this task, so older readers see what they know
        if self.task == SEQUENCE and self.unsafe_labels is not None:
            task_fields["unsafe_labels"] = list(self.unsafe_labels)
        if self.task == SEQUENCE and self.calibration is not None:
            task_fields["calibration"] = self.calibration.to_json()
        if self.task == EMBEDDING:
            task_fields["normalize"] = self.normalize
        if self.task == TOKEN:
            task_fields["aggregation"] = self.aggregation
        if self.task == GENERATIVE:
            task_fields["prompt"] = dict(self.prompt or {})
        return {
            "format_version": self.format_version,
            "name": self.name,
            "task": self.task,
            "architecture": self.architecture,
            "base": {"path": self.base.path, "id": self.base.id, "weights_sha256": self.base.weights_sha256},
            "adapter": adapter,
            "labels": list(self.labels),
            "max_seq_len": self.max_seq_len,
            "pooling": self.pooling,
            **task_fields,
            "metrics": dict(self.metrics),
            "files": dict(self.files),
            "created_at": self.created_at,
            "lorakit_version": self.lorakit_version,
        }

    @property
    def temperature(self) -> float:
        """The calibration temperature; 1.0 without a calibration."""
        return 1.0 if self.calibration is None else float(self.calibration.temperature)

    @property
    def review_threshold(self) -> float | None:
        return None if self.calibration is None else self.calibration.review_threshold

    def base_dir(self, model_dir: Path) -> Path | None:
        """The adapter's base directory, found by the native core's rule (the recorded base.path, else the
        directory on LORAKIT_BASES with the recorded weights sha256); None for a full fine-tune.

        Raises IoError (a ModelDirError) naming what was tried when no candidate holds the base."""
        if self.adapter is None:
            return None
        from ._native import resolve_base

        return Path(resolve_base(model_dir))


def _check_invariants(m: Manifest, source: str) -> None:
    """What must hold however the manifest was made (read from disk or built by the exporter)."""
    _check_version(m.format_version, source)
    if m.task not in KNOWN_TASKS:
        raise ManifestUnsupportedError(source, "task", f"unknown task {m.task!r} (known: {', '.join(KNOWN_TASKS)})")
    if not m.name:
        raise ManifestConfigError(source, "name", "must not be empty")
    if not m.architecture:
        raise ManifestConfigError(source, "architecture", "must not be empty")
    _check_task_fields(m, source)
    duplicates = sorted({label for label in m.labels if m.labels.count(label) > 1})
    if duplicates:
        raise ManifestConfigError(source, "labels", f"duplicate label(s) {', '.join(map(repr, duplicates))}")
    if m.max_seq_len <= 0:
        raise ManifestConfigError(source, "max_seq_len", f"must be positive, got {m.max_seq_len}")
    if m.base.weights_sha256 is not None and not _SHA256.match(m.base.weights_sha256):
        raise ManifestConfigError(source, "base.weights_sha256", "is not a lower-case hex sha256")
    for rel, digest in m.files.items():
        parts = PurePosixPath(rel).parts
        if not rel or rel.startswith("/") or "\\" in rel or ".." in parts:
            raise ManifestConfigError(source, "files", f"{rel!r} is not a relative path inside the model directory")
        if not _SHA256.match(digest):
            raise ManifestConfigError(source, f"files[{rel!r}]", "is not a lower-case hex sha256")
    if m.adapter is not None:
        if m.adapter.type != "lora":
            raise ManifestUnsupportedError(source, "adapter.type", f"{m.adapter.type!r} is not supported (only 'lora')")
        if m.adapter.r <= 0:
            raise ManifestConfigError(source, "adapter.r", f"must be positive, got {m.adapter.r}")


def _check_task_fields(m: Manifest, source: str) -> None:
    """docs/FORMAT.md "Tasks": labels per task, and each task-specific field only on its own task."""
    if m.task == EMBEDDING:
        if m.labels:
            raise ManifestConfigError(source, "labels", "must be empty for an embedding model (it has no head)")
    elif not m.labels:
        raise ManifestConfigError(source, "labels", "must not be empty (one name per output of the head)")
    foreign = {"unsafe_labels": (m.unsafe_labels, SEQUENCE), "normalize": (m.normalize, EMBEDDING),
               "aggregation": (m.aggregation, TOKEN), "prompt": (m.prompt, GENERATIVE),
               "calibration": (m.calibration, SEQUENCE)}
    for name, (value, task) in foreign.items():
        if value is not None and m.task != task:
            raise ManifestConfigError(source, name, f"belongs to task {task!r}, not {m.task!r}; remove it")
    if m.calibration is not None and not isinstance(m.calibration, Calibration):
        raise ManifestFormatError(source, "calibration", f"expected a Calibration, got {type(m.calibration).__name__} "
                                  "(build one with Calibration.from_json)")
    if m.unsafe_labels is not None:
        if not m.unsafe_labels:
            raise ManifestConfigError(source, "unsafe_labels", "must not be empty (omit it when no label is unsafe)")
        unknown = [label for label in m.unsafe_labels if label not in m.labels]
        if unknown:
            raise ManifestConfigError(source, "unsafe_labels", f"{', '.join(map(repr, unknown))} not in labels")
    if m.task == EMBEDDING:
        if m.pooling not in EMBEDDING_POOLINGS:
            raise ManifestConfigError(source, "pooling", f"{m.pooling!r} is not an embedding pooling "
                                f"({', '.join(EMBEDDING_POOLINGS)})")
        if m.normalize is None:
            raise ManifestConfigError(source, "normalize", "missing (true or false for an embedding model)")
    if m.task == GENERATIVE:
        _check_prompt(m.prompt, source)
    if m.task == TOKEN:
        if m.aggregation not in AGGREGATIONS:
            problem = "missing" if m.aggregation is None else f"{m.aggregation!r} is not supported"
            raise ManifestConfigError(source, "aggregation", f"{problem} (token classification aggregates 'first')")
        bad = [label for label in m.labels if not _IOB2.match(label)]
        if bad:
            raise ManifestConfigError(source, "labels", f"{bad[0]!r} is not an IOB2 tag (O, B-TYPE or I-TYPE)")


def _check_prompt(prompt: Mapping[str, Any] | None, source: str) -> None:
    from .prompt import PromptSpec

    if prompt is None:
        raise ManifestFormatError(source, "prompt", "missing (a generative classifier declares its prompt)")
    try:
        PromptSpec.from_json(prompt)
    except ConfigError as exc:
        raise ManifestConfigError(source, "prompt", str(exc).removeprefix("prompt: ").removeprefix("prompt.")) \
            from None


def _check_version(version: int, source: str) -> None:
    if version != FORMAT_VERSION:
        raise ManifestUnsupportedError(source, "format_version", f"{version} is not supported (this lorakit reads "
                            f"{FORMAT_VERSION}); upgrade lorakit")


class _Fields:
    """Typed access to one JSON object; each failure names the dotted field path."""

    def __init__(self, raw: object, source: str, prefix: str) -> None:
        if not isinstance(raw, dict):
            where = prefix or "top level"
            raise ManifestFormatError(source, where, f"expected a JSON object, got {_json_type(raw)}")
        self.raw, self.source, self.prefix = raw, source, prefix

    def _name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def get(self, key: str, kind: type | tuple[type, ...], *, optional: bool = False, default: Any = None) -> Any:
        if key not in self.raw:
            if optional:
                return default
            raise ManifestFormatError(self.source, self._name(key), "missing")
        value = self.raw[key]
        if value is None and optional:
            return default
        # JSON true/false are Python bools, and bool is a subclass of int: never accept one for the other.
        wrong_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
        if wrong_bool or not isinstance(value, kind):
            problem = f"expected {_kind_name(kind)}, got {_json_type(value)}"
            raise ManifestFormatError(self.source, self._name(key), problem)
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                problem = f"expected a string, got {_json_type(value)}"
                raise ManifestFormatError(self.source, f"{self._name(key)}[{i}]", problem)
        return tuple(values)

    def child(self, key: str) -> _Fields:
        if key not in self.raw:
            raise ManifestFormatError(self.source, self._name(key), "missing")
        return _Fields(self.raw[key], self.source, self._name(key))


def _parse(raw: object, source: str) -> Manifest:
    top = _Fields(raw, source, "")
    version = top.get("format_version", int)
    _check_version(version, source)  # before anything else: another version may have other fields
    base = top.child("base")
    adapter = None
    if top.get("adapter", dict, optional=True) is not None:
        a = top.child("adapter")
        adapter = AdapterInfo(type=a.get("type", str), r=a.get("r", int), lora_alpha=a.get("lora_alpha", (int, float)),
                              use_rslora=a.get("use_rslora", bool), target_modules=a.strings("target_modules"),
                              modules_to_save=a.strings("modules_to_save"))
    elif "adapter" not in top.raw:
        raise ManifestFormatError(source, "adapter", "missing (null for a full fine-tune)")
    files = top.get("files", dict)
    for rel, digest in files.items():
        if not isinstance(digest, str):
            raise ManifestFormatError(source, f"files[{rel!r}]", f"expected a string, got {_json_type(digest)}")
    task = top.get("task", str)
    try:
        return Manifest(
            format_version=version,
            name=top.get("name", str),
            task=task,
            architecture=top.get("architecture", str),
            base=BaseRef(path=base.get("path", str, optional=True), id=base.get("id", str, optional=True),
                         weights_sha256=base.get("weights_sha256", str, optional=True)),
            adapter=adapter,
            labels=top.strings("labels"),
            max_seq_len=top.get("max_seq_len", int),
            files=dict(files),
            pooling=top.get("pooling", str, optional=True, default="unknown" if task == SEQUENCE else None),
            metrics=dict(top.get("metrics", dict, optional=True, default={})),
            created_at=top.get("created_at", str, optional=True),
            lorakit_version=top.get("lorakit_version", str, optional=True),
            unsafe_labels=top.strings("unsafe_labels") if top.get("unsafe_labels", list, optional=True) is not None
            else None,
            normalize=top.get("normalize", bool, optional=True),
            aggregation=top.get("aggregation", str, optional=True),
            prompt=top.get("prompt", dict, optional=True),
            calibration=Calibration.from_json(top.raw["calibration"], source)
            if top.get("calibration", dict, optional=True) is not None else None,
        )
    except ManifestError as exc:  # invariants are checked against the generic name; report the real file
        raise type(exc)(source, exc.field_name, exc.problem) from None


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "a JSON object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a JSON object"}
    text = names.get(type(value), type(value).__name__)
    return f"{text} {value!r}" if isinstance(value, (str, int, float)) and len(repr(value)) <= 40 else text


def read_manifest(model_dir: Path) -> Manifest:
    """The validated manifest of `model_dir`; every problem is a one-line ModelDirError."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_FILE
    if not model_dir.is_dir():
        raise IoError(f"{model_dir}: not a directory")
    if not path.is_file():
        raise IoError(f"{model_dir}: not a lorakit model directory (no {MANIFEST_FILE})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: invalid JSON ({exc}); re-export the model") from None
    except OSError as exc:
        raise IoError(f"{path}: cannot read it ({exc.strerror})") from None
    return Manifest.from_json(raw, str(path))


def write_manifest(model_dir: Path, manifest: Manifest) -> Path:
    path = Path(model_dir) / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n", "utf-8")
    return path


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


def check_files(model_dir: Path, manifest: Manifest) -> list[str]:
    """Names of files whose sha256 differs from the manifest (or that are missing)."""
    bad = []
    for rel, expected in manifest.files.items():
        path = Path(model_dir) / rel
        if not path.is_file() or sha256_file(path) != expected:
            bad.append(rel)
    return bad

