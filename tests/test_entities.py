"""The reference entity decoder (docs/FORMAT.md `aggregation: first`), masking and seqeval entity metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from transformers import AutoTokenizer

from lorakit.entities import clean_tags, decode_entities, entity_metrics, mask_entities
from lorakit.models import minilm_path
from lorakit.tokens import words_of

LABELS = ["B-LOC", "O", "I-PER", "B-PER", "I-LOC"]  # "O" is not label 0 on purpose
HIGH = 8.0


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return AutoTokenizer.from_pretrained(minilm_path())


def run(tokenizer: object, text: str, word_tags: Sequence[str], *, other_tokens: str = "B-PER",
        high: Sequence[float] | None = None) -> list[dict[str, object]]:
    """Logits that put `word_tags[i]` on word i's first sub-token and `other_tokens` everywhere else (special
    tokens and later sub-tokens), which the decoder must ignore."""
    enc = tokenizer(text, return_offsets_mapping=True)  # type: ignore[operator]
    words = words_of(enc.word_ids(), enc["offset_mapping"])
    assert len(words) == len(word_tags), [text[w.start:w.end] for w in words]
    logits = np.zeros((len(enc["input_ids"]), len(LABELS)), dtype=np.float32)
    logits[:, LABELS.index(other_tokens)] = HIGH
    for i, (word, tag) in enumerate(zip(words, word_tags, strict=True)):
        logits[word.first_token] = 0.0
        logits[word.first_token, LABELS.index(tag)] = high[i] if high else HIGH
    return decode_entities(text, logits, enc.word_ids(), enc["offset_mapping"], LABELS)


def probability(value: float) -> float:
    return math.exp(value) / (math.exp(value) + len(LABELS) - 1)


def spans(entities: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(e["type"], e["start"], e["end"], e["text"]) for e in entities]


def test_b_then_i_is_one_entity_and_o_ends_it(tokenizer: object) -> None:
    text = "Ana Lopez flew to New York"
    entities = run(tokenizer, text, ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"])
    assert spans(entities) == [("PER", 0, 9, "Ana Lopez"), ("LOC", 18, 26, "New York")]
    assert all(abs(e["score"] - probability(HIGH)) < 1e-9 for e in entities)  # type: ignore[operator]


def test_i_after_o_starts_an_entity(tokenizer: object) -> None:
    entities = run(tokenizer, "hello Ana Lopez", ["O", "I-PER", "I-PER"])
    assert spans(entities) == [("PER", 6, 15, "Ana Lopez")]


def test_a_type_switch_and_a_repeated_b_start_new_entities(tokenizer: object) -> None:
    entities = run(tokenizer, "Ana Paris Rome Lima", ["B-PER", "I-LOC", "B-LOC", "B-LOC"])
    assert spans(entities) == [("PER", 0, 3, "Ana"), ("LOC", 4, 9, "Paris"), ("LOC", 10, 14, "Rome"),
                               ("LOC", 15, 19, "Lima")]


def test_special_tokens_and_later_sub_tokens_are_ignored_but_end_extends(tokenizer: object) -> None:
    text = "Zbigniewska sings"
    enc = tokenizer(text)  # type: ignore[operator]
    assert len(enc["input_ids"]) > 4  # the name is several pieces
    entities = run(tokenizer, text, ["B-LOC", "O"], other_tokens="I-PER")
    # [CLS]/[SEP] and the name's later pieces say I-PER: no entity comes from them, the LOC covers every piece
    assert spans(entities) == [("LOC", 0, 11, "Zbigniewska")]


def test_score_is_the_mean_of_the_words_probabilities(tokenizer: object) -> None:
    entities = run(tokenizer, "New York City", ["B-LOC", "I-LOC", "I-LOC"], high=[8.0, 2.0, 5.0])
    assert len(entities) == 1
    expected = (probability(8.0) + probability(2.0) + probability(5.0)) / 3
    assert abs(entities[0]["score"] - expected) < 1e-9  # type: ignore[operator]


def test_offsets_are_unicode_code_points_of_the_original_text(tokenizer: object) -> None:
    text = "🚀 Zoë Müller lives in Köln—Ünïcödé"
    enc = tokenizer(text, return_offsets_mapping=True)  # type: ignore[operator]
    words = words_of(enc.word_ids(), enc["offset_mapping"])
    tags = ["O"] * len(words)
    index = {text[w.start:w.end]: i for i, w in enumerate(words)}
    tags[index["Zoë"]], tags[index["Müller"]], tags[index["Köln"]] = "B-PER", "I-PER", "B-LOC"
    entities = run(tokenizer, text, tags)
    assert spans(entities) == [("PER", 2, 12, "Zoë Müller"), ("LOC", 22, 26, "Köln")]
    assert text.encode("utf-8").find("Zoë".encode()) == 5  # byte offsets would differ


def test_no_words_no_entities(tokenizer: object) -> None:
    assert run(tokenizer, "", []) == []


def test_mask_entities_replaces_each_span_with_its_type() -> None:
    text = "Zoë Müller lives in Köln."
    entities = [{"type": "LOC", "start": 20, "end": 24}, {"type": "PER", "start": 0, "end": 10}]
    assert mask_entities(text, entities) == "[PER] lives in [LOC]."
    assert mask_entities(text, []) == text
    overlapping = [*entities, {"type": "X", "start": 5, "end": 12}]
    assert mask_entities(text, overlapping) == "[PER] lives in [LOC]."


def test_seqeval_strict_metrics_on_a_hand_made_case() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "O", "B-PER"]]
    predicted = [["B-PER", "I-PER", "O", "B-PER"],  # PER right, LOC missed, one PER too many
                 ["B-LOC", "O", "O", "B-PER"]]  # LOC boundary wrong (strict: a miss and a false positive)
    metrics = entity_metrics(gold, predicted)
    # gold 4 entities, predicted 4 (3 PER, 1 LOC), correct 2 (PER 0:2 in row 0, PER 3 in row 1)
    assert metrics["precision"] == pytest.approx(2 / 4) and metrics["recall"] == pytest.approx(2 / 4)
    assert metrics["entity_f1"] == pytest.approx(0.5)
    assert metrics["per_type"]["PER"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                                          "f1": pytest.approx(0.8), "support": 2}
    assert metrics["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}


def test_strict_mode_counts_only_well_formed_entities_so_predictions_are_cleaned_first() -> None:
    gold = [["O", "B-PER", "I-PER"]]
    raw = [["O", "I-PER", "I-PER"]]  # the decoder reads this as one PER entity
    assert entity_metrics(gold, raw)["entity_f1"] == 0.0  # strict IOB2 drops an entity starting with I-
    assert clean_tags(raw[0]) == ["O", "B-PER", "I-PER"]
    assert entity_metrics(gold, [clean_tags(raw[0])])["entity_f1"] == 1.0
    assert clean_tags(["B-PER", "I-LOC", "O", "I-LOC"]) == ["B-PER", "B-LOC", "O", "B-LOC"]
