"""The prompt of a generative classifier (docs/generative.md "The prompt"): settings and token assembly.

Token ids are built from separately tokenized segments, so training, the torch reference and every runtime build
exactly the same sequence; nothing here needs torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError

GENERATIVE_ARCHITECTURES = ("gemma3_text", "qwen3")
# Architectures whose tokenizer has no BOS: the prompt starts with the instruction itself.
NO_BOS = ("qwen3",)


@dataclass(frozen=True)
class PromptSpec:
    instruction: str = "Classify the document into exactly one of the categories."
    labels_prefix: str = "\nCategories: "
    label_separator: str = ", "
    document_prefix: str = "\nDocument: "
    answer_prefix: str = "\nAnswer: {\"label\": \""
    answer_suffix: str = "\"}"
    max_document_tokens: int = 256
    truncation: str = "head"
    add_bos: bool = True

    def __post_init__(self) -> None:
        for name in ("instruction", "labels_prefix", "label_separator", "document_prefix", "answer_prefix",
                     "answer_suffix"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"prompt.{name}: expected a string")
        count = self.max_document_tokens
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"prompt.max_document_tokens must be an integer >= 1, got {count!r}")
        if self.truncation != "head":
            raise ConfigError(f"prompt.truncation {self.truncation!r} is not supported (only 'head')")
        if not isinstance(self.add_bos, bool):
            raise ConfigError("prompt.add_bos: expected true or false")

    @classmethod
    def for_architecture(cls, model_type: str, max_document_tokens: int = 256) -> PromptSpec:
        return cls(max_document_tokens=max_document_tokens, add_bos=model_type not in NO_BOS)

    @classmethod
    def from_json(cls, raw: object) -> PromptSpec:
        if not isinstance(raw, Mapping):
            raise ConfigError("prompt: expected a JSON object")
        known = cls.__dataclass_fields__
        missing = [name for name in known if name not in raw]
        if missing:
            raise ConfigError(f"prompt: missing {', '.join(missing)}")
        try:
            return cls(**{name: raw[name] for name in known})
        except TypeError as exc:
            raise ConfigError(f"prompt: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Example:
    """A labelled few-shot example shown in the prompt."""

    document: str
    label: str


@dataclass(frozen=True)
class Prompted:
    ids: list[int]
    tokens_in: int  # the document's tokens before truncation
    tokens_used: int  # ... and after


def decoder_positions(base: Path) -> int:
    """max_position_embeddings of a causal LM base's config.json."""
    path = Path(base) / "config.json"
    try:
        value = json.loads(path.read_text("utf-8")).get("max_position_embeddings")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise ConfigError(f"{path}: cannot read max_position_embeddings ({exc})") from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise ConfigError(f"{path}: max_position_embeddings missing or not a positive integer")
    return value


def check_labels(labels: Sequence[str], what: str = "labels") -> list[str]:
    labels = list(labels)
    if not labels:
        raise InputError(f"{what}: empty; a generative classifier needs at least one label")
    bad = [label for label in labels if not isinstance(label, str) or not label.strip()]
    if bad:
        raise InputError(f"{what}: {bad[0]!r} is not a non-empty string")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise InputError(f"{what}: duplicate label(s) {', '.join(map(repr, duplicates))}")
    return labels


def fewshot_labels(manifest_labels: Sequence[str], examples: Sequence[Example],
                   labels: Sequence[str] | None = None) -> list[str]:
    """The request's labels when given, else the manifest's followed by each new example label (first seen)."""
    if labels is not None:
        chosen = check_labels(labels, "--labels")
        outside = [example.label for example in examples if example.label not in chosen]
        if outside:
            raise InputError(f"--labels: example label {outside[0]!r} is not one of the labels "
                             f"({', '.join(chosen)})")
        return chosen
    chosen = list(manifest_labels)
    for example in examples:
        if example.label not in chosen:
            chosen.append(example.label)
    return check_labels(chosen)


def special_ids(base_config: Mapping[str, Any]) -> tuple[int | None, int, int]:
    """(bos, eos, pad) token ids from a config.json: pad falls back to eos (Qwen3 declares none)."""
    def first(value: Any) -> int | None:
        if isinstance(value, list):
            value = value[0] if value else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    bos, eos, pad = (first(base_config.get(key)) for key in ("bos_token_id", "eos_token_id", "pad_token_id"))
    if eos is None:
        raise ConfigError("config.json has no eos_token_id; a generative classifier ends its answer with it")
    return bos, eos, eos if pad is None else pad


