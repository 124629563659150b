"""`lorakit import`: a stock PEFT adapter on a given base, or a fine-tuned Hugging Face classifier, becomes a
model directory through the one exporter (docs/FORMAT.md "Importing").

What can be checked from the files is checked before torch loads anything; the adapter is then checked against
the loaded base (every tensor present and used, every shape right, every head weight saved), and the written
directory is loaded by the native core (merged, and base + adapter at runtime with every refusal of the core's
adapter loader) and must reproduce its golden vectors before it is published. A refusal writes nothing.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from .errors import ConfigError, DataError, ExportError, FormatError, ModelDirError, ShapeError, UnsupportedError
from .export import base_weights_path, export_model
from .loading import check_adapter_config, check_adapter_keys, one_line
from .manifest import EMBEDDING, SEQUENCE, TOKEN
from .models import check_servable
from .tasks import auto_class, label_kwargs

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
TASK_TYPES = {"SEQ_CLS": SEQUENCE, "TOKEN_CLS": TOKEN, "FEATURE_EXTRACTION": EMBEDDING}
HEAD_CLASSES = {"ForSequenceClassification": SEQUENCE, "ForTokenClassification": TOKEN}
DEFAULT_MAX_SEQ_LEN = 128
# The names transformers gives a head nobody named: they say nothing about the classes, so never become labels.
GENERIC_LABEL = re.compile(r"LABEL_\d+")
_LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)


def stderr_line(message: str) -> None:
    print(message, file=sys.stderr)


def import_adapter(source: Path, base: Path, output: Path, *, labels: Sequence[str] | None = None,
                   name: str | None = None, max_seq_len: int | None = None, task: str | None = None,
                   golden_examples: Sequence[str] = (), pooling: str | None = None, normalize: bool | None = None,
                   log: Callable[[str], None] = stderr_line) -> Path:
    """Import the PEFT adapter directory `source` (adapter_config.json + adapter_model.safetensors) trained on
    `base` as the model directory `output`. `task` (a manifest task name) is needed only when the adapter's
    task_type is unset; labels default to an id2label beside the adapter, else the base's (see resolve_labels)."""
    from peft import get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    from .pipeline import check_output, resolve_base

    source, output = Path(source).absolute(), Path(output).absolute()
    check_output(output)
    config_path, weights_path = source / ADAPTER_CONFIG, source / ADAPTER_WEIGHTS
    require_adapter_files(source)
    check_adapter_config(config_path)  # DoRA and trained biases, refused as the torch loader refuses them
    raw = read_json(config_path)
    if raw.get("peft_type", "LORA") != "LORA":
        raise UnsupportedError(f"{config_path}: peft_type {raw.get('peft_type')!r}; only LoRA adapters are served")
    task = adapter_task(raw.get("task_type"), task, config_path)
    base_path, _ = resolve_base(str(base))
    max_seq_len = resolve_max_seq_len(task, base_path, max_seq_len)
    pooling, normalize = embedding_options(task, pooling, normalize)
    shapes = tensor_shapes(weights_path)
    saved = saved_modules(shapes)
    if task == EMBEDDING:
        if labels:
            raise ConfigError("an embedding adapter has no labels; drop --labels")
        check_no_pooler_lora(shapes, config_path)
        labels = []
    else:
        size = head_size(task, base_path, saved, source)
        labels = resolve_labels(labels, size, [(source / "config.json", True), (base_path / "config.json", False)])
    model, fresh = load_task_model(task, base_path, list(labels))
    check_head_saved(fresh, saved, source)
    try:
        with warnings.catch_warnings():  # PEFT notes that base_model_name_or_path differs; check_base_name says it
            warnings.filterwarnings("ignore", message=".*base_model_name_or_path.*")
            peft_model = get_peft_model(model, read_lora_config(source))
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:  # e.g. target modules the base lacks
        raise UnsupportedError(f"{config_path}: target_modules {raw.get('target_modules')} do not fit the base "
                               f"{base_path} ({one_line(exc)})") from None
    check_adapter_keys(peft_model, weights_path)
    check_shapes(peft_model, shapes, weights_path, base_path)
    set_peft_model_state_dict(peft_model, load_file(str(weights_path)))
    recorded = raw.get("base_model_name_or_path")
    check_base_name(recorded, base_path, log)
    tokenizer = load_fast_tokenizer(source if has_tokenizer(source) else base_path)
    return export_model(peft_model, tokenizer, output, labels=labels, max_seq_len=max_seq_len, base_path=base_path,
                        base_id=recorded if isinstance(recorded, str) and recorded else base_path.name, name=name,
                        golden_examples=golden_examples, task=task, pooling=pooling, normalize=normalize,
                        check=lambda written: check_native(written, source))


