"""Several training processes (`torchrun`, `accelerate launch`): who writes, where they meet, when they may exit.

The data-parallel training itself is the Trainer's (DDP through accelerate). This module holds only what lorakit's
own steps need around it: the Trainer settings for the launch, one run directory that every process reads, a check
that every process split the data identically, and a barrier so no process exits before the model is published.
A plain `python -m lorakit.cli train` is one process and touches none of the distributed machinery.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from .errors import DataError, LorakitError

# The Trainer's default `ddp_timeout`: rank 0 evaluates and exports while the others wait this long at most.
TIMEOUT = timedelta(seconds=1800)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of the launch (or the only process): the one that evaluates, writes and prints."""
    return int(os.environ.get("RANK", "0")) == 0


def on_cpu() -> bool:
    return not torch.accelerator.is_available()


def trainer_arguments() -> dict[str, Any]:
    """TrainingArguments for this launch. On CPU accelerate distributes only when told to use the CPU (otherwise
    every process would train alone and export its own copy), and gloo is the CPU backend. Every trainable tensor
    (LoRA adapters and saved head, or all weights with --full) is on the forward path of every architecture, and
    PEFT's frozen base is not in DDP's buckets, so DDP skips the per-step search for unused parameters (tested in
    test_distributed.py; an unused one would fail loudly). lorakit's losses are per-batch means, not sums over a
    token count shared between processes: the Trainer must not multiply them by the world size (that would double
    the loss and the gradient on 2 processes)."""
    arguments: dict[str, Any] = {"ddp_timeout": int(TIMEOUT.total_seconds()), "average_tokens_across_devices": False,
                                 "ddp_find_unused_parameters": False}
    if world_size() > 1 and on_cpu():
        arguments |= {"use_cpu": True, "ddp_backend": "gloo"}
    return arguments


def process_state() -> Any:
    """accelerate's process group, set up as the Trainer will (it reuses an initialised group)."""
    from accelerate import PartialState  # type: ignore[import-untyped]

    if on_cpu():
        return PartialState(cpu=True, backend="gloo", timeout=TIMEOUT)
    return PartialState(timeout=TIMEOUT)


def backend() -> str | None:
    return str(torch.distributed.get_backend()) if torch.distributed.is_initialized() else None


@contextmanager
def run_directory(checkpoint_dir: Path | None) -> Iterator[Path]:
    """The run directory of this training (checkpoints, report, best weights): `checkpoint_dir`, or a scratch
    directory removed afterwards. Under a launch every process gets the same path (the Trainer loads the best
    checkpoint that rank 0 saved), and on success no process leaves before all have arrived here again."""
    if world_size() == 1:
        if checkpoint_dir is not None:
            checkpoint_dir = Path(checkpoint_dir).absolute()
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            yield checkpoint_dir
            return
        with tempfile.TemporaryDirectory(prefix="lorakit-train-") as temporary:
            yield Path(temporary)
        return
    if checkpoint_dir is None and int(os.environ.get("LOCAL_WORLD_SIZE", world_size())) != world_size():
        raise LorakitError("training on several machines needs --checkpoint-dir on storage every process can reach")
    from accelerate.utils import broadcast_object_list  # type: ignore[import-untyped]

    state = process_state()
    main = state.is_main_process
    scratch = checkpoint_dir is None
    if checkpoint_dir is None:
        chosen = [tempfile.mkdtemp(prefix="lorakit-train-") if main else ""]
    else:
        chosen = [str(Path(checkpoint_dir).absolute())]
        if main:
            Path(chosen[0]).mkdir(parents=True, exist_ok=True)
    broadcast_object_list(chosen)  # rank 0's path for everyone, sent once the directory exists
    run_dir = Path(chosen[0])
    try:
        yield run_dir
        state.wait_for_everyone()  # rank 0 has published the model directory
    finally:
        if main and scratch:
            shutil.rmtree(run_dir, ignore_errors=True)


def check_same_on_every_process(value: str, what: str) -> None:
    """Refuse to train when the processes disagree on `value` (e.g. a data file that differs between machines)."""
    if world_size() == 1:
        return
    from accelerate.utils import gather_object

    seen = gather_object([value])
    if len(set(seen)) != 1:
        raise DataError(f"the {what} differs between the {len(seen)} training processes ({', '.join(seen)}): "
                        "every process must read the same data")
