"""Every Python path reads a model directory as strictly as the native core (modeldir.open_model_dir): each command
refuses each damaged directory of the shared corpus, a damaged golden file and a damaged training checkpoint with
one line on stderr and exit 2, never a traceback, and writes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from safetensors import safe_open
from safetensors.torch import save_file
from test_malformed import CASES, GENERATOR, IDS

from lorakit.cli import main
from lorakit.errors import ConfigError, FormatError, IoError, LorakitError, ShapeError, UnsupportedError
from lorakit.modeldir import open_model_dir

from conftest import ROOT

KIND_CLASS = {"io": IoError, "format": FormatError, "config": ConfigError, "shape": ShapeError,
              "unsupported": UnsupportedError}
LABELS = {"merged": ("benign", "malicious"), "runtime": ("negative", "neutral", "positive")}
COMMANDS = ("verify", "predict-native", "predict-torch", "eval-native", "eval-torch")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, task_fixtures: Path, fixture_builder: ModuleType) -> Path:
    """The shared corpus, from this run's fixtures plus the calibrated and token classification sources."""
    calibrated = task_fixtures / GENERATOR.CALIBRATED_SOURCE
    if not calibrated.is_dir():
        fixture_builder.build_calibrated(task_fixtures / "tiny_bert_lora_a", calibrated)
    out = tmp_path_factory.mktemp("strict") / "malformed"
    GENERATOR.build_malformed(out, task_fixtures)
    for mode, labels in LABELS.items():
        rows = "".join(f"some text about {label},{label}\n" for label in labels)
        (out / f"{mode}.csv").write_text("text,label\n" + rows, "utf-8")
    return out


def command(name: str, model_dir: Path, data: Path) -> list[str]:
    verb, _, backend = name.partition("-")
    if verb == "verify":
        return ["verify", str(model_dir)]
    if verb == "predict":
        return ["predict", str(model_dir), "--text", "my card was declined", "--backend", backend]
    return ["eval", str(model_dir), "--data", str(data), "--backend", backend]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    """In process (torch loads once); an uncaught exception fails the test just as a traceback would."""
    code = main(argv)
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if not line.startswith("checking ")]
    return code, captured.out, errors


def assert_refused(code: int, out: str, errors: list[str], verb: str) -> str:
    assert code == 2, (code, out, errors)
    assert len(errors) == 1 and errors[0].startswith(f"lorakit {verb}: error: "), errors
    assert "Traceback" not in errors[0] and out == ""
    return errors[0]


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_command_refuses_every_malformed_directory(corpus: Path, case: Any, name: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, errors = run_cli(command(name, corpus / case.name, corpus / f"{case.mode}.csv"), capsys)
    verb = name.partition("-")[0]
    if case.name == "checksum_mismatch" and verb == "verify":
        # verify reports a file changed after export with each backend's figures (its purpose), exit 1
        assert code == 1 and errors == [] and "checksums        FAIL: model.safetensors" in out, out
        return
    if case.name == "base_missing":  # the base lies outside the directory; a merged model needs none
        if verb == "verify":  # which reports the paths that need it as failed, one line each
            assert code == 1 and errors == [] and "native-runtime" in out and out.endswith("FAIL\n"), out
        else:
            assert code == 0, errors
        return
    assert_refused(code, out, errors, verb)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_open_model_dir_raises_the_kind_of_each_case(corpus: Path, case: Any) -> None:
    from lorakit._native import Model

    if case.name == "base_missing":  # opens (the merged weights need no base); the runtime load refuses
        assert open_model_dir(corpus / case.name).native is not None
        with pytest.raises(IoError):
            Model.load(str(corpus / case.name), merged=False)
        return
    with pytest.raises(LorakitError) as caught:
        open_model_dir(corpus / case.name)
    assert isinstance(caught.value, KIND_CLASS[case.kind]), f"{case.what}: {type(caught.value).__name__}"
    assert "\n" not in str(caught.value)


def test_the_torch_loader_alone_refuses_reordered_manifest_labels(corpus: Path) -> None:
    """load_merged without a manifest opens the directory itself: wrong labels never reach a caller."""
    from lorakit.loading import load_merged

    with pytest.raises(ConfigError, match="differs from lorakit.json labels"):
        load_merged(corpus / "manifest_labels_reordered")


def test_a_healthy_directory_passes_every_command(fixtures_dir: Path, corpus: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The refusals above come from the defects, not from the commands (each command works on the source)."""
    for name in COMMANDS:
        code, out, errors = run_cli(command(name, fixtures_dir / "tiny_bert_full", corpus / "merged.csv"), capsys)
        assert code == 0 and errors == [] and out, (name, errors)


def refresh(model_dir: Path, rel: str) -> None:
    manifest = json.loads((model_dir / "lorakit.json").read_text("utf-8"))
    manifest["files"][rel] = hashlib.sha256((model_dir / rel).read_bytes()).hexdigest()
    (model_dir / "lorakit.json").write_text(json.dumps(manifest), "utf-8")


def golden_without_texts(model_dir: Path) -> None:
    path = model_dir / "golden.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = {key: value for key, value in (handle.metadata() or {}).items() if key != "texts"}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    save_file(tensors, str(path), metadata=metadata)


def golden_empty(model_dir: Path) -> None:
    (model_dir / "golden.safetensors").write_bytes(b"")


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("damage", [golden_without_texts, golden_empty], ids=["golden_without_texts", "golden_empty"])
def test_a_damaged_golden_file_is_one_line(fixtures_dir: Path, corpus: Path, tmp_path: Path, damage: Any, name: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(fixtures_dir / "tiny_bert_full", model_dir)
    damage(model_dir)
    refresh(model_dir, "golden.safetensors")
    code, out, errors = run_cli(command(name, model_dir, corpus / "merged.csv"), capsys)
    assert "golden.safetensors: not a valid golden file" in assert_refused(code, out, errors, name.partition("-")[0])


def test_non_utf8_text_argument_is_one_line(fixtures_dir: Path) -> None:
    """Undecodable argv bytes reach Python as surrogates; a real process shows that no traceback escapes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "python"),
                                                                       os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable.encode(), b"-m", b"lorakit.cli", b"predict", str(fixtures_dir / "tiny_bert_full").encode(),
            b"--text", b"caf\xe9 au lait"]
    proc = subprocess.run(argv, capture_output=True, env=env, timeout=300)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2 and proc.stdout == b"", err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("lorakit predict: error: text 1: not valid UTF-8 (byte 0xe9 at character 3)"), err


