"""Fine-tuning with transformers' Trainer: LoRA (peft) or full, best checkpoint by a validation metric, for sequence
and token classification (embeddings train in embedding.py).

Trainer is used on purpose: `accelerate launch` / `torchrun` run this same code on several GPUs or CPU processes
unchanged (DDP by the Trainer; distributed.py holds the launch's settings).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from . import distributed
from ._native import max_positions
from .data import Example
from .errors import LorakitError
from .manifest import EMBEDDING, SEQUENCE, TOKEN
from .models import default_target_modules
from .tasks import load_task_model, task_head_modules, task_of
from .tokens import TokenExample, align_labels, keep_line_breaks

BEST_METRICS = {SEQUENCE: ("macro_f1", "accuracy", "loss"), TOKEN: ("entity_f1", "loss")}
DEFAULT_EPOCHS = 3.0
MIN_UPDATES = 1000  # a classification head on a small training set trains for at least this many updates
MAX_AUTO_EPOCHS = 20


@dataclass
class TrainConfig:
    base: str
    labels: list[str]
    full: bool = False
    epochs: float | None = None  # None: epochs_for()
    learning_rate: float | None = None  # None: see lr()
    head_learning_rate: float | None = None  # LoRA: the task head's rate; None: see head_lr()
    probe_head: bool = True  # sequence classification: start the head from a linear probe (probe_head())
    patience: int = 2  # stop after this many evaluations without a better validation metric (0: never)
    batch_size: int = 16
    gradient_accumulation: int = 1
    warmup: float = 0.1  # fraction of the training steps
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_seq_len: int = 128
    class_weighted: bool = False
    best_metric: str = "macro_f1"
    seed: int = 42
    r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    use_rslora: bool = False
    target_modules: list[str] | None = None
    task: str = SEQUENCE
    unsafe_labels: list[str] | None = None  # sequence classification: labels meaning "unsafe"
    pooling: str = "mean"  # embedding: mean or cls
    normalize: bool = True  # embedding: L2-normalise the pooled vector
    quantize: str | None = None  # "4bit": LoRA on an NF4 base (QLoRA), served merged into the fp32 base
    max_document_tokens: int = 256  # generative: document tokens kept in the prompt
    line_breaks: bool = True  # token classification: line breaks become a token (tokens.keep_line_breaks)
    extra: dict[str, Any] = field(default_factory=dict)

    def lr(self) -> float:
        """The explicit rate, else: embeddings, the embedding trainer's own default (embedding.py); 5e-5 (full);
        LoRA 1e-3 for token classification (a fresh per-token head over 2T+1 tags learns too slowly at 2e-4;
        measured on Presidio), 2e-3 for sequence classification (with the probed head, 92.5 % on banking77
        validation in 2 epochs, where 2e-4 reached 45.6 % in 3), else 2e-4."""
        if self.learning_rate is not None:
            return self.learning_rate
        if self.task == EMBEDDING:
            from .embedding import EmbeddingConfig

            return EmbeddingConfig(full=self.full).lr()
        return 5e-5 if self.full else 1e-3 if self.task == TOKEN else 2e-3 if self.task == SEQUENCE else 2e-4

    def epochs_for(self, updates_per_epoch: int | None = None) -> float:
        """The explicit epochs, else 3; sequence and token classification on a small training set get enough epochs
        for MIN_UPDATES optimizer updates (at most MAX_AUTO_EPOCHS; early stopping ends training once validation
        stops improving). Presidio, 61 updates an epoch: validation entity F1 0.54 after 3 epochs, 0.71 after 5."""
        if self.epochs is not None:
            return float(self.epochs)
        if updates_per_epoch is None or self.task not in (SEQUENCE, TOKEN):
            return DEFAULT_EPOCHS
        return float(min(MAX_AUTO_EPOCHS, max(DEFAULT_EPOCHS, math.ceil(MIN_UPDATES / max(1, updates_per_epoch)))))

    def head_lr(self) -> float:
        """The explicit head rate, else max(lr, 3e-3); full fine-tuning of a sequence head started from the linear
        probe keeps the body's rate (banking77: 92.7 % validation), a fresh token head does not (Presidio, full
        fine-tuning at 5e-5 throughout: entity F1 0.15 after 3 epochs)."""
        if self.head_learning_rate is not None:
            return self.head_learning_rate
        if self.full and self.task == SEQUENCE and self.probe_head:
            return self.lr()
        return max(self.lr(), 3e-3)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"learning_rate": self.lr(), "head_learning_rate": self.head_lr()}


@dataclass
class TrainResult:
    model: torch.nn.Module  # the best checkpoint (PeftModel for LoRA)
    tokenizer: Any
    history: list[dict[str, Any]]
    stats: dict[str, Any]


class EncodedDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """Tokenized once (truncated, unpadded); the collator pads each batch."""

    def __init__(self, tokenizer: Any, examples: Sequence[Example], label_ids: Sequence[int], max_seq_len: int):
        self.encodings = tokenizer([example.text for example in examples], truncation=True, max_length=max_seq_len)
        self.label_ids = list(label_ids)

    def __len__(self) -> int:
        return len(self.label_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {key: values[index] for key, values in self.encodings.items()}
        item["labels"] = self.label_ids[index]
        return item


class PostfixProgress(ProgressCallback):
    """One progress bar: the latest loss and validation metrics go in its postfix, not a printed dict per log."""

    SHOWN = ("loss", "eval_loss", "eval_accuracy", "eval_macro_f1", "eval_entity_f1")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        bar = getattr(self, "training_bar", None)  # None before training starts and on other processes
        if state.is_world_process_zero and bar is not None and logs:
            shown = {key: f"{logs[key]:.4g}" for key in self.SHOWN if isinstance(logs.get(key), float)}
            if shown:
                bar.set_postfix(shown, refresh=False)


class PlainProgress(TrainerCallback):
    """Progress for logs and pipes: one plain line per log on stderr (no bar, so no carriage returns or cursor
    escapes in captured output), from rank 0 only."""

    def __init__(self, shown: Sequence[str]):
        self.shown = tuple(shown)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        shown = [f"{key}={logs[key]:.4g}" for key in self.shown if isinstance(logs.get(key), float)]
        if shown:
            print(f"step {state.global_step}/{state.max_steps} epoch {state.epoch or 0:.2f}: {' '.join(shown)}",
                  file=sys.stderr, flush=True)


def build_model(config: TrainConfig) -> torch.nn.Module:
    """The task's HF model on the base, with LoRA (targets and head modules from the native registry) or not."""
    limit = max_positions(Path(config.base) / "config.json")
    if config.max_seq_len > limit:
        raise LorakitError(f"--max-seq-len {config.max_seq_len} exceeds the {limit} positions the base model "
                           f"accepts: pass --max-seq-len {limit} or less")
    model = load_task_model(config.task, config.base, config.labels, config.quantize)
    if config.full:
        return cast(torch.nn.Module, model)
    from peft import LoraConfig, TaskType, get_peft_model

    model_type = model.config.model_type
    lora = LoraConfig(
        task_type=TaskType[task_of(config.task).peft_task_type], r=config.r, lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout, use_rslora=config.use_rslora,
        target_modules=config.target_modules or default_target_modules(model_type),
        modules_to_save=task_head_modules(model, config.task) or None, bias="none",
    )
    try:
        return cast(torch.nn.Module, get_peft_model(model, lora))
    except ValueError as exc:  # e.g. target modules that match nothing
        raise LorakitError(f"cannot apply LoRA: {exc}") from exc


