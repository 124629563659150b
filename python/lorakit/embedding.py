"""Sentence embeddings: LoRA on the bare encoder (or, with `full`, every encoder weight), trained on text pairs,
pooled (mean / cls) and L2-normalised.

Scored pairs train with the cosine-similarity loss (MSE between cos(u, v) and score / score_scale); unscored
(anchor, positive) pairs with in-batch negatives (multiple-negatives ranking). Scores are kept as given in the
files: STS-B's 0..5 is divided by `score_scale` inside the loss and the metrics, where `score_scale` is inferred
as 1 (all scores in [0, 1]) or 5 (all in [0, 5]) unless set. `encode` is the reference every runtime is compared to.

Full fine-tuning trains the whole encoder with the same losses, early stopping and best-epoch choice, at a default
learning rate of 2e-5 (sentence-transformers' default when it fine-tunes a whole encoder). Its export has no
adapter (`adapter: null`, only model.safetensors), the layout every runtime loads for a merged embedding model.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats  # type: ignore[import-untyped]
from sklearn.metrics import precision_recall_curve, roc_auc_score
from transformers import (
    AutoModel,
    AutoTokenizer,
    EarlyStoppingCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from ._native import max_positions
from .data import read_records
from .distributed import trainer_arguments
from .errors import DataError, LorakitError
from .models import default_target_modules
from .train import PostfixProgress, parameter_counts, run_trainer

POOLINGS = ("mean", "cls")
DEFAULT_MAX_SEQ_LEN = 256  # all-MiniLM-L6-v2's sentence_bert_config.json
RANKING_SCALE = 20.0  # inverse temperature of the in-batch softmax (sentence-transformers' default)
COMPATIBLE, INCOMPATIBLE = 0.8, 0.2  # of the score scale: 4 and 1 of STS-B's 5
LORA_LEARNING_RATE = 2e-4
FULL_LEARNING_RATE = 2e-5  # sentence-transformers' default for fine-tuning a whole encoder


@dataclass(frozen=True)
class Pair:
    text: str
    text_pair: str
    score: float | None  # None: an (anchor, positive) pair


@dataclass
class EmbeddingConfig:
    epochs: float = 2.0
    learning_rate: float | None = None  # None: see lr()
    batch_size: int = 16
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    max_seq_len: int | None = None  # None: sentence_bert_config.json's max_seq_length, else 256, within positions
    pooling: str = "mean"
    normalize: bool = True
    seed: int = 42
    score_scale: float | None = None  # None: inferred from the training scores (1 or 5)
    warmup: float = 0.1  # fraction of the training steps
    patience: int = 2  # epochs without a better validation metric before stopping
    full: bool = False  # train every encoder weight instead of LoRA (r, alpha and dropout then do not apply)

    def lr(self) -> float:
        """The explicit rate, else 2e-5 (full, as sentence-transformers) or 2e-4 (LoRA)."""
        if self.learning_rate is not None:
            return self.learning_rate
        return FULL_LEARNING_RATE if self.full else LORA_LEARNING_RATE

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"learning_rate": self.lr()}


@dataclass
class EmbeddingTrainResult:
    model: torch.nn.Module  # the best checkpoint, fp32, CPU, eval mode: a PeftModel over the encoder, or the encoder
    tokenizer: Any
    history: list[dict[str, Any]]
    stats: dict[str, Any]


def load_pairs(path: Path, text_column: str, pair_column: str, score_column: str | None,
               score_if_present: str | None = None) -> list[Pair]:
    """Pairs from a CSV / TSV / JSONL / JSON file with named columns; no score column: (anchor, positive) pairs.
    `score_if_present` is the score column to read when none is named and the file has it."""
    records = read_records(path)
    available = set().union(*(record.keys() for record in records))
    if score_column is None and score_if_present in available:
        score_column = score_if_present
    roles = {text_column: "text", pair_column: "pair"} | ({score_column: "score"} if score_column else {})
    for column, role in roles.items():
        if column not in available:
            raise DataError(f"{path}: {role} column {column!r} not found (columns: "
                            f"{', '.join(sorted(map(str, available)))})")
    pairs = []
    for number, record in enumerate(records):
        text, text_pair = record.get(text_column), record.get(pair_column)
        if text is None or text_pair is None:
            raise DataError(f"{path}: record {number} has no {'text' if text is None else 'pair'}")
        score = parse_score(record.get(score_column), f"{path}: record {number}") if score_column else None
        pairs.append(Pair(str(text), str(text_pair), score))
    return pairs


def load_stsb(path: Path) -> list[Pair]:
    """The STS Benchmark's original files: tab-separated, no header, unquoted; score and sentences in fields 5-7."""
    try:
        raw = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    pairs = []
    for number, fields in enumerate(csv.reader(io.StringIO(raw), delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
        if not fields:
            continue
        if len(fields) < 7:
            raise DataError(f"{path}:{number}: {len(fields)} tab-separated fields, STS-B lines have at least 7")
        pairs.append(Pair(fields[5], fields[6], parse_score(fields[4], f"{path}:{number}")))
    if not pairs:
        raise DataError(f"{path}: file is empty")
    return pairs


def parse_score(value: Any, where: str) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: score {value!r} is not a number") from None
    if not math.isfinite(score):
        raise DataError(f"{where}: score {value!r} is not a finite number")
    return score


def infer_score_scale(pairs: Sequence[Pair], scale: float | None = None) -> float | None:
    """The top of the score range: `scale` when given, else 1 or 5; None for unscored pairs.

    DataError for a mix of scored and unscored pairs, or for scores outside [0, scale].
    """
    scores = [pair.score for pair in pairs if pair.score is not None]
    if not scores:
        return None
    if len(scores) != len(pairs):
        raise DataError(f"{len(pairs) - len(scores)} of {len(pairs)} pairs have no score: use all scored pairs "
                        "(cosine loss) or all (anchor, positive) pairs (in-batch negatives)")
    low, high = min(scores), max(scores)
    if scale is None:
        scale = 1.0 if high <= 1 else 5.0
    if scale <= 0 or low < 0 or high > scale:
        raise DataError(f"scores span [{low:g}, {high:g}], outside [0, {scale:g}]: set the score scale")
    return scale


def resolve_max_seq_len(base: Path, requested: int | None) -> int:
    """The explicit length, else the base's sentence-transformers length (else 256), never above its positions."""
    limit = max_positions(Path(base) / "config.json")
    if requested is not None:
        if not 0 < requested <= limit:
            raise LorakitError(f"--max-seq-len {requested} must be in 1..{limit}, the positions the base accepts")
        return requested
    default = DEFAULT_MAX_SEQ_LEN
    st_config = Path(base) / "sentence_bert_config.json"
    if st_config.is_file():
        default = int(json.loads(st_config.read_text("utf-8")).get("max_seq_length", default))
    return min(default, limit)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str, normalize: bool) -> torch.Tensor:
    """Masked mean over real tokens (or the first token), then L2: the math the native EmbeddingHead repeats."""
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    elif pooling == "cls":
        pooled = hidden[:, 0]
    else:
        raise LorakitError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    return F.normalize(pooled, p=2, dim=-1) if normalize else pooled


def embed_batch(model: torch.nn.Module, batch: Any, pooling: str, normalize: bool) -> torch.Tensor:
    return pool(model(**batch).last_hidden_state, batch["attention_mask"], pooling, normalize)


@torch.no_grad()
def encode(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], max_seq_len: int, pooling: str,
           normalize: bool, batch_size: int = 64) -> torch.Tensor:
    """`[N, D]` fp32 CPU embeddings; right padding, truncation to max_seq_len, eval mode."""
    if pooling not in POOLINGS:
        raise LorakitError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    texts = list(texts)
    out = torch.empty(len(texts), int(cast(Any, model).config.hidden_size), dtype=torch.float32)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: less padding
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_seq_len,
                          padding_side="right", return_tensors="pt").to(device)
        out[rows] = embed_batch(model, batch, pooling, normalize).float().cpu()
    model.train(was_training)
    return out


