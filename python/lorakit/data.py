"""Datasets: load CSV / JSONL / JSON once, fix the label order, split ONCE (stratified or grouped).

The split records which file its row ids refer to (path, sha256, columns), so `lorakit retrain` can rebuild the
training data from a model directory alone; retraining pins the split it computed (`pinned_data`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import DataError

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    row_id: int  # 0-based position of the record in the input file: stable across reloads
    text: str
    label: str
    group: str | None = None


@dataclass
class Dataset:
    examples: list[Example]
    labels: list[str]  # index order of the classifier head
    source: str = ""
    columns: dict[str, str] = field(default_factory=dict)  # role (text, label, group) -> column read

    def label_ids(self, examples: Sequence[Example]) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[example.label] for example in examples]


@dataclass
class Split:
    """Row ids of each part, computed once and written next to the model (report/split.json)."""

    train: list[int]
    validation: list[int]
    test: list[int]
    strategy: str
    seed: int
    fractions: dict[str, float] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)  # the file the row ids refer to: see data_origin()

    def part(self, dataset: Dataset, name: str) -> list[Example]:
        by_id = {example.row_id: example for example in dataset.examples}
        return [by_id[row_id] for row_id in getattr(self, name)]

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "seed": self.seed, "fractions": self.fractions,
                "sizes": {name: len(getattr(self, name)) for name in PARTS},
                **({"data": self.origin} if self.origin else {}),
                **{name: getattr(self, name) for name in PARTS}}

    def digest(self) -> str:
        """Fingerprint of all three parts: equal digests, equal splits (checked across training processes)."""
        return "-".join(ids_digest(getattr(self, name)) for name in PARTS)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Split:
        return cls(train=list(data["train"]), validation=list(data["validation"]), test=list(data["test"]),
                   strategy=data["strategy"], seed=int(data["seed"]), fractions=dict(data.get("fractions", {})),
                   origin=dict(data.get("data", {})))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_origin(path: Path | str, columns: dict[str, str | None]) -> dict[str, Any]:
    """What split.json records about the data file: its absolute path, sha256 and the column of each role."""
    path = Path(path).absolute()
    return {"path": str(path), "sha256": file_sha256(path) if path.is_file() else None,
            "columns": {role: column for role, column in columns.items() if column}}


@dataclass(frozen=True)
class PinnedData:
    """Retraining: the merged file a pipeline reads, the split it must use instead of computing one, and the
    source to record (the original file and the corrections, not the scratch file)."""

    path: Path
    split: Split
    source: str


PINNED: ContextVar[PinnedData | None] = ContextVar("lorakit_pinned_data", default=None)


@contextmanager
def pinned_data(pin: PinnedData) -> Iterator[None]:
    """Within the block, loading `pin.path` records `pin.source` and splitting it returns `pin.split`."""
    token = PINNED.set(pin)
    try:
        yield
    finally:
        PINNED.reset(token)


def data_source(path: Path | str) -> str:
    """The source to record for a data file: the pinned source while retraining, else the path as given."""
    pin = PINNED.get()
    return pin.source if pin is not None and Path(path).absolute() == pin.path else str(path)


def ids_digest(row_ids: Sequence[int]) -> str:
    """Short fingerprint of a part, recorded with its metrics so the evaluated rows can be checked later."""
    return hashlib.sha256(json.dumps(sorted(row_ids)).encode()).hexdigest()[:16]


def read_records(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r} (use .csv, .tsv, .jsonl or .json)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    if kind in ("csv", "tsv"):
        raise_csv_field_limit()
        reader = csv.DictReader(io.StringIO(raw, newline=""), delimiter="\t" if kind == "tsv" else ",")
        records: list[Any] = list(reader)
    elif kind == "jsonl":
        records = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
    else:
        try:
            loaded: Any = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(loaded, dict) and isinstance(loaded.get("data"), list):
            loaded = loaded["data"]
        if not isinstance(loaded, list):
            raise DataError(f"{path}: JSON must be a list of objects (or {{\"data\": [...]}})")
        records = loaded
    if not records:
        raise DataError(f"{path}: no records")
    for number, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: record {number} is not an object")
    return records


# The csv module refuses fields over 131,072 characters by default; a long document is still one text.
CSV_FIELD_LIMIT = 2**31 - 1


def raise_csv_field_limit() -> None:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)


def label_kind(value: Any) -> str:
    """The JSON type of a label: labels of two types would merge once turned into names (1 and "1")."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def check_label_types(path: Path, records: Sequence[dict[str, Any]], label_column: str) -> None:
    """One JSON type for every label, and no list, object or non-finite number as a label."""
    first: dict[str, int] = {}
    for row_id, record in enumerate(records):
        value = record.get(label_column)
        if value is None:
            continue
        kind = label_kind(value)
        if kind not in ("boolean", "number", "string"):
            raise DataError(f"{path}: record {row_id}: label {label_column!r} is a {kind}, not a string or number")
        if kind == "number" and not math.isfinite(value):
            raise DataError(f"{path}: record {row_id}: label {value!r} is not a finite number")
        first.setdefault(kind, row_id)
    if len(first) > 1:
        shown = ", ".join(f"{kind} (record {row_id}: {records[row_id][label_column]!r})"
                          for kind, row_id in first.items())
        raise DataError(f"{path}: labels mix JSON types: {shown}; write every label the same way, e.g. all as "
                        "strings, so 1 and \"1\" cannot merge")