def parameter_counts(model: torch.nn.Module) -> dict[str, Any]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": trainable, "total_params": total, "trainable_percent": 100.0 * trainable / total}


def class_weights(label_ids: Sequence[int], num_labels: int) -> torch.Tensor:
    """Inverse-frequency weights (n / (k * count)), so every class contributes equally to the loss."""
    counts = np.bincount(np.asarray(label_ids), minlength=num_labels).astype(np.float64)
    weights = len(label_ids) / (num_labels * np.maximum(counts, 1.0))
    return torch.tensor(weights, dtype=torch.float32)


def trainer_metrics(prediction: Any) -> dict[str, float]:
    logits, labels = prediction.predictions, prediction.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    predicted = np.argmax(logits, axis=1)
    return {"accuracy": float(accuracy_score(labels, predicted)),
            "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0))}


def check_best_metric(config: TrainConfig) -> None:
    allowed = BEST_METRICS.get(config.task, ())
    if config.best_metric not in allowed:
        raise LorakitError(f"--best-metric for {config.task} must be one of {', '.join(allowed)}, "
                           f"not {config.best_metric!r}")


def train(config: TrainConfig, train_examples: Sequence[Example], train_labels: Sequence[int],
          validation_examples: Sequence[Example], validation_labels: Sequence[int], work_dir: Path,
          progress: bool = True) -> TrainResult:
    """Sequence classification: train, evaluate on validation every epoch, and return the best epoch's model."""
    check_best_metric(config)
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    model = build_model(config)
    train_set = EncodedDataset(tokenizer, train_examples, train_labels, config.max_seq_len)
    validation_set = EncodedDataset(tokenizer, validation_examples, validation_labels, config.max_seq_len)
    loss_func = None
    if config.class_weighted:
        weights = class_weights(train_labels, len(config.labels))

        def loss_func(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
            logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
            return torch.nn.functional.cross_entropy(logits, labels, weight=weights.to(logits.device))

    collator = DataCollatorWithPadding(tokenizer)
    if config.probe_head:
        probe_head(model, train_set, collator, len(config.labels), config.class_weighted, progress)
    return fit(config, model, tokenizer, train_set, validation_set, collator, trainer_metrics, work_dir, progress,
               loss_func)


def output_layer(model: torch.nn.Module, num_labels: int) -> torch.nn.Linear:
    """The trainable linear layer that produces the logits (PEFT's copy of the head under LoRA)."""
    layers = [module for _, module in model.named_modules()
              if isinstance(module, torch.nn.Linear) and module.out_features == num_labels
              and module.weight.requires_grad]
    if not layers:
        raise LorakitError(f"no trainable output layer with {num_labels} outputs in the model")
    return layers[-1]


def probe_head(model: torch.nn.Module, train_set: EncodedDataset, collator: Any, num_labels: int,
               class_weighted: bool, progress: bool) -> None:
    """Linear probing before fine-tuning (LP-FT, Kumar et al. 2022): the output layer starts as a logistic
    regression on the frozen features it sees, so fine-tuning adapts the body to a working head instead of
    dragging a random one along (banking77, MiniLM: a random head trains to 45 % in 3 epochs at 2e-4)."""
    from sklearn.linear_model import LogisticRegression
    from tqdm.auto import tqdm

    layer = output_layer(model, num_labels)
    features: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: features.append(inputs[0].detach()))
    order = sorted(range(len(train_set)), key=lambda i: len(train_set.encodings["input_ids"][i]))
    batches = [order[start:start + 64] for start in range(0, len(order), 64)]
    bar = progress and sys.stderr.isatty()  # logs and pipes get one plain line, not a redrawn bar
    if progress and not bar:
        print(f"linear probe of the head: {len(order)} texts", file=sys.stderr, flush=True)
    model.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc="linear probe", disable=not bar, leave=False):
                inputs = collator([{key: value for key, value in train_set[i].items() if key != "labels"}
                                   for i in batch])
                model(**inputs)
    finally:
        handle.remove()
    labels = np.asarray([train_set.label_ids[i] for i in order])
    present = np.unique(labels)
    if len(present) < 2:
        return  # nothing to separate: the random head stays
    probe = LogisticRegression(max_iter=500, class_weight="balanced" if class_weighted else None)
    probe.fit(torch.cat(features).float().numpy(), labels)
    coef, intercept = probe.coef_, probe.intercept_
    if coef.shape[0] == 1:  # two classes: sklearn keeps one logit difference; split it evenly
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    weight = torch.zeros_like(layer.weight)
    bias = torch.full_like(layer.bias, float(intercept.min()) - 10.0)  # classes absent from train
    weight[present] = torch.as_tensor(coef, dtype=weight.dtype)
    bias[present] = torch.as_tensor(intercept, dtype=bias.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)


class AlignedDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """Token classification examples tokenized once with their sub-word labels (tokens.align_labels)."""

    def __init__(self, tokenizer: Any, examples: Sequence[TokenExample], labels: Sequence[str], max_seq_len: int):
        self.items = align_labels(tokenizer, examples, labels, max_seq_len)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def train_tokens(config: TrainConfig, train_examples: Sequence[TokenExample],
                 validation_examples: Sequence[TokenExample], work_dir: Path, progress: bool = True) -> TrainResult:
    """Token classification: the same loop, entity F1 (strict, micro) on validation every epoch."""
    from .entities import trainer_entity_metrics

    if config.class_weighted:
        raise LorakitError("--class-weighted is for sequence classification only")
    check_best_metric(config)
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    line_breaks = config.line_breaks and keep_line_breaks(tokenizer)
    model = build_model(config)
    train_set = AlignedDataset(tokenizer, train_examples, config.labels, config.max_seq_len)
    validation_set = AlignedDataset(tokenizer, validation_examples, config.labels, config.max_seq_len)
    result = fit(config, model, tokenizer, train_set, validation_set, DataCollatorForTokenClassification(tokenizer),
                 trainer_entity_metrics(config.labels), work_dir, progress)
    result.stats["line_breaks"] = line_breaks
    return result


