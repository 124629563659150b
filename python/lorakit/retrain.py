"""`lorakit retrain`: train a model directory again on its training data plus corrections, and replace it.

Everything comes from the model directory: the training config (report/metrics.json `config`), the data file
and its columns (report/split.json `data`: path, sha256, columns), the split (report/split.json row ids), the
corrections applied before (report/corrections.jsonl) and the gates it passed (lorakit.json `metrics.gate`).

How corrections merge (matching texts after whitespace normalisation, pairs by both texts):
- a correction whose text is already in the data replaces that row (its label, spans or score) in the part the
  row is in: a validation or test text is corrected there and never copied into train, so the evaluated rows
  stay the original ones;
- a new text is added to train; every original row keeps its part (the stored split, same seed);
- labels (entity types) the model does not have are refused unless --allow-new-labels;
- all corrections so far are kept in the new model's report/corrections.jsonl (a later one for the same text wins),
  so the next retrain starts from the original file again.

The new model is written beside MODEL_DIR under a `.tmp-` name and swapped in with one atomic rename exchange
(Linux renameat2; elsewhere two renames); any failure, the gate included, leaves MODEL_DIR as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .atomic import exchange, fsync_dir
from .data import PinnedData, Split, file_sha256, normalized, pinned_data, read_records, read_split
from .errors import DataError, LorakitError, ModelDirError
from .gate import Gate, GateError, check_gates, gate_lines, required, stored_gates
from .manifest import EMBEDDING, GENERATIVE, SEQUENCE, TOKEN, Manifest, read_manifest

HELP = ("Retrain MODEL_DIR with its stored training config on its training data merged with --corrections, check "
        "its gate again and replace MODEL_DIR atomically (a router serving the directory reloads it on its next "
        "poll). A correction whose text is already in the data replaces that row's label in the part the row is "
        "in (a validation or test text is corrected there, never added to train); a new text goes to train; the "
        "original rows keep their split. Nothing changes on any failure.")
CORRECTIONS_FILE = "corrections.jsonl"
ADDED_GROUP = "corrections"  # the group of an added row whose correction names none
DEFAULT_COLUMNS = {SEQUENCE: {"text": "text", "label": "label"}, GENERATIVE: {"text": "text", "label": "label"},
                   TOKEN: {"text": "text", "spans": "spans", "tokens": "tokens", "tags": "ner_tags"},
                   EMBEDDING: {"text": "text", "text_pair": "text_pair"}}


@dataclass
class Rows:
    """Records of one data file in order, the key each is matched by, and the labels (entity types) it uses."""

    records: list[dict[str, Any]]
    keys: list[Hashable]
    labels: set[str] = field(default_factory=set)


@dataclass
class Merged:
    records: list[dict[str, Any]]
    split: Split
    corrections: list[dict[str, Any]]
    corrected: dict[str, int]  # part -> rows replaced by a correction
    added: int


def retrain(model_dir: Path, corrections: Path, *, checkpoint_dir: Path | None = None, gates: Sequence[Gate] = (),
            allow_new_labels: bool = False, keep_previous: bool = False,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Retrain and replace `model_dir`; returns the new model's metrics. `gates`: empty for the stored ones."""
    from .pipeline import DataSpec, train_and_export

    model_dir = Path(model_dir).absolute()
    manifest = read_manifest(model_dir)
    config, split = stored_run(model_dir)
    gates = tuple(gates) or stored_gates(dict(manifest.metrics))
    check_gates(gates, manifest.task)
    origin = split.origin
    data_path = original_data(origin, model_dir)
    columns = {**DEFAULT_COLUMNS[manifest.task], **origin.get("columns", {})}
    if manifest.task == TOKEN and data_path.suffix.lower() in conll_suffixes():
        columns |= {"tokens": "tokens", "tags": "ner_tags"}  # CoNLL sentences are read under these names
    original = read_rows(manifest.task, data_path, columns, manifest)
    stored = model_dir / "report" / CORRECTIONS_FILE
    previous = read_rows(manifest.task, stored, columns, manifest, allow_new=True) if stored.is_file() else None
    new = read_rows(manifest.task, Path(corrections), columns, manifest, allow_new=allow_new_labels)
    merged = merge(original, previous, new, split, columns)
    log(f"corrections: {len(new.records)} row(s) from {corrections} ({len(merged.corrections)} in all); replaced "
        f"{sum(merged.corrected.values())} row(s) (train/validation/test = "
        f"{'/'.join(str(merged.corrected[part]) for part in ('train', 'validation', 'test'))}), added "
        f"{merged.added} to train")
    config.base = training_base(config.base, model_dir, manifest)
    calibration = manifest.calibration
    options: dict[str, Any] = {}
    if manifest.task == SEQUENCE:
        options = {"calibrate": calibration is not None}
        if calibration is not None and calibration.target_precision is not None:
            options["target_precision"] = calibration.target_precision
    sibling = model_dir.parent / f"{model_dir.name}.tmp-retrain-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="lorakit-retrain-") as scratch:
        merged_path = Path(scratch) / "data.jsonl"
        write_jsonl(merged_path, merged.records)
        run_dir = Path(checkpoint_dir).absolute() if checkpoint_dir else Path(scratch) / "run"
        (run_dir / "report").mkdir(parents=True, exist_ok=True)
        write_jsonl(run_dir / "report" / CORRECTIONS_FILE, merged.corrections)
        spec = DataSpec(merged_path, columns["text"], columns.get("label", "label"), columns.get("group"),
                        merged.split.fractions.get("validation", 0.1), merged.split.fractions.get("test", 0.1),
                        merged.split.seed, spans_column=columns.get("spans", "spans"),
                        tokens_column=columns.get("tokens", "tokens"), tags_column=columns.get("tags", "ner_tags"),
                        text_pair_column=columns.get("text_pair", "text_pair"), score_column=columns.get("score"))
        try:
            with pinned_data(PinnedData(merged_path, merged.split, str(data_path))), required(gates):
                metrics = train_and_export(spec, config, sibling, manifest.base.id or manifest.name, name=manifest.name,
                                           onnx="model.onnx" in manifest.files, checkpoint_dir=run_dir, log=log,
                                           **options)
        except GateError as exc:
            kept = f"; the checkpoint stays in {run_dir}" if checkpoint_dir else ""
            raise GateError(f"{exc}; {model_dir} is left as it was{kept}") from None
        finally:
            if not (sibling / "lorakit.json").is_file():  # a failed export leaves nothing; be sure of it
                shutil.rmtree(sibling, ignore_errors=True)
    try:
        backup = replace_directory(sibling, model_dir, keep_previous)
    except OSError as exc:  # raised before the switch only
        raise LorakitError(f"{model_dir}: cannot replace it ({exc.strerror or exc}); the model there is "
                           "unchanged") from None
    from .inference import summary_line

    for part in ("validation", "test"):
        log(summary_line(part, metrics[part]))
    for line in gate_lines(metrics):
        log(line)
    log(f"model directory: {model_dir} (replaced)" + (f"; the previous model is kept in {backup}" if backup else ""))
    return metrics


