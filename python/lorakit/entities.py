"""Token classification outputs: the reference entity decoder (docs/FORMAT.md, `aggregation: first`), masking,
entity-level metrics (seqeval, strict IOB2), and the torch paths for prediction and evaluation.

`decode_entities` is the one decoder: golden files, `lorakit eval` and `lorakit predict --backend torch` all use
it, so what the runtimes are checked against is what users are measured with.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import ids_digest
from .golden import tokenize
from .tokens import IGNORE, Span, TokenExample, Word, align_labels, check_fast, iob2_groups, word_tags, words_of

Entity = dict[str, Any]  # {type, start, end, text, score}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (the reference; runtimes may use fp32 and stay within the tolerance)."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return result


def decode_entities(text: str, logits: np.ndarray, word_ids: Sequence[int | None],
                    offsets: Sequence[tuple[int, int]], labels: Sequence[str]) -> list[Entity]:
    """Entities of one text from its token logits `[tokens, C]` (real tokens only, specials included).

    Each word takes the most probable tag at its first sub-token (score: that probability); words are read as
    IOB2 (tokens.iob2_groups); an entity runs from its first word's start to its last word's end (the end of that
    word's last sub-token) and scores the mean of its words' scores.
    """
    probabilities = softmax(np.asarray(logits))
    words = words_of(word_ids, offsets)
    best = [int(np.argmax(probabilities[word.first_token])) for word in words]
    scores = [float(probabilities[word.first_token, index]) for word, index in zip(words, best, strict=True)]
    entities = []
    for kind, first, last in iob2_groups([labels[index] for index in best]):
        start, end = words[first].start, words[last].end
        entities.append({"type": kind, "start": start, "end": end, "text": text[start:end],
                         "score": float(np.mean(scores[first:last + 1]))})
    return entities


def mask_entities(text: str, entities: Sequence[Entity]) -> str:
    """The text with each entity span replaced by `[TYPE]` (spans that overlap an earlier one are left out)."""
    pieces, position = [], 0
    for entity in sorted(entities, key=lambda e: (int(e["start"]), int(e["end"]))):
        start, end = int(entity["start"]), int(entity["end"])
        if start < position:
            continue
        pieces += [text[position:start], f"[{entity['type']}]"]
        position = end
    return "".join(pieces) + text[position:]


def entity_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level strict precision / recall / F1 (micro, and per type) of IOB2 tag sequences, by seqeval."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    gold_lists, predicted_lists = [list(row) for row in gold], [list(row) for row in predicted]
    options: dict[str, Any] = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    with warnings.catch_warnings():  # seqeval warns when a part has no entities at all; zero_division covers it
        warnings.simplefilter("ignore")
        report = classification_report(gold_lists, predicted_lists, output_dict=True, **options)
        micro = {"precision": float(precision_score(gold_lists, predicted_lists, **options)),
                 "recall": float(recall_score(gold_lists, predicted_lists, **options)),
                 "entity_f1": float(f1_score(gold_lists, predicted_lists, **options))}
    per_type = {name: {"precision": float(row["precision"]), "recall": float(row["recall"]),
                       "f1": float(row["f1-score"]), "support": int(row["support"])}
                for name, row in report.items() if not name.endswith(" avg")}
    return {**micro, "per_type": per_type}


def clean_tags(tags: Sequence[str]) -> list[str]:
    """Tags re-written from the entities the decoder reads in them (an I- after O becomes B-), so seqeval's
    strict mode scores exactly the entities the decoder outputs."""
    cleaned = ["O"] * len(tags)
    for kind, first, last in iob2_groups(tags):
        cleaned[first] = f"B-{kind}"
        for i in range(first + 1, last + 1):
            cleaned[i] = f"I-{kind}"
    return cleaned


def trainer_entity_metrics(labels: Sequence[str]) -> Any:
    """compute_metrics for transformers' Trainer: entity F1 on the first sub-tokens (the labelled positions)."""

    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        gold, predicted = [], []
        for row_logits, row_labels in zip(logits, prediction.label_ids, strict=True):
            keep = row_labels != IGNORE
            gold.append([labels[i] for i in row_labels[keep]])
            predicted.append(clean_tags([labels[i] for i in row_logits[keep].argmax(axis=-1)]))
        metrics = entity_metrics(gold, predicted)
        return {"entity_f1": metrics["entity_f1"], "precision": metrics["precision"], "recall": metrics["recall"]}

    return compute


@torch.no_grad()
def token_logits(model: Any, tokenizer: Any, texts: Sequence[str], max_seq_len: int, batch_size: int = 32,
                 progress: bool = False, desc: str = "predict") -> list[dict[str, Any]]:
    """Per text: `logits` [tokens_used, C] (fp32), `word_ids` and `offsets`, from the golden tokenization."""
    check_fast(tokenizer)
    model.eval()
    device = next(model.parameters()).device
    rows: list[dict[str, Any]] = []
    starts = range(0, len(texts), batch_size)
    # disable=None: tqdm draws no bar when stderr is not a terminal (logs, pipes)
    for start in tqdm(starts, desc=desc, disable=True if not progress or len(starts) < 2 else None, leave=False):
        chunk = list(texts[start:start + batch_size])
        batch = tokenize(tokenizer, chunk, max_seq_len)
        logits = model(**{name: tensor.to(device) for name, tensor in batch.items()}).logits.float().cpu().numpy()
        enc = tokenizer(chunk, truncation=True, max_length=max_seq_len, return_offsets_mapping=True)
        for i in range(len(chunk)):
            used = len(enc["input_ids"][i])
            rows.append({"logits": logits[i, :used], "word_ids": enc.word_ids(i),
                         "offsets": [tuple(pair) for pair in enc["offset_mapping"][i]]})
    return rows


def extract_entities(model: Any, tokenizer: Any, texts: Sequence[str], max_seq_len: int, labels: Sequence[str],
                     progress: bool = False) -> list[list[Entity]]:
    """The torch prediction path: token logits, then the reference decoder."""
    rows = token_logits(model, tokenizer, texts, max_seq_len, progress=progress)
    return [decode_entities(text, row["logits"], row["word_ids"], row["offsets"], labels)
            for text, row in zip(texts, rows, strict=True)]


def full_words(tokenizer: Any, texts: Sequence[str]) -> list[list[Word]]:
    """Every word of each text, truncation off: gold entities past max_seq_len still count (as missed)."""
    enc = tokenizer(list(texts), truncation=False, return_offsets_mapping=True, verbose=False)
    return [words_of(enc.word_ids(i), enc["offset_mapping"][i]) for i in range(len(texts))]


def evaluate_tokens(model: Any, tokenizer: Any, examples: Sequence[TokenExample], labels: Sequence[str],
                    max_seq_len: int, desc: str = "evaluate") -> dict[str, Any]:
    """Entity-level strict metrics on `examples` (words as the tokenizer splits the text), the loss on the
    labelled sub-tokens, and the fingerprint of the row ids evaluated."""
    texts = [example.text for example in examples]
    rows = token_logits(model, tokenizer, texts, max_seq_len, progress=True, desc=desc)
    entities = [decode_entities(text, row["logits"], row["word_ids"], row["offsets"], labels)
                for text, row in zip(texts, rows, strict=True)]
    return token_metrics(tokenizer, examples, labels, max_seq_len, entities, [row["logits"] for row in rows])


def token_metrics(tokenizer: Any, examples: Sequence[TokenExample], labels: Sequence[str], max_seq_len: int,
                  entities: Sequence[Sequence[Entity]], logits: Sequence[np.ndarray]) -> dict[str, Any]:
    """Entity metrics of predicted `entities` and the loss of token `logits` [tokens_used, C] per example, from
    any backend; gold and predicted spans are both read as tags of the tokenizer's words."""
    gold, predicted = [], []
    for example, found, words in zip(examples, entities, full_words(tokenizer, [e.text for e in examples]),
                                     strict=True):
        gold.append(word_tags(words, example.spans))
        predicted.append(word_tags(words, [Span(int(e["start"]), int(e["end"]), str(e["type"])) for e in found]))
    metrics = entity_metrics(gold, predicted)
    aligned = align_labels(tokenizer, examples, labels, max_seq_len)
    metrics["loss"] = token_loss([(row, item["labels"]) for row, item in zip(logits, aligned, strict=True)])
    return {"n": len(examples), **metrics, "row_ids_sha256": ids_digest([e.row_id for e in examples])}


def token_loss(rows: Sequence[tuple[np.ndarray, Sequence[int]]]) -> float:
    logits = [torch.from_numpy(np.asarray(row)) for row, _ in rows]
    targets = [torch.tensor(list(target)) for _, target in rows]
    if not logits or all(bool((target == IGNORE).all()) for target in targets):
        return float("nan")
    return float(torch.nn.functional.cross_entropy(torch.cat(logits), torch.cat(targets), ignore_index=IGNORE))


def summary_line(name: str, metrics: dict[str, Any]) -> str:
    return (f"{name:<10} n={metrics['n']:<6} entity_f1={metrics['entity_f1']:.4f} "
            f"precision={metrics['precision']:.4f} recall={metrics['recall']:.4f}")


def padded_entities(tokenizer: Any, texts: Sequence[str], logits: np.ndarray, max_seq_len: int,
                    labels: Sequence[str]) -> list[list[Entity]]:
    """The reference decoder over padded token logits `[N, L, C]` of the golden tokenization (golden files,
    verification of every backend)."""
    check_fast(tokenizer)
    enc = tokenizer(list(texts), truncation=True, max_length=max_seq_len, return_offsets_mapping=True)
    entities = []
    for i, text in enumerate(texts):
        used = len(enc["input_ids"][i])
        offsets = [(int(a), int(b)) for a, b in enc["offset_mapping"][i]]
        entities.append(decode_entities(text, logits[i, :used], enc.word_ids(i), offsets, labels))
    return entities
