#!/usr/bin/env python3
"""Build a corpus of malformed model directories, one defect each, shared by the Python, Rust and Go tests.

Usage: make_malformed.py OUT_DIR FIXTURES_DIR

Each case is a copy of a fixture (tiny_bert_full for mode "merged", tiny_bert_lora_a for mode "runtime", or the
fixture the case names, e.g. tiny_bert_calibrated for the calibration cases) with base.path made absolute, one
defect, and the manifest sha256 of every file changed on purpose refreshed, so a loader reaches the defect itself
rather than a checksum failure (except in the checksum case).
OUT_DIR/cases.json lists {"name", "kind", "mode", "manifest_level", "what"}; "kind" is the error kind every
runtime must report (io, format, config, shape, unsupported); "manifest_level" cases are refused by the
manifest reader alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

CASES_FILE = "cases.json"
SOURCES = {"merged": "tiny_bert_full", "runtime": "tiny_bert_lora_a"}
CALIBRATED_SOURCE = "tiny_bert_calibrated"
TOKEN_SOURCE = "tiny_bert_token_lora"
KINDS = ("io", "format", "config", "shape", "unsupported")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    mode: str
    manifest_level: bool
    what: str


Defect = Callable[[Path], None]
REGISTRY: list[tuple[Case, Defect]] = []
CASE_SOURCES: dict[str, str] = {}  # the fixture a case copies, when not its mode's SOURCES entry


def case(name: str, kind: str, mode: str, what: str, manifest_level: bool = False,
         source: str | None = None) -> Callable[[Defect], Defect]:
    assert kind in KINDS and mode in SOURCES, (name, kind, mode)

    def register(defect: Defect) -> Defect:
        REGISTRY.append((Case(name, kind, mode, manifest_level, what), defect))
        if source is not None:
            CASE_SOURCES[name] = source
        return defect

    return register


# --- helpers -------------------------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def edit_manifest(model_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    manifest = read_json(model_dir / "lorakit.json")
    edit(manifest)
    write_json(model_dir / "lorakit.json", manifest)


def refresh_checksum(model_dir: Path, rel: str) -> None:
    """The file was changed on purpose: record its new sha256 so only its content is wrong."""
    digest = hashlib.sha256((model_dir / rel).read_bytes()).hexdigest()
    edit_manifest(model_dir, lambda m: m["files"].__setitem__(rel, digest))


def edit_json_file(model_dir: Path, rel: str, edit: Callable[[dict[str, Any]], None]) -> None:
    value = read_json(model_dir / rel)
    edit(value)
    write_json(model_dir / rel, value)
    refresh_checksum(model_dir, rel)


def replace_bytes(model_dir: Path, rel: str, data: bytes) -> None:
    (model_dir / rel).write_bytes(data)
    refresh_checksum(model_dir, rel)


def edit_tensors(model_dir: Path, rel: str, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Rewrite a safetensors file through `edit`, keeping its metadata."""
    path = model_dir / rel
    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    edit(tensors)
    save_file(tensors, str(path), metadata=metadata)
    refresh_checksum(model_dir, rel)


def copy_fixture(source: Path, target: Path) -> None:
    """Copy with base.path absolute, so the copy finds the base wherever it lives (as the Rust tests do)."""
    shutil.copytree(source, target)

    def absolute_base(manifest: dict[str, Any]) -> None:
        base = manifest.get("base") or {}
        if base.get("path") and not Path(base["path"]).is_absolute():
            base["path"] = str((source / base["path"]).resolve())

    edit_manifest(target, absolute_base)


# --- lorakit.json --------------------------------------------------------------------------------------------


@case("manifest_missing", "io", "merged", "lorakit.json does not exist", manifest_level=True)
def _manifest_missing(d: Path) -> None:
    (d / "lorakit.json").unlink()


@case("manifest_not_json", "format", "merged", "lorakit.json is cut off in the middle (not JSON)",
      manifest_level=True)