# --- lorakit export from a damaged training checkpoint ----------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Path:
    """A run directory as `train --checkpoint-dir` leaves it, holding the lora_a fixture's adapter."""
    from lorakit.train import TrainConfig

    run = tmp_path_factory.mktemp("checkpoint") / "run"
    source = fixtures_dir / "tiny_bert_lora_a"
    (run / "best").mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, run / "best" / name)
    config = TrainConfig(base=str(fixtures_dir / "tiny_bert_base"), labels=list(LABELS["runtime"]), max_seq_len=32,
                         r=4, lora_alpha=8, target_modules=["query", "key", "value", "dense"])
    record = {"config": config.to_json(), "base_id": "lorakit-fixtures/tiny-bert", "metrics": {},
              "golden_examples": ["my card was declined"]}
    (run / "lorakit_run.json").write_text(json.dumps(record), "utf-8")
    return run


def test_export_of_the_undamaged_checkpoint_works(checkpoint: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, errors = run_cli(["export", str(checkpoint), "--output", str(tmp_path / "model")], capsys)
    assert code == 0 and errors == [], errors
    assert open_model_dir(tmp_path / "model").manifest.labels == LABELS["runtime"]


def corrupt_run_file(run: Path) -> None:
    text = (run / "lorakit_run.json").read_text("utf-8")
    (run / "lorakit_run.json").write_text(text[: len(text) // 2], "utf-8")


def run_file_without(key: str) -> Any:
    def damage(run: Path) -> None:
        record = json.loads((run / "lorakit_run.json").read_text("utf-8"))
        del record[key]
        (run / "lorakit_run.json").write_text(json.dumps(record), "utf-8")

    return damage


def config_without_base(run: Path) -> None:
    record = json.loads((run / "lorakit_run.json").read_text("utf-8"))
    del record["config"]["base"]
    (run / "lorakit_run.json").write_text(json.dumps(record), "utf-8")


def empty_adapter_file(run: Path) -> None:
    (run / "best" / "adapter_model.safetensors").write_bytes(b"")


def adapter_without_tensors(run: Path) -> None:
    save_file({}, str(run / "best" / "adapter_model.safetensors"))


def adapter_missing_a_tensor(run: Path) -> None:
    path = run / "best" / "adapter_model.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    tensors.pop(next(key for key in sorted(tensors) if "lora_B" in key))
    save_file(tensors, str(path))


def tokenizer_gone(run: Path) -> None:
    (run / "best" / "tokenizer.json").unlink()


DAMAGES = {
    "corrupt_run_file": (corrupt_run_file, "not a readable run file"),
    "run_file_without_config": (run_file_without("config"), "run file lacks config"),
    "run_file_without_golden_examples": (run_file_without("golden_examples"), "run file lacks golden_examples"),
    "config_without_base": (config_without_base, "config is incomplete"),
    "empty_adapter_file": (empty_adapter_file, "cannot load the checkpoint"),
    "adapter_without_tensors": (adapter_without_tensors, "adapter_model.safetensors: holds no tensors"),
    "adapter_missing_a_tensor": (adapter_missing_a_tensor, "missing adapter tensors"),
    "tokenizer_missing": (tokenizer_gone, "missing from the checkpoint"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_export_from_a_damaged_checkpoint_is_one_line(checkpoint: Path, tmp_path: Path, damage: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(checkpoint, run)
    change, message = DAMAGES[damage]
    change(run)
    output = tmp_path / "model"
    code, out, errors = run_cli(["export", str(run), "--output", str(output)], capsys)
    assert message in assert_refused(code, out, errors, "export")
    assert not output.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
