"""Train -> evaluate -> export for generative classification, on the steps of pipeline.py: load once, split once
and write the split, train, evaluate on exactly that split (label scoring), export."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .confusions import format_confusions, top_confusions
from .data import Dataset, Example, load_dataset, split_dataset
from .distributed import check_same_on_every_process
from .gate import enforce_gates
from .generative import classify
from .prepare import record_preparation
from .prompt import Example as FewshotExample
from .prompt import PromptTokens, check_labels
from .train import TrainConfig

FEWSHOT_POOL = 32  # training examples kept in the run file for the exported few-shot golden cases


def label_scores(model: Any, tokens: PromptTokens, texts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """[len(texts), C] answer log-probabilities: the logits of label scoring."""
    rows = [classify(model, tokens, text, labels).scores.numpy() for text in texts]
    return np.stack(rows) if rows else np.zeros((0, len(labels)), dtype=np.float32)


def evaluate_generative(model: Any, tokens: PromptTokens, dataset: Dataset, examples: Sequence[Example]) -> dict[str,
                                                                                                               Any]:
    from .evaluate import logits_metrics

    scores = label_scores(model, tokens, [example.text for example in examples], dataset.labels)
    return logits_metrics(scores, dataset, examples)


def generative_flow(run_dir: Path, data: Any, config: TrainConfig, output: Path, base_id: str, name: str | None,
                    log: Callable[[str], None]) -> dict[str, Any]:
    from .generative_export import export_generative, fp32_base
    from .generative_train import prompt_tokens, train_generative
    from .pipeline import GOLDEN_FROM_TEST, RUN_FILE, compact, log_training, save_checkpoint, warn_duplicates
    from .pipeline_tasks import write_report
    from .plots import plot_confusion_matrix
    from .quantize import reload_on_fp32_base

    dataset = load_dataset(data.path, data.text_column, data.label_column, data.group_column)
    check_labels(dataset.labels, f"{data.path}: labels")
    split = split_dataset(dataset, data.validation_fraction, data.test_fraction, data.seed,
                          grouped=data.group_column is not None)
    config.labels = dataset.labels
    duplicates = warn_duplicates(dataset.examples, split)
    log(f"data: {len(dataset.examples)} rows, {len(dataset.labels)} labels, {split.strategy} split "
        f"train/validation/test = {len(split.train)}/{len(split.validation)}/{len(split.test)}")
    train_part, validation_part, test_part = (split.part(dataset, part) for part in ("train", "validation", "test"))
    check_same_on_every_process(split.digest(), "split")
    result = train_generative(config, train_part, validation_part, run_dir / "trainer")
    if not result.stats["world_process_zero"]:
        return {}
    log_training(result.stats, log)
    model = reload_on_fp32_base(result.model, fp32_base(Path(config.base))) if config.quantize else result.model
    tokens = prompt_tokens(Path(config.base), result.tokenizer, config.max_document_tokens)
    validation, test = (evaluate_generative(model, tokens, dataset, part) for part in (validation_part, test_part))
    for part in (validation, test):
        part["top_confusions"] = top_confusions(part["confusion_matrix"], dataset.labels)
    log("top confusions (test, true -> predicted):\n" + "\n".join(format_confusions(test["top_confusions"])))
    full_metrics = {"validation": validation, "test": test, "training": result.stats, "config": config.to_json(),
                    "data": {"source": dataset.source, "labels": dataset.labels,
                             "cross_split_duplicates": duplicates}}
    report = write_report(run_dir, split, full_metrics, result.history)
    documents = record_preparation(Path(dataset.source), report)
    plot_confusion_matrix(test["confusion_matrix"], dataset.labels, report / "confusion_matrix.png",
                          title="Confusion matrix (test)")
    metrics = {"validation": compact(validation), "test": compact(test), "training": result.stats,
               **({"documents": documents} if documents else {})}
    golden_examples = [example.text for example in test_part[:GOLDEN_FROM_TEST]]
    fewshot = [FewshotExample(example.text, example.label) for example in train_part[:FEWSHOT_POOL]]
    save_checkpoint(run_dir, model, result.tokenizer, config, base_id, metrics, golden_examples)
    add_fewshot_pool(run_dir / RUN_FILE, fewshot)
    enforce_gates(metrics)
    export_generative(model, result.tokenizer, tokens, output, labels=dataset.labels, max_seq_len=config.max_seq_len,
                      base_path=Path(config.base), base_id=base_id, name=name, golden_examples=golden_examples,
                      fewshot_examples=fewshot, metrics=metrics, report_dir=report)
    return metrics


def add_fewshot_pool(run_file: Path, examples: Sequence[FewshotExample]) -> None:
    run = json.loads(run_file.read_text("utf-8"))
    run["fewshot_examples"] = [{"document": e.document, "label": e.label} for e in examples]
    run_file.write_text(json.dumps(run, indent=2) + "\n", "utf-8")


def export_generative_checkpoint(run: dict[str, Any], model: Any, tokenizer: Any, output: Path,
                                 name: str | None, report: Path | None, metrics: dict[str, Any]) -> Path:
    """`lorakit export` of a generative run: the recorded golden texts and few-shot pool."""
    from .errors import ModelDirError
    from .generative_export import export_generative
    from .generative_train import prompt_tokens

    config: TrainConfig = run["config"]
    pool = run.get("fewshot_examples")
    if not isinstance(pool, list) or not all(isinstance(e, dict) and isinstance(e.get("document"), str)
                                             and isinstance(e.get("label"), str) for e in pool):
        raise ModelDirError("the run file lacks its few-shot examples (fewshot_examples); train again with "
                            "--checkpoint-dir")
    examples = [FewshotExample(e["document"], e["label"]) for e in pool]
    tokens = prompt_tokens(Path(config.base), tokenizer, config.max_document_tokens)
    return export_generative(model, tokenizer, tokens, output, labels=config.labels, max_seq_len=config.max_seq_len,
                             base_path=Path(config.base), base_id=run["base_id"], name=name,
                             golden_examples=run["golden_examples"], fewshot_examples=examples, metrics=metrics,
                             report_dir=report)
