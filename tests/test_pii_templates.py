"""scripts/pii_templates.py: Presidio's masked templates filled with Faker values, tokenised and BIO-tagged like
shared/data's derived file, the same rows in every process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pii_templates
import pytest


def test_template_filler_tags_every_value_and_refuses_unknown_types() -> None:
    filler = pii_templates.TemplateFiller(seed=3)
    row = filler.fill("SSN {{US_SSN}}, mail {{EMAIL_ADDRESS}}!")
    tags = dict(zip(row["tokens"], row["ner_tags"], strict=True))
    assert row["ner_tags"][:2] == ["O", "B-US_SSN"] and tags["mail"] == "O" and row["tokens"][-1] == "!"
    assert "B-EMAIL_ADDRESS" in row["ner_tags"] and row["ner_tags"][-1] == "O"
    start, end = row["token_spans"][1]
    assert row["text"][start:end] == row["tokens"][1]
    assert re.fullmatch(r"SSN \d{3}-\d{2}-\d{4}, mail .+@.+!", row["text"])
    every = pii_templates.TemplateFiller(seed=3)
    for kind in every.makers:
        filled = every.fill(f"x {{{{{kind}}}}} y")
        assert filled["ner_tags"][1] == f"B-{kind}" and filled["ner_tags"][-1] == "O"
    dates = [every.fill("{{DATE_TIME}}")["text"] for _ in range(200)]
    years = [int(m) for d in dates for m in re.findall(r"\b(1\d{3}|2\d{3})\b", d)]
    assert years and all(1950 <= year <= 2025 for year in years)  # fixed bounds, not the clock's
    with pytest.raises(ValueError, match="unknown entity type 'PASSPORT'"):
        filler.fill("{{PASSPORT}}")


def test_a_run_of_address_placeholders_is_filled_part_by_part_each_an_entity() -> None:
    masked = "At {{STREET_ADDRESS}} {{STREET_ADDRESS}} {{STREET_ADDRESS}}, {{GPE}} {{GPE}}. Or {{STREET_ADDRESS}}"
    assert [(m.group(1), position, length) for m, position, length in pii_templates.run_positions(masked)] == [
        ("STREET_ADDRESS", 0, 3), ("STREET_ADDRESS", 1, 3), ("STREET_ADDRESS", 2, 3), ("GPE", 0, 2), ("GPE", 1, 2),
        ("STREET_ADDRESS", 0, 1)]
    row = pii_templates.TemplateFiller(seed=0).fill(masked)
    starts = [tag for tag in row["ner_tags"] if tag.startswith("B-")]
    assert starts == ["B-STREET_ADDRESS"] * 3 + ["B-GPE"] * 2 + ["B-STREET_ADDRESS"]
    assert row["tokens"][1].isdigit() and row["ner_tags"][1] == "B-STREET_ADDRESS"  # the building number


def test_template_fillings_do_not_depend_on_the_hash_seed() -> None:
    """Every mode of a benchmark run trains on the same rows: Faker providers that draw from a set (it_IT's cities)
    would change them with PYTHONHASHSEED."""
    every_type = " ".join(f"{{{{{kind}}}}}" for kind in pii_templates.TemplateFiller(seed=0).makers)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pii_templates import TemplateFiller; "
            "f = TemplateFiller(0); print([f.fill(sys.argv[2])['text'] for _ in range(300)])")
    scripts = str(Path(pii_templates.__file__).parent)
    outputs = {subprocess.run([sys.executable, "-c", code, scripts, every_type], capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outputs) == 1
