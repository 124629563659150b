"""lorakit.json as a typed value: exact round trip of what export writes, and a one-line error per defect."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from lorakit.errors import ModelDirError
from lorakit.manifest import (
    MANIFEST_FILE,
    AdapterInfo,
    BaseRef,
    Calibration,
    Manifest,
    ManifestError,
    read_manifest,
    write_manifest,
)

SHA = "ab" * 32


def valid() -> dict[str, Any]:
    return {
        "format_version": 1,
        "name": "intent",
        "task": "sequence_classification",
        "architecture": "bert",
        "base": {"path": "../base", "id": "tiny", "weights_sha256": SHA},
        "adapter": {"type": "lora", "r": 4, "lora_alpha": 8, "use_rslora": False,
                    "target_modules": ["key", "query"], "modules_to_save": ["classifier"]},
        "labels": ["negative", "positive"],
        "max_seq_len": 32,
        "pooling": "pooler",
        "metrics": {"test": {"accuracy": 0.5}},
        "files": {"config.json": SHA, "report/split.json": SHA},
        "created_at": "2026-11-22T10:00:00Z",
        "lorakit_version": "0.1.0",
    }


def test_exported_manifest_round_trips_byte_for_byte(fixtures_dir: Path, tmp_path: Path) -> None:
    for name in ("tiny_bert_lora_a", "tiny_bert_full"):
        text = (fixtures_dir / name / MANIFEST_FILE).read_text("utf-8")
        manifest = read_manifest(fixtures_dir / name)
        assert manifest.to_json() == json.loads(text)
        write_manifest(tmp_path, manifest)
        assert (tmp_path / MANIFEST_FILE).read_text("utf-8") == text  # the on-disk format is unchanged
        assert read_manifest(tmp_path) == manifest


def test_typed_fields() -> None:
    manifest = Manifest.from_json(valid())
    assert manifest.labels == ("negative", "positive") and manifest.max_seq_len == 32
    assert manifest.base == BaseRef(path="../base", id="tiny", weights_sha256=SHA)
    assert manifest.adapter == AdapterInfo(type="lora", r=4, lora_alpha=8, use_rslora=False,
                                           target_modules=("key", "query"), modules_to_save=("classifier",))
    with pytest.raises(AttributeError):
        manifest.name = "other"  # type: ignore[misc]


def test_full_fine_tune_unknown_fields_and_informational_defaults() -> None:
    raw = valid()
    raw["adapter"] = None
    raw["base"] = {"path": None, "id": None, "weights_sha256": None}
    raw["from_a_newer_writer"] = {"anything": [1, 2]}
    for key in ("pooling", "metrics", "created_at", "lorakit_version"):
        del raw[key]
    manifest = Manifest.from_json(raw)
    assert manifest.adapter is None and manifest.base_dir(Path("/m")) is None  # a full fine-tune needs no base
    assert manifest.pooling == "unknown" and manifest.metrics == {} and manifest.created_at is None
    assert "from_a_newer_writer" not in manifest.to_json()


def test_float_lora_alpha() -> None:
    raw = valid()
    raw["adapter"]["lora_alpha"] = 12.5
    manifest = Manifest.from_json(raw)
    assert manifest.adapter is not None and manifest.adapter.lora_alpha == 12.5


def change(path: str, value: Any) -> dict[str, Any]:
    raw = valid()
    *parents, last = path.split(".")
    target = raw
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return raw


DELETE = object()
REJECTED = [
    # (raw manifest, field the message must name, words it must contain)
    ([valid()], "top level", "expected a JSON object"),
    ("text", "top level", "expected a JSON object"),
    (None, "top level", "expected a JSON object"),
    (change("labels", "negative,positive"), "labels", "expected a list"),
    (change("labels", ["negative", 1]), "labels[1]", "expected a string"),
    (change("max_seq_len", "32"), "max_seq_len", "expected an integer"),
    (change("max_seq_len", True), "max_seq_len", "expected an integer"),
    (change("max_seq_len", 32.0), "max_seq_len", "expected an integer"),
    (change("format_version", "1"), "format_version", "expected an integer"),
    (change("name", 7), "name", "expected a string"),
    (change("base", "../base"), "base", "expected a JSON object"),
    (change("base.weights_sha256", 5), "base.weights_sha256", "expected a string"),
    (change("adapter", ["lora"]), "adapter", "expected a JSON object"),
    (change("adapter.r", "4"), "adapter.r", "expected an integer"),
    (change("adapter.lora_alpha", "8"), "adapter.lora_alpha", "expected an integer or a number"),
    (change("adapter.use_rslora", 0), "adapter.use_rslora", "expected true or false"),
    (change("adapter.target_modules", "query"), "adapter.target_modules", "expected a list"),
    (change("files", ["config.json"]), "files", "expected a JSON object"),
    (change("files", {"config.json": 1}), "files['config.json']", "expected a string"),
    (change("metrics", []), "metrics", "expected a JSON object"),
    (change("pooling", 1), "pooling", "expected a string"),
    *[(change(key, DELETE), key, "missing") for key in
      ("format_version", "name", "task", "architecture", "base", "labels", "max_seq_len", "files")],
    (change("adapter", DELETE), "adapter", "missing (null for a full fine-tune)"),
    (change("adapter.r", DELETE), "adapter.r", "missing"),
    (change("format_version", 2), "format_version", "2 is not supported"),
    (change("format_version", 0), "format_version", "0 is not supported"),
    (change("task", "summarization"), "task", "unknown task 'summarization'"),
    (change("labels", []), "labels", "must not be empty"),
    (change("labels", ["a", "b", "a"]), "labels", "duplicate label(s) 'a'"),
    (change("max_seq_len", 0), "max_seq_len", "must be positive, got 0"),
    (change("max_seq_len", -8), "max_seq_len", "must be positive, got -8"),
    (change("name", ""), "name", "must not be empty"),
    (change("architecture", ""), "architecture", "must not be empty"),
    (change("adapter.type", "ia3"), "adapter.type", "'ia3' is not supported"),
    (change("adapter.r", 0), "adapter.r", "must be positive"),
    (change("base.weights_sha256", "XYZ"), "base.weights_sha256", "not a lower-case hex sha256"),
    (change("files", {"config.json": "abc"}), "files['config.json']", "not a lower-case hex sha256"),
    (change("files", {"../outside": SHA}), "files", "not a relative path inside the model directory"),
    (change("files", {"/etc/passwd": SHA}), "files", "not a relative path inside the model directory"),
]


@pytest.mark.parametrize(("raw", "field_name", "words"), REJECTED, ids=[f"{r[1]}:{r[2]}" for r in REJECTED])
def test_every_defect_is_a_one_line_error_naming_file_and_field(raw: Any, field_name: str, words: str,
                                                                 tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(raw), "utf-8")
    with pytest.raises(ModelDirError) as caught:
        read_manifest(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / MANIFEST_FILE}: {field_name}: "), message
    assert words in message and "\n" not in message
    assert isinstance(caught.value, ManifestError) and caught.value.field_name == field_name


def test_format_version_is_checked_before_anything_else() -> None:
    raw = {"format_version": 2, "labels": "a newer writer may change every other field"}
    with pytest.raises(ModelDirError, match="format_version: 2 is not supported"):
        Manifest.from_json(raw, "x.json")


@pytest.mark.parametrize(("content", "words"), [
    ('{"format_version": 1, "name": ', "invalid JSON"),
    ("", "invalid JSON"),
    (b"\xff\xfe{}", "invalid JSON"),
])
def test_unreadable_json(tmp_path: Path, content: str | bytes, words: str) -> None:
    path = tmp_path / MANIFEST_FILE
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ModelDirError, match=words) as caught:
        read_manifest(tmp_path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_missing_manifest_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="not a lorakit model directory"):
        read_manifest(tmp_path)
    with pytest.raises(ModelDirError, match="not a directory"):
        read_manifest(tmp_path / "absent")


def test_the_writer_cannot_build_what_the_reader_refuses(tmp_path: Path) -> None:
    good = Manifest.from_json(valid())
    with pytest.raises(ManifestError, match="labels: duplicate"):
        Manifest(**{**good.__dict__, "labels": ("a", "a")})
    with pytest.raises(ManifestError, match="max_seq_len: must be positive"):
        Manifest(**{**good.__dict__, "max_seq_len": 0})
    raw = copy.deepcopy(valid())
    write_manifest(tmp_path, Manifest.from_json(raw))
    assert json.loads((tmp_path / MANIFEST_FILE).read_text("utf-8")) == raw


def task_manifest(task: str, **fields: Any) -> dict[str, Any]:
    raw = valid()
    raw["task"] = task
    if task == "token_classification":
        raw |= {"labels": ["O", "B-PER", "I-PER"], "pooling": None, "aggregation": "first"}
    if task == "embedding":
        raw |= {"labels": [], "pooling": "mean", "normalize": True}
        raw["adapter"]["modules_to_save"] = []
    return raw | fields


def test_task_fields_are_typed() -> None:
    unsafe = Manifest.from_json(valid() | {"labels": ["benign", "injection", "jailbreak"],
                                           "unsafe_labels": ["jailbreak", "injection"]})
    assert unsafe.unsafe_labels == ("jailbreak", "injection")
    assert Manifest.from_json(valid()).unsafe_labels is None
    token = Manifest.from_json(task_manifest("token_classification"))
    assert token.aggregation == "first" and token.pooling is None and token.normalize is None
    embedding = Manifest.from_json(task_manifest("embedding"))
    assert embedding.labels == () and embedding.pooling == "mean" and embedding.normalize is True
    assert "unsafe_labels" not in embedding.to_json() and embedding.to_json()["normalize"] is True
    assert Manifest.from_json(embedding.to_json()) == embedding


TASK_REJECTED = [
    (valid() | {"unsafe_labels": ["malware"]}, "unsafe_labels", "'malware' not in labels"),
    (valid() | {"unsafe_labels": []}, "unsafe_labels", "must not be empty"),
    (valid() | {"unsafe_labels": "negative"}, "unsafe_labels", "expected a list"),
    (valid() | {"normalize": True}, "normalize", "belongs to task 'embedding'"),
    (valid() | {"aggregation": "first"}, "aggregation", "belongs to task 'token_classification'"),
    (task_manifest("embedding", labels=["a", "b"]), "labels", "must be empty for an embedding model"),
    (task_manifest("embedding", pooling="pooler"), "pooling", "'pooler' is not an embedding pooling"),
    (task_manifest("embedding", pooling=None), "pooling", "None is not an embedding pooling"),
    (task_manifest("embedding", normalize=None), "normalize", "missing"),
    (task_manifest("embedding", normalize="yes"), "normalize", "expected true or false"),
    (task_manifest("embedding", unsafe_labels=["a"]), "unsafe_labels", "belongs to task 'sequence_classification'"),
    (task_manifest("token_classification", labels=[]), "labels", "must not be empty"),
    (task_manifest("token_classification", labels=["O", "PER"]), "labels", "'PER' is not an IOB2 tag"),
    (task_manifest("token_classification", labels=["O", "B-"]), "labels", "'B-' is not an IOB2 tag"),
    (task_manifest("token_classification", aggregation=None), "aggregation", "missing"),
    (task_manifest("token_classification", aggregation="max"), "aggregation", "'max' is not supported"),
    (task_manifest("token_classification", normalize=False), "normalize", "belongs to task 'embedding'"),
]


@pytest.mark.parametrize(("raw", "field_name", "words"), TASK_REJECTED,
                         ids=[f"{r[1]}:{r[2]}" for r in TASK_REJECTED])
def test_task_field_defects_are_one_line_errors(raw: Any, field_name: str, words: str, tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(raw), "utf-8")
    with pytest.raises(ManifestError) as caught:
        read_manifest(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / MANIFEST_FILE}: {field_name}: "), message
    assert words in message and "\n" not in message


def test_task_fixture_manifests_round_trip(task_fixtures: Path, tmp_path: Path) -> None:
    for name in ("tiny_bert_token_lora", "tiny_bert_embed_lora"):
        text = (task_fixtures / name / MANIFEST_FILE).read_text("utf-8")
        manifest = read_manifest(task_fixtures / name)
        assert manifest.to_json() == json.loads(text)
        write_manifest(tmp_path, manifest)
        assert (tmp_path / MANIFEST_FILE).read_text("utf-8") == text


CALIBRATION = {"temperature": 1.42, "review_threshold": 0.71, "target_precision": 0.95, "fitted_on": "validation"}


def test_calibration_is_typed_and_round_trips(tmp_path: Path) -> None:
    manifest = Manifest.from_json(valid() | {"calibration": CALIBRATION})
    assert manifest.calibration == Calibration(temperature=1.42, review_threshold=0.71, target_precision=0.95,
                                               fitted_on="validation")
    assert manifest.temperature == 1.42 and manifest.review_threshold == 0.71
    assert manifest.to_json()["calibration"] == CALIBRATION
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    # Absent or null: no calibration, temperature 1, and the writer adds no key.
    for raw in (valid(), valid() | {"calibration": None}):
        plain = Manifest.from_json(raw)
        assert plain.calibration is None and plain.temperature == 1.0 and plain.review_threshold is None
        assert "calibration" not in plain.to_json()
    minimal = Manifest.from_json(valid() | {"calibration": {"temperature": 2}})
    assert minimal.calibration == Calibration(temperature=2)
    assert Calibration.from_json(CALIBRATION).to_json() == CALIBRATION


def test_review_verdicts() -> None:
    calibration = Calibration(temperature=1.0, review_threshold=0.7)
    assert calibration.needs_review(0.69) and not calibration.needs_review(0.7)
    assert calibration.needs_review(float("nan"))
    assert not Calibration(temperature=1.0).needs_review(0.0)


def calibrated(**fields: Any) -> dict[str, Any]:
    return valid() | {"calibration": CALIBRATION | fields}


CALIBRATION_REJECTED = [
    (calibrated(temperature=0), "calibration.temperature", "must be finite and > 0"),
    (calibrated(temperature=-1.0), "calibration.temperature", "must be finite and > 0"),
    (calibrated(temperature=1e300), "calibration.temperature", "as a 32-bit float"),
    (calibrated(temperature=1e-300), "calibration.temperature", "as a 32-bit float"),
    (calibrated(temperature="1.4"), "calibration.temperature", "expected an integer or a number"),
    (calibrated(temperature=True), "calibration.temperature", "expected an integer or a number"),
    (calibrated(temperature=None), "calibration.temperature", "expected an integer or a number"),
    (valid() | {"calibration": {"review_threshold": 0.5}}, "calibration.temperature", "missing"),
    (calibrated(review_threshold=1.5), "calibration.review_threshold", "must be null or in [0, 1]"),
    (calibrated(review_threshold=-0.1), "calibration.review_threshold", "must be null or in [0, 1]"),
    (calibrated(review_threshold="high"), "calibration.review_threshold", "expected an integer or a number"),
    (calibrated(target_precision=0), "calibration.target_precision", "must be in (0, 1]"),
    (calibrated(target_precision=1.2), "calibration.target_precision", "must be in (0, 1]"),
    (calibrated(fitted_on=3), "calibration.fitted_on", "expected a string"),
    (valid() | {"calibration": [1.4]}, "calibration", "expected a JSON object"),
    (task_manifest("token_classification", calibration=CALIBRATION), "calibration",
     "belongs to task 'sequence_classification'"),
    (task_manifest("embedding", calibration=CALIBRATION), "calibration", "belongs to task 'sequence_classification'"),
]


@pytest.mark.parametrize(("raw", "field_name", "words"), CALIBRATION_REJECTED,
                         ids=[f"{r[1]}:{r[2]}" for r in CALIBRATION_REJECTED])
def test_calibration_defects_are_one_line_errors_naming_the_field(raw: Any, field_name: str, words: str,
                                                                 tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(raw), "utf-8")
    with pytest.raises(ManifestError) as caught:
        read_manifest(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / MANIFEST_FILE}: {field_name}: "), message
    assert words in message and "\n" not in message
    assert caught.value.field_name == field_name


def test_the_writer_cannot_build_a_calibration_the_reader_refuses() -> None:
    good = Manifest.from_json(valid())
    with pytest.raises(ManifestError, match="calibration.temperature: must be finite"):
        Calibration(temperature=float("inf"))
    with pytest.raises(ManifestError, match="calibration.review_threshold"):
        Calibration(temperature=1.0, review_threshold=2.0)
    with pytest.raises(ManifestError, match="calibration: expected a Calibration"):
        Manifest(**{**good.__dict__, "calibration": CALIBRATION})
    token = Manifest.from_json(task_manifest("token_classification"))
    with pytest.raises(ManifestError, match="calibration: belongs to task 'sequence_classification'"):
        Manifest(**{**token.__dict__, "calibration": Calibration(temperature=1.5)})
