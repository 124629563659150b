"""`lorakit train` under `torchrun` and `accelerate launch`: 2 CPU processes (DDP over gloo), one model directory
written by rank 0 only, a shared scratch directory removed afterwards, and the launch reported."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from lorakit.cli import main
from lorakit.data import read_split
from lorakit.manifest import SEQUENCE, TOKEN
from lorakit.train import TrainConfig, build_model

from conftest import ROOT, write_labelled_csv

BATCH = 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


LAUNCHERS = {
    "torchrun": lambda: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    # No config file: --multi_gpu selects accelerate's torchrun launcher, which lorakit runs on gloo without a GPU.
    "accelerate": lambda: [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", str(free_port())],
}


def launch(launcher: str, work: Path, base: Path) -> subprocess.CompletedProcess[str]:
    data = write_labelled_csv(work / "data.csv", rows=48)
    scratch = work / "tmp"
    scratch.mkdir()
    # TMPDIR: the run's scratch directory is created here, so the test sees whether it is removed. No GPU: two
    # CPU processes on gloo, also on a machine with one GPU (two processes cannot share it under NCCL).
    env = os.environ | {"PYTHONPATH": str(ROOT / "python"), "TMPDIR": str(scratch), "HF_HUB_OFFLINE": "1",
                        "CUDA_VISIBLE_DEVICES": ""}
    command = [*LAUNCHERS[launcher](), "-m", "lorakit.cli", "train", "--data", str(data), "--base", str(base),
               "--output", str(work / "models" / "m"), "--epochs", "1", "--batch-size", str(BATCH),
               "--max-seq-len", "16", "--learning-rate", "5e-3"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_processes_write_one_verified_model_directory(launcher: str, fixtures_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    proc = launch(launcher, tmp_path, fixtures_dir / "tiny_bert_base")
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = tmp_path / "models" / "m"
    assert sorted(path.name for path in model.parent.iterdir()) == ["m"]  # no .tmp-/.old- siblings
    # The shared scratch run directory is gone (the launcher's own torchelastic_* directory is not lorakit's).
    assert [path.name for path in (tmp_path / "tmp").iterdir() if path.name.startswith("lorakit-")] == []
    # Only rank 0 logs and prints the summary; the launch is reported.
    assert proc.stdout.count("model directory:") == 1
    assert proc.stdout.count("data: 48 rows") == 1
    assert f"on 2 processes (gloo); effective batch {2 * BATCH} = {BATCH} per process x 2" in proc.stdout

    metrics = json.loads((model / "report" / "metrics.json").read_text("utf-8"))
    training = metrics["training"]
    assert (training["world_size"], training["ddp_backend"]) == (2, "gloo")
    assert training["effective_batch_size"] == 2 * BATCH
    split = read_split(model / "report" / "split.json")
    assert training["train_examples"] == len(split.train)
    # Losses are per-batch means: the Trainer must not scale them by the world size (3 classes: about ln 3 = 1.1).
    history = json.loads((model / "report" / "history.json").read_text("utf-8"))
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses and max(losses) < 1.7, losses
    # 36 training rows over 2 processes x 4 per process: 5 optimizer steps (DistributedSampler pads to 40).
    assert max(entry["step"] for entry in history) == 5

    capsys.readouterr()
    assert main(["verify", str(model)]) == 0, capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_bases(tmp_path_factory: pytest.TempPathFactory, fixture_builder: ModuleType,
               fixtures_dir: Path) -> dict[str, Path]:
    """A tiny random base of every architecture layout (no adapters: the training code builds those)."""
    import torch
    from transformers import AutoModel

    from arch_fixtures import ARCH_FIXTURES

    out = tmp_path_factory.mktemp("ddp_bases")
    bases = {"bert": fixtures_dir / "tiny_bert_base"}
    for fixture in ARCH_FIXTURES:
        tokenizer = fixture.tokenizer(fixture_builder.FIXTURE_TEXTS)
        torch.manual_seed(0)
        model = AutoModel.from_config(fixture.config(tokenizer))
        bases[fixture.name] = fixture_builder.save_base(model, tokenizer, out / fixture.name)
    return bases


@pytest.mark.parametrize("full", [False, True], ids=["lora", "full"])
@pytest.mark.parametrize("task", [SEQUENCE, TOKEN])
def test_every_trainable_parameter_is_on_the_forward_path(tiny_bases: dict[str, Path], fixture_builder: ModuleType,
                                                          task: str, full: bool) -> None:
    """Why distributed.trainer_arguments sets ddp_find_unused_parameters=False: one backward pass reaches every
    trainable tensor (PEFT's adapters and saved head, or all weights), on every architecture, while the frozen base
    has none. An unused trainable tensor would make DDP fail at its second step."""
    import torch
    from transformers import AutoTokenizer

    labels = ["O", "B-PER", "I-PER"] if task == TOKEN else ["a", "b", "c"]
    texts = list(fixture_builder.FIXTURE_TEXTS[:4])
    for name, base in tiny_bases.items():
        model = build_model(TrainConfig(base=str(base), labels=labels, task=task, full=full, max_seq_len=16))
        batch = AutoTokenizer.from_pretrained(base)(texts, padding=True, truncation=True, max_length=16,
                                                   return_tensors="pt")
        shape = batch["input_ids"].shape if task == TOKEN else (len(texts),)
        target = torch.arange(int(np.prod(shape))).reshape(shape) % len(labels)
        model.train()
        model(**batch, labels=target).loss.backward()
        trainable = {key: p for key, p in model.named_parameters() if p.requires_grad}
        assert trainable, name
        unused = sorted(key for key, p in trainable.items() if p.grad is None)
        assert unused == [], f"{name}: {unused}"
        if not full:
            assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
