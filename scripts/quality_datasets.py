"""The quality benchmark's datasets: what each one trains (task, columns, the structural flags of `lorakit train`),
which metric and target it is judged on, and the conversion of its shared/data files into something `lorakit
train` reads, written into a work directory (never into the repository).

Pure Python on purpose (no torch): the conversions are unit-tested on tiny synthetic files.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pii_templates import PLACEHOLDER, TemplateFiller

SEQUENCE, TOKEN, EMBEDDING, GENERATIVE = "sequence-classification", "token-classification", "embedding", "generative"
MODES = ("lora", "full", "qlora", "weighted")
# The `lorakit train` flags of each mode: qlora is LoRA on a 4-bit NF4 base, weighted is LoRA with a class-weighted
# loss; MODE_TASKS lists the tasks a mode applies to (absent: every task).
MODE_FLAGS = {"full": ["--full"], "qlora": ["--quantize", "4bit"], "weighted": ["--class-weighted"]}
MODE_TASKS = {"qlora": (SEQUENCE, TOKEN, GENERATIVE), "weighted": (SEQUENCE,)}
GENERATIVE_BASE = "gemma-3-270m"


@dataclass(frozen=True)
class Quick:
    """Subset sizes of a `--quick` smoke run: enough rows for every part of the split, a minute of training."""

    per_label: int = 4  # sequence classification rows per label (the split needs 3)
    per_label_generative: int = 3
    long_texts_per_label: int = 30  # jailbreak prompts are long: fewer labels, more rows each
    sentences: int = 200  # CoNLL sentences
    templates: int = 24  # Presidio templates (whole groups)
    fills: int = 2  # new fillings of each Presidio training template
    pairs: int = 300  # STS-B training pairs
    evaluated: int = 100  # rows of a dev file or of the out-of-scope texts
    epochs: float = 1.0
    max_seq_len: int = 64  # encoder tasks: half the default, for the long jailbreak prompts
    max_document_tokens: int = 64  # generative: shorter prompts for training, golden and few-shot cases

    def knobs(self, task: str) -> dict[str, Any]:
        """Settings a quick run adds where the user set none: small sizes only, never a different method."""
        if task == GENERATIVE:
            return {"epochs": self.epochs, "max_document_tokens": self.max_document_tokens}
        if task == EMBEDDING:
            return {"epochs": self.epochs}
        return {"epochs": self.epochs, "max_seq_len": self.max_seq_len}


QUICK = Quick()


@dataclass
class Prepared:
    """What one dataset trains on: the file, the structural `lorakit train` flags and the extra evaluation files."""

    train_file: Path
    flags: list[str]
    dev_file: Path | None = None  # scored after training like `lorakit eval` (never trained or selected on)
    dev_columns: dict[str, str] = field(default_factory=dict)  # DataSpec fields for reading dev_file
    oos_file: Path | None = None  # clinc150: out-of-scope texts, one JSON string per line
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: str  # `lorakit train --task`
    metric: str  # headline metric key of the task's metrics.json
    target: float | None  # the headline value must reach this (None: reported only)
    judged_on: str  # "test" (the split's test part) or "dev" (the dataset's own dev file)
    folder: str  # under --data-root
    description: str
    prepare: Callable[[Path, Path, bool], Prepared]
    base: str | None = None  # `lorakit train --base` (None: the offline MiniLM)
    unsupported: dict[str, str] = field(default_factory=dict)  # mode -> why lorakit cannot train it
    in_quick_by_default: bool = True  # False: a --quick run includes it only when --datasets names it

    def why_unsupported(self, mode: str) -> str | None:
        """None when `lorakit train` can run this dataset in `mode`, else why not."""
        if mode in self.unsupported:
            return self.unsupported[mode]
        tasks = MODE_TASKS.get(mode)
        if tasks is not None and self.task not in tasks:
            return f"`{' '.join(MODE_FLAGS[mode])}` is not available for --task {self.task}"
        return None


# --- readers and writers -------------------------------------------------------------------------------------------


def raise_csv_limit() -> None:
    """Prompts of the jailbreak data exceed the csv module's default 131,072-character field limit."""
    csv.field_size_limit(2**31 - 1)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    raise_csv_limit()
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: Iterable[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), "utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text("utf-8").splitlines() if line.strip()]


