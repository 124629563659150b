"""Export a generative classifier as a lorakit model directory (docs/generative.md), atomically.

The reference is always the fp32 base with the adapter unmerged: a QLoRA adapter (trained on an NF4 base) is
saved, reloaded onto the fp32 base and merged there, because that is what every runtime serves. Its golden
vectors therefore describe the fp32 model, not the quantized one training saw.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .atomic import atomic_directory
from .errors import ExportError
from .export import MERGE_TOLERANCE, base_weights_path, manifest_base_path, save_adapter, write_report
from .generative import classify
from .generative_golden import compute_golden, tolerance_for, write_generative_golden
from .golden import GOLDEN_FILE, golden_texts
from .manifest import (
    FORMAT_VERSION,
    GENERATIVE,
    BaseRef,
    Manifest,
    file_table,
    is_model_dir,
    sha256_file,
    write_manifest,
)
from .prompt import Example, PromptTokens, check_labels
from .quantize import reload_on_fp32_base

FEWSHOT_NEW_LABEL = "something else"
FEWSHOT_OVERRIDE = ("relevant", "not relevant")


def fp32_base(base: Path) -> Callable[[], Any]:
    """What `quantize.reload_on_fp32_base` applies a generative adapter to: the causal LM base in fp32."""
    from transformers import AutoModelForCausalLM

    return lambda: AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)


def fewshot_cases(tokens: PromptTokens, labels: list[str], examples: Sequence[Example], texts: Sequence[str],
                  max_seq_len: int) -> list[tuple[str, list[Example], list[str] | None]]:
    """Three cases from the training data: two examples of the manifest's labels; one example under a label the
    manifest lacks; an explicit label set of its own. Examples are the shortest documents, so the prompts fit."""
    if not examples or not texts:
        raise ExportError("few-shot golden cases need training examples and golden texts")
    pool = sorted(examples, key=lambda e: (len(tokens.document(e.document)[0]), e.document))
    first = pool[0]
    second = next((e for e in pool if e.label != first.label), pool[-1])
    planned: list[tuple[list[Example], list[str] | None]] = [
        ([first, second], None),
        ([first, Example(second.document, FEWSHOT_NEW_LABEL)], None),
        ([Example(first.document, FEWSHOT_OVERRIDE[0]), Example(second.document, FEWSHOT_OVERRIDE[1])],
         list(FEWSHOT_OVERRIDE)),
    ]
    # Each case on a different golden text where the prompt fits, else on the shortest one.
    shortest = min(texts, key=lambda text: len(tokens.document(text)[0]))
    cases = []
    for number, (case_examples, chosen) in enumerate(planned):
        case_labels = chosen if chosen is not None else labels + [e.label for e in case_examples
                                                                  if e.label not in labels]
        fitting = [text for text in (texts[number % len(texts)], shortest)
                   if fits(tokens, text, case_labels, case_examples, max_seq_len)]
        if not fitting:
            raise ExportError(f"max_seq_len {max_seq_len} leaves no room for the few-shot golden cases (two "
                              "examples); train with a larger --max-seq-len")
        cases.append((fitting[0], case_examples, chosen))
    return cases


def fits(tokens: PromptTokens, text: str, labels: list[str], examples: list[Example], max_seq_len: int) -> bool:
    prompt = tokens.prompt(text, labels, examples).ids
    return len(prompt) + max(len(tokens.answer(label)) for label in labels) <= max_seq_len


def check_merge(unmerged: Any, merged: Any, tokens: PromptTokens, texts: Sequence[str], labels: list[str]) -> None:
    """Merged next-token logits within MERGE_TOLERANCE * max(1, max |logit|) of the unmerged adapter's, on the golden
    texts."""
    worst, scale = 0.0, 1.0
    for text in texts:
        a = classify(unmerged, tokens, text, labels).next_logits
        b = classify(merged, tokens, text, labels).next_logits
        worst = max(worst, float((a - b).abs().max()))
        scale = max(scale, float(a.abs().max()))
    if not worst <= MERGE_TOLERANCE * scale:
        raise ExportError(f"merged model disagrees with the unmerged adapter: max |diff| {worst:.3e} > "
                          f"{MERGE_TOLERANCE * scale:.3e}")


def export_generative(model: Any, tokenizer: Any, tokens: PromptTokens, out_dir: Path, *, labels: Sequence[str],
                      max_seq_len: int, base_path: Path, base_id: str | None = None, name: str | None = None,
                      golden_examples: Sequence[str] = (), fewshot_examples: Sequence[Example] = (),
                      metrics: dict[str, Any] | None = None, report_dir: Path | None = None,
                      quantized: bool = False) -> Path:
    """Write the model directory `out_dir` for the PeftModel `model` (CAUSAL_LM LoRA on `base_path`)."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise ExportError("a generative export needs the LoRA adapter (a PeftModel)")
    out_dir = Path(out_dir).absolute()
    labels = check_labels(labels)
    base_path = Path(base_path).absolute()
    base_sha = sha256_file(base_weights_path(base_path))
    model = reload_on_fp32_base(model, fp32_base(base_path)) if quantized else model.to("cpu").float().eval()
    texts = golden_texts(golden_examples, tokens.spec.max_document_tokens)
    cases = fewshot_cases(tokens, labels, fewshot_examples, texts, max_seq_len)
    parameters = sum(p.numel() for p in model.get_base_model().parameters())
    with atomic_directory(out_dir, is_model_dir) as tmp:
        tensors, metadata = compute_golden(model, tokens, texts, labels, cases, max_seq_len,
                                           tolerance_for(parameters))
        adapter = save_adapter(model, tmp)
        merged = copy.deepcopy(model).merge_and_unload().eval()
        check_merge(model, merged, tokens, texts, labels)
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_generative_golden(tmp / GOLDEN_FILE, tensors, metadata)
        write_report(tmp / "report", report_dir, metrics)
        manifest = Manifest(
            format_version=FORMAT_VERSION, name=name or out_dir.name, task=GENERATIVE,
            architecture=merged.config.model_type,
            base=BaseRef(path=manifest_base_path(base_path, out_dir), id=base_id or base_path.name,
                         weights_sha256=base_sha),
            adapter=adapter, labels=tuple(labels), max_seq_len=int(max_seq_len), pooling=None,
            metrics=metrics or {}, files=file_table(tmp), created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            lorakit_version=__version__, prompt=tokens.spec.to_json(),
        )
        write_manifest(tmp, manifest)
    return out_dir
