"""Train -> evaluate -> export for token classification and embeddings: the steps of pipeline.py (load once, split
once and write the split, train, evaluate on exactly that split, export) with each task's data, metrics and head."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .data import Dataset, Example, Split, data_origin, data_source, ids_digest, split_dataset, write_split
from .distributed import check_same_on_every_process
from .errors import DataError
from .export import export_model
from .gate import enforce_gates
from .manifest import EMBEDDING, GENERATIVE, TOKEN
from .pipeline import GOLDEN_FROM_TEST, DataSpec, log_training, save_checkpoint, warn_duplicates
from .plots import plot_loss_curves
from .train import TrainConfig

TOKEN_SUMMARY = ("n", "entity_f1", "precision", "recall", "loss", "row_ids_sha256")
EMBEDDING_SUMMARY = ("n", "spearman", "pearson", "auc_roc", "row_ids_sha256")


def train_and_export_task(run_dir: Path, data: DataSpec, config: TrainConfig, output: Path, base_id: str,
                          name: str | None, onnx: bool, log: Callable[[str], None]) -> dict[str, Any]:
    if config.task == TOKEN:
        return token_flow(run_dir, data, config, output, base_id, name, onnx, log)
    if config.task == EMBEDDING:
        return embedding_flow(run_dir, data, config, output, base_id, name, onnx, log)
    if config.task == GENERATIVE:
        from .generative_pipeline import generative_flow

        if onnx:
            raise DataError("--onnx is not available for --task generative")
        return generative_flow(run_dir, data, config, output, base_id, name, log)
    raise DataError(f"task {config.task!r} cannot be trained")


def write_report(run_dir: Path, split: Split, full_metrics: dict[str, Any], history: list[dict[str, Any]]) -> Path:
    report = run_dir / "report"
    report.mkdir(exist_ok=True)
    write_split(report / "split.json", split)
    (report / "metrics.json").write_text(json.dumps(full_metrics, indent=2) + "\n", "utf-8")
    (report / "history.json").write_text(json.dumps(history, indent=2) + "\n", "utf-8")
    plot_loss_curves(history, report / "loss_curves.png")
    return report


def summary(metrics: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: metrics[key] for key in keys if key in metrics}


def token_flow(run_dir: Path, data: DataSpec, config: TrainConfig, output: Path, base_id: str, name: str | None,
               onnx: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from .tokens import load_token_dataset, split_part, split_tokens
    from .train import train_tokens

    dataset = load_token_dataset(data.path, text_column=data.text_column, spans_column=data.spans_column,
                                 tokens_column=data.tokens_column, tags_column=data.tags_column,
                                 group_column=data.group_column)
    split = split_tokens(dataset, data.validation_fraction, data.test_fraction, data.seed,
                         grouped=data.group_column is not None)
    split.origin = split.origin or data_origin(data.path, {
        "text": data.text_column, "spans": data.spans_column, "tokens": data.tokens_column,
        "tags": data.tags_column, "group": data.group_column})
    config.labels = dataset.labels
    duplicates = warn_duplicates(dataset.examples, split)
    log(f"data: {len(dataset.examples)} texts, {len(dataset.types)} entity types ({len(dataset.labels)} tags), "
        f"{split.strategy} split train/validation/test = {len(split.train)}/{len(split.validation)}/"
        f"{len(split.test)}")
    train_part, validation_part, test_part = (split_part(dataset, split, part)
                                              for part in ("train", "validation", "test"))
    check_same_on_every_process(split.digest(), "split")
    result = train_tokens(config, train_part, validation_part, run_dir / "trainer")
    if not result.stats["world_process_zero"]:
        return {}
    log_training(result.stats, log)
    validation, test = (evaluate_token_part(result.model, result.tokenizer, part, dataset.labels,
                                            config.max_seq_len, desc)
                        for part, desc in ((validation_part, "validation"), (test_part, "test")))
    full_metrics = {"validation": validation, "test": test, "training": result.stats, "config": config.to_json(),
                    "data": {"source": data_source(data.path), "labels": dataset.labels,
                             "cross_split_duplicates": duplicates}}
    report = write_report(run_dir, split, full_metrics, result.history)
    metrics = {"validation": summary(validation, TOKEN_SUMMARY), "test": summary(test, TOKEN_SUMMARY),
               "training": result.stats}
    # Texts with entities first, so the golden file checks spans, not only "O" everywhere.
    ordered = sorted(test_part, key=lambda example: not example.spans)
    golden_examples = [example.text for example in ordered[:GOLDEN_FROM_TEST]]
    save_checkpoint(run_dir, result.model, result.tokenizer, config, base_id, metrics, golden_examples)
    enforce_gates(metrics)
    export_model(result.model, result.tokenizer, output, labels=dataset.labels, max_seq_len=config.max_seq_len,
                 base_path=Path(config.base), base_id=base_id, name=name, golden_examples=golden_examples,
                 metrics=metrics, report_dir=report, onnx=onnx, task=TOKEN)
    return metrics


def evaluate_token_part(model: Any, tokenizer: Any, examples: list[Any], labels: list[str], max_seq_len: int,
                        desc: str) -> dict[str, Any]:
    """entities.evaluate_tokens, plus `groups` (entity metrics per --group-column value) when rows have groups."""
    from .entities import decode_entities, token_logits, token_metrics
    from .groups import token_group_metrics

    rows = token_logits(model, tokenizer, [example.text for example in examples], max_seq_len, progress=True,
                        desc=desc)
    entities = [decode_entities(example.text, row["logits"], row["word_ids"], row["offsets"], labels)
                for example, row in zip(examples, rows, strict=True)]
    logits = [row["logits"] for row in rows]
    metrics = token_metrics(tokenizer, examples, labels, max_seq_len, entities, logits)
    groups = token_group_metrics(tokenizer, examples, labels, max_seq_len, entities, logits)
    return metrics | ({"groups": groups} if groups else {})


def split_pairs(count: int, data: DataSpec, source: str) -> Split:
    """data.py's one split over pair row ids (pairs have no label to stratify on)."""
    proxy = Dataset([Example(row_id, "", "pair") for row_id in range(count)], labels=["pair"], source=source)
    return split_dataset(proxy, data.validation_fraction, data.test_fraction, data.seed)


