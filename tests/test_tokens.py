"""Token classification data: the three formats read into text + spans, IOB2 grouping, sub-word alignment, split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from lorakit.errors import DataError
from lorakit.models import minilm_path
from lorakit.tokens import (
    IGNORE,
    Span,
    Word,
    align_labels,
    iob2_groups,
    iob2_labels,
    load_token_dataset,
    split_part,
    split_tokens,
    word_tags,
    words_of,
)

TEXT = "Ana López flew to New York"
SPANS = (Span(0, 9, "PER"), Span(18, 26, "LOC"))


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return AutoTokenizer.from_pretrained(minilm_path())


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


def test_character_spans_bio_with_offsets_bio_without_and_conll_agree(tmp_path: Path) -> None:
    spans = write_jsonl(tmp_path / "spans.jsonl", [{"text": TEXT, "spans": [
        {"start": 18, "end": 26, "label": "LOC"}, {"start": 0, "end": 9, "label": "PER"}]}])
    tokens = ["Ana", "López", "flew", "to", "New", "York"]
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    offsets = [[0, 3], [4, 9], [10, 14], [15, 17], [18, 21], [22, 26]]
    bio = write_jsonl(tmp_path / "bio.jsonl", [{"text": TEXT, "tokens": tokens, "token_spans": offsets,
                                                 "ner_tags": tags, "template_id": 3}])
    joined = write_jsonl(tmp_path / "joined.jsonl", [{"tokens": tokens, "ner_tags": tags}])
    conll = tmp_path / "d.conll"
    conll.write_text("-DOCSTART- O\n\n" + "".join(f"{t}\t{g}\n" for t, g in zip(tokens, tags, strict=True))
                     + "\t\n", "utf-8")
    for path in (spans, bio, joined, conll):
        dataset = load_token_dataset(path)
        assert [e.text for e in dataset.examples] == [TEXT], path.name
        assert dataset.examples[0].spans == SPANS, path.name
        assert dataset.labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
        assert dataset.types == ["LOC", "PER"]


def test_bio_offsets_keep_the_original_text(tmp_path: Path) -> None:
    """Presidio's token_spans point into the original text (newlines, double spaces): spans use them."""
    text = "Call  Bo\nSmith"
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": text, "tokens": ["Call", "Bo", "Smith"],
                                                "token_spans": [[0, 4], [6, 8], [9, 14]],
                                                "ner_tags": ["O", "B-PERSON", "I-PERSON"]}])
    example = load_token_dataset(path).examples[0]
    assert example.spans == (Span(6, 14, "PERSON"),) and text[6:14] == "Bo\nSmith"


def test_presidio_span_keys_and_groups(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"full_text": "I am Eve", "template_id": 7, "spans": [
        {"entity_type": "PERSON", "start_position": 5, "end_position": 8}]}]), "utf-8")
    dataset = load_token_dataset(path, text_column="full_text", group_column="template_id")
    assert dataset.examples[0].spans == (Span(5, 8, "PERSON"),) and dataset.examples[0].group == "7"


def test_conll_sentences_break_on_blank_lines_and_docstart(tmp_path: Path) -> None:
    path = tmp_path / "w.conll"
    path.write_text("@bob\tO\nParis\tB-location\n \nhi\tO\n-DOCSTART-\tO\nMIT\tB-corporation\n", "utf-8")
    dataset = load_token_dataset(path)
    assert [e.text for e in dataset.examples] == ["@bob Paris", "hi", "MIT"]
    assert dataset.examples[0].spans == (Span(5, 10, "location"),)
    assert [e.row_id for e in dataset.examples] == [0, 1, 2]


def test_iob2_groups_reads_i_after_o_and_type_switches_as_new_entities() -> None:
    tags = ["I-PER", "I-PER", "O", "B-LOC", "I-PER", "B-LOC", "B-LOC", "I-LOC", "O", "I-LOC"]
    assert iob2_groups(tags) == [("PER", 0, 1), ("LOC", 3, 3), ("PER", 4, 4), ("LOC", 5, 5), ("LOC", 6, 7),
                                 ("LOC", 9, 9)]
    assert iob2_groups([]) == [] and iob2_groups(["O", "O"]) == []