def stored_run(model_dir: Path) -> tuple[Any, Split]:
    """The TrainConfig of report/metrics.json and the split of report/split.json."""
    from .pipeline import recorded_config

    report = model_dir / "report"
    try:
        metrics = json.loads((report / "metrics.json").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        metrics = None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("config"), dict):
        raise ModelDirError(f"{model_dir}: no training config in report/metrics.json (was it imported rather than "
                            "trained by lorakit train?); retrain needs the config and data of a lorakit training run")
    config = recorded_config(metrics["config"], report / "metrics.json")
    if not (report / "split.json").is_file():
        raise ModelDirError(f"{model_dir}: no report/split.json; retrain needs the split the model was trained on")
    try:
        split = read_split(report / "split.json")
    except DataError as exc:
        raise ModelDirError(str(exc)) from None
    if not split.origin.get("path"):
        source = (metrics.get("data") or {}).get("source")
        raise ModelDirError(f"{model_dir}: report/split.json does not record its data file"
                            f"{f' (trained on {source})' if source else ''}; a model trained by an earlier lorakit "
                            "cannot be retrained: train it again, then retrain")
    return config, split


def original_data(origin: dict[str, Any], model_dir: Path) -> Path:
    """The recorded training data file, unchanged since training (its row ids are what split.json holds)."""
    path = Path(origin["path"])
    if not path.is_file():
        raise DataError(f"{path}: the training data of {model_dir} is gone; put it back to retrain")
    recorded = origin.get("sha256")
    if recorded and file_sha256(path) != recorded:
        raise DataError(f"{path}: changed since {model_dir.name} was trained (sha256 differs); retrain needs the "
                        "training data as it was (put corrections in --corrections), or train anew")
    return path


