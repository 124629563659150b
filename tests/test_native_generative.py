"""Native core (PyO3) on generative classification (docs/generative.md): label distributions, next-token logits,
left-padded prompt ids and few-shot cases reproduce the torch golden vectors; bad examples are typed errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from lorakit import native

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ["tiny_gemma3_generative", "tiny_qwen3_generative"]


def fixture(name: str) -> Path:
    """A generative fixture of `make fixtures` (read only here; tampering works on copies)."""
    root = Path(os.environ.get("LORAKIT_FIXTURES", ROOT / ".fixtures"))
    path = root / name
    assert path.is_dir(), f"{path} missing: run `make fixtures`"
    return path


def golden(model_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    path = model_dir / "golden.safetensors"
    with safe_open(str(path), framework="numpy") as f:
        metadata = dict(f.metadata() or {})
    return load_file(str(path)), metadata


def modes(model_dir: Path) -> list[bool]:
    manifest = json.loads((model_dir / "lorakit.json").read_text(encoding="utf-8"))
    return [True, False] if manifest.get("adapter") else [True]


@pytest.mark.parametrize("name", FIXTURES)
def test_label_probabilities_and_next_token_logits_equal_golden(name: str) -> None:
    model_dir = fixture(name)
    tensors, meta = golden(model_dir)
    assert meta["task"] == "generative_classification" and meta["output"] == "next_token_logits"
    texts = json.loads(meta["texts"])
    tolerance, prob_tolerance = float(meta["tolerance"]), float(meta["prob_tolerance"])
    for merged in modes(model_dir):
        model = native.Model.load(model_dir, merged=merged, threads=1)
        assert model.task == "generative_classification"
        enc = model.tokenize(texts)
        np.testing.assert_array_equal(enc["input_ids"], tensors["input_ids"])
        np.testing.assert_array_equal(enc["attention_mask"], tensors["attention_mask"])
        result = model.classify(texts)
        assert result.label_names == model.labels
        probs = np.asarray(result.probabilities)
        assert np.abs(probs - tensors["label_probs"]).max() <= prob_tolerance
        np.testing.assert_array_equal(probs.argmax(axis=1), tensors["label_probs"].argmax(axis=1))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        logits = model.next_token_logits(texts)
        assert logits.shape == tensors["logits"].shape and logits.dtype == np.float32
        assert np.abs(logits - tensors["logits"]).max() <= tolerance


@pytest.mark.parametrize("name", FIXTURES)
def test_fewshot_cases_reproduce(name: str) -> None:
    model_dir = fixture(name)
    _, meta = golden(model_dir)
    cases: list[dict[str, Any]] = json.loads(meta["fewshot"])
    assert cases, "the golden file holds few-shot cases"
    prob_tolerance = float(meta["prob_tolerance"])
    model = native.Model.load(model_dir, threads=1)
    for case in cases:
        as_dicts = model.classify_fewshot(case["text"], case["examples"], labels=case["labels"])
        pairs = [(e["document"], e["label"]) for e in case["examples"]]
        as_pairs = model.classify_fewshot(case["text"], pairs, labels=case["labels"])
        assert as_dicts.label_names == case["labels"] == as_pairs.label_names
        want = np.asarray(case["probabilities"], dtype=np.float32)
        got = np.asarray(as_dicts.probabilities)[0]
        assert np.abs(got - want).max() <= prob_tolerance, (got, want)
        assert int(got.argmax()) == int(want.argmax())
        np.testing.assert_array_equal(np.asarray(as_pairs.logits), np.asarray(as_dicts.logits))


def test_fewshot_default_labels_append_new_example_labels() -> None:
    model = native.Model.load(fixture(FIXTURES[1]), threads=1)
    labels = model.labels
    result = model.classify_fewshot("what now", [("one", labels[0]), ("two", "novel"), ("", "novel")], top_k=2)
    assert result.label_names == [*labels, "novel"]
    assert len(result.labels[0]) == 2 and result.labels[0][0] in result.label_names
    logits = np.asarray(result.logits)[0]
    assert (logits <= 0).all(), "label scores are log-probabilities"
    no_examples = model.classify_fewshot("what now", [])
    assert no_examples.label_names == labels


@pytest.mark.parametrize(
    "examples",
    [
        [("only a document",)],
        [{"document": "d"}],
        [{"document": "d", "label": "l", "extra": 1}],
        [("d", 3)],
        [42],
        "a string is not a list of examples",
        {"document": "d", "label": "l"},
    ],
)
def test_malformed_examples_are_input_errors(examples: Any) -> None:
    model = native.Model.load(fixture(FIXTURES[1]), threads=1)
    with pytest.raises(native.InputError, match="example"):
        model.classify_fewshot("x", examples)


def test_generative_misuse_is_typed() -> None:
    model = native.Model.load(fixture(FIXTURES[1]), threads=1)
    long = [("many words in this document " * 20, model.labels[0])] * 40
    with pytest.raises(native.InputError, match="fewer"):
        model.classify_fewshot("x", long)
    with pytest.raises(native.InputError):
        model.classify_fewshot("x", [], labels=["a", "a"])
    seq = native.Model.load(fixture("tiny_bert_full"), threads=1)
    with pytest.raises(native.InputError):
        seq.classify_fewshot("x", [("d", "l")])
    with pytest.raises(native.InputError):
        seq.next_token_logits(["x"])


def test_changed_weights_miss_the_golden(tmp_path: Path) -> None:
    """The comparisons above fail on a model whose weights changed (checksums rewritten so it loads)."""
    src = fixture(FIXTURES[0])
    model_dir = tmp_path / src.name
    shutil.copytree(src, model_dir)
    weights = load_file(str(model_dir / "model.safetensors"))
    weights["model.norm.weight"] = weights["model.norm.weight"] + np.float32(0.5)
    save_file(weights, str(model_dir / "model.safetensors"))
    manifest = json.loads((model_dir / "lorakit.json").read_text(encoding="utf-8"))
    manifest["files"]["model.safetensors"] = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    (model_dir / "lorakit.json").write_text(json.dumps(manifest), encoding="utf-8")
    tensors, meta = golden(model_dir)
    texts = json.loads(meta["texts"])
    model = native.Model.load(model_dir, merged=True, threads=1)
    assert np.abs(model.next_token_logits(texts) - tensors["logits"]).max() > float(meta["tolerance"])
    report = model.verify_golden()
    assert not report["ok"]


@pytest.mark.parametrize("name", FIXTURES)
def test_fewshot_as_an_adapter_on_its_base(name: str) -> None:
    """A generative adapter added to its loaded base answers few-shot like the merged weights."""
    model_dir = fixture(name)
    manifest = json.loads((model_dir / "lorakit.json").read_text(encoding="utf-8"))
    base = native.Model.load_base((model_dir / manifest["base"]["path"]).resolve(), threads=1)
    base.add_adapter("topics", model_dir)
    merged = native.Model.load(model_dir, threads=1)
    _, meta = golden(model_dir)
    tolerance = float(meta["prob_tolerance"])
    for case in json.loads(meta["fewshot"]):
        got = base.classify_fewshot(case["text"], case["examples"], labels=case["labels"], adapter="topics")
        want = merged.classify_fewshot(case["text"], case["examples"], labels=case["labels"])
        assert got.label_names == want.label_names
        assert np.abs(np.asarray(got.probabilities) - np.asarray(want.probabilities)).max() <= tolerance
    assert base.task_info("topics")["task"] == "generative_classification"
    with pytest.raises(native.InputError):
        base.classify_fewshot("x", [], adapter="no_such_task")


@pytest.mark.parametrize("name", FIXTURES)
def test_native_free_generation_equals_torch_greedy(name: str) -> None:
    """The native greedy answer is token for token torch's (same prompt, same KV-cached steps, same stop)."""
    from lorakit.generative import generate
    from lorakit.generative_load import load_generative_merged, prompt_tokens_of
    from lorakit.manifest import read_manifest
    from lorakit.prompt import Example

    model_dir = fixture(name)
    manifest = read_manifest(model_dir)
    torch_model, tokens = load_generative_merged(model_dir, manifest), prompt_tokens_of(model_dir, manifest)
    shots = [("my card was declined", manifest.labels[0])]
    model = native.Model.load(model_dir, threads=1)
    for text, examples in (("refund the fee", []), ("hi", shots)):
        labels = list(manifest.labels)
        expected = generate(torch_model, tokens, text, labels, [Example(*e) for e in examples], max_new_tokens=12)
        assert model.generate(text, examples, max_new_tokens=12) == expected.text
    with pytest.raises(native.InputError, match="max_seq_len"):
        model.generate("hi", max_new_tokens=10**6)


def test_predict_generate_parses_native_answers(capsys: pytest.CaptureFixture[str]) -> None:
    from lorakit.cli import main

    model_dir = fixture("tiny_gemma3_generative")
    assert main(["predict", str(model_dir), "--generate", "--json", "--text", "refund the fee"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["text"] == "refund the fee" and isinstance(record["generated"], str)
    # A tiny random model rarely closes the JSON: the answer is reported (valid or with its error), never raised.
    assert record["valid"] == (record["error"] is None)
    assert main(["predict", str(model_dir), "--generate", "--backend", "torch", "--json", "--text",
                 "refund the fee"]) == 0
    assert json.loads(capsys.readouterr().out) == [record]