class PromptTokens:
    """Prompt assembly over one tokenizer: header, document blocks, answers and training rows."""

    def __init__(self, tokenizer: Any, spec: PromptSpec, bos_id: int | None, eos_id: int, pad_id: int) -> None:
        if spec.add_bos and bos_id is None:
            raise ConfigError("prompt.add_bos is true but config.json has no bos_token_id")
        self.tokenizer, self.spec = tokenizer, spec
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.tok = lru_cache(maxsize=4096)(self._tok)

    @classmethod
    def from_dir(cls, tokenizer: Any, spec: PromptSpec, model_dir: Path) -> PromptTokens:
        config = json.loads((Path(model_dir) / "config.json").read_text("utf-8"))
        return cls(tokenizer, spec, *special_ids(config))

    def _tok(self, text: str) -> tuple[int, ...]:
        if not text:
            return ()
        return tuple(int(i) for i in self.tokenizer.encode(text, add_special_tokens=False))

    def header(self, labels: Sequence[str]) -> list[int]:
        spec = self.spec
        bos = [self.bos_id] if spec.add_bos and self.bos_id is not None else []
        return bos + list(self.tok(spec.instruction + spec.labels_prefix + spec.label_separator.join(labels)))

    def document(self, text: str) -> tuple[list[int], int]:
        ids = list(self._tok(text))
        return ids[: self.spec.max_document_tokens], len(ids)

    def block(self, text: str) -> tuple[list[int], int, int]:
        doc, tokens_in = self.document(text)
        return list(self.tok(self.spec.document_prefix)) + doc + list(self.tok(self.spec.answer_prefix)), \
            tokens_in, len(doc)

    def answer(self, label: str) -> list[int]:
        return list(self.tok(label + self.spec.answer_suffix))

    def prompt(self, text: str, labels: Sequence[str], examples: Sequence[Example] = ()) -> Prompted:
        ids = self.header(labels)
        for example in examples:
            ids += self.block(example.document)[0] + self.answer(example.label)
        block, tokens_in, tokens_used = self.block(text)
        return Prompted(ids + block, tokens_in, tokens_used)

    def training_row(self, text: str, labels: Sequence[str], label: str) -> tuple[list[int], list[int]]:
        """(input_ids, labels): the loss falls on answer(label) + [eos] only (-100 elsewhere)."""
        prompt = self.prompt(text, labels).ids
        target = self.answer(label) + [self.eos_id]
        return prompt + target, [-100] * len(prompt) + target

    def check_length(self, prompt: Sequence[int], labels: Sequence[str], max_seq_len: int) -> None:
        """len(prompt) + the longest answer must fit max_seq_len (docs/generative.md)."""
        total = len(prompt) + max(len(self.answer(label)) for label in labels)
        if total > max_seq_len:
            raise InputError(f"the prompt with its longest answer is {total} tokens, more than max_seq_len "
                             f"{max_seq_len}; pass fewer or shorter examples")


def read_examples(path: Path) -> list[Example]:
    """Few-shot examples: JSON Lines of {"document", "label"} (or {"text", "label"}); blank lines are skipped."""
    try:
        lines = Path(path).read_text("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not JSON ({exc.msg})") from None
        document = record.get("document", record.get("text")) if isinstance(record, dict) else None
        label = record.get("label") if isinstance(record, dict) else None
        if not isinstance(document, str) or not isinstance(label, str) or not label.strip():
            raise InputError(f"{path}:{number}: expected {{\"document\": string, \"label\": non-empty string}} (or "
                             "\"text\" for \"document\")")
        examples.append(Example(document, label))
    if not examples:
        raise InputError(f"{path}: no examples")
    return examples


def parse_answer(answer_prefix: str, continuation: str) -> tuple[str | None, str | None]:
    """(label, error): the JSON object the prompt opened (from the last '{' of answer_prefix) and the model closed."""
    start = answer_prefix.rfind("{")
    answer = (answer_prefix[start:] if start >= 0 else "") + continuation
    end = answer.find("}")
    if end < 0:
        return None, f"no closing '}}' in {answer[:80]!r}"
    try:
        value = json.loads(answer[: end + 1])
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg}): {answer[: end + 1][:80]!r}"
    label = value.get("label") if isinstance(value, dict) else None
    if not isinstance(label, str):
        return None, f"no string \"label\" in {answer[: end + 1][:80]!r}"
    return label, None