def conll_suffixes() -> tuple[str, ...]:
    from .tokens import CONLL_SUFFIXES

    return CONLL_SUFFIXES


def training_base(recorded: str, model_dir: Path, manifest: Manifest) -> str:
    """The base trained on: the recorded directory, else the model's base found as runtimes find it."""
    if (Path(recorded) / "config.json").is_file():
        return recorded
    from .generative_load import find_base

    found = find_base(model_dir, manifest)
    if found is None or not (found / "config.json").is_file():
        raise ModelDirError(f"{recorded}: the base {model_dir.name} was trained on is gone (a full fine-tune keeps no "
                            "base reference); put it back to retrain")
    return str(found)


def read_rows(task: str, path: Path, columns: dict[str, str], manifest: Manifest,
              allow_new: bool | None = None) -> Rows:
    """Read and check one data file of the model's task. `allow_new` None: the training data itself; False:
    corrections, which must use the model's labels; True: corrections that may add labels."""
    if task == EMBEDDING:
        from .embedding import load_pairs

        pairs = load_pairs(path, columns["text"], columns["text_pair"], columns.get("score"))
        return Rows(read_records(path), [(normalized(p.text), normalized(p.text_pair)) for p in pairs])
    if task == TOKEN:
        return read_token_rows(path, columns, manifest, allow_new)
    from .data import load_dataset

    records = read_records(path)
    label_column = columns["label"]
    found = {str(record[label_column]) for record in records if record.get(label_column) is not None}
    known = set(manifest.labels)
    dataset = load_dataset(path, columns["text"], label_column, None if allow_new is not None else columns.get("group"),
                           labels=None if allow_new is None else sorted(known | found))
    if allow_new is False and found - known:
        raise DataError(f"{path}: labels not in the model: {', '.join(sorted(found - known)[:5])} (the model's: "
                        f"{', '.join(manifest.labels)}); fix them, or pass --allow-new-labels to add them")
    for record in records:
        record[label_column] = str(record[label_column])  # one label type, as CSV and JSON rows merge
    return Rows(records, [normalized(example.text) for example in dataset.examples], found)


def read_token_rows(path: Path, columns: dict[str, str], manifest: Manifest, allow_new: bool | None) -> Rows:
    from .tokens import entity_types, load_token_dataset, read_conll

    records = read_conll(path) if path.suffix.lower() in conll_suffixes() else read_records(path)
    options = {"text_column": columns["text"], "spans_column": columns["spans"], "tokens_column": columns["tokens"],
               "tags_column": columns["tags"]}
    known = list(manifest.labels)
    if allow_new is None:
        dataset = load_token_dataset(path, group_column=columns.get("group"), **options)
    else:
        try:  # the model's tags first: a correction may hold no entity at all
            dataset = load_token_dataset(path, labels=known, **options)
        except DataError:
            if not allow_new:
                raise DataError(f"{path}: entity types not in the model (the model's: "
                                f"{', '.join(entity_types(known))}); fix them, or pass --allow-new-labels") from None
            dataset = load_token_dataset(path, **options)
    types = {span.type for example in dataset.examples for span in example.spans}
    return Rows(records, [normalized(example.text) for example in dataset.examples], types)


