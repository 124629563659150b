"""The shared corpus of malformed model directories (scripts/make_malformed.py): every runtime refuses each case
with the error kind the case names, and `lorakit verify` reports it in one line, never with a traceback."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from lorakit import errors
from lorakit.errors import LorakitError, ModelDirError
from lorakit.manifest import check_files, read_manifest

ROOT = Path(__file__).resolve().parents[1]
KIND_CLASS = {"io": "IoError", "format": "FormatError", "config": "ConfigError", "shape": "ShapeError",
              "unsupported": "UnsupportedError"}
REQUIRED = {"manifest_missing", "manifest_not_json", "manifest_json_list", "manifest_labels_string",
            "format_version_2", "architecture_unknown", "task_unknown", "labels_empty", "labels_disagree_with_config",
            "architecture_disagrees_with_config", "config_missing", "tokenizer_missing", "tokenizer_not_a_tokenizer",
            "weights_missing", "weights_truncated", "weights_empty", "weights_header_lies", "classifier_wrong_shape",
            "checksum_mismatch", "adapter_use_dora", "adapter_unknown_target", "adapter_lora_b_missing",
            "calibration_temperature_zero", "calibration_temperature_string", "calibration_review_threshold_above_one",
            "calibration_on_token_classification", "calibration_not_an_object"}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_malformed", ROOT / "scripts" / "make_malformed.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()
CASES = [case for case, _ in GENERATOR.REGISTRY]
IDS = [case.name for case in CASES]


@pytest.fixture(scope="session")
def malformed(task_fixtures: Path, fixture_builder: ModuleType) -> Path:
    """The corpus, built from this run's fixtures plus the calibrated and token classification sources."""
    calibrated = task_fixtures / GENERATOR.CALIBRATED_SOURCE
    if not calibrated.is_dir():
        fixture_builder.build_calibrated(task_fixtures / "tiny_bert_lora_a", calibrated)
    out = task_fixtures / "malformed"
    GENERATOR.build_malformed(out, task_fixtures)
    return out


def test_cases_json_describes_every_case(malformed: Path) -> None:
    listed = json.loads((malformed / "cases.json").read_text("utf-8"))
    assert [entry["name"] for entry in listed] == IDS and len(set(IDS)) == len(IDS)
    assert REQUIRED <= set(IDS)
    for entry in listed:
        assert set(entry) == {"name", "kind", "mode", "manifest_level", "what"}
        assert entry["kind"] in KIND_CLASS and entry["mode"] in ("merged", "runtime") and entry["what"]
        assert (malformed / entry["name"]).is_dir()
    assert {entry["kind"] for entry in listed} == set(KIND_CLASS)


@pytest.mark.parametrize("case", [c for c in CASES if not c.manifest_level], ids=lambda c: c.name)
def test_only_the_intended_defect(malformed: Path, case: Any) -> None:
    """Files changed on purpose carry fresh checksums and base.path resolves: the loader reaches the defect."""
    model_dir = malformed / case.name
    manifest = read_manifest(model_dir)
    base = manifest.base.path
    assert base is not None and Path(base).is_absolute()
    assert Path(base).is_dir() or case.name == "base_missing"
    wrong = [rel for rel in check_files(model_dir, manifest) if (model_dir / rel).exists()]
    assert wrong == (["model.safetensors"] if case.name == "checksum_mismatch" else [])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_native_raises_the_class_of_the_kind(malformed: Path, case: Any) -> None:
    from lorakit import _native

    expected = getattr(_native, KIND_CLASS[case.kind])
    assert issubclass(expected, LorakitError), f"{expected} must subclass lorakit.errors.LorakitError"
    with pytest.raises(LorakitError) as caught:
        _native.Model.load(str(malformed / case.name), merged=case.mode == "merged")
    assert isinstance(caught.value, expected), f"{case.what}: got {type(caught.value).__name__}: {caught.value}"
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_manifest_reader_refuses_exactly_the_manifest_level_cases(malformed: Path, case: Any) -> None:
    if case.manifest_level:
        with pytest.raises(ModelDirError) as caught:
            read_manifest(malformed / case.name)
        expected = getattr(errors, KIND_CLASS[case.kind])
        assert isinstance(caught.value, expected), f"{case.what}: got {type(caught.value).__name__}: {caught.value}"
        assert "\n" not in str(caught.value)
    else:
        assert read_manifest(malformed / case.name).name


@pytest.fixture(scope="session")
def verify_runs(malformed: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """`lorakit verify` on every case, several processes at a time (each loads torch: seconds apiece)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "python"), os.environ.get("PYTHONPATH")]))}

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lorakit.cli", "verify", str(malformed / name)],
                              capture_output=True, text=True, env=env, timeout=600)

    with ThreadPoolExecutor(max_workers=min(8, max(4, os.cpu_count() or 1))) as pool:  # mostly import time
        return dict(zip(IDS, pool.map(run, IDS), strict=True))


BACKEND_ROW = re.compile(r"^  \S+ +\S+ +(True|False) +(True|False) +(ok|FAIL)$")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cli_verify_fails_in_one_line_per_backend(verify_runs: dict[str, Any], case: Any) -> None:
    result = verify_runs[case.name]
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if not re.fullmatch(r"checking \S+ \.\.\.", line)]
    assert len(errors) <= 1 and all(line.startswith("lorakit verify: error: ") for line in errors), result.stderr
    if errors:  # refused before any backend ran (an unreadable manifest)
        assert result.returncode == 2 and result.stdout == ""
        return
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(verify_runs[case.name].args[-1])) and lines[-1] == "FAIL", result.stdout
    assert lines[1].startswith("  checksums ") and lines[2].startswith("  backend ")
    failing = 0
    for previous, line in itertools.pairwise(lines[2:-1]):
        if line.startswith("    worst: "):
            assert previous.endswith("FAIL"), f"more than one line for a failing backend:\n{result.stdout}"
        else:
            match = BACKEND_ROW.match(line)
            assert match, f"unexpected report line {line!r}:\n{result.stdout}"
            failing += match.group(3) == "FAIL"
    assert failing >= 1 or "checksums        FAIL" in lines[1]
