"""Shared pytest fixtures: tiny models built by scripts/make_fixtures.py, small labelled files."""

from __future__ import annotations

import csv
import importlib.util
import os
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
for source in (ROOT / "python", ROOT / "scripts"):
    if str(source) not in sys.path:
        sys.path.insert(0, str(source))


def load_fixture_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "scripts" / "make_fixtures.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fixture_builder() -> ModuleType:
    return load_fixture_builder()


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory, fixture_builder: ModuleType) -> Path:
    """Fresh tiny fixtures for this run (never the shared .fixtures, which tests tamper with copies of)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    out = tmp_path_factory.mktemp("fixtures")
    base = fixture_builder.build_tiny_base(out / "tiny_bert_base")
    fixture_builder.build_lora_a(base, out / "tiny_bert_lora_a")
    fixture_builder.build_lora_b(base, out / "tiny_bert_lora_b")
    fixture_builder.build_full(base, out / "tiny_bert_full")
    return out


WORDS = {
    "positive": "great lovely excellent good fine happy superb".split(),
    "negative": "bad awful terrible poor sad horrible worst".split(),
    "neutral": "table chair window door paper pencil street".split(),
}


def write_labelled_csv(path: Path, rows: int = 60, groups: int = 10, seed: int = 0) -> Path:
    rng = random.Random(seed)
    labels = list(WORDS)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "group"])
        for i in range(rows):
            label = labels[i % len(labels)]
            writer.writerow([" ".join(rng.choice(WORDS[label]) for _ in range(5)), label, f"g{i % groups}"])
    return path


@pytest.fixture
def labelled_csv(tmp_path: Path) -> Path:
    return write_labelled_csv(tmp_path / "data.csv")


def pytest_configure(config: pytest.Config) -> None:
    # transformers 5 warns about its own deprecated alias whenever PEFT wraps a model; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:.*is_gradient_checkpointing.*:FutureWarning")