def load_dataset(path: Path, text_column: str, label_column: str, group_column: str | None = None,
                 labels: Sequence[str] | None = None) -> Dataset:
    """Labels default to sorted unique values (a stable order); pass `labels` to impose a model's order."""
    records = read_records(path)
    columns = {text_column: "text", label_column: "label"} | ({group_column: "group"} if group_column else {})
    available = set().union(*(record.keys() for record in records))
    for column, role in columns.items():
        if column not in available:
            names = ", ".join(sorted(map(str, available)))
            raise DataError(f"{path}: {role} column {column!r} not found (columns: {names})")
    check_label_types(path, records, label_column)
    examples = []
    for row_id, record in enumerate(records):
        text, label = record.get(text_column), record.get(label_column)
        if text is None or label is None or (isinstance(label, str) and not label.strip()):
            raise DataError(f"{path}: record {row_id} has no {'text' if text is None else 'label'}")
        group = record.get(group_column) if group_column else None
        if group_column and group in (None, ""):
            raise DataError(f"{path}: record {row_id} has no group ({group_column!r})")
        examples.append(Example(row_id, str(text), str(label), None if group is None else str(group)))
    found = sorted({example.label for example in examples})
    if labels is None:
        labels = found
    else:
        unknown = sorted(set(found) - set(labels))
        if unknown:
            raise DataError(f"{path}: labels not known to the model: {', '.join(unknown[:5])}")
    if len(labels) < 2:
        raise DataError(f"{path}: need at least 2 labels, found {len(labels)}")
    return Dataset(examples=examples, labels=list(labels), source=data_source(path),
                   columns={role: column for column, role in columns.items()})


def split_dataset(dataset: Dataset, validation_fraction: float = 0.1, test_fraction: float = 0.1,
                  seed: int = 42, grouped: bool = False) -> Split:
    """The one split: stratified by label, or by whole groups when `grouped`; deterministic for a seed.

    While retraining (`pinned_data`) the pinned split is returned instead, once its row ids are checked to be
    exactly the dataset's."""
    pin = PINNED.get()
    if pin is not None:
        return checked_pin(pin, dataset)
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise DataError("validation and test fractions must be in (0, 1) and sum to less than 1")
    fractions = {"validation": validation_fraction, "test": test_fraction}
    rng = random.Random(seed)
    if grouped:
        parts = grouped_split(dataset, validation_fraction, test_fraction, rng)
    else:
        parts = stratified_split(dataset, validation_fraction, test_fraction, rng)
    train, validation, test = (sorted(part) for part in parts)
    origin = data_origin(dataset.source, dict(dataset.columns)) if dataset.columns else {}
    return Split(train, validation, test, "grouped" if grouped else "stratified", seed, fractions, origin)


def checked_pin(pin: PinnedData, dataset: Dataset) -> Split:
    ids = sorted(pin.split.train + pin.split.validation + pin.split.test)
    if ids != sorted(example.row_id for example in dataset.examples):
        raise DataError(f"{pin.path}: the pinned split does not cover exactly the {len(dataset.examples)} rows read")
    return pin.split


