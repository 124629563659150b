"""Training a generative classifier: LoRA (or QLoRA) on a *ForCausalLM, loss on the answer tokens only.

Rows are left padded, with positions from the mask (each row has the positions it has alone, as runtimes compute
them), so every answer sits at the end of its row: the LM head (vocabulary 262144 for Gemma 3) runs only on the
last positions of the batch, never on the prompt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

from . import distributed
from .data import Example
from .errors import LorakitError
from .prompt import PromptSpec, PromptTokens, special_ids
from .quantize import check_quantize, load_4bit
from .train import PostfixProgress, TrainConfig, TrainResult, parameter_counts, run_trainer

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class RowDataset(torch.utils.data.Dataset[dict[str, list[int]]]):
    """Training rows assembled once (prompt + answer + eos, labels -100 outside the answer)."""

    def __init__(self, tokens: PromptTokens, examples: Sequence[Example], labels: Sequence[str]) -> None:
        self.rows = []
        for example in examples:
            input_ids, targets = tokens.training_row(example.text, labels, example.label)
            self.rows.append({"input_ids": input_ids, "labels": targets})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]


class LeftPadCollator:
    """Left padding to the batch's longest row, positions cumsum(mask) - 1, and `logits_to_keep` covering the
    longest answer (+ the position before it), so the LM head sees only those positions."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(row["input_ids"]) for row in rows)
        answer = max(sum(1 for t in row["labels"] if t != -100) for row in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.int64)
        labels = torch.full((len(rows), width), -100, dtype=torch.int64)
        mask = torch.zeros((len(rows), width), dtype=torch.int64)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, width - n:] = torch.tensor(row["input_ids"])
            labels[i, width - n:] = torch.tensor(row["labels"])
            mask[i, width - n:] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "labels": labels,
                "logits_to_keep": answer + 1}


def answer_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens: logits [B, K+1, V] of the last positions predict labels[:, -K:]."""
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
    kept = logits.shape[1] - 1
    predicted = logits[:, :-1].float()
    targets = labels[:, -kept:].to(predicted.device)
    return torch.nn.functional.cross_entropy(predicted.reshape(-1, predicted.shape[-1]), targets.reshape(-1),
                                             ignore_index=-100)


def prompt_tokens(base: Path, tokenizer: Any, max_document_tokens: int) -> PromptTokens:
    import json

    config = json.loads((Path(base) / "config.json").read_text("utf-8"))
    spec = PromptSpec.for_architecture(str(config.get("model_type")), max_document_tokens)
    return PromptTokens(tokenizer, spec, *special_ids(config))


def load_causal_lm(base: str, quantize: str | None = None) -> Any:
    """The base in fp32, or with its linear layers in 4-bit NF4 (QLoRA; embeddings and the head stay fp32)."""
    check_quantize(quantize)
    if quantize is None:
        return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return load_4bit(AutoModelForCausalLM, base, ["lm_head", "embed_tokens"])


def build_generative_model(config: TrainConfig) -> torch.nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    model = load_causal_lm(config.base, config.quantize)
    if config.full:
        raise LorakitError("--full is not available for --task generative (LoRA only)")
    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, use_rslora=config.use_rslora,
                      target_modules=config.target_modules or DEFAULT_TARGETS, bias="none")
    try:
        return cast(torch.nn.Module, get_peft_model(model, lora))
    except ValueError as exc:
        raise LorakitError(f"cannot apply LoRA: {exc}") from exc


def train_generative(config: TrainConfig, train_examples: Sequence[Example], validation_examples: Sequence[Example],
                     work_dir: Path, progress: bool = True) -> TrainResult:
    """Train; the epoch with the lowest validation answer loss is kept."""
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    tokens = prompt_tokens(Path(config.base), tokenizer, config.max_document_tokens)
    train_set = RowDataset(tokens, train_examples, config.labels)
    validation_set = RowDataset(tokens, validation_examples, config.labels)
    longest = max(len(row["input_ids"]) for row in train_set.rows + validation_set.rows)
    if longest > config.max_seq_len:
        raise LorakitError(f"a training row is {longest} tokens, more than --max-seq-len {config.max_seq_len}: raise "
                           "--max-seq-len or lower --max-document-tokens")
    model = build_generative_model(config)
    updates_per_epoch = math.ceil(len(train_set) / (config.batch_size * config.gradient_accumulation
                                                    * distributed.world_size()))
    args = TrainingArguments(
        output_dir=str(work_dir), num_train_epochs=config.epochs_for(), learning_rate=config.lr(),
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation, warmup_steps=config.warmup,
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm, lr_scheduler_type="cosine",
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="steps",
        logging_steps=max(1, updates_per_epoch // 4), load_best_model_at_end=True, metric_for_best_model="loss",
        greater_is_better=False, save_total_limit=2, save_only_model=True, prediction_loss_only=True,
        seed=config.seed, data_seed=config.seed, report_to="none", disable_tqdm=not progress,
        dataloader_num_workers=0, remove_unused_columns=False, label_names=["labels"],
        **distributed.trainer_arguments(),
    )
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=validation_set,
                      data_collator=LeftPadCollator(tokens.pad_id), compute_loss_func=answer_loss)
    trainer.loss_is_scaled_for_ga = False  # answer_loss is a per-batch mean
    trained, run_stats = run_trainer(trainer, PostfixProgress if progress else None)
    stats = parameter_counts(trained) | {"train_seconds": run_stats.pop("train_seconds"), "epochs": config.epochs_for(),
                                         "train_examples": len(train_set), "best_metric": "loss",
                                         "quantize": config.quantize, "longest_row_tokens": longest}
    model_out = trained if config.quantize else trained.to("cpu").float()
    return TrainResult(model=model_out.eval(), tokenizer=tokenizer, history=list(trainer.state.log_history),
                       stats=stats | run_stats)
