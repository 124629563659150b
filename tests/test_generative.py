"""Generative classification in Python: prompt assembly, answer-only loss, training, export, golden parity in torch,
few-shot prompts with unseen labels, and bad inputs refused in one line (exit 2) with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from lorakit.cli import main
from lorakit.data import Example as Row
from lorakit.errors import InputError
from lorakit.generative import classify, parse_answer, score_answers, score_answers_plainly
from lorakit.prompt import Example, PromptSpec, PromptTokens, fewshot_labels

LABELS = ["billing", "card", "other"]
TRAIN = [("my card was declined", "card"), ("where is my new card", "card"), ("the card is blocked", "card"),
         ("I was charged twice", "billing"), ("refund the fee", "billing"), ("my statement is wrong", "billing"),
         ("hi", "other"), ("tell me a joke", "other"), ("what is the weather", "other")]


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from decoder_fixtures import build_tiny_decoder_base

    out = tmp_path_factory.mktemp("decoders")
    return {arch: build_tiny_decoder_base(arch, out / f"tiny_{arch}_base") for arch in ("gemma3", "qwen3")}


@pytest.fixture(scope="module")
def exported(bases: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from generative_fixtures import build_generative_fixture

    out = tmp_path_factory.mktemp("generative")
    return {arch: build_generative_fixture(arch, base, out / f"tiny_{arch}_generative") for arch, base in bases.items()}


def causal_lm(base: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()


def tokens_of(base: Path, max_document_tokens: int = 8) -> PromptTokens:
    from transformers import AutoTokenizer

    from lorakit.generative_train import prompt_tokens

    return prompt_tokens(base, AutoTokenizer.from_pretrained(str(base)), max_document_tokens)


def word_tokenizer() -> Any:
    """Whitespace words with fixed ids, so the expected prompt ids can be written by hand."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<bos>", "<unk>", "Pick", "from", "or", "doc", "ans", "end", "a", "b", "x", "y", "z"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def test_prompt_assembly_gives_the_exact_ids_of_the_contract() -> None:
    spec = PromptSpec(instruction="Pick", labels_prefix=" from ", label_separator=" or ", document_prefix=" doc ",
                      answer_prefix=" ans ", answer_suffix=" end", max_document_tokens=2, add_bos=True)
    tokens = PromptTokens(word_tokenizer(), spec, bos_id=2, eos_id=1, pad_id=0)
    header = [2, 4, 5, 10, 6, 11]  # <bos> Pick from a or b
    assert tokens.header(["a", "b"]) == header
    prompted = tokens.prompt("x y z", ["a", "b"])
    assert prompted.ids == header + [7, 12, 13, 8]  # doc x y ans: the document cut to its first 2 tokens
    assert (prompted.tokens_in, prompted.tokens_used) == (3, 2)
    assert tokens.answer("b") == [11, 9]
    shot = tokens.prompt("z", ["a", "b"], [Example("y x", "a")])
    assert shot.ids == header + [7, 13, 12, 8, 10, 9] + [7, 14, 8]
    ids, labels = tokens.training_row("x", ["a", "b"], "b")
    assert ids == header + [7, 12, 8] + [11, 9, 1]
    assert labels == [-100] * 9 + [11, 9, 1]
    no_bos = PromptTokens(word_tokenizer(), PromptSpec(**{**spec.to_json(), "add_bos": False}), None, 1, 1)
    assert no_bos.header(["a", "b"]) == header[1:]


def test_fewshot_labels_follow_the_manifest_then_new_example_labels() -> None:
    examples = [Example("d1", "card"), Example("d2", "greeting"), Example("d3", "greeting"), Example("d4", "x")]
    assert fewshot_labels(LABELS, examples) == LABELS + ["greeting", "x"]
    assert fewshot_labels(LABELS, examples, ["x", "card", "greeting"]) == ["x", "card", "greeting"]
    with pytest.raises(InputError, match="example label 'card' is not one of the labels"):
        fewshot_labels(LABELS, examples, ["yes", "no"])


@pytest.mark.parametrize("arch", ["gemma3", "qwen3"])
def test_cached_label_scoring_equals_full_sequences(bases: dict[str, Path], arch: str) -> None:
    model, tokens = causal_lm(bases[arch]), tokens_of(bases[arch])
    labels = ["card", "billing", "a much longer label than the others"]
    prompt = tokens.prompt("my card was declined", labels, [Example("hi", "other")]).ids
    answers = [tokens.answer(label) for label in labels] + [[tokens.answer("card")[0]]]  # a one-token answer too
    cached, next_logits = score_answers(model, prompt, answers)
    plain = score_answers_plainly(model, prompt, answers)
    assert len({len(answer) for answer in answers}) > 2
    assert float((cached - plain).abs().max()) < 1e-4
    full = model(input_ids=torch.tensor([prompt])).logits[0, -1]
    assert float((next_logits - full.detach()).abs().max()) < 1e-5


