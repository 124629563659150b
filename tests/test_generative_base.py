"""The named base gemma-3-270m: the PyPI GGUF dequantized into a plain fp32 safetensors base directory, once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.cli import main
from lorakit.gguf_base import is_complete_base, named_base_dir, resolve_base


def test_a_complete_cached_base_is_reused_without_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORAKIT_CACHE", str(tmp_path))
    cached = named_base_dir("gemma-3-270m")
    assert cached == tmp_path / "bases" / "gemma-3-270m"
    cached.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (cached / name).write_text("{}", "utf-8")
    import lorakit.gguf_base as gguf_base

    monkeypatch.setattr(gguf_base, "_dequantize_gemma3_270m", lambda out: pytest.fail("dequantized again"))
    assert resolve_base("gemma-3-270m") == cached


def test_an_unknown_base_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n', "utf-8")
    assert main(["train", "--task", "generative", "--base", str(tmp_path / "nothing"), "--data", str(data),
                 "--output", str(tmp_path / "out")]) == 2
    assert "not a model directory (no config.json) nor one of gemma-3-270m" in capsys.readouterr().err
    assert main(["train", "--task", "generative", "--data", str(data), "--output", str(tmp_path / "out")]) == 2
    assert "--task generative needs --base" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_gguf_dequantizes_into_a_plain_fp32_base(gemma_base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors import safe_open

    out = gemma_base  # written by `lorakit base gemma-3-270m --output DIR`
    assert is_complete_base(out) and not [p for p in out.parent.iterdir() if ".tmp-" in p.name]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and "quantization_config" not in config
    assert (config["bos_token_id"], config["eos_token_id"], config["vocab_size"]) == (2, 1, 262144)
    with safe_open(str(out / "model.safetensors"), framework="np") as handle:
        keys = list(handle.keys())
        assert handle.get_slice("model.embed_tokens.weight").get_dtype() == "F32"
    assert "lm_head.weight" not in keys and len([k for k in keys if k.startswith("model.layers.")]) > 100
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.encode("Hello world", add_special_tokens=False) == [9259, 1902]
    written = (out / "model.safetensors").stat().st_mtime_ns
    assert main(["base", "gemma-3-270m", "--output", str(out)]) == 0  # already there: nothing rewritten
    assert capsys.readouterr().out.strip() == str(out)
    assert (out / "model.safetensors").stat().st_mtime_ns == written