@pytest.mark.parametrize(("name", "content", "message"), [
    ("overlap.jsonl", {"text": "abcdef", "spans": [{"start": 0, "end": 4, "label": "A"},
                                                   {"start": 2, "end": 5, "label": "B"}]}, "overlap"),
    ("outside.jsonl", {"text": "abc", "spans": [{"start": 1, "end": 9, "label": "A"}]}, "outside the text"),
    ("empty.jsonl", {"text": "abc", "spans": [{"start": 1, "end": 1, "label": "A"}]}, "outside the text or empty"),
    ("badtag.jsonl", {"tokens": ["a"], "ner_tags": ["PER"]}, "not IOB2"),
    ("length.jsonl", {"tokens": ["a", "b"], "ner_tags": ["O"]}, "one tag per token"),
    ("none.jsonl", {"text": "abc", "spans": []}, "no entities"),
    ("columns.jsonl", {"sentence": "abc"}, "neither a 'spans' column"),
    ("float.jsonl", {"text": "abc", "spans": [{"start": 0.5, "end": 2, "label": "A"}]}, "integer offset"),
])
def test_bad_token_data_is_a_one_line_data_error(tmp_path: Path, name: str, content: dict[str, object],
                                                 message: str) -> None:
    path = write_jsonl(tmp_path / name, [content])
    with pytest.raises(DataError, match=message) as caught:
        load_token_dataset(path)
    assert "\n" not in str(caught.value)


def test_a_model_s_labels_are_imposed_and_unknown_types_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": TEXT, "spans": [{"start": 0, "end": 3, "label": "PER"}]}])
    labels = ["B-PER", "O", "I-PER", "B-LOC", "I-LOC"]
    assert load_token_dataset(path, labels=labels).labels == labels
    with pytest.raises(DataError, match="entity types not known to the model: PER"):
        load_token_dataset(path, labels=["O", "B-LOC", "I-LOC"])


def test_word_tags_from_character_spans() -> None:
    words = [Word(1, 1, 0, 3), Word(2, 3, 4, 9), Word(4, 4, 10, 14), Word(5, 6, 15, 22)]
    assert word_tags(words, [Span(0, 9, "PER")]) == ["B-PER", "I-PER", "O", "O"]
    # a span covering part of a word tags the whole word; two spans give two entities
    assert word_tags(words, [Span(5, 7, "X"), Span(16, 18, "Y")]) == ["O", "B-X", "O", "B-Y"]
    assert iob2_labels(["PER", "LOC"]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_first_sub_token_carries_the_tag(tokenizer: object) -> None:
    from lorakit.tokens import TokenExample

    text = "Zbigniewska visited Johannesburg"
    example = TokenExample(0, text, (Span(0, 11, "PER"), Span(20, 32, "LOC")))
    labels = iob2_labels(["LOC", "PER"])
    item = align_labels(tokenizer, [example], labels, max_seq_len=32)[0]
    enc = tokenizer(text, return_offsets_mapping=True)  # type: ignore[operator]
    words = words_of(enc.word_ids(), enc["offset_mapping"])
    assert len(words) == 3 and words[0].last_token > words[0].first_token  # a multi-piece word
    expected = [IGNORE] * len(enc["input_ids"])
    expected[words[0].first_token] = labels.index("B-PER")
    expected[words[1].first_token] = labels.index("O")
    expected[words[2].first_token] = labels.index("B-LOC")
    assert item["labels"] == expected
    assert item["labels"][0] == IGNORE and item["labels"][-1] == IGNORE  # [CLS] and [SEP]
    assert item["input_ids"] == enc["input_ids"]
    truncated = align_labels(tokenizer, [example], labels, max_seq_len=4)[0]
    assert len(truncated["labels"]) == 4 and truncated["labels"][-1] == IGNORE


def test_grouped_split_keeps_templates_apart(tmp_path: Path) -> None:
    records = [{"text": f"Eve {i} here", "spans": [{"start": 0, "end": 3, "label": "PER"}], "template_id": i % 9}
               for i in range(90)]
    dataset = load_token_dataset(write_jsonl(tmp_path / "g.jsonl", records), group_column="template_id")
    split = split_tokens(dataset, 0.2, 0.2, seed=3, grouped=True)
    groups = {part: {e.group for e in split_part(dataset, split, part)} for part in ("train", "validation", "test")}
    assert split.strategy == "grouped" and all(groups.values())
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    assert sorted(split.train + split.validation + split.test) == list(range(90))
    again = split_tokens(load_token_dataset(tmp_path / "g.jsonl", group_column="template_id"), 0.2, 0.2, seed=3,
                         grouped=True)
    assert again.to_json() == split.to_json()


def test_stratified_split_puts_texts_with_entities_in_every_part(tmp_path: Path) -> None:
    records = [{"text": f"Eve {i}", "spans": [{"start": 0, "end": 3, "label": "PER"}] if i % 3 else []}
               for i in range(60)]
    dataset = load_token_dataset(write_jsonl(tmp_path / "s.jsonl", records))
    split = split_tokens(dataset, seed=1)
    for part in ("train", "validation", "test"):
        examples = split_part(dataset, split, part)
        assert any(e.spans for e in examples) and any(not e.spans for e in examples)