def test_loss_falls_on_the_answer_only_and_padding_changes_nothing(bases: dict[str, Path]) -> None:
    from lorakit.generative_train import LeftPadCollator, RowDataset, answer_loss

    base = bases["gemma3"]
    model, tokens = causal_lm(base), tokens_of(base)
    rows = RowDataset(tokens, [Row(i, text, label) for i, (text, label) in enumerate(TRAIN[:5])], LABELS)
    for row, (_text, label) in zip(rows.rows, TRAIN[:5], strict=True):
        target = tokens.answer(label) + [tokens.eos_id]
        assert row["labels"][-len(target):] == target
        assert set(row["labels"][: -len(target)]) == {-100}
    batch = LeftPadCollator(tokens.pad_id)([rows[i] for i in range(len(rows))])
    assert batch["attention_mask"][:, 0].tolist() != [1] * len(rows)  # rows of different lengths: left padded
    labels = batch.pop("labels")
    with torch.no_grad():
        batched = float(answer_loss(model(**batch), labels))
        total, count, everything = 0.0, 0, 0.0
        for row in rows.rows:
            logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0]
            target = torch.tensor(row["labels"][1:])
            total += float(torch.nn.functional.cross_entropy(logits[:-1], target, ignore_index=-100, reduction="sum"))
            count += int((target != -100).sum())
            everything += float(torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(row["input_ids"][1:])))
    assert abs(batched - total / count) < 1e-4
    assert abs(batched - everything / len(rows)) > 1e-2  # a loss over the prompt too would be another number


def test_training_reduces_the_answer_loss(bases: dict[str, Path], tmp_path: Path) -> None:
    from lorakit.generative_train import train_generative
    from lorakit.train import TrainConfig

    config = TrainConfig(base=str(bases["gemma3"]), labels=LABELS, epochs=3, batch_size=9, learning_rate=5e-3,
                         max_seq_len=128, max_document_tokens=8, task="generative_classification", seed=3)
    examples = [Row(i, text, label) for i, (text, label) in enumerate(TRAIN * 2)]
    result = train_generative(config, examples, examples[:9], tmp_path / "work", progress=False)
    losses = [entry["eval_loss"] for entry in result.history if "eval_loss" in entry]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0]
    assert result.stats["trainable_params"] > 0


def read_golden(model_dir: Path) -> Any:
    from lorakit.generative_golden import read_generative_golden

    return read_generative_golden(model_dir)