def _manifest_not_json(d: Path) -> None:
    text = (d / "lorakit.json").read_text(encoding="utf-8")
    (d / "lorakit.json").write_text(text[: len(text) // 2], encoding="utf-8")


@case("manifest_json_list", "format", "merged", "lorakit.json is a JSON list, not an object", manifest_level=True)
def _manifest_json_list(d: Path) -> None:
    write_json(d / "lorakit.json", [read_json(d / "lorakit.json")])


@case("manifest_labels_string", "format", "merged", "manifest labels is a string, not a list",
      manifest_level=True)
def _manifest_labels_string(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("labels", ",".join(m["labels"])))


@case("manifest_max_seq_len_string", "format", "merged", 'manifest max_seq_len is the string "32"',
      manifest_level=True)
def _manifest_max_seq_len_string(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("max_seq_len", str(m["max_seq_len"])))


@case("manifest_json_string", "format", "merged", "lorakit.json is a JSON string, not an object",
      manifest_level=True)
def _manifest_json_string(d: Path) -> None:
    write_json(d / "lorakit.json", "lorakit")


@case("format_version_2", "unsupported", "merged", "manifest format_version is 2 (this release reads 1)",
      manifest_level=True)
def _format_version_2(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("format_version", 2))


@case("architecture_unknown", "unsupported", "merged", 'manifest architecture is "gpt2", which no runtime serves')
def _architecture_unknown(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("architecture", "gpt2"))


@case("task_unknown", "unsupported", "merged", 'manifest task is "summarization", not a format_version 1 task',
      manifest_level=True)
def _task_unknown(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("task", "summarization"))


@case("labels_empty", "config", "merged", "manifest labels is an empty list", manifest_level=True)
def _labels_empty(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("labels", []))


@case("labels_duplicate", "config", "merged",
      "manifest labels (and config.json id2label) name the same label twice", manifest_level=True)
def _labels_duplicate(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("labels", [m["labels"][0]] * len(m["labels"])))

    def duplicate(config: dict[str, Any]) -> None:
        first = config["id2label"]["0"]
        config["id2label"] = {key: first for key in config["id2label"]}
        config["label2id"] = {first: 0}

    edit_json_file(d, "config.json", duplicate)


@case("max_seq_len_zero", "config", "merged", "manifest max_seq_len is 0", manifest_level=True)
def _max_seq_len_zero(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("max_seq_len", 0))


@case("labels_disagree_with_config", "config", "merged",
      "config.json id2label lists the manifest labels in the opposite order")
def _labels_disagree(d: Path) -> None:
    def reverse(config: dict[str, Any]) -> None:
        names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))][::-1]
        config["id2label"] = {str(i): name for i, name in enumerate(names)}
        config["label2id"] = {name: i for i, name in enumerate(names)}

    edit_json_file(d, "config.json", reverse)


@case("manifest_labels_reordered", "config", "merged",
      "lorakit.json lists the labels in the opposite order to config.json id2label (and the head)")
def _manifest_labels_reordered(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("labels", m["labels"][::-1]))


@case("architecture_disagrees_with_config", "config", "merged",
      'manifest architecture is "roberta" but config.json model_type is "bert"')
def _architecture_disagrees(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("architecture", "roberta"))


# --- lorakit.json calibration (docs/FORMAT.md: sequence classifiers only) -------------------------------------


# Valid for a sequence classifier (tiny_bert_calibrated's own), so only the task is wrong.
VALID_CALIBRATION = {"temperature": 1.7, "review_threshold": 0.45, "target_precision": 0.9, "fitted_on": "validation"}


def edit_calibration(model_dir: Path, field: str, value: Any) -> None:
    edit_manifest(model_dir, lambda m: m["calibration"].__setitem__(field, value))


@case("calibration_temperature_zero", "config", "runtime", "manifest calibration.temperature is 0",
      manifest_level=True, source=CALIBRATED_SOURCE)
def _calibration_temperature_zero(d: Path) -> None:
    edit_calibration(d, "temperature", 0)


@case("calibration_temperature_string", "format", "runtime", 'manifest calibration.temperature is the string "1.5"',
      manifest_level=True, source=CALIBRATED_SOURCE)
def _calibration_temperature_string(d: Path) -> None:
    edit_calibration(d, "temperature", "1.5")


@case("calibration_review_threshold_above_one", "config", "runtime",
      "manifest calibration.review_threshold is 1.5 (a probability is at most 1)", manifest_level=True,
      source=CALIBRATED_SOURCE)
def _calibration_review_threshold_above_one(d: Path) -> None:
    edit_calibration(d, "review_threshold", 1.5)


@case("calibration_not_an_object", "format", "runtime", "manifest calibration is a number, not an object",
      manifest_level=True, source=CALIBRATED_SOURCE)
def _calibration_not_an_object(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("calibration", m["calibration"]["temperature"]))


@case("calibration_on_token_classification", "config", "runtime",
      "a token_classification manifest carries the calibration object of a sequence classifier",
      manifest_level=True, source=TOKEN_SOURCE)
def _calibration_on_token_classification(d: Path) -> None:
    edit_manifest(d, lambda m: m.__setitem__("calibration", dict(VALID_CALIBRATION)))


# --- config and tokenizer ------------------------------------------------------------------------------------


@case("config_missing", "io", "merged", "config.json does not exist (still listed in the manifest)")
def _config_missing(d: Path) -> None:
    (d / "config.json").unlink()


@case("tokenizer_missing", "io", "merged", "tokenizer.json does not exist (still listed in the manifest)")
def _tokenizer_missing(d: Path) -> None:
    (d / "tokenizer.json").unlink()


@case("tokenizer_not_a_tokenizer", "format", "merged", "tokenizer.json is valid JSON but not a tokenizer")
def _tokenizer_not_a_tokenizer(d: Path) -> None:
    replace_bytes(d, "tokenizer.json", b'{"hello": "world"}\n')