def pair_rows(pairs: list[Any]) -> list[Example]:
    """Pairs as split rows for the duplicate check: a pair recurs when both its texts recur together."""
    return [Example(i, f"{pair.text} || {pair.text_pair}", "pair") for i, pair in enumerate(pairs)]


def embedding_flow(run_dir: Path, data: DataSpec, config: TrainConfig, output: Path, base_id: str,
                   name: str | None, onnx: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from .embedding import EmbeddingConfig, evaluate_embedding, load_pairs, train_embedding

    pairs = load_pairs(data.path, data.text_column, data.text_pair_column, data.score_column)
    split = split_pairs(len(pairs), data, data_source(data.path))
    split.origin = split.origin or data_origin(data.path, {
        "text": data.text_column, "text_pair": data.text_pair_column, "score": data.score_column})
    duplicates = warn_duplicates(pair_rows(pairs), split)
    train_part, validation_part, test_part = ([pairs[i] for i in getattr(split, part)]
                                              for part in ("train", "validation", "test"))
    log(f"data: {len(pairs)} pairs ({'scored' if data.score_column else 'anchor, positive'}), random split "
        f"train/validation/test = {len(train_part)}/{len(validation_part)}/{len(test_part)}")
    embedding_config = EmbeddingConfig(
        epochs=config.epochs_for(), learning_rate=config.lr(), batch_size=config.batch_size, r=config.r,
        alpha=config.lora_alpha, dropout=config.lora_dropout, max_seq_len=config.max_seq_len,
        pooling=config.pooling, normalize=config.normalize, seed=config.seed, warmup=config.warmup,
        full=config.full)
    check_same_on_every_process(split.digest(), "split")
    result = train_embedding(Path(config.base), train_part, validation_part, embedding_config, run_dir / "trainer")
    if not result.stats["world_process_zero"]:
        return {}
    log_training(result.stats, log)
    # The scale training inferred from all pairs: one part alone may hold only low scores.
    validation, test = (evaluate_embedding(result.model, result.tokenizer, part, config.max_seq_len, config.pooling,
                                           config.normalize, score_scale=result.stats["score_scale"])
                        for part in (validation_part, test_part))
    for part, metrics_of_part in (("validation", validation), ("test", test)):
        metrics_of_part["row_ids_sha256"] = ids_digest(getattr(split, part))
    full_metrics = {"validation": validation, "test": test, "training": result.stats, "config": config.to_json(),
                    "embedding_config": embedding_config.to_json(),
                    "data": {"source": data_source(data.path), "cross_split_duplicates": duplicates}}
    report = write_report(run_dir, split, full_metrics, result.history)
    metrics = {"validation": summary(validation, EMBEDDING_SUMMARY), "test": summary(test, EMBEDDING_SUMMARY),
               "training": result.stats}
    golden_examples = list(dict.fromkeys(text for pair in test_part for text in (pair.text, pair.text_pair)))
    golden_examples = golden_examples[:GOLDEN_FROM_TEST]
    save_checkpoint(run_dir, result.model, result.tokenizer, config, base_id, metrics, golden_examples)
    enforce_gates(metrics)
    export_model(result.model, result.tokenizer, output, labels=[], max_seq_len=config.max_seq_len,
                 base_path=Path(config.base), base_id=base_id, name=name, golden_examples=golden_examples,
                 metrics=metrics, report_dir=report, onnx=onnx, task=EMBEDDING, pooling=config.pooling,
                 normalize=config.normalize)
    return metrics
