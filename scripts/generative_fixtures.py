"""Generative classifier fixtures: a CAUSAL_LM LoRA on each tiny decoder base of decoder_fixtures.py, randomised
(non-zero) then trained a few steps on TRAIN_ROWS (so the chosen label varies by text), exported through lorakit's
own exporter (golden vectors and few-shot cases included).

OUT/tiny_gemma3_generative/, OUT/tiny_qwen3_generative/   labels billing, card, other; max_seq_len 128 (the tiny
bases' positions), max_document_tokens 8, so the long golden text is truncated and few-shot prompts still fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GENERATIVE_LABELS = ["billing", "card", "other"]
MAX_SEQ_LEN = 128
MAX_DOCUMENT_TOKENS = 8
GOLDEN_EXAMPLES = (
    "my card payment was declined at the shop",
    "the exchange rate on my statement looks wrong",
    "hi",
    "Köln ist schön",
)
# The training data of the fixture: few-shot golden cases take their examples from it.
TRAIN_ROWS = (
    ("I want to change my PIN", "card"),
    ("where is my new card?", "card"),
    ("my card payment was declined", "card"),
    ("how long does a transfer take?", "billing"),
    ("the exchange rate looks wrong", "billing"),
    ("I was charged twice", "billing"),
    ("hi", "other"),
    ("Köln ist schön", "other"),
    ("tell me a joke", "other"),
)
TRAIN_STEPS = 30
SEEDS = {"gemma3": 4401, "qwen3": 4402}


def build_generative_fixture(arch: str, base: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.generative_export import export_generative
    from lorakit.generative_train import DEFAULT_TARGETS, prompt_tokens
    from lorakit.prompt import Example

    torch.manual_seed(SEEDS[arch])
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, lora_dropout=0.0,
                      target_modules=DEFAULT_TARGETS, bias="none")
    peft_model = get_peft_model(model, lora)
    generator = torch.Generator().manual_seed(SEEDS[arch])
    with torch.no_grad():  # PEFT starts lora_B at zero; non-zero factors make the adapter change every logit
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    tokens = prompt_tokens(base, tokenizer, MAX_DOCUMENT_TOKENS)
    examples = [Example(d, label) for d, label in TRAIN_ROWS]
    train_briefly(peft_model, tokens, examples)
    return export_generative(peft_model.eval(), tokenizer, tokens, out, labels=GENERATIVE_LABELS,
                             max_seq_len=MAX_SEQ_LEN, base_path=base, base_id=base.name,
                             golden_examples=GOLDEN_EXAMPLES,
                             fewshot_examples=examples, metrics={})


def train_briefly(model: Any, tokens: Any, examples: list[Any]) -> None:
    """A few full-batch Adam steps with the training code's rows, collator and answer-only loss."""
    import torch

    from lorakit.data import Example as Row
    from lorakit.generative_train import LeftPadCollator, RowDataset, answer_loss

    rows = RowDataset(tokens, [Row(i, e.document, e.label) for i, e in enumerate(examples)], GENERATIVE_LABELS)
    batch = LeftPadCollator(tokens.pad_id)([rows[i] for i in range(len(rows))])
    labels = batch.pop("labels")
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(TRAIN_STEPS):
        optimizer.zero_grad()
        answer_loss(model(**batch), labels).backward()
        optimizer.step()
    model.eval()


def main(out: Path) -> list[Path]:
    """tiny_<arch>_generative for each tiny decoder base already under `out`."""
    return [build_generative_fixture(arch, out / f"tiny_{arch}_base", out / f"tiny_{arch}_generative")
            for arch in ("gemma3", "qwen3")]