def import_full(source: Path, output: Path, *, labels: Sequence[str] | None = None, name: str | None = None,
                max_seq_len: int | None = None, task: str | None = None, golden_examples: Sequence[str] = ()) -> Path:
    """Import the fine-tuned HF classifier directory `source` (config.json naming a *ForSequenceClassification
    or *ForTokenClassification head, model.safetensors, tokenizer) as the full (non-LoRA) model `output`."""
    from .pipeline import check_output

    source, output = Path(source).absolute(), Path(output).absolute()
    check_output(output)
    if not source.is_dir():
        raise ModelDirError(f"{source}: directory not found")
    config_path = source / "config.json"
    if (source / ADAPTER_CONFIG).is_file():
        raise ConfigError(f"{source}: a PEFT adapter; pass --base DIR, the base model it was trained on")
    if not config_path.is_file():
        raise ModelDirError(f"{source}: no config.json (expected a Hugging Face model or a PEFT adapter directory)")
    check_servable(source)
    base_weights_path(source)
    raw = read_json(config_path)
    task = head_task(raw.get("architectures"), task, config_path)
    max_seq_len = resolve_max_seq_len(task, source, max_seq_len)
    labels = resolve_labels(labels, head_outputs(raw), [(config_path, True)])
    model, fresh = load_task_model(task, source, list(labels))
    if fresh:
        raise ConfigError(f"{source / 'model.safetensors'}: lacks {listed(fresh)}; they would be random")
    if not has_tokenizer(source):
        raise ModelDirError(f"{source}: no tokenizer (tokenizer.json or tokenizer_config.json)")
    name_or_path = raw.get("_name_or_path")
    return export_model(model, load_fast_tokenizer(source), output, labels=labels, max_seq_len=max_seq_len,
                        base_path=source, base_id=name_or_path if isinstance(name_or_path, str) and name_or_path
                        else source.name, name=name, golden_examples=golden_examples, task=task,
                        check=lambda written: check_native(written, source))


def check_native(model_dir: Path, source: Path) -> None:
    """The written directory, loaded natively every way a runtime will, reproduces its golden vectors."""
    from .native import LorakitError, Model, has_adapter
    from .verify import describe_worst

    for merged in (True, False) if has_adapter(model_dir) else (True,):
        try:
            report = Model.load(model_dir, merged=merged).verify_golden()
        except LorakitError as exc:  # the core's own refusals (adapter variants, heads): same kind, named source
            message = str(exc).replace(f"{model_dir}/", "")  # the unpublished copy's path means nothing to anyone
            raise type(exc)(f"{source}: the native core refuses it: {message}") from None
        if not report.get("ok"):
            how = "merged" if merged else "base + adapter at runtime"
            raise ExportError(f"the native core ({how}) does not reproduce torch on the imported model: "
                              f"{describe_worst(report.get('worst'))}")


def require_adapter_files(source: Path) -> None:
    if not source.is_dir():
        raise ModelDirError(f"{source}: directory not found")
    if not (source / ADAPTER_CONFIG).is_file():
        raise ModelDirError(f"{source}: no {ADAPTER_CONFIG}, so not a PEFT adapter (a fine-tuned model directory "
                            "is imported without --base)")
    if not (source / ADAPTER_WEIGHTS).is_file():
        found = " (adapter_model.bin found: re-save it with safe_serialization=True)" \
            if (source / "adapter_model.bin").is_file() else ""
        raise ModelDirError(f"{source}: no {ADAPTER_WEIGHTS}{found}")


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{path}: not readable JSON ({one_line(exc)})") from None
    if not isinstance(value, dict):
        raise FormatError(f"{path}: expected a JSON object")
    return value


def read_lora_config(source: Path) -> Any:
    from peft import LoraConfig

    try:
        return LoraConfig.from_pretrained(str(source))
    except (OSError, ValueError, TypeError) as exc:
        raise FormatError(f"{source / ADAPTER_CONFIG}: not a LoRA config PEFT reads ({one_line(exc)})") from None


def adapter_task(task_type: Any, requested: str | None, path: Path) -> str:
    """The manifest task of a PEFT task_type; an unset task_type (a bare encoder) is an embedding by default."""
    if task_type is None:
        return requested or EMBEDDING
    task = TASK_TYPES.get(str(task_type))
    if task is None:
        raise UnsupportedError(f"{path}: task_type {task_type!r} cannot be served (supported: "
                               f"{', '.join(TASK_TYPES)}, or none for an embedding)")
    if requested is not None and requested != task:
        raise ConfigError(f"{path}: task_type {task_type} is {task}, not the requested {requested}")
    return task


