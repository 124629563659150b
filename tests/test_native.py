"""Native core through the PyO3 binding: golden parity, shared base with several adapters, typed errors, inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from lorakit import native
from lorakit.golden import read_golden

LORA = ["tiny_bert_lora_a", "tiny_bert_lora_b"]
ALL = [*LORA, "tiny_bert_full"]
ERROR_CLASSES = [
    native.IoError,
    native.FormatError,
    native.ConfigError,
    native.ShapeError,
    native.UnsupportedError,
    native.InputError,
    native.ComputeError,
    native.InternalError,
]


def copy_model(fixtures_dir: Path, name: str, tmp_path: Path) -> Path:
    """Copy next to a copy of the base, so the relative base path still resolves."""
    if not (tmp_path / "tiny_bert_base").exists():
        shutil.copytree(fixtures_dir / "tiny_bert_base", tmp_path / "tiny_bert_base")
    return Path(shutil.copytree(fixtures_dir / name, tmp_path / name))


def refresh_checksum(model_dir: Path, name: str) -> None:
    manifest_path = model_dir / "lorakit.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][name] = hashlib.sha256((model_dir / name).read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2))


def edit_adapter_config(model_dir: Path, **changes: object) -> None:
    path = model_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
    refresh_checksum(model_dir, "adapter_config.json")


def shift_one_weight(path: Path, key_part: str, delta: float = 0.5) -> None:
    """Shift a single element: shifting a whole row feeding from a fresh LayerNorm (gamma 1, beta 0) cancels out."""
    tensors = load_file(str(path))
    key = next(k for k in sorted(tensors) if key_part in k)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] += delta
    save_file(tensors, str(path), metadata={"format": "pt"})


def assert_parity(report: dict, what: str) -> None:
    assert report["ids_equal"] is True, (what, report)
    assert report["argmax_equal"] is True, (what, report)
    assert report["max_abs_diff"] <= 1e-4, (what, report)
    assert report["ok"] is True, (what, report)


@pytest.mark.parametrize("name", ALL)
def test_merged_parity(fixtures_dir: Path, name: str) -> None:
    model = native.Model.load(fixtures_dir / name, merged=True, threads=2)
    assert model.runtime_adapter is False
    assert_parity(model.verify_golden(), f"{name} merged")


@pytest.mark.parametrize("name", LORA)
def test_runtime_parity(fixtures_dir: Path, name: str) -> None:
    model = native.Model.load(fixtures_dir / name, merged=False, threads=2)
    assert model.runtime_adapter is True
    assert_parity(model.verify_golden(), f"{name} runtime")


@pytest.mark.parametrize("name", LORA)
def test_logits_and_ids_equal_the_golden_file(fixtures_dir: Path, name: str) -> None:
    golden = read_golden(fixtures_dir / name)
    model = native.Model.load(fixtures_dir / name, merged=False)
    encoding = model.tokenize(golden.texts)
    np.testing.assert_array_equal(encoding["input_ids"], golden.input_ids.numpy())
    np.testing.assert_array_equal(encoding["attention_mask"], golden.attention_mask.numpy())
    result = model.classify(golden.texts, top_k=2)
    assert result.logits.dtype == np.float32
    assert result.logits.shape == tuple(golden.logits.shape)
    np.testing.assert_allclose(result.logits, golden.logits.numpy(), atol=1e-4, rtol=0)
    expected_best = [model.labels[i] for i in golden.logits.numpy().argmax(axis=1)]
    assert [row[0] for row in result.labels] == expected_best


def test_verify_backends_reports_both_native_paths(fixtures_dir: Path) -> None:
    results = native.verify_backends(fixtures_dir / "tiny_bert_lora_b")
    assert set(results) == {"native-merged", "native-runtime"}
    for report in results.values():
        assert {"max_abs_diff", "argmax_equal", "ids_equal", "ok", "worst"} <= set(report)
        assert_parity(report, "verify_backends")
    assert set(native.verify_backends(fixtures_dir / "tiny_bert_full")) == {"native-merged"}


def test_verify_backends_fails_on_a_tampered_adapter(fixtures_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_model(fixtures_dir, "tiny_bert_lora_a", tmp_path)
    shift_one_weight(model_dir / "adapter_model.safetensors", "layer.0.attention.self.query.lora_B")
    refresh_checksum(model_dir, "adapter_model.safetensors")
    results = native.verify_backends(model_dir)
    assert results["native-merged"]["ok"] is True  # model.safetensors was not touched
    runtime = results["native-runtime"]
    assert runtime["ok"] is False and runtime["max_abs_diff"] > 1e-4, runtime
    assert {"row", "col", "expected", "actual"} <= set(runtime["worst"])


def test_verify_backends_reports_load_errors_as_failed(fixtures_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_model(fixtures_dir, "tiny_bert_full", tmp_path)
    shift_one_weight(model_dir / "model.safetensors", "classifier.weight")
    report = native.verify_backends(model_dir)["native-merged"]
    assert report["ok"] is False
    assert "FormatError" in report["worst"]["error"] and "checksum" in report["worst"]["error"]


def test_tampered_merged_weights_fail_parity(fixtures_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_model(fixtures_dir, "tiny_bert_lora_b", tmp_path)
    shift_one_weight(model_dir / "model.safetensors", "encoder.layer.1.attention.self.value.weight")
    refresh_checksum(model_dir, "model.safetensors")
    report = native.Model.load(model_dir, merged=True).verify_golden()
    assert report["ok"] is False and report["max_abs_diff"] > report["tolerance"], report
    with pytest.raises(native.FormatError, match="checksum"):
        shift_one_weight(model_dir / "model.safetensors", "classifier.bias")
        native.Model.load(model_dir, merged=True)


def test_several_adapters_on_one_base_match_their_own_golden(fixtures_dir: Path) -> None:
    base = native.Model.load_base(fixtures_dir / "tiny_bert_base", threads=2)
    for name in LORA:
        base.add_adapter(name, fixtures_dir / name)
    assert base.adapters() == sorted(LORA)
    texts = ["please close my account", "my card was declined"]
    for name in LORA:
        assert_parity(base.verify_golden(adapter=name), f"{name} on shared base")
        alone = native.Model.load(fixtures_dir / name, merged=True).classify(texts)
        shared = base.classify(texts, adapter=name, top_k=3)
        np.testing.assert_allclose(shared.logits, alone.logits, atol=1e-4, rtol=0)
        assert shared.label_names == base.task_info(name)["labels"]
    assert len(base.task_info(LORA[0])["labels"]) == 3 and len(base.task_info(LORA[1])["labels"]) == 5
    assert base.remove_adapter(LORA[0]) is True
    assert base.remove_adapter(LORA[0]) is False
    with pytest.raises(native.InputError, match=LORA[0]):
        base.classify(texts, adapter=LORA[0])


def test_result_object(fixtures_dir: Path) -> None:
    model = native.Model.load(fixtures_dir / "tiny_bert_lora_b")
    result = model.classify(["card payment declined", "", "transfer " * 500], top_k=3)
    assert len(result) == 3
    assert all(len(row) == 3 for row in result.labels)
    assert result.probabilities.shape == (3, 5)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-6)
    for i in range(3):
        best = np.argsort(-result.probabilities[i])[:3]
        assert result.indices[i] == best.tolist()
        assert result.labels[i] == [model.labels[j] for j in best]
        np.testing.assert_allclose(result.scores[i], result.probabilities[i][best], rtol=1e-6)
    assert result.tokens_in[1] == result.tokens_used[1] == 2  # [CLS] [SEP]
    assert result.tokens_in[2] > model.max_seq_len == result.tokens_used[2]


def test_error_classes_form_one_hierarchy() -> None:
    from lorakit import errors

    assert native.LorakitError is errors.LorakitError
    assert len(set(ERROR_CLASSES)) == 8
    for cls in ERROR_CLASSES:
        assert issubclass(cls, errors.LorakitError) and cls.__module__ == "lorakit.errors"
    assert native.UnsupportedError is errors.UnsupportedError  # one class for native and Python-side refusals


def test_errors_map_to_their_kind(fixtures_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(native.IoError):
        native.Model.load(tmp_path / "missing")
    model = native.Model.load(fixtures_dir / "tiny_bert_lora_a", max_batch=2)
    with pytest.raises(native.InputError, match="empty batch"):
        model.classify([])
    with pytest.raises(native.InputError, match="max_batch"):
        model.classify(["a", "b", "c"])
    with pytest.raises(native.InputError, match="device"):
        native.Model.load(fixtures_dir / "tiny_bert_lora_a", device="tpu")
    with pytest.raises(native.InputError, match="no adapter"):
        native.Model.load(fixtures_dir / "tiny_bert_full", merged=False)
    with pytest.raises(TypeError):
        model.classify("a string is not a list of texts")  # type: ignore[arg-type]

    dora = copy_model(fixtures_dir, "tiny_bert_lora_a", tmp_path / "dora")
    edit_adapter_config(dora, use_dora=True)
    with pytest.raises(native.UnsupportedError, match="use_dora"):
        native.Model.load(dora, merged=False)
    bias = copy_model(fixtures_dir, "tiny_bert_lora_a", tmp_path / "bias")
    edit_adapter_config(bias, bias="lora_only")
    with pytest.raises(native.UnsupportedError, match="bias"):
        native.Model.load(bias, merged=False)
    target = copy_model(fixtures_dir, "tiny_bert_lora_a", tmp_path / "target")
    edit_adapter_config(target, target_modules=["query", "word_embeddings"])
    with pytest.raises(native.UnsupportedError, match="word_embeddings"):
        native.Model.load(target, merged=False)
    rank = copy_model(fixtures_dir, "tiny_bert_lora_a", tmp_path / "rank")
    edit_adapter_config(rank, rank_pattern={"key": 2})
    with pytest.raises(native.ShapeError):
        native.Model.load(rank, merged=False)

    other_base = copy_model(fixtures_dir, "tiny_bert_lora_b", tmp_path / "other")
    manifest = json.loads((other_base / "lorakit.json").read_text())
    manifest["base"]["weights_sha256"] = "0" * 64
    (other_base / "lorakit.json").write_text(json.dumps(manifest))
    base = native.Model.load_base(fixtures_dir / "tiny_bert_base")
    with pytest.raises(native.ConfigError, match="another base"):
        base.add_adapter("other", other_base)
    base.add_adapter("b", fixtures_dir / "tiny_bert_lora_b")
    with pytest.raises(native.InputError, match="already"):
        base.add_adapter("b", fixtures_dir / "tiny_bert_lora_b")
    with pytest.raises(native.InputError, match="unknown adapter"):
        base.classify(["x"], adapter="nope")


def test_threads_share_models_without_deadlock(fixtures_dir: Path) -> None:
    model = native.Model.load(fixtures_dir / "tiny_bert_lora_a", merged=False, threads=2)
    base = native.Model.load_base(fixtures_dir / "tiny_bert_base", threads=2)
    base.add_adapter("b", fixtures_dir / "tiny_bert_lora_b")
    texts = [f"text number {i} about a card payment" for i in range(16)]
    expected_model = model.classify(texts).logits
    expected_base = base.classify(texts, adapter="b").logits

    def work(i: int) -> bool:
        if i % 3 == 2:  # adapters come and go while other threads classify
            name = f"tmp{i}"
            base.add_adapter(name, fixtures_dir / "tiny_bert_lora_a")
            return base.remove_adapter(name)
        if i % 2:
            return bool(np.array_equal(model.classify(texts).logits, expected_model))
        return bool(np.array_equal(base.classify(texts, adapter="b").logits, expected_base))

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert all(pool.map(work, range(36), timeout=120))


def test_model_properties(fixtures_dir: Path) -> None:
    model = native.Model.load(fixtures_dir / "tiny_bert_lora_a", threads=1)
    assert model.labels == ["negative", "neutral", "positive"]
    assert model.name == "tiny_bert_lora_a"
    assert model.task == "sequence_classification"
    assert model.max_seq_len == 32
    assert model.threads == 1
    assert "tiny_bert_lora_a" in repr(model)
    assert native.__version__ == "0.1.0"


def test_gil_is_released_during_compute(fixtures_dir: Path) -> None:
    """A pure-Python thread keeps running while another thread is inside a native call."""
    model = native.Model.load(fixtures_dir / "tiny_bert_lora_a", threads=1)
    texts = [f"payment number {i} " * 12 for i in range(1024)]
    model.classify(texts[:8])
    stop = threading.Event()
    stamps: list[float] = []

    def spin() -> None:
        while not stop.is_set():
            for _ in range(1000):
                pass
            stamps.append(time.perf_counter())

    spinner = threading.Thread(target=spin)
    spinner.start()
    time.sleep(0.05)
    start = time.perf_counter()
    model.classify(texts)
    end = time.perf_counter()
    stop.set()
    spinner.join()
    # With the GIL held for the call, the spinner could only run within a switch interval (5 ms) of its edges.
    margin = 0.02
    assert end - start > 4 * margin, "the call is too short to tell"
    inside = [t for t in stamps if start + margin < t < end - margin]
    assert len(inside) >= 10, (len(inside), end - start)