@case("tokenizer_truncated", "format", "merged", "tokenizer.json is cut off in the middle (not JSON)")
def _tokenizer_truncated(d: Path) -> None:
    data = (d / "tokenizer.json").read_bytes()
    replace_bytes(d, "tokenizer.json", data[: len(data) // 2])


# --- weights -------------------------------------------------------------------------------------------------


@case("weights_missing", "io", "merged", "model.safetensors does not exist and there is no adapter to fold in")
def _weights_missing(d: Path) -> None:
    (d / "model.safetensors").unlink()


@case("weights_truncated", "format", "merged", "model.safetensors is cut off at half its length")
def _weights_truncated(d: Path) -> None:
    data = (d / "model.safetensors").read_bytes()
    replace_bytes(d, "model.safetensors", data[: len(data) // 2])


@case("weights_empty", "format", "merged", "model.safetensors is a zero-length file")
def _weights_empty(d: Path) -> None:
    replace_bytes(d, "model.safetensors", b"")


@case("weights_header_lies", "format", "merged",
      "the safetensors header declares its last tensor twice as large as the data that follows")
def _weights_header_lies(d: Path) -> None:
    data = (d / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    tensors = [value for key, value in header.items() if key != "__metadata__"]
    entry = max(tensors, key=lambda value: value["data_offsets"][1])  # the one that ends the file
    start, end = entry["data_offsets"]
    entry["shape"] = [entry["shape"][0] * 2, *entry["shape"][1:]]
    entry["data_offsets"] = [start, start + 2 * (end - start)]
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes
    replace_bytes(d, "model.safetensors", struct.pack("<Q", len(raw)) + raw + data[8 + length :])


@case("classifier_wrong_shape", "shape", "merged",
      "classifier.weight has one row more than there are labels (and than config.json num_labels)")
def _classifier_wrong_shape(d: Path) -> None:
    def extra_row(tensors: dict[str, np.ndarray]) -> None:
        weight = tensors["classifier.weight"]
        tensors["classifier.weight"] = np.concatenate([weight, weight[:1]], axis=0)

    edit_tensors(d, "model.safetensors", extra_row)


@case("checksum_mismatch", "format", "merged",
      "one bit of model.safetensors flipped after export; the manifest sha256 no longer matches")
def _checksum_mismatch(d: Path) -> None:
    data = bytearray((d / "model.safetensors").read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    data[8 + length] ^= 1  # lowest mantissa bit of the first weight: only the checksum can tell
    (d / "model.safetensors").write_bytes(bytes(data))


# --- adapter (runtime mode) ----------------------------------------------------------------------------------


@case("adapter_use_dora", "unsupported", "runtime", "adapter_config.json has use_dora true")
def _adapter_use_dora(d: Path) -> None:
    edit_json_file(d, "adapter_config.json", lambda c: c.__setitem__("use_dora", True))


@case("adapter_unknown_target", "unsupported", "runtime",
      'adapter_config.json target_modules adds "frobnicator", a module BERT does not have')
def _adapter_unknown_target(d: Path) -> None:
    edit_json_file(d, "adapter_config.json",
                   lambda c: c.__setitem__("target_modules", [*c["target_modules"], "frobnicator"]))


@case("adapter_lora_b_missing", "format", "runtime",
      "adapter_model.safetensors lacks the lora_B tensor of layer 0's query")
def _adapter_lora_b_missing(d: Path) -> None:
    key = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight"
    edit_tensors(d, "adapter_model.safetensors", lambda tensors: tensors.pop(key))


@case("adapter_weights_truncated", "format", "runtime", "adapter_model.safetensors is cut off at half its length")
def _adapter_weights_truncated(d: Path) -> None:
    data = (d / "adapter_model.safetensors").read_bytes()
    replace_bytes(d, "adapter_model.safetensors", data[: len(data) // 2])


@case("adapter_weights_empty", "format", "runtime", "adapter_model.safetensors is a zero-length file")
def _adapter_weights_empty(d: Path) -> None:
    replace_bytes(d, "adapter_model.safetensors", b"")


@case("base_missing", "io", "runtime", "manifest base.path names a directory that does not exist")
def _base_missing(d: Path) -> None:
    edit_manifest(d, lambda m: m["base"].__setitem__("path", str(d / "no_such_base")))


# --- driver --------------------------------------------------------------------------------------------------


def build_malformed(out_dir: Path, fixtures_dir: Path) -> list[Case]:
    """(Re)build every case under out_dir and write out_dir/cases.json; returns the cases."""
    out_dir, fixtures_dir = Path(out_dir).absolute(), Path(fixtures_dir).absolute()
    sources = {spec.name: CASE_SOURCES.get(spec.name, SOURCES[spec.mode]) for spec, _ in REGISTRY}
    missing = sorted({name for name in sources.values() if not (fixtures_dir / name / "lorakit.json").is_file()})
    if missing:
        raise SystemExit(f"{fixtures_dir}: fixtures {', '.join(missing)} missing; run scripts/make_fixtures.py first")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    for spec, defect in REGISTRY:
        target = out_dir / spec.name
        copy_fixture(fixtures_dir / sources[spec.name], target)
        defect(target)
    cases = [spec for spec, _ in REGISTRY]
    write_json(out_dir / CASES_FILE, [asdict(spec) for spec in cases])
    return cases


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("fixtures_dir", type=Path)
    args = parser.parse_args(argv)
    cases = build_malformed(args.out_dir, args.fixtures_dir)
    print(f"{len(cases)} malformed model directories in {args.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