@pytest.mark.parametrize("arch", ["gemma3", "qwen3"])
def test_export_writes_a_directory_of_the_contract(exported: dict[str, Path], arch: str) -> None:
    from lorakit.manifest import read_manifest
    from lorakit.modeldir import open_model_dir

    model_dir = exported[arch]
    open_model_dir(model_dir)
    manifest = read_manifest(model_dir)
    assert manifest.task == "generative_classification" and list(manifest.labels) == LABELS
    assert manifest.prompt is not None and manifest.prompt["add_bos"] is (arch == "gemma3")
    assert json.loads((model_dir / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    assert manifest.adapter is not None and manifest.adapter.modules_to_save == ()
    golden = read_golden(model_dir)
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    assert golden.logits.shape == (len(golden.texts), vocab) and golden.logits.dtype == torch.float32
    assert golden.label_probs.shape == (len(golden.texts), len(LABELS)) and golden.input_ids.dtype == torch.int64
    mask = golden.attention_mask
    assert bool((mask[:, :-1] <= mask[:, 1:]).all()) and int(mask[:, 0].min()) == 0  # left padding
    assert golden.tolerance == 1e-4 and golden.prob_tolerance == 1e-4
    assert len(golden.fewshot) >= 2
    assert any(set(case["labels"]) - set(LABELS) for case in golden.fewshot)
    from generative_fixtures import TRAIN_ROWS

    documents = {text for text, _ in TRAIN_ROWS}
    assert all(e["document"] in documents for case in golden.fewshot for e in case["examples"])


@pytest.mark.parametrize("arch", ["gemma3", "qwen3"])
def test_golden_reproduces_in_torch_and_a_tampered_model_fails(exported: dict[str, Path], arch: str,
                                                               tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from lorakit.manifest import file_table, read_manifest, write_manifest
    from lorakit.verify import verify_model

    report = verify_model(exported[arch], backends=["torch"])
    for name in ("torch-unmerged", "torch-merged"):
        row = report["backends"][name]
        assert row["ok"] and row["ids_equal"] and row["max_abs_diff"] <= 1e-4, (name, row)
        assert row["label_probs_max_abs_diff"] <= 1e-4 and row["fewshot_labels_equal"]
    tampered = tmp_path / "tampered"
    shutil.copytree(exported[arch], tampered)
    weights = load_file(str(tampered / "model.safetensors"))
    key = next(k for k in weights if "layers.0.mlp.up_proj" in k)
    # Noise, not a scale: the norm after each MLP (Gemma 3) would undo a scaled weight.
    weights[key] = weights[key] + 0.05 * torch.randn(weights[key].shape, generator=torch.Generator().manual_seed(1))
    save_file(weights, str(tampered / "model.safetensors"), metadata={"format": "pt"})
    manifest = read_manifest(tampered)
    write_manifest(tampered, type(manifest)(**{**manifest.__dict__, "files": file_table(tampered)}))
    broken = verify_model(tampered, backends=["torch"])
    assert broken["backends"]["torch-unmerged"]["ok"] is True
    assert broken["backends"]["torch-merged"]["ok"] is False and not broken["ok"]


def test_fewshot_prediction_with_unseen_labels(exported: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    examples = tmp_path / "examples.jsonl"
    examples.write_text(json.dumps({"document": "hi", "label": "greeting"}) + "\n"
                        + json.dumps({"text": "refund the fee", "label": "billing"}) + "\n", "utf-8")
    model_dir = exported["gemma3"]
    assert main(["predict", str(model_dir), "--backend", "torch", "--text", "hello", "--examples", str(examples),
                 "--top-k", "9", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert [item["label"] for item in result["top"]] != [] and len(result["top"]) == 4
    assert {item["label"] for item in result["top"]} == set(LABELS) | {"greeting"}
    assert abs(sum(item["probability"] for item in result["top"]) - 1.0) < 1e-5
    assert main(["predict", str(model_dir), "--backend", "torch", "--text", "hello", "--labels", "yes,no", "--json",
                 "--top-k", "5"]) == 0
    override = json.loads(capsys.readouterr().out)[0]
    assert {item["label"] for item in override["top"]} == {"yes", "no"}
    assert main(["predict", str(model_dir), "--backend", "torch", "--text", "hello", "--examples", str(examples),
                 "--labels", "yes,no"]) == 2  # example labels must be among explicit labels
    assert "example label 'greeting' is not one of the labels" in capsys.readouterr().err
    # The few-shot prompt really changes the answer distribution.
    from lorakit.generative_load import load_generative_merged, prompt_tokens_of
    from lorakit.manifest import read_manifest

    manifest = read_manifest(model_dir)
    model, tokens = load_generative_merged(model_dir, manifest), prompt_tokens_of(model_dir, manifest)
    plain = classify(model, tokens, "hello", LABELS).scores
    shot = classify(model, tokens, "hello", LABELS, [Example("hi", "card"), Example("refund", "other")]).scores
    assert float((plain - shot).abs().max()) > 1e-2


def test_eval_reports_label_scoring_metrics(exported: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in TRAIN), "utf-8")
    assert main(["eval", str(exported["qwen3"]), "--data", str(data), "--backend", "torch", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == len(TRAIN) and 0.0 <= metrics["accuracy"] <= 1.0 and "macro_f1" in metrics
    assert sum(map(sum, metrics["confusion_matrix"])) == len(TRAIN)


def test_free_generation_parses_or_reports_the_answer() -> None:
    prefix = "\nAnswer: {\"label\": \""
    assert parse_answer(prefix, "card\"}") == ("card", None)
    assert parse_answer(prefix, "card\"} and more") == ("card", None)
    for bad in ("card", "card\" extra}", "\"}"[1:]):
        label, error = parse_answer(prefix, bad)
        assert label is None and error
    assert parse_answer("{", "\"label\": 3}")[0] is None


def test_generate_reports_invalid_answers_without_failing(exported: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(exported["gemma3"]), "--backend", "torch", "--generate", "--text", "hi",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert set(result) == {"text", "label", "valid", "error", "generated"}
    assert result["valid"] == (result["label"] in LABELS and result["error"] is None)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")
    return path


def run_refused(argv: list[str], capsys: pytest.CaptureFixture[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_unknown_label_in_eval_data_is_refused(exported: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = write_rows(tmp_path / "eval.jsonl", [{"text": "hi", "label": "other"}, {"text": "x", "label": "weather"}])
    run_refused(["eval", str(exported["gemma3"]), "--data", str(data), "--backend", "torch"], capsys,
                "labels not known to the model: weather")


@pytest.mark.parametrize("labels", ["", " , ", "yes,yes"])
def test_empty_or_duplicate_labels_are_refused(exported: dict[str, Path], labels: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run_refused(["predict", str(exported["gemma3"]), "--backend", "torch", "--text", "hi", "--labels", labels],
                capsys, "--labels")


def test_a_fewshot_prompt_longer_than_max_seq_len_is_refused(exported: dict[str, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    examples = write_rows(tmp_path / "many.jsonl", [{"document": text, "label": label} for text, label in TRAIN])
    run_refused(["predict", str(exported["qwen3"]), "--backend", "torch", "--text", "hi", "--examples",
                 str(examples)], capsys, "more than max_seq_len 128; pass fewer or shorter examples")


def test_malformed_examples_file_is_refused(exported: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"document": "hi"}\n', "utf-8")
    run_refused(["predict", str(exported["gemma3"]), "--backend", "torch", "--text", "hi", "--examples", str(bad)],
                capsys, "bad.jsonl:1: expected")


@pytest.mark.parametrize("case", ["empty_label", "document_budget", "too_long_rows", "full", "sequence_base"])
def test_bad_training_input_writes_nothing(bases: dict[str, Path], tmp_path: Path, case: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"text": text, "label": label} for text, label in TRAIN]
    if case == "empty_label":
        rows[2]["label"] = ""
    data = write_rows(tmp_path / "train.jsonl", rows)
    output = tmp_path / "out"
    argv = ["train", "--task", "generative", "--base", str(bases["gemma3"]), "--data", str(data), "--output",
            str(output), "--epochs", "1", "--max-document-tokens", "8", "--max-seq-len", "128"]
    expected = {"empty_label": "has no label", "document_budget": "--max-document-tokens must be",
                "too_long_rows": "more than --max-seq-len 16", "full": "--full does not apply",
                "sequence_base": "is not a generative base"}[case]
    if case == "document_budget":
        argv[argv.index("--max-document-tokens") + 1] = "0"
    if case == "too_long_rows":
        argv[argv.index("--max-seq-len") + 1] = "16"
    if case == "full":
        argv.append("--full")
    if case == "sequence_base":
        tiny_bert = tmp_path / "bert"
        tiny_bert.mkdir()
        (tiny_bert / "config.json").write_text(json.dumps({"model_type": "bert"}), "utf-8")
        shutil.copy(bases["gemma3"] / "tokenizer.json", tiny_bert / "tokenizer.json")
        shutil.copy(bases["gemma3"] / "tokenizer_config.json", tiny_bert / "tokenizer_config.json")
        argv[argv.index("--base") + 1] = str(tiny_bert)
    if case == "full":
        assert main(argv) == 2
        assert "--full does not apply" in capsys.readouterr().err
    else:
        run_refused(argv, capsys, expected)
    assert not output.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("out.tmp")]


def test_generative_fields_belong_to_the_generative_task() -> None:
    from lorakit.manifest import Manifest, ManifestError

    raw = {"format_version": 1, "name": "m", "task": "generative_classification", "architecture": "qwen3",
           "base": {"path": None, "id": None, "weights_sha256": None}, "adapter": None, "labels": ["a"],
           "max_seq_len": 64, "files": {}}
    with pytest.raises(ManifestError, match="prompt: missing"):
        Manifest.from_json(raw)
    with pytest.raises(ManifestError, match="max_document_tokens"):
        Manifest.from_json({**raw, "prompt": {**PromptSpec().to_json(), "max_document_tokens": 0}})
    assert Manifest.from_json({**raw, "prompt": PromptSpec().to_json()}).prompt == PromptSpec().to_json()
    with pytest.raises(ManifestError, match="prompt: belongs to task"):
        Manifest.from_json({**raw, "task": "sequence_classification", "prompt": PromptSpec().to_json()})


def test_qlora_trains_on_cpu_and_exports_onto_the_fp32_base(bases: dict[str, Path]) -> None:
    from lorakit.generative_export import fp32_base
    from lorakit.generative_train import LeftPadCollator, RowDataset, answer_loss, build_generative_model
    from lorakit.quantize import reload_on_fp32_base
    from lorakit.train import TrainConfig

    base = bases["qwen3"]
    config = TrainConfig(base=str(base), labels=LABELS, quantize="4bit", task="generative_classification")
    model = build_generative_model(config)
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    tokens = tokens_of(base)
    rows = RowDataset(tokens, [Row(i, t, label) for i, (t, label) in enumerate(TRAIN)], LABELS)
    batch = LeftPadCollator(tokens.pad_id)([rows[i] for i in range(len(rows))])
    labels = batch.pop("labels")
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        loss = answer_loss(model(**batch), labels)
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    fp32 = reload_on_fp32_base(model, fp32_base(base))
    assert not any(type(m).__name__ == "Linear4bit" for m in fp32.modules())
    trained = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    reloaded = {k: v for k, v in fp32.state_dict().items() if "lora_" in k}
    assert trained.keys() == reloaded.keys() and all(torch.equal(trained[k].float(), reloaded[k]) for k in trained)
    assert any(float(v.abs().max()) > 0 for k, v in reloaded.items() if "lora_B" in k)


def test_cli_trains_exports_and_reexports_from_its_checkpoint(bases: dict[str, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from lorakit.verify import verify_model

    data = write_rows(tmp_path / "train.jsonl", [{"body": text, "topic": label} for text, label in TRAIN * 3])
    output, checkpoint = tmp_path / "model", tmp_path / "run"
    assert main(["train", "--task", "generative", "--base", str(bases["qwen3"]), "--data", str(data), "--text-column",
                 "body", "--label-column", "topic", "--output", str(output), "--epochs", "1", "--max-document-tokens",
                 "8", "--checkpoint-dir", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "test " in out and "macro_f1=" in out
    metrics = json.loads((output / "report" / "metrics.json").read_text())
    assert metrics["test"]["n"] > 0 and "accuracy" in metrics["test"]
    assert json.loads((output / "lorakit.json").read_text())["max_seq_len"] == 128  # the base's positions
    assert main(["export", str(checkpoint), "--output", str(tmp_path / "again")]) == 0
    assert verify_model(tmp_path / "again", backends=["torch"])["ok"]


@pytest.mark.parametrize("arch", ["gemma3", "qwen3"])
def test_the_native_core_reproduces_the_golden_and_refuses_a_tampered_adapter(exported: dict[str, Path], arch: str,
                                                                              tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from lorakit.manifest import file_table, read_manifest, write_manifest
    from lorakit.verify import verify_model

    report = verify_model(exported[arch], backends=["native"])
    assert report["ok"], report["backends"]
    calls = report["backends"]["native-calls"]
    assert calls["max_abs_diff"] <= 1e-4 and calls["label_probs_max_abs_diff"] <= 1e-4
    assert calls["fewshot_max_abs_diff"] <= 1e-4 and calls["fewshot_labels_equal"]
    tampered = tmp_path / "tampered"
    shutil.copytree(exported[arch], tampered)
    weights = load_file(str(tampered / "adapter_model.safetensors"))
    key = next(k for k in weights if "lora_B" in k and "up_proj" in k)
    weights[key] = weights[key] + 0.5
    save_file(weights, str(tampered / "adapter_model.safetensors"))
    manifest = read_manifest(tampered)
    write_manifest(tampered, type(manifest)(**{**manifest.__dict__, "files": file_table(tampered)}))
    broken = verify_model(tampered, backends=["native"])["backends"]
    assert broken["native-runtime"]["ok"] is False and broken["native-merged"]["ok"] is True


def test_native_and_torch_fewshot_predictions_agree(exported: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    examples = write_rows(tmp_path / "shots.jsonl", [{"document": "hi", "label": "greeting"},
                                                     {"document": "refund the fee", "label": "billing"}])
    runs = {}
    for backend in ("native", "torch"):
        assert main(["predict", str(exported["qwen3"]), "--backend", backend, "--text", "hello", "--text", "my card",
                     "--examples", str(examples), "--top-k", "4", "--json"]) == 0
        runs[backend] = json.loads(capsys.readouterr().out)
    for native_row, torch_row in zip(runs["native"], runs["torch"], strict=True):
        assert native_row["label"] == torch_row["label"]
        counts = ("tokens_in", "tokens_used")
        assert [native_row[key] for key in counts] == [torch_row[key] for key in counts]
        native_probs = {item["label"]: item["probability"] for item in native_row["top"]}
        torch_probs = {item["label"]: item["probability"] for item in torch_row["top"]}
        assert native_probs.keys() == torch_probs.keys() == set(LABELS) | {"greeting"}
        assert max(abs(native_probs[k] - torch_probs[k]) for k in native_probs) <= 1e-4
