"""QLoRA for encoder tasks: LoRA trained on an NF4 base (bitsandbytes on CPU), the head kept fp32, evaluated and
exported as the runtimes serve it, merged into the fp32 base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lorakit.cli import main
from lorakit.data import load_dataset
from lorakit.manifest import SEQUENCE, TOKEN
from lorakit.quantize import reload_on_fp32_base
from lorakit.tasks import load_task_model
from lorakit.train import TrainConfig, build_model, output_layer

from conftest import write_labelled_csv, write_token_jsonl

pytest.importorskip("bitsandbytes")


def linear4bit_count(model: torch.nn.Module) -> int:
    from bitsandbytes.nn import Linear4bit

    return sum(isinstance(module, Linear4bit) for module in model.modules())


def test_the_encoder_is_4bit_and_the_head_stays_fp32_through_training_and_reload(fixtures_dir: Path,
                                                                                tmp_path: Path) -> None:
    base = fixtures_dir / "tiny_bert_base"
    dataset = load_dataset(write_labelled_csv(tmp_path / "data.csv"), "text", "label")
    config = TrainConfig(base=str(base), labels=dataset.labels, quantize="4bit", max_seq_len=16)
    torch.manual_seed(0)
    model = build_model(config)
    fp32 = load_task_model(config.task, config.base, config.labels)
    encoder_linears = [name for name, module in fp32.named_modules()
                       if isinstance(module, torch.nn.Linear) and not name.startswith("classifier")]
    assert len(encoder_linears) > 0 and linear4bit_count(model) == len(encoder_linears)
    head = output_layer(model, len(dataset.labels))
    assert type(head) is torch.nn.Linear and head.weight.dtype == torch.float32
    ids = torch.randint(5, 90, (4, 12))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(input_ids=ids).logits, torch.tensor([0, 1, 2, 0]))
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        quantized_logits = model(input_ids=ids).logits
    served = reload_on_fp32_base(model, lambda: load_task_model(config.task, config.base, config.labels))
    assert linear4bit_count(served) == 0
    trained = {k: v for k, v in model.state_dict().items() if "lora_" in k or "modules_to_save" in k}
    reloaded = served.state_dict()
    assert trained and all(torch.equal(v.float(), reloaded[k]) for k, v in trained.items())
    with torch.no_grad():
        fp32_logits = served(input_ids=ids).logits
    # The fp32 base is not the NF4 one: close, not equal.
    assert not torch.equal(quantized_logits, fp32_logits)
    assert torch.allclose(quantized_logits, fp32_logits, atol=0.5)


@pytest.mark.parametrize("task", ["sequence-classification", "token-classification"])
def test_lorakit_train_quantize_exports_an_fp32_model_that_passes_parity(fixtures_dir: Path, tmp_path: Path,
                                                                          task: str) -> None:
    token = task == "token-classification"
    data = write_token_jsonl(tmp_path / "data.jsonl") if token else write_labelled_csv(tmp_path / "data.csv")
    out = tmp_path / "model"
    code = main(["train", "--task", task, "--data", str(data), "--base", str(fixtures_dir / "tiny_bert_base"),
                 "--output", str(out), "--quantize", "4bit", "--epochs", "1", "--batch-size", "8",
                 "--max-seq-len", "16"])
    assert code == 0
    manifest = json.loads((out / "lorakit.json").read_text("utf-8"))
    training = manifest["metrics"]["training"]
    assert training["quantize"] == "4bit"
    fp32 = sum(p.numel() for p in load_task_model(SEQUENCE if not token else TOKEN, str(
        fixtures_dir / "tiny_bert_base"), list(manifest["labels"])).parameters())
    assert training["total_params"] > fp32  # the fp32 base plus the adapter, not NF4's packed bytes
    assert training["trainable_percent"] == pytest.approx(100 * training["trainable_params"] / training["total_params"])
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        assert {handle.get_tensor(key).dtype for key in handle.keys()} == {torch.float32}
    assert main(["verify", str(out)]) == 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--full"], "does not combine with --full"),
    (["--task", "embedding", "--score-column", "score"], "--quantize"),
])
def test_quantize_refuses_full_fine_tuning_and_embeddings(fixtures_dir: Path, tmp_path: Path, extra: list[str],
                                                          message: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    code = main(["train", "--data", str(write_labelled_csv(tmp_path / "data.csv")), "--base",
                 str(fixtures_dir / "tiny_bert_base"), "--output", str(out), "--quantize", "4bit", "--max-seq-len",
                 "16", *extra])
    assert code == 2 and not out.exists()
    assert message in capsys.readouterr().err