def merge(original: Rows, previous: Rows | None, new: Rows, split: Split, columns: dict[str, str]) -> Merged:
    """The original rows with every correction applied (previous ones first, a later one for a text winning), the
    pinned split over them, and the corrections to keep."""
    count = len(original.records)
    part_of = {row_id: part for part in ("train", "validation", "test") for row_id in getattr(split, part)
               if row_id < count}  # ids past the data are rows added by an earlier retrain: rebuilt below
    if sorted(part_of) != list(range(count)):
        raise ModelDirError(f"report/split.json covers {len(part_of)} of the {count} rows of the training data; "
                            "the data is not the file the model was trained on")
    check_record_form(original, new, columns)
    latest: dict[Hashable, dict[str, Any]] = {}
    for rows in (previous, new):
        if rows is None:
            continue
        for key, record in zip(rows.keys, rows.records, strict=True):
            latest.pop(key, None)  # re-inserted last: the order of the latest correction of each text
            latest[key] = record
    rows_of: dict[Hashable, list[int]] = {}
    for row_id, key in enumerate(original.keys):
        rows_of.setdefault(key, []).append(row_id)
    records = [dict(record) for record in original.records]
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for row_id in range(count):
        parts[part_of[row_id]].append(row_id)
    corrected = {"train": 0, "validation": 0, "test": 0}
    group = columns.get("group")
    added = 0
    for key, correction in latest.items():
        if key in rows_of:
            for row_id in rows_of[key]:
                kept = {group: records[row_id].get(group)} if group else {}  # the row stays in its group and part
                records[row_id] = {**records[row_id], **correction, **kept}
                corrected[part_of[row_id]] += 1
        else:
            record = dict(correction)
            if group and record.get(group) in (None, ""):
                record[group] = ADDED_GROUP
            parts["train"].append(len(records))
            records.append(record)
            added += 1
    pinned = Split(sorted(parts["train"]), sorted(parts["validation"]), sorted(parts["test"]), split.strategy,
                   split.seed, dict(split.fractions),
                   {**split.origin, "corrections": {"file": f"report/{CORRECTIONS_FILE}", "rows": len(latest)}})
    return Merged(records, pinned, list(latest.values()), corrected, added)


def check_record_form(original: Rows, new: Rows, columns: dict[str, str]) -> None:
    """Token classification rows are character spans or BIO tokens: corrections must be written the same way."""
    spans = columns.get("spans")
    if spans is None or not original.records or not new.records:
        return
    if (spans in original.records[0]) != (spans in new.records[0]):
        form = "character spans" if spans in original.records[0] else "BIO tokens and tags"
        raise DataError(f"the corrections must be written as the training data is: {form}")


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def replace_directory(new: Path, final: Path, keep_previous: bool) -> Path | None:
    """Put `new` at `final`; the old `final` is removed, or kept as the hidden `.NAME.prev-TIMESTAMP` beside it.
    Returns the kept path. `final` never goes missing where the exchange is supported; otherwise for the instant
    between two renames (the old one sits under a `.tmp-` name routers ignore)."""
    try:
        if exchange(new, final):
            old = new  # now holds the previous model, under the .tmp- name
        else:
            old = final.parent / f"{final.name}.tmp-old-{secrets.token_hex(4)}"
            os.rename(final, old)
            try:
                os.rename(new, final)
            except BaseException:
                os.rename(old, final)
                raise
    except BaseException:  # not switched: `final` is the previous model, `new` is removed
        shutil.rmtree(new, ignore_errors=True)
        raise
    # Switched: nothing below raises an OSError (the previous model now sits at `old`).
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = final.parent / f".{final.name}.prev-{stamp}"
    while backup.exists():
        backup = final.parent / f".{final.name}.prev-{stamp}-{secrets.token_hex(2)}"
    try:
        if keep_previous:
            os.rename(old, backup)
        fsync_dir(final.parent)
    except OSError as exc:
        raise LorakitError(f"{final}: replaced, but the previous model could not be moved to {backup} "
                           f"({exc.strerror or exc}); it is in {old}") from None
    if not keep_previous:
        shutil.rmtree(old, ignore_errors=True)
        return None
    return backup
