"""Token classification data: character-span JSONL, pre-tokenised BIO JSONL and CoNLL files, all read into one
form (a text with entity character spans), sub-word label alignment, and the one split of data.py.

Every format becomes text + spans, and training tags the words the model's own tokenizer finds in the text: the
words the reference decoder reads at inference (docs/FORMAT.md, `aggregation: first`). Training on a dataset's
own word list instead would teach the model a segmentation it never sees at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import Dataset, Example, Split, read_records, split_dataset
from .errors import DataError

CONLL_SUFFIXES = (".conll", ".conllu", ".iob", ".bio", ".txt")
IGNORE = -100  # the label id torch's cross-entropy skips: later sub-tokens and special tokens
LINE_BREAK = "\u00b6"  # the pilcrow, one token in BERT's vocabulary: what keep_line_breaks turns "\n" into


@dataclass(frozen=True)
class Span:
    start: int  # character offsets (code points) into the text, end exclusive
    end: int
    type: str


@dataclass(frozen=True)
class TokenExample:
    row_id: int  # 0-based record (or CoNLL sentence) number in the input: stable across reloads
    text: str
    spans: tuple[Span, ...]
    group: str | None = None


@dataclass
class TokenDataset:
    examples: list[TokenExample]
    labels: list[str]  # IOB2 tags in head order: O, then B-/I- per entity type
    source: str = ""

    @property
    def types(self) -> list[str]:
        return entity_types(self.labels)


def iob2_labels(types: Sequence[str]) -> list[str]:
    return ["O"] + [f"{prefix}-{name}" for name in sorted(types) for prefix in ("B", "I")]


def entity_types(labels: Sequence[str]) -> list[str]:
    return sorted({label[2:] for label in labels if label[:2] in ("B-", "I-")})


def iob2_groups(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) word index of each entity: B-T starts one, I-T continues an entity of type T and
    otherwise starts one, O ends it. The one reading of IOB2 used for data, decoding and metrics."""
    groups: list[tuple[str, int, int]] = []
    current: tuple[str, int, int] | None = None
    for index, tag in enumerate(tags):
        prefix, kind = (tag[:1], tag[2:]) if tag[:2] in ("B-", "I-") else ("O", "")
        if prefix == "I" and current is not None and current[0] == kind:
            current = (kind, current[1], index)
            continue
        if current is not None:
            groups.append(current)
        current = (kind, index, index) if prefix in ("B", "I") else None
    if current is not None:
        groups.append(current)
    return groups


def check_tag(tag: object, where: str) -> str:
    if not isinstance(tag, str) or not (tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2)):
        raise DataError(f"{where}: tag {tag!r} is not IOB2 (O, B-TYPE or I-TYPE)")
    return tag


def tags_to_spans(offsets: Sequence[tuple[int, int]], tags: Sequence[str]) -> tuple[Span, ...]:
    """Entity spans over tokens with character offsets: from the first token's start to the last one's end."""
    return tuple(Span(offsets[first][0], offsets[last][1], kind) for kind, first, last in iob2_groups(tags))