def per_label_sample(rows: Sequence[dict[str, Any]], label_key: str, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """At most `count` rows of each label, drawn with a fixed seed, in the file's order."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_label[str(row[label_key])].append(index)
    rng = random.Random(seed)
    kept = sorted(i for label in sorted(by_label)
                  for i in rng.sample(by_label[label], min(count, len(by_label[label]))))
    return [rows[i] for i in kept]


def sample_in_order(items: Sequence[Any], count: int, seed: int = 0) -> list[Any]:
    """At most `count` items drawn with a fixed seed, kept in their original order."""
    chosen = sorted(random.Random(seed).sample(range(len(items)), min(count, len(items))))
    return [items[i] for i in chosen]


# --- one converter per dataset -------------------------------------------------------------------------------------


def prepare_banking77(folder: Path, work: Path, quick: bool) -> Prepared:
    source = folder / "train.csv"
    flags = ["--text-column", "text", "--label-column", "category"]
    if not quick:
        return Prepared(source, flags)
    rows = per_label_sample(read_csv_rows(source), "category", QUICK.per_label)
    return Prepared(write_csv(work / "banking77.csv", ("text", "category"),
                              ((row["text"], row["category"]) for row in rows)), flags)


IMBALANCE = (100, 5)  # rows of the most and of the least frequent intent; the others fall geometrically between
BALANCED_DEV_PER_LABEL = 20


def prepare_banking77_imbalanced(folder: Path, work: Path, quick: bool) -> Prepared:
    """A long-tailed banking77: intents in a seeded order keep 100 rows down to 5 (20:1), the pipeline splits that;
    a balanced dev file (20 rows of each intent, from the rows left out) shows what the tail costs."""
    rows = read_csv_rows(folder / "train.csv")
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row["category"]].append(row)
    labels = sorted(by_label)
    random.Random(77).shuffle(labels)
    most, least = (QUICK.per_label * 3, QUICK.per_label) if quick else IMBALANCE
    dev_per_label = 2 if quick else BALANCED_DEV_PER_LABEL
    kept, dev = [], []
    for rank, label in enumerate(labels):
        count = round(most * (least / most) ** (rank / max(1, len(labels) - 1)))
        pool = random.Random(rank).sample(by_label[label], len(by_label[label]))
        kept += pool[:count]
        dev += pool[count:count + dev_per_label]
    header = ("text", "category")
    flags = ["--text-column", "text", "--label-column", "category"]
    return Prepared(write_csv(work / "banking77_imbalanced.csv", header, ((r["text"], r["category"]) for r in kept)),
                    flags, dev_file=write_csv(work / "banking77_balanced_dev.csv", header,
                                              ((r["text"], r["category"]) for r in dev)),
                    dev_columns={"text_column": "text", "label_column": "category"},
                    notes=[f"{len(kept)} rows, {most} to {least} per intent; the figure is macro-F1 on "
                           f"{len(dev)} balanced rows left out of training (dev_macro_f1)"])


def prepare_clinc150(folder: Path, work: Path, quick: bool) -> Prepared:
    """In-scope train + val (150 intents) as one CSV for the pipeline's split; oos_train + oos_val as the
    out-of-scope texts, never trained on, scored by how many the model flags for review."""
    data = json.loads((folder / "data_full.json").read_text("utf-8"))
    missing = [key for key in ("train", "val", "oos_train", "oos_val") if key not in data]
    if missing:
        raise ValueError(f"{folder / 'data_full.json'}: lacks {', '.join(missing)}")
    rows = [{"text": text, "label": label} for part in ("train", "val") for text, label in data[part]]
    oos = [text for part in ("oos_train", "oos_val") for text, _ in data[part]]
    if any(row["label"] == "oos" for row in rows):
        raise ValueError(f"{folder / 'data_full.json'}: in-scope parts hold `oos` rows")
    if quick:
        rows, oos = per_label_sample(rows, "label", QUICK.per_label - 1), oos[:QUICK.evaluated]
    train = write_csv(work / "clinc150_inscope.csv", ("text", "label"), ((r["text"], r["label"]) for r in rows))
    return Prepared(train, ["--text-column", "text", "--label-column", "label"],
                    oos_file=write_jsonl(work / "clinc150_oos.jsonl", oos),
                    notes=[f"{len(rows)} in-scope rows (train + val, {len({r['label'] for r in rows})} intents); "
                           f"{len(oos)} out-of-scope texts (oos_train + oos_val) for the review check"])


def prepare_jailbreak(folder: Path, work: Path, quick: bool) -> Prepared:
    source = folder / "balanced" / "jailbreak_dataset_train_balanced.csv"
    flags = ["--text-column", "prompt", "--label-column", "type", "--unsafe-labels", "jailbreak"]
    if not quick:
        return Prepared(source, flags)
    rows = per_label_sample(read_csv_rows(source), "type", QUICK.long_texts_per_label)
    return Prepared(write_csv(work / "jailbreak.csv", ("prompt", "type"),
                              ((row["prompt"], row["type"]) for row in rows)), flags)


def mmlu_rows(folder: Path, quick: bool, per_label: int) -> list[dict[str, Any]]:
    rows = [{"text": row["question"], "label": row["category"], "question_id": row["question_id"]}
            for row in read_jsonl(folder / "mmlu_pro_pool.jsonl")]
    return per_label_sample(rows, "label", per_label) if quick else rows


def prepare_mmlu_pro(folder: Path, work: Path, quick: bool) -> Prepared:
    rows = mmlu_rows(folder, quick, QUICK.per_label)
    return Prepared(write_jsonl(work / "mmlu_pro.jsonl", rows), ["--text-column", "text", "--label-column", "label"],
                    notes=["the question text only (not the options), label = its category"])


def prepare_mmlu_pro_generative(folder: Path, work: Path, quick: bool) -> Prepared:
    rows = mmlu_rows(folder, quick, QUICK.per_label_generative)
    return Prepared(write_jsonl(work / "mmlu_pro_generative.jsonl", rows),
                    ["--text-column", "text", "--label-column", "label", "--base", GENERATIVE_BASE],
                    notes=[f"{GENERATIVE_BASE} answers the category by label scoring (docs/generative.md)"])


PRESIDIO_HELD_OUT = 0.2  # share of the templates never trained on; their original rows are the figure
FILLS_PER_TEMPLATE = 20  # new Faker fillings of each training template (scripts/pii_templates.py)


def hold_out_templates(templates: Sequence[int], masked: dict[int, str], count: int) -> set[int]:
    """`count` templates in a seeded order, skipping any whose holding out would leave one of its entity types in
    no training template (a type never trained cannot be found)."""
    types = {template: set(PLACEHOLDER.findall(masked[template])) for template in templates}
    trained_with = Counter(kind for template in templates for kind in types[template])
    held: set[int] = set()
    for template in random.Random(1).sample(list(templates), len(templates)):
        if len(held) < count and all(trained_with[kind] > 1 for kind in types[template]):
            held.add(template)
            for kind in types[template]:
                trained_with[kind] -= 1
    return held


def prepare_presidio(folder: Path, work: Path, quick: bool) -> Prepared:
    """Templates drawn with a fixed seed are held out: their original rows are the dev file, never trained or
    selected on. The other templates' original rows, plus FILLS_PER_TEMPLATE new fillings of each, go through the
    pipeline's grouped split, which keeps all rows of a template in one part."""
    rows = read_jsonl(folder / "synth_dataset_v2.bio.jsonl")
    masked = {sample["template_id"]: sample["masked"]
              for sample in json.loads((folder / "synth_dataset_v2.json").read_text("utf-8"))}
    templates = sorted({row["template_id"] for row in rows})
    unmasked = [template for template in templates if template not in masked]
    if unmasked:
        raise ValueError(f"{folder / 'synth_dataset_v2.json'}: no masked text for template(s) {unmasked[:5]}")
    if quick:
        templates = sorted(random.Random(0).sample(templates, min(QUICK.templates, len(templates))))
    kept = set(templates)
    held = hold_out_templates(templates, masked, max(1, round(len(templates) * PRESIDIO_HELD_OUT)))
    trained = [template for template in templates if template not in held]
    filler, fills = TemplateFiller(seed=0), QUICK.fills if quick else FILLS_PER_TEMPLATE
    next_id = 1 + max(int(row["id"]) for row in rows)
    filled = [{"id": next_id + i, "template_id": template, **filler.fill(masked[template])}
              for i, template in enumerate(template for template in trained for _ in range(fills))]
    train = [row for row in rows if row["template_id"] in kept and row["template_id"] not in held] + filled
    dev = [row for row in rows if row["template_id"] in held]
    return Prepared(write_jsonl(work / "presidio_train.jsonl", train), ["--group-column", "template_id"],
                    dev_file=write_jsonl(work / "presidio_held_out.jsonl", dev),
                    notes=[f"{len(held)} of {len(templates)} templates held out: the figure is their {len(dev)} "
                           f"original rows (dev_entity_f1); the other templates' rows plus {fills} new Faker "
                           f"fillings of each ({len(train)} rows) go through the pipeline's grouped split"])


def read_conll_sentences(path: Path) -> list[list[tuple[str, str]]]:
    """CoNLL sentences as (token, tag) pairs; any whitespace-only line separates sentences."""
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in Path(path).read_text("utf-8").splitlines():
        fields = line.split()
        if not fields:
            if current:
                sentences.append(current)
            current = []
            continue
        current.append((fields[0], fields[-1]))
    if current:
        sentences.append(current)
    return sentences


def write_conll(path: Path, sentences: Iterable[Sequence[tuple[str, str]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(f"{token}\t{tag}\n" for token, tag in sentence) + "\n"
                            for sentence in sentences), "utf-8")
    return path


def prepare_wnut17(folder: Path, work: Path, quick: bool) -> Prepared:
    """wnut17train.conll goes through the pipeline's split (it takes one file); emerging.dev.conll is scored after
    training as the figure never trained or selected on."""
    train, dev = folder / "wnut17train.conll", folder / "emerging.dev.conll"
    if quick:
        train = write_conll(work / "wnut17_train.conll", sample_in_order(read_conll_sentences(train), QUICK.sentences))
        dev = write_conll(work / "wnut17_dev.conll", sample_in_order(read_conll_sentences(dev), QUICK.evaluated))
    return Prepared(train, [], dev_file=dev,
                    notes=["lorakit train takes one file: validation/test come from the split of wnut17train.conll; "
                           "emerging.dev.conll is scored separately (dev_entity_f1)"])


def read_stsb(path: Path) -> list[tuple[str, str, float]]:
    """STS-B's original lines: tab-separated, no header, unquoted; score, sentence1, sentence2 in fields 5-7
    (some lines carry two more fields, ignored)."""
    pairs = []
    for number, line in enumerate(Path(path).read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 7:
            raise ValueError(f"{path}:{number}: {len(fields)} tab-separated fields, STS-B lines have at least 7")
        pairs.append((fields[5], fields[6], float(fields[4])))
    return pairs


def prepare_stsb(folder: Path, work: Path, quick: bool) -> Prepared:
    header = ("text", "text_pair", "score")
    train, dev = read_stsb(folder / "sts-train.csv"), read_stsb(folder / "sts-dev.csv")
    if quick:  # seeded samples: the files are ordered by genre, so their first lines are all captions
        train, dev = sample_in_order(train, QUICK.pairs), sample_in_order(dev, QUICK.evaluated)
    columns = {"text_column": "text", "text_pair_column": "text_pair", "score_column": "score"}
    flags = [item for key, value in columns.items() for item in ("--" + key.replace("_", "-"), value)]
    return Prepared(write_csv(work / "stsb_train.csv", header, train), flags,
                    dev_file=write_csv(work / "stsb_dev.csv", header, dev), dev_columns=columns,
                    notes=["sts-train.csv goes through the pipeline's split; the figure is sts-dev.csv (dev_spearman)"])


NO_FULL_GENERATIVE = "lorakit trains generative classifiers with LoRA only (`--full` is refused for --task generative)"

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("banking77", SEQUENCE, "accuracy", 0.92, "test", "banking77",
                "77 banking intents, train.csv (10,003 rows)", prepare_banking77),
    DatasetSpec("banking77_imbalanced", SEQUENCE, "macro_f1", None, "dev", "banking77",
                "banking77 cut to a 20:1 long tail; compare the lora and weighted modes", prepare_banking77_imbalanced,
                in_quick_by_default=False),
    DatasetSpec("clinc150", SEQUENCE, "accuracy", 0.95, "test", "clinc150",
                "150 in-scope intents (train + val); out-of-scope texts checked for needs_review", prepare_clinc150),
    DatasetSpec("jailbreak_classification", SEQUENCE, "accuracy", 0.97, "test", "jailbreak_classification",
                "benign vs jailbreak prompts (balanced train file, 1,044 rows)", prepare_jailbreak),
    DatasetSpec("mmlu_pro", SEQUENCE, "accuracy", 0.70, "test", "mmlu_pro",
                "14 MMLU-Pro categories from the question text, MiniLM sequence classification", prepare_mmlu_pro),
    DatasetSpec("mmlu_pro_generative", GENERATIVE, "accuracy", 0.70, "test", "mmlu_pro",
                f"14 MMLU-Pro categories, generative classification on {GENERATIVE_BASE}",
                prepare_mmlu_pro_generative, base=GENERATIVE_BASE, unsupported={"full": NO_FULL_GENERATIVE},
                # exporting and verifying a 270M-parameter decoder alone takes minutes on 2 cores
                in_quick_by_default=False),
    DatasetSpec("presidio_synth_pii", TOKEN, "entity_f1", 0.85, "dev", "presidio_synth_pii",
                "17 PII entity types, judged on held-out templates; training templates refilled by Faker",
                prepare_presidio),
    DatasetSpec("wnut17", TOKEN, "entity_f1", None, "test", "wnut17",
                "6 emerging-entity types in noisy social text", prepare_wnut17),
    DatasetSpec("stsb", EMBEDDING, "spearman", 0.85, "dev", "stsb",
                "sentence-pair similarity, Spearman of cosine vs gold score", prepare_stsb),
)}
ALIASES = {"jailbreak": "jailbreak_classification", "presidio": "presidio_synth_pii"}


def select(names: str | None, quick: bool = False) -> list[DatasetSpec]:
    """The datasets named (comma-separated, aliases allowed), in registry order; None: all of them (a quick run:
    those in_quick_by_default)."""
    if names is None:
        return [spec for spec in DATASETS.values() if spec.in_quick_by_default or not quick]
    wanted = [ALIASES.get(name.strip(), name.strip()) for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in DATASETS]
    if unknown or not wanted:
        raise ValueError(f"unknown dataset(s) {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join(DATASETS)}")
    return [spec for name, spec in DATASETS.items() if name in wanted]
