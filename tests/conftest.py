"""Shared pytest fixtures: tiny models built by scripts/make_fixtures.py, small labelled files."""

from __future__ import annotations

import csv
import importlib.util
import os
import random
import sys
from collections.abc import Sequence
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


@pytest.fixture(scope="session")
def gemma_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gemma-3-270m dequantized by `lorakit base` once per session (a minute on 2 cores), outside the user's cache."""
    from lorakit.cli import main

    out = tmp_path_factory.mktemp("bases") / "gemma-3-270m"
    assert main(["base", "gemma-3-270m", "--output", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def task_fixtures(fixtures_dir: Path, fixture_builder: ModuleType) -> Path:
    """The token classification and embedding fixtures on tiny_bert_base, next to the others."""
    base = fixtures_dir / "tiny_bert_base"
    fixture_builder.build_token_lora(base, fixtures_dir / "tiny_bert_token_lora")
    fixture_builder.build_embed_lora(base, fixtures_dir / "tiny_bert_embed_lora")
    return fixtures_dir


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


NAMES = ["Ana Lopez", "Bob Smith", "Zoë Müller", "Li Wei", "Omar Haddad", "Eve Stone", "Jean Picard", "Mia Rossi"]
CITIES = ["Paris", "New York", "Köln", "Lisbon", "Tokyo", "São Paulo", "Cairo", "Oslo"]
TEMPLATES = ["{name} lives in {city}", "yesterday {name} flew to {city} again", "{city} welcomed {name}",
             "a letter from {city} for {name}", "nothing to see here", "{name} met {name2} in {city}"]


def write_token_jsonl(path: Path, rows: int = 90, seed: int = 0, templates: Sequence[str] = TEMPLATES) -> Path:
    """Character-span records from `templates` (template_id is the group), some without entities."""
    import json

    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            template_id = i % len(templates)
            text, spans = "", []
            parts = templates[template_id].replace("{", "\0{").replace("}", "}\0").split("\0")
            for part in parts:
                if part in ("{name}", "{name2}", "{city}"):
                    value = rng.choice(CITIES if part == "{city}" else NAMES)
                    spans.append({"start": len(text), "end": len(text) + len(value),
                                  "label": "LOC" if part == "{city}" else "PER"})
                    text += value
                else:
                    text += part
            handle.write(json.dumps({"text": text, "spans": spans, "template_id": template_id},
                                    ensure_ascii=False) + "\n")
    return path


def write_pairs_csv(path: Path, rows: int = 48, seed: int = 0) -> Path:
    """Scored pairs: same-topic pairs score high, cross-topic pairs low."""
    rng = random.Random(seed)
    topics = list(WORDS)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "text_pair", "score"])
        for i in range(rows):
            first = topics[i % len(topics)]
            second = first if i % 2 == 0 else topics[(i + 1) % len(topics)]
            writer.writerow([" ".join(rng.choice(WORDS[first]) for _ in range(4)),
                             " ".join(rng.choice(WORDS[second]) for _ in range(4)), 0.9 if first == second else 0.1])
    return path


GUARD_LABELS = ["negative", "neutral", "positive"]
# "positive" is declared unsafe on purpose: a verdict read from label text ("injection", "unsafe") would differ.
GUARD_UNSAFE = ["positive", "neutral"]


def export_guard(fixture_builder: ModuleType, base: Path, out: Path) -> Path:
    """A sequence classifier declaring `unsafe_labels`, with LoRA as tiny_bert_lora_a (its top labels vary)."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoTokenizer

    from lorakit.export import export_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, modules_to_save=["classifier"],
                        target_modules=["query", "key", "value", "dense"])
    model = get_peft_model(fixture_builder.classifier(base, GUARD_LABELS, seed=11), config)
    fixture_builder.randomize_lora(model, seed=12)
    return export_model(model, AutoTokenizer.from_pretrained(base), out, labels=GUARD_LABELS, max_seq_len=32,
                        base_path=base, golden_examples=fixture_builder.FIXTURE_TEXTS, unsafe_labels=GUARD_UNSAFE)