def fit(config: TrainConfig, model: torch.nn.Module, tokenizer: Any, train_set: Any, validation_set: Any,
        collator: Any, compute_metrics: Any, work_dir: Path, progress: bool, loss_func: Any = None) -> TrainResult:
    """transformers' Trainer with the settings of `config`; the best epoch by `config.best_metric` is kept."""
    updates_per_epoch = math.ceil(len(train_set) / (config.batch_size * config.gradient_accumulation
                                                    * distributed.world_size()))
    epochs = config.epochs_for(updates_per_epoch)
    args = TrainingArguments(
        output_dir=str(work_dir), num_train_epochs=epochs, learning_rate=config.lr(),
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=max(32, config.batch_size),
        gradient_accumulation_steps=config.gradient_accumulation, warmup_steps=config.warmup,
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm, lr_scheduler_type="cosine",
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="steps",
        logging_steps=max(1, updates_per_epoch // 4),
        load_best_model_at_end=True, metric_for_best_model=config.best_metric,
        greater_is_better=config.best_metric != "loss", save_total_limit=2, save_only_model=True,
        seed=config.seed, data_seed=config.seed, report_to="none", disable_tqdm=not progress,
        dataloader_num_workers=0, train_sampling_strategy="group_by_length", **distributed.trainer_arguments(),
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=validation_set, data_collator=collator,
        compute_metrics=compute_metrics, compute_loss_func=loss_func, optimizers=(optimizer(model, config), None),
    )
    # The heads' cross-entropy (and the class-weighted one) is a per-batch mean that ignores `num_items_in_batch`:
    # the Trainer must divide it by the accumulation steps itself.
    trainer.loss_is_scaled_for_ga = False
    if config.patience > 0:
        trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=config.patience))
    trained, run_stats = run_trainer(trainer, PostfixProgress if progress else None)
    stats = parameter_counts(trained) | {"train_seconds": run_stats.pop("train_seconds"),
                                         "epochs": epochs, "epochs_run": trainer.state.epoch,
                                         "train_examples": len(train_set), "best_metric": config.best_metric,
                                         "quantize": config.quantize}
    if config.quantize:  # evaluated, calibrated and exported as served: the adapter on the fp32 base
        from .quantize import reload_on_fp32_base

        trained = reload_on_fp32_base(trained, lambda: load_task_model(config.task, config.base, config.labels))
        total = sum(p.numel() for p in trained.parameters())  # NF4 packs two weights a byte: count the fp32 model
        stats |= {"total_params": total, "trainable_percent": 100.0 * stats["trainable_params"] / total}
    return TrainResult(model=trained.to("cpu").float().eval(), tokenizer=tokenizer,
                       history=list(trainer.state.log_history), stats=stats | run_stats)


def optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; the task head (PEFT's modules_to_save copy under LoRA, the registry's
    head modules under full fine-tuning) learns at head_lr, the body at lr; biases and LayerNorm weights get no
    weight decay."""
    heads = tuple(f"{name}." for name in task_head_modules(model, config.task)) if config.full else ()
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        head = "modules_to_save" in name or name.startswith(heads)
        rate = config.head_lr() if head else config.lr()
        decay = 0.0 if parameter.ndim < 2 else config.weight_decay
        groups.setdefault((rate, decay), []).append(parameter)
    return torch.optim.AdamW([{"params": params, "lr": rate, "weight_decay": decay}
                              for (rate, decay), params in groups.items()], lr=config.lr())


def run_trainer(trainer: Trainer, bar: type[PostfixProgress] | None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train with `bar` as the one progress bar (plain lines instead when stderr is not a terminal), or with no
    progress at all; the trained model and the stats every task reports: train_seconds, best_checkpoint,
    best_metric_value, world_process_zero, device, and the launch (world_size, ddp_backend, effective_batch_size)."""
    if bar is not None:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(bar if sys.stderr.isatty() else PlainProgress(bar.SHOWN))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    best = trainer.state.best_model_checkpoint
    args = trainer.args
    return cast(torch.nn.Module, trainer.model), {
        "train_seconds": round(seconds, 2), "best_checkpoint": Path(best).name if best else None,
        "best_metric_value": trainer.state.best_metric, "world_process_zero": trainer.is_world_process_zero(),
        "device": str(args.device), "world_size": args.world_size, "ddp_backend": distributed.backend(),
        "per_device_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation": args.gradient_accumulation_steps,
        "effective_batch_size": args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps,
    }