def stratified_split(dataset: Dataset, val_frac: float, test_frac: float,
                     rng: random.Random) -> tuple[list[int], list[int], list[int]]:
    by_label: dict[str, list[int]] = {}
    for example in dataset.examples:
        by_label.setdefault(example.label, []).append(example.row_id)
    train: list[int] = []
    validation: list[int] = []
    test: list[int] = []
    for label in sorted(by_label):
        ids = by_label[label]
        if len(ids) < 3:
            raise DataError(f"label {label!r} has {len(ids)} example(s); at least 3 are needed to split "
                            "into train/validation/test")
        rng.shuffle(ids)
        n_val = max(1, round(len(ids) * val_frac))
        n_test = max(1, round(len(ids) * test_frac))
        while n_val + n_test > len(ids) - 1:  # keep at least one training example per label
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        validation += ids[:n_val]
        test += ids[n_val:n_val + n_test]
        train += ids[n_val + n_test:]
    return train, validation, test


def grouped_split(dataset: Dataset, val_frac: float, test_frac: float,
                  rng: random.Random) -> tuple[list[int], list[int], list[int]]:
    """Whole groups go to one part; groups are shuffled, then filled into test, validation, train by row count."""
    groups: dict[str, list[int]] = {}
    for example in dataset.examples:
        groups.setdefault(str(example.group), []).append(example.row_id)
    names = sorted(groups)
    if len(names) < 3:
        raise DataError(f"grouped split needs at least 3 groups, found {len(names)}")
    rng.shuffle(names)
    total = len(dataset.examples)
    targets = {"test": test_frac * total, "validation": val_frac * total}
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    remaining = list(names)
    for part in ("test", "validation"):
        # at least one group each, and always leave one group for training
        while remaining and len(remaining) > 1 and (not parts[part] or len(parts[part]) < targets[part]):
            if parts[part] and len(parts[part]) + len(groups[remaining[0]]) > 1.5 * targets[part]:
                break
            parts[part] += groups[remaining.pop(0)]
    for name in remaining:
        parts["train"] += groups[name]
    if not parts["validation"] or not parts["test"] or not parts["train"]:
        raise DataError("grouped split left a part empty; add more groups")
    return parts["train"], parts["validation"], parts["test"]


def write_split(path: Path, split: Split) -> None:
    Path(path).write_text(json.dumps(split.to_json()) + "\n", "utf-8")


def read_split(path: Path) -> Split:
    try:
        return Split.from_json(json.loads(Path(path).read_text("utf-8")))
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a split file ({exc})") from exc


def normalized(text: str) -> str:
    return " ".join(text.split())


class Row(Protocol):
    """A split unit with its text: a sequence example or a token-classification text."""

    @property
    def row_id(self) -> int: ...
    @property
    def text(self) -> str: ...


def cross_split_duplicates(examples: Iterable[Row], split: Split, shown: int = 5) -> dict[str, Any]:
    """Texts (equal after whitespace normalisation) found in more than one part: they inflate test metrics.

    {"count": distinct texts, "rows": rows involved, "examples": [{"text", "parts"}]} (the first `shown`)."""
    part_of: dict[int, str] = {row_id: name for name in PARTS for row_id in getattr(split, name)}
    parts: dict[str, set[str]] = {}
    rows: dict[str, int] = {}
    for example in examples:
        if example.row_id in part_of:
            key = normalized(example.text)
            parts.setdefault(key, set()).add(part_of[example.row_id])
            rows[key] = rows.get(key, 0) + 1
    shared = [key for key, names in parts.items() if len(names) > 1]
    return {"count": len(shared), "rows": sum(rows[key] for key in shared),
            "examples": [{"text": key[:200], "parts": [name for name in PARTS if name in parts[key]]}
                         for key in shared[:shown]]}


def duplicates_warning(duplicates: dict[str, Any]) -> str | None:
    """One line naming the count and a few examples, or None when every text stays in one part."""
    if not duplicates["count"]:
        return None
    examples = "; ".join(f"{item['text'][:60]!r} in {'+'.join(item['parts'])}" for item in duplicates["examples"])
    return (f"warning: {duplicates['count']} text(s) ({duplicates['rows']} rows) appear in more than one of "
            f"train/validation/test after whitespace normalisation, so test metrics overstate: {examples}")