def cosine_loss(u: torch.Tensor, v: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE between cos(u, v) and the target similarity in [0, 1] (sentence-transformers' CosineSimilarityLoss)."""
    return F.mse_loss(F.cosine_similarity(u, v), targets.to(u.dtype))


def ranking_loss(anchors: torch.Tensor, positives: torch.Tensor, scale: float = RANKING_SCALE) -> torch.Tensor:
    """Each anchor must pick its own positive among all the batch's positives (MultipleNegativesRankingLoss)."""
    sims = F.normalize(anchors, dim=-1) @ F.normalize(positives, dim=-1).T * scale
    return F.cross_entropy(sims, torch.arange(len(sims), device=sims.device))


def finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def separation_metrics(compatible: np.ndarray, incompatible: np.ndarray) -> dict[str, Any]:
    """How well cosine separates compatible from incompatible pairs (None where a side is empty)."""
    out: dict[str, Any] = {"n_compatible": len(compatible), "n_incompatible": len(incompatible), "margin": None,
                           "cohens_d": None, "auc_roc": None, "best_f1": None, "best_threshold": None}
    if len(compatible) == 0 or len(incompatible) == 0:
        return out
    margin = float(compatible.mean() - incompatible.mean())
    out["margin"] = margin
    if len(compatible) + len(incompatible) > 2:  # Cohen's d: the margin in pooled standard deviations
        squares = ((compatible - compatible.mean()) ** 2).sum() + ((incompatible - incompatible.mean()) ** 2).sum()
        sd = math.sqrt(squares / (len(compatible) + len(incompatible) - 2))
        out["cohens_d"] = margin / sd if sd > 0 else None
    truth = np.r_[np.ones(len(compatible)), np.zeros(len(incompatible))]
    cosines = np.r_[compatible, incompatible]
    out["auc_roc"] = float(roc_auc_score(truth, cosines))
    precision, recall, thresholds = precision_recall_curve(truth, cosines)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=precision + recall > 0)[:-1]  # the last point has no threshold
    best = int(np.argmax(f1))
    out["best_f1"], out["best_threshold"] = float(f1[best]), float(thresholds[best])
    return out


def pair_metrics(cosines: np.ndarray, scores: np.ndarray | None, score_scale: float | None,
                 mismatched: np.ndarray | None = None) -> dict[str, Any]:
    """Correlations with the scores, and the compatible/incompatible separation (scored: by score thresholds of
    the scale; unscored: the given pairs against `mismatched` cosines)."""
    out: dict[str, Any] = {"n": len(cosines), "spearman": None, "pearson": None, "score_scale": score_scale}
    if scores is not None:
        scale = score_scale or 1.0
        if len(cosines) > 1 and np.ptp(cosines) > 0 and np.ptp(scores) > 0:
            out["spearman"] = finite(stats.spearmanr(cosines, scores).statistic)
            out["pearson"] = finite(stats.pearsonr(cosines, scores).statistic)
        compatible, incompatible = cosines[scores >= COMPATIBLE * scale], cosines[scores <= INCOMPATIBLE * scale]
    else:
        compatible, incompatible = cosines, mismatched if mismatched is not None else np.empty(0)
    return out | separation_metrics(compatible, incompatible)


def evaluate_embedding(model: torch.nn.Module, tokenizer: Any, pairs: list[Pair], max_seq_len: int, pooling: str,
                       normalize: bool, *, score_scale: float | None = None) -> dict[str, Any]:
    """Cosine of each pair, scored against the pairs' scores (or against shuffled mismatched pairs)."""
    if not pairs:
        raise DataError("no pairs to evaluate")
    u = encode(model, tokenizer, [pair.text for pair in pairs], max_seq_len, pooling, normalize)
    v = encode(model, tokenizer, [pair.text_pair for pair in pairs], max_seq_len, pooling, normalize)
    return vector_metrics(u.numpy(), v.numpy(), pairs, score_scale=score_scale)


def cosines_of(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity in float64 (zero vectors give 0, as torch's eps-guarded cosine does)."""
    u, v = u.astype(np.float64), v.astype(np.float64)
    norms = np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-8)
    result: np.ndarray = (u * v).sum(axis=1) / norms
    return result


def vector_metrics(u: np.ndarray, v: np.ndarray, pairs: list[Pair], *,
                   score_scale: float | None = None) -> dict[str, Any]:
    """The pair metrics of embeddings `u` (first texts) and `v` (second texts), from any backend."""
    if not pairs:
        raise DataError("no pairs to evaluate")
    scale = infer_score_scale(pairs, score_scale)
    cosines = cosines_of(u, v)
    if pairs[0].score is not None:
        return pair_metrics(cosines, np.array([pair.score for pair in pairs], dtype=np.float64), scale)
    # Mismatched pairs: anchor order[j] with the positive of order[j + 1] (never its own, unless the text repeats).
    order = np.random.default_rng(0).permutation(len(pairs))
    shifted = np.roll(order, -1)
    keep = [j for j in range(len(order)) if pairs[order[j]].text_pair != pairs[shifted[j]].text_pair]
    mismatched = cosines_of(u[order[keep]], v[shifted[keep]])
    return pair_metrics(cosines, None, None, mismatched)


PAIR = "pair_"  # prefix of the second text's tensors in a training item and batch


class EncodedPairs(torch.utils.data.Dataset[dict[str, Any]]):
    """Both sides tokenized once (truncated, unpadded); labels are the scaled scores (1.0 for positives).

    Items are flat (`input_ids`, ..., `pair_input_ids`, ...) so Trainer's length-grouped sampler reads the first
    side's length: short STS-style texts padded at random to a batch's longest cost about twice the compute.
    """

    def __init__(self, tokenizer: Any, pairs: Sequence[Pair], max_seq_len: int, score_scale: float | None):
        self.a = tokenizer([pair.text for pair in pairs], truncation=True, max_length=max_seq_len)
        self.b = tokenizer([pair.text_pair for pair in pairs], truncation=True, max_length=max_seq_len)
        self.labels = [1.0 if pair.score is None else pair.score / (score_scale or 1.0) for pair in pairs]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return ({key: values[index] for key, values in self.a.items()}
                | {PAIR + key: values[index] for key, values in self.b.items()} | {"labels": self.labels[index]})


class PairCollator:
    """Pads each side to its own longest text: {"a": batch, "b": batch, "labels": [B]}."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        def side(prefix: str) -> Any:
            features = [{key[len(prefix):]: value for key, value in item.items()
                         if key != "labels" and key.startswith(PAIR) == bool(prefix)} for item in items]
            return self.tokenizer.pad(features, padding=True, return_tensors="pt")

        return {"a": side(""), "b": side(PAIR),
                "labels": torch.tensor([item["labels"] for item in items], dtype=torch.float32)}


class PairTrainer(Trainer):
    """Trainer whose loss embeds both sides of each pair; evaluation predictions are the pairs' cosines."""

    loss_is_scaled_for_ga = False  # a per-batch mean: Trainer divides by the accumulation steps

    def __init__(self, *args: Any, pooling: str, normalize: bool, scored: bool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pooling, self.normalize, self.scored = pooling, normalize, scored

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        u = embed_batch(model, inputs["a"], self.pooling, self.normalize)
        v = embed_batch(model, inputs["b"], self.pooling, self.normalize)
        loss = cosine_loss(u, v, inputs["labels"]) if self.scored else ranking_loss(u, v)
        return (loss, {"cosine": F.cosine_similarity(u, v)}) if return_outputs else loss


class EmbeddingProgress(PostfixProgress):
    SHOWN: Any = ("loss", "eval_loss", "eval_spearman", "eval_pearson")  # Any: the base's tuple type fixes a length


def correlation_metrics(prediction: Any) -> dict[str, float]:
    """Trainer's per-epoch validation metrics; 0 where undefined (constant cosines) so "best" stays comparable."""
    cosines, scores = np.ravel(prediction.predictions), np.ravel(prediction.label_ids)
    out = pair_metrics(cosines.astype(np.float64), scores.astype(np.float64), 1.0)
    return {"spearman": out["spearman"] or 0.0, "pearson": out["pearson"] or 0.0}


def build_embedding_model(base: Path, config: EmbeddingConfig) -> torch.nn.Module:
    """The bare encoder with LoRA, or (full) the encoder itself with everything but its pooler trainable."""
    model = AutoModel.from_pretrained(base)
    # A pooler (BERT, RoBERTa) feeds no embedding: LoRA on its dense layer would be saved untrained, and a trainable
    # pooler would be a parameter without a gradient (which DDP refuses). It is kept as it is, so exports stay whole.
    excluded = [name for name, module in model.named_modules()
                if name.startswith("pooler.") and isinstance(module, torch.nn.Linear)]
    if config.full:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(not name.startswith("pooler."))
        return cast(torch.nn.Module, model)
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=config.r, lora_alpha=config.alpha,
                      lora_dropout=config.dropout, target_modules=default_target_modules(model.config.model_type),
                      exclude_modules=excluded or None, bias="none")
    try:
        return cast(torch.nn.Module, get_peft_model(model, lora))
    except ValueError as exc:
        raise LorakitError(f"cannot apply LoRA: {exc}") from exc


def train_embedding(base: Path, train: list[Pair], validation: list[Pair], config: EmbeddingConfig,
                    work_dir: Path, progress: bool = True) -> EmbeddingTrainResult:
    """Train LoRA (or, with config.full, the whole encoder) on pairs, evaluate every epoch, return the best epoch
    (validation Spearman, or loss unscored)."""
    if config.pooling not in POOLINGS:
        raise LorakitError(f"pooling must be one of {', '.join(POOLINGS)}, not {config.pooling!r}")
    if not train or not validation:
        raise DataError(f"need training and validation pairs (got {len(train)} and {len(validation)})")
    scale = infer_score_scale(train, config.score_scale)
    scored = scale is not None
    if (infer_score_scale(validation, scale) is not None) != scored:
        raise DataError("training and validation pairs must both be scored or both be (anchor, positive) pairs")
    if not scored and config.batch_size < 2:
        raise LorakitError("in-batch negatives need a batch size of at least 2")
    max_seq_len = resolve_max_seq_len(base, config.max_seq_len)
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = build_embedding_model(base, config)
    train_set = EncodedPairs(tokenizer, train, max_seq_len, scale)
    validation_set = EncodedPairs(tokenizer, validation, max_seq_len, scale)
    best_metric = "spearman" if scored else "loss"
    args = TrainingArguments(
        output_dir=str(work_dir), num_train_epochs=config.epochs, learning_rate=config.lr(),
        per_device_train_batch_size=config.batch_size,
        # Unscored: the validation loss ranks against in-batch negatives, so keep the training batch size.
        per_device_eval_batch_size=max(64, config.batch_size) if scored else config.batch_size,
        warmup_steps=config.warmup, weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="cosine",
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="steps",
        logging_steps=max(1, len(train_set) // (config.batch_size * 4)), train_sampling_strategy="group_by_length",
        load_best_model_at_end=True, metric_for_best_model=best_metric, greater_is_better=scored,
        save_total_limit=2, save_only_model=True, seed=config.seed, data_seed=config.seed, report_to="none",
        disable_tqdm=not progress, dataloader_num_workers=0, remove_unused_columns=False, label_names=["labels"],
        **trainer_arguments(),
    )
    trainer = PairTrainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=validation_set,
        data_collator=PairCollator(tokenizer), compute_metrics=correlation_metrics if scored else None,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=config.patience)],
        pooling=config.pooling, normalize=config.normalize, scored=scored,
    )
    trained, run_stats = run_trainer(trainer, EmbeddingProgress if progress else None)
    stats_out = parameter_counts(trained) | {
        "train_seconds": run_stats.pop("train_seconds"), "epochs": config.epochs, "train_examples": len(train_set),
        "validation_examples": len(validation_set), "loss": "cosine" if scored else "ranking", "score_scale": scale,
        "max_seq_len": max_seq_len, "pooling": config.pooling, "normalize": config.normalize,
        "best_metric": best_metric,
    } | run_stats
    return EmbeddingTrainResult(model=trained.to("cpu").float().eval(), tokenizer=tokenizer,
                                history=list(trainer.state.log_history), stats=stats_out)