def head_task(architectures: Any, requested: str | None, path: Path) -> str:
    """The task of a fine-tuned directory, from the head class its config.json names."""
    names = [str(a) for a in architectures] if isinstance(architectures, list) else []
    tasks = {task for arch in names for suffix, task in HEAD_CLASSES.items() if arch.endswith(suffix)}
    if len(tasks) != 1:
        raise UnsupportedError(f"{path}: architectures {names} name no *ForSequenceClassification or "
                               "*ForTokenClassification head (an adapter on a bare encoder needs --base)")
    task = tasks.pop()
    if requested is not None and requested != task:
        raise ConfigError(f"{path}: architectures {names} make it {task}, not the requested {requested}")
    return task


def resolve_max_seq_len(task: str, base: Path, requested: int | None) -> int:
    if task == EMBEDDING:
        from .embedding import resolve_max_seq_len as embedding_max_seq_len

        return embedding_max_seq_len(base, requested)
    from ._native import max_positions

    limit = max_positions(base / "config.json")
    if requested is None:
        return min(DEFAULT_MAX_SEQ_LEN, limit)
    if not 0 < requested <= limit:
        raise ConfigError(f"--max-seq-len {requested} must be in 1..{limit}, the positions the base accepts")
    return requested


def embedding_options(task: str, pooling: str | None, normalize: bool | None) -> tuple[str | None, bool | None]:
    if task != EMBEDDING:
        if pooling is not None or normalize is not None:
            raise ConfigError(f"--pooling and --normalize apply to embedding adapters, not to {task}")
        return None, None
    return pooling or "mean", True if normalize is None else normalize


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Every tensor's shape, read from the safetensors header (no weights loaded)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (OSError, SafetensorError) as exc:
        raise FormatError(f"{path}: not a valid safetensors file ({one_line(exc)})") from None


