"""The tasks of docs/FORMAT.md "Tasks" in one table: the HF class trained, the PEFT task type, the head modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UnsupportedError
from .manifest import EMBEDDING, GENERATIVE, SEQUENCE, TOKEN
from .models import head_modules


@dataclass(frozen=True)
class Task:
    name: str  # the manifest's `task`
    cli: str  # `lorakit train --task`
    peft_task_type: str
    auto_class: str  # transformers class name


TASKS = {
    SEQUENCE: Task(SEQUENCE, "sequence-classification", "SEQ_CLS", "AutoModelForSequenceClassification"),
    TOKEN: Task(TOKEN, "token-classification", "TOKEN_CLS", "AutoModelForTokenClassification"),
    EMBEDDING: Task(EMBEDDING, "embedding", "FEATURE_EXTRACTION", "AutoModel"),
    GENERATIVE: Task(GENERATIVE, "generative", "CAUSAL_LM", "AutoModelForCausalLM"),
}
BY_CLI = {task.cli: task for task in TASKS.values()}


def task_of(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnsupportedError(f"task {name!r} has no torch implementation (known: {', '.join(TASKS)})") from None


def auto_class(task: str) -> Any:
    import transformers

    return getattr(transformers, task_of(task).auto_class)


def label_kwargs(labels: list[str]) -> dict[str, Any]:
    """from_pretrained keywords giving a head of `labels` (nothing for the bare encoder of an embedding)."""
    if not labels:
        return {}
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)}}


def load_task_model(task: str, path: str, labels: list[str], quantize: str | None = None) -> Any:
    """The task's model on the base `path`; `quantize` "4bit": its encoder's linear layers in NF4, the head and the
    embeddings in fp32 (QLoRA, quantize.py)."""
    if task == GENERATIVE:  # labels live in the prompt, not in a head
        import torch

        return auto_class(task).from_pretrained(path, dtype=torch.float32)
    if quantize is not None:
        import json
        from pathlib import Path

        from .quantize import check_quantize, load_4bit

        check_quantize(quantize)
        model_type = json.loads((Path(path) / "config.json").read_text("utf-8")).get("model_type")
        return load_4bit(auto_class(task), path, head_modules(model_type), **label_kwargs(labels))
    return auto_class(task).from_pretrained(path, **label_kwargs(labels))


def task_head_modules(model: Any, task: str) -> list[str]:
    """modules_to_save: the registry's head modules that this task's model has (a token head has no pooler,
    ModernBERT's has `head` + `classifier`); none for a bare encoder."""
    if task in (EMBEDDING, GENERATIVE):
        return []
    present = {name for name, _ in model.named_children()}
    return [name for name in head_modules(model.config.model_type) if name in present]
