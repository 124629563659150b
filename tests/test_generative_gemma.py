"""The real gemma-3-270m (the PyPI GGUF, dequantized to fp32): a LoRA adapter exported through the generative
exporter reproduces its golden vectors in the native core, merged and at runtime, within the real-model tolerance
(next-token logits 1e-3, label probabilities 1e-4), and a tampered adapter fails."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from lorakit.prompt import Example

pytestmark = pytest.mark.slow

LABELS = ["biology", "law", "math", "physics"]
TEXTS = ["Which enzyme unwinds the DNA double helix during replication?",
         "Is a verbal contract for the sale of land enforceable?",
         "Find the derivative of x^3 sin x.",
         "A ball is dropped from 20 m; how long does it take to reach the ground?"]


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory: pytest.TempPathFactory, gemma_base: Path) -> Path:
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.generative_export import export_generative
    from lorakit.generative_train import DEFAULT_TARGETS, prompt_tokens

    base = gemma_base
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    torch.manual_seed(0)
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, target_modules=list(DEFAULT_TARGETS),
                        init_lora_weights=False)
    peft_model: Any = get_peft_model(model, config)
    with torch.no_grad():  # a delta of a trained adapter's size, not init_lora_weights=False's full scale
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.1)
    tokens = prompt_tokens(base, tokenizer, 64)
    out = tmp_path_factory.mktemp("gemma") / "topics"
    return export_generative(peft_model.eval(), tokenizer, tokens, out, labels=LABELS, max_seq_len=512,
                             base_path=base, base_id="gemma-3-270m", golden_examples=TEXTS,
                             fewshot_examples=[Example(t, label) for t, label in zip(TEXTS, LABELS, strict=True)])


@pytest.mark.parametrize("merged", [True, False])
def test_native_gemma_reproduces_the_golden(gemma_dir: Path, merged: bool) -> None:
    from lorakit.native import Model

    report = Model.load(str(gemma_dir), merged=merged).verify_golden()
    assert report["ok"], report
    assert report["tolerance"] == pytest.approx(1e-3)
    assert report["max_abs_diff"] <= 1e-3
    assert report["prob_max_abs_diff"] <= 1e-4


def test_native_gemma_refuses_a_tampered_adapter(gemma_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from lorakit.native import Model

    tampered = tmp_path / "tampered"
    shutil.copytree(gemma_dir, tampered)
    weights = tampered / "adapter_model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in sorted(state) if "layers.3.self_attn.q_proj.lora_B" in k)
    state[key] = state[key] + 0.05
    save_file(state, str(weights), metadata={"format": "pt"})
    report = Model.load(str(tampered), merged=False, verify_checksums=False).verify_golden()
    assert not report["ok"]
    assert report["max_abs_diff"] > 1e-3