def join_tokens(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """A text of the tokens separated by single spaces, and each token's offsets in it."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    return " ".join(tokens), offsets


def read_conll(path: Path) -> list[dict[str, Any]]:
    """Sentences of a CoNLL file (`token<whitespace>...tag` lines); blank lines and -DOCSTART- break sentences."""
    try:
        raw = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    sentences: list[dict[str, Any]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append({"tokens": tokens, "ner_tags": tags})
            tokens, tags = [], []
            continue
        if len(fields) < 2:
            raise DataError(f"{path}:{number}: expected a token and a tag, got {line.strip()!r}")
        tokens.append(fields[0])
        tags.append(check_tag(fields[-1], f"{path}:{number}"))
    if tokens:
        sentences.append({"tokens": tokens, "ner_tags": tags})
    if not sentences:
        raise DataError(f"{path}: no sentences (expected `token<TAB>tag` lines)")
    return sentences


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: expected an integer offset, got {value!r}")
    return value


def span_record(record: dict[str, Any], where: str, text_column: str, spans_column: str) -> tuple[str, list[Span]]:
    """`{text, spans: [{start, end, label}]}`; Presidio's key names (start_position, entity_type) are accepted."""
    text, raw_spans = record.get(text_column), record.get(spans_column)
    if not isinstance(text, str):
        raise DataError(f"{where}: {text_column!r} must be a string")
    if not isinstance(raw_spans, list):
        raise DataError(f"{where}: {spans_column!r} must be a list of {{start, end, label}}")
    spans = []
    for i, item in enumerate(raw_spans):
        if not isinstance(item, dict):
            raise DataError(f"{where}: span {i} is not an object")
        start = _int(item.get("start", item.get("start_position")), f"{where}: span {i} start")
        end = _int(item.get("end", item.get("end_position")), f"{where}: span {i} end")
        kind = item.get("label", item.get("entity_type", item.get("type")))
        if not isinstance(kind, str) or not kind or " " in kind:
            raise DataError(f"{where}: span {i} needs a label without spaces, got {kind!r}")
        spans.append(Span(start, end, kind))
    return text, spans


def bio_record(record: dict[str, Any], where: str, text_column: str, tokens_column: str,
               tags_column: str) -> tuple[str, list[Span]]:
    """`{tokens, ner_tags}`, with `token_spans` into `text` when the record has both (exact original offsets)."""
    tokens, tags = record.get(tokens_column), record.get(tags_column)
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise DataError(f"{where}: {tokens_column!r} must be a list of strings")
    if not isinstance(tags, list) or len(tags) != len(tokens):
        raise DataError(f"{where}: {tags_column!r} must be a list of one tag per token")
    checked = [check_tag(tag, where) for tag in tags]
    if isinstance(record.get("token_spans"), list) and isinstance(record.get(text_column), str):
        text = record[text_column]
        offsets = []
        for i, pair in enumerate(record["token_spans"]):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise DataError(f"{where}: token_spans[{i}] must be [start, end]")
            offsets.append((_int(pair[0], where), _int(pair[1], where)))
        if len(offsets) != len(tokens):
            raise DataError(f"{where}: token_spans has {len(offsets)} entries for {len(tokens)} tokens")
    else:
        text, offsets = join_tokens(tokens)
    return text, list(tags_to_spans(offsets, checked))


def check_spans(text: str, spans: list[Span], where: str) -> tuple[Span, ...]:
    ordered = sorted(spans, key=lambda span: (span.start, span.end))
    for span in ordered:
        if not 0 <= span.start < span.end <= len(text):
            raise DataError(f"{where}: span [{span.start}, {span.end}) is outside the text or empty "
                            f"(text has {len(text)} characters)")
    for left, right in zip(ordered, ordered[1:], strict=False):
        if right.start < left.end:
            raise DataError(f"{where}: spans [{left.start}, {left.end}) and [{right.start}, {right.end}) overlap")
    return tuple(ordered)


def load_token_dataset(path: Path, *, text_column: str = "text", spans_column: str = "spans",
                       tokens_column: str = "tokens", tags_column: str = "ner_tags", group_column: str | None = None,
                       labels: Sequence[str] | None = None) -> TokenDataset:
    """CoNLL (by suffix), or JSON/JSONL records with character spans or with tokens and tags (by their keys).

    Labels default to O plus B-/I- of every entity type, sorted; pass `labels` to impose a model's tags.
    """
    path = Path(path)
    if path.suffix.lower() in CONLL_SUFFIXES:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        if group_column:
            raise DataError(f"{path}: CoNLL files have no columns; --group-column needs JSON records")
        records = read_conll(path)
    else:
        records = read_records(path)
    keys = set().union(*(record.keys() for record in records))
    char_spans = spans_column in keys
    if not char_spans and tokens_column not in keys:
        raise DataError(f"{path}: neither a {spans_column!r} column (character spans) nor a {tokens_column!r} "
                        f"column (BIO tokens) found (columns: {', '.join(sorted(map(str, keys)))})")
    if group_column and group_column not in keys:
        raise DataError(f"{path}: group column {group_column!r} not found")
    examples = []
    for row_id, record in enumerate(records):
        where = f"{path}: record {row_id}"
        if char_spans:
            text, spans = span_record(record, where, text_column, spans_column)
        else:
            text, spans = bio_record(record, where, text_column, tokens_column, tags_column)
        group = record.get(group_column) if group_column else None
        if group_column and group in (None, ""):
            raise DataError(f"{where}: no group ({group_column!r})")
        examples.append(TokenExample(row_id, text, check_spans(text, spans, where),
                                     None if group is None else str(group)))
    found = sorted({span.type for example in examples for span in example.spans})
    if labels is None:
        if not found:
            raise DataError(f"{path}: no entities in the data; nothing to learn")
        labels = iob2_labels(found)
    else:
        unknown = sorted(set(found) - set(entity_types(labels)))
        if unknown:
            raise DataError(f"{path}: entity types not known to the model: {', '.join(unknown[:5])}")
    return TokenDataset(examples=examples, labels=list(labels), source=str(path))


def split_tokens(dataset: TokenDataset, validation_fraction: float = 0.1, test_fraction: float = 0.1,
                 seed: int = 42, grouped: bool = False) -> Split:
    """data.py's one split; without groups it is stratified by whether a text has entities at all."""
    keys = ["entities" if example.spans else "none" for example in dataset.examples]
    if min(keys.count("entities"), keys.count("none")) < 3:
        keys = ["all"] * len(keys)  # too few of one kind to stratify on
    proxy = Dataset([Example(e.row_id, e.text, key, e.group) for e, key in zip(dataset.examples, keys, strict=True)],
                    labels=sorted(set(keys)), source=dataset.source)
    return split_dataset(proxy, validation_fraction, test_fraction, seed, grouped=grouped)


def split_part(dataset: TokenDataset, split: Split, name: str) -> list[TokenExample]:
    by_id = {example.row_id: example for example in dataset.examples}
    return [by_id[row_id] for row_id in getattr(split, name)]


@dataclass(frozen=True)
class Word:
    first_token: int
    last_token: int
    start: int
    end: int


def words_of(word_ids: Sequence[int | None], offsets: Sequence[tuple[int, int]]) -> list[Word]:
    """The tokenizer's words in order: first and last sub-token, and the characters from the first one's start
    to the last one's end. Special tokens (word id None) belong to no word."""
    words: dict[int, Word] = {}
    for index, word_id in enumerate(word_ids):
        if word_id is None:
            continue
        seen = words.get(word_id)
        start, end = int(offsets[index][0]), int(offsets[index][1])
        words[word_id] = Word(index, index, start, end) if seen is None else \
            Word(seen.first_token, index, seen.start, end)
    return sorted(words.values(), key=lambda word: word.first_token)


def word_tags(words: Sequence[Word], spans: Sequence[Span]) -> list[str]:
    """IOB2 tag per word: a word overlapping a span is in it (the first such word B-, the others I-)."""
    tags = ["O"] * len(words)
    for span in spans:
        inside = [i for i, word in enumerate(words)
                  if tags[i] == "O" and word.start < span.end and word.end > span.start]
        for position, i in enumerate(inside):
            tags[i] = f"{'B' if position == 0 else 'I'}-{span.type}"
    return tags


def keep_line_breaks(tokenizer: Any) -> bool:
    """Make a tokenizer that drops line breaks (BERT's treats them as spaces) keep each one as a LINE_BREAK token,
    by a normalizer step in tokenizer.json that the native core runs too; offsets still point into the original
    text. Entities on separate lines (an address block: street, city, postcode) then stay apart. False, and the
    tokenizer unchanged, when it already keeps line breaks or has no single token for LINE_BREAK."""
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer

    def ids(text: str) -> list[int]:  # the file may pad: only the text's own tokens
        encoding = backend.encode(text, add_special_tokens=False)
        return [i for i, mask in zip(encoding.ids, encoding.attention_mask, strict=True) if mask]

    marker = backend.token_to_id(LINE_BREAK)
    if marker is None or ids("a\nb") != ids("a b") or ids(LINE_BREAK) != [marker]:
        return False
    original = backend.normalizer
    steps = [normalizers.Replace("\n", LINE_BREAK)] + ([original] if original is not None else [])
    backend.normalizer = normalizers.Sequence(steps)
    if marker not in ids("a\nb"):  # a normalizer that strips the marker again: leave the tokenizer as it was
        backend.normalizer = original
        return False
    return True


def check_fast(tokenizer: Any) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("token classification needs a fast tokenizer (tokenizer.json) for word ids and offsets")


def align_labels(tokenizer: Any, examples: Sequence[TokenExample], labels: Sequence[str],
                 max_seq_len: int) -> list[dict[str, list[int]]]:
    """Tokenized examples (truncated, unpadded) with `labels`: each word's tag id at its first sub-token,
    IGNORE at later sub-tokens and special tokens."""
    check_fast(tokenizer)
    index = {label: i for i, label in enumerate(labels)}
    enc = tokenizer([example.text for example in examples], truncation=True, max_length=max_seq_len,
                    return_offsets_mapping=True)
    items = []
    for row, example in enumerate(examples):
        words = words_of(enc.word_ids(row), enc["offset_mapping"][row])
        token_labels = [IGNORE] * len(enc["input_ids"][row])
        for word, tag in zip(words, word_tags(words, example.spans), strict=True):
            if tag not in index:
                raise DataError(f"row {example.row_id}: tag {tag!r} is not one of the model's labels")
            token_labels[word.first_token] = index[tag]
        item = {key: list(values[row]) for key, values in enc.items() if key != "offset_mapping"}
        item["labels"] = token_labels
        items.append(item)
    return items