def saved_modules(shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """The full tensors PEFT saved for modules_to_save, by the task model's own parameter name."""
    saved = {}
    for key, shape in shapes.items():
        if key.startswith(PEFT_PREFIX) and ".lora_" not in key:
            name = key[len(PEFT_PREFIX):].replace(".modules_to_save.default.", ".").replace(".modules_to_save.", ".")
            saved[name] = shape
    return saved


def check_no_pooler_lora(shapes: dict[str, list[int]], config_path: Path) -> None:
    """An embedding is pooled from the last hidden states: LoRA on BERT's pooler changes nothing a runtime
    computes, and the runtimes refuse factors they would not apply."""
    prefix = PEFT_PREFIX + "pooler."
    pooler = sorted({key[len(PEFT_PREFIX):].split(".lora_")[0] for key in shapes
                     if key.startswith(prefix) and ".lora_" in key})
    if pooler:
        raise UnsupportedError(f"{config_path}: LoRA on {listed(pooler)}, which feeds no embedding; train with "
                               f"exclude_modules={pooler}")


def head_size(task: str, base: Path, saved: dict[str, list[int]], source: Path) -> int:
    """The outputs of the adapter's saved head: the parameters whose shape follows num_labels (found by building
    the task model twice on the meta device, so no architecture needs a table of head names)."""
    from transformers import AutoConfig

    shapes = []
    for num_labels in (2, 3):
        try:
            config = AutoConfig.from_pretrained(str(base), num_labels=num_labels)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelDirError(f"{base / 'config.json'}: not a usable model config ({one_line(exc)})") from None
        with torch.device("meta"):
            model = auto_class(task).from_config(config)
        shapes.append({key: tuple(value.shape) for key, value in model.state_dict().items()})
    sized = sorted(key for key in shapes[0] if shapes[0][key] != shapes[1][key])
    for key in sized:
        if key in saved:
            return saved[key][0]
    raise ConfigError(f"{source / ADAPTER_WEIGHTS}: holds no classification head ({listed(sized)}); a {task} "
                      f"adapter on {base.name} needs its head in modules_to_save (or it was trained on another base)")


def resolve_labels(given: Sequence[str] | None, size: int, configs: Sequence[tuple[Path, bool]]) -> list[str]:
    """--labels, else the first config.json id2label of `size` real names. A config saved with the model
    (`own`) that disagrees with the head is an error; the base's default head is simply not used."""
    if given is not None:
        labels = check_label_names(given)
        if len(labels) != size:
            raise ConfigError(f"{len(labels)} labels given but the head has {size} outputs")
        return labels
    for path, own in configs:
        names = id2label_of(path)
        if names is None:
            continue
        if len(names) != size:
            if own:
                raise ConfigError(f"{path}: id2label has {len(names)} labels but the head has {size} outputs")
            continue
        if not any(GENERIC_LABEL.fullmatch(label) for label in names):
            return check_label_names(names)
    raise ConfigError(f"the head's {size} outputs have no names (no config.json id2label of that size other than "
                      "LABEL_0, LABEL_1, ...): pass --labels a,b,... or --labels-file FILE, in output order")


def id2label_of(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    id2label = read_json(path).get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        return [str(id2label[str(i)]) for i in range(len(id2label))]
    except KeyError:
        raise ConfigError(f"{path}: id2label keys are not 0..{len(id2label) - 1}") from None


def head_outputs(config: dict[str, Any]) -> int:
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return len(id2label)
    num_labels = config.get("num_labels")
    return num_labels if isinstance(num_labels, int) else 2  # transformers' default head


def check_label_names(labels: Sequence[str]) -> list[str]:
    names = [str(label).strip() for label in labels]
    if not names or any(not name for name in names):
        raise ConfigError(f"labels must be non-empty names, got {list(labels)}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"duplicate labels: {', '.join(duplicates)}")
    return names


def parse_labels(text: str) -> list[str]:
    """--labels a,b,c."""
    return check_label_names(text.split(","))


def read_lines(path: Path, what: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file (--labels-file, --golden-examples)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the {what} ({one_line(exc)})") from None
    return [line for line in lines if line.strip()]


def load_task_model(task: str, path: Path, labels: list[str]) -> tuple[torch.nn.Module, set[str]]:
    """The task model of the checkpoint at `path` and the parameters it did not supply (initialised at random)."""
    try:
        model, info = auto_class(task).from_pretrained(str(path), output_loading_info=True,
                                                       ignore_mismatched_sizes=True, **label_kwargs(labels))
    except _LOAD_ERRORS as exc:
        raise ModelDirError(f"{path}: cannot load the model ({one_line(exc)})") from None
    mismatched = {key if isinstance(key, str) else key[0] for key in info.get("mismatched_keys", ())}
    return model, set(info.get("missing_keys", ())) | mismatched


def check_head_saved(fresh: set[str], saved: dict[str, list[int]], source: Path) -> None:
    """Head weights the base lacks must come from the adapter, or the import would hold random weights."""
    unsaved = sorted(key for key in fresh if key not in saved)
    if unsaved:
        raise ConfigError(f"{source / ADAPTER_WEIGHTS}: {listed(unsaved)} are neither in the base nor saved by the "
                          "adapter; they would be random (train with their modules in modules_to_save)")


def check_shapes(model: Any, shapes: dict[str, list[int]], path: Path, base: Path) -> None:
    from peft import get_peft_model_state_dict

    for key, tensor in get_peft_model_state_dict(model).items():
        if shapes[key] != list(tensor.shape):
            raise ShapeError(f"{path}: {key} has shape {shapes[key]}, but on the base {base} it needs "
                             f"{list(tensor.shape)} (an adapter trained on another base?)")


def check_base_name(recorded: Any, base: Path, log: Callable[[str], None]) -> None:
    """A hub id and a local directory name rarely agree, so a different name is only a warning: the modules and
    shapes have been checked already."""
    if not isinstance(recorded, str) or not recorded:
        return
    known = {base.name.lower()}
    name_or_path = read_json(base / "config.json").get("_name_or_path")
    if isinstance(name_or_path, str):
        known.add(Path(name_or_path).name.lower())
    if Path(recorded).name.lower() not in known:
        log(f"warning: the adapter names its base {recorded!r}; imported onto {base} (its modules and shapes fit)")


def has_tokenizer(directory: Path) -> bool:
    return (directory / "tokenizer.json").is_file() or (directory / "tokenizer_config.json").is_file()


def load_fast_tokenizer(directory: Path) -> Any:
    """The runtimes read tokenizer.json, which only a fast tokenizer writes."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:  # the tokenizers library raises bare Exception for a malformed tokenizer.json
        raise ModelDirError(f"{directory}: no usable tokenizer ({one_line(exc)})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise UnsupportedError(f"{directory}: the tokenizer has no fast (tokenizer.json) form the runtimes read")
    return tokenizer


def listed(names: Sequence[str] | set[str]) -> str:
    ordered = sorted(names)
    return ", ".join(ordered[:4]) + (f" and {len(ordered) - 4} more" if len(ordered) > 4 else "")
