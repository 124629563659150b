"""Embedding task: pair loaders, the encode reference against sentence-transformers, metrics, both losses."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lorakit import native
from lorakit.cli import main
from lorakit.embedding import (
    EmbeddingConfig,
    Pair,
    cosine_loss,
    encode,
    evaluate_embedding,
    infer_score_scale,
    load_pairs,
    load_stsb,
    pair_metrics,
    ranking_loss,
    resolve_max_seq_len,
    separation_metrics,
    train_embedding,
)
from lorakit.errors import DataError, LorakitError
from lorakit.golden import read_golden
from lorakit.manifest import read_manifest
from lorakit.models import minilm_path
from lorakit.verify import verify_model

from conftest import write_pairs_csv

WORDS = "apple river stone cloud music paper green window bread silver tiger lamp".split()


# --- loaders -----------------------------------------------------------------------------------------------------

def test_load_pairs_reads_csv_tsv_jsonl_and_json(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text('a,b,s\n"one, two",three,4.5\nfour,five,0\n', "utf-8")
    (tmp_path / "p.tsv").write_text("a\tb\ts\none\tthree\t4.5\nfour\tfive\t0\n", "utf-8")
    (tmp_path / "p.jsonl").write_text('{"a": "one", "b": "three", "s": 4.5}\n{"a": "four", "b": "five", "s": 0}\n')
    (tmp_path / "p.json").write_text(json.dumps([{"a": "one", "b": "three", "s": "4.5"}]), "utf-8")
    assert load_pairs(tmp_path / "p.csv", "a", "b", "s") == [Pair("one, two", "three", 4.5), Pair("four", "five", 0.0)]
    assert load_pairs(tmp_path / "p.tsv", "a", "b", "s")[0] == Pair("one", "three", 4.5)
    assert load_pairs(tmp_path / "p.jsonl", "a", "b", "s")[1] == Pair("four", "five", 0.0)
    assert load_pairs(tmp_path / "p.json", "a", "b", "s") == [Pair("one", "three", 4.5)]
    assert load_pairs(tmp_path / "p.jsonl", "a", "b", None) == [Pair("one", "three", None), Pair("four", "five", None)]


@pytest.mark.parametrize(("content", "columns", "message"), [
    ("a,b,s\nx,y,1\n", ("a", "missing", "s"), "pair column 'missing' not found (columns: a, b, s)"),
    ("a,b,s\nx,y,1\n", ("a", "b", "score"), "score column 'score' not found"),
    ("a,b,s\nx,y,high\n", ("a", "b", "s"), "record 0: score 'high' is not a number"),
    ("a,b,s\nx,y,nan\n", ("a", "b", "s"), "record 0: score 'nan' is not a finite number"),
    ("a,b,s\nx,y,\n", ("a", "b", "s"), "record 0: score '' is not a number"),
    ("  \n", ("a", "b", "s"), "file is empty"),
    ("a,b,s\n", ("a", "b", "s"), "no records"),
])
def test_load_pairs_errors_are_one_line(tmp_path: Path, content: str, columns: tuple[str, str, str],
                                        message: str) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(content, "utf-8")
    with pytest.raises(DataError, match="^[^\n]+$") as error:
        load_pairs(path, *columns)
    assert message in str(error.value)


def test_load_stsb_reads_the_original_format(tmp_path: Path) -> None:
    path = tmp_path / "sts.csv"  # self-written lines in STS-B's layout: 7 or 9 fields, literal quotes
    path.write_text('main-news\tx\t2012\t0001\t3.800\tA "quoted" cat.\tA cat.\n'
                    "main-forum\ty\t2014\t0002\t0.000\tDogs bark.\tRain falls.\tsrc\tlicense\n", "utf-8")
    assert load_stsb(path) == [Pair('A "quoted" cat.', "A cat.", 3.8), Pair("Dogs bark.", "Rain falls.", 0.0)]
    path.write_text("main-news\tx\t2012\t0001\t3.8\tonly six fields\n", "utf-8")
    with pytest.raises(DataError, match="sts.csv:1: 6 tab-separated fields"):
        load_stsb(path)


def test_score_scale_is_inferred_or_checked() -> None:
    assert infer_score_scale([Pair("a", "b", 0.2), Pair("c", "d", 1.0)]) == 1.0
    assert infer_score_scale([Pair("a", "b", 0.2), Pair("c", "d", 4.6)]) == 5.0
    assert infer_score_scale([Pair("a", "b", None)]) is None
    assert infer_score_scale([Pair("a", "b", 7.0)], 10.0) == 10.0
    with pytest.raises(DataError, match="1 of 2 pairs have no score"):
        infer_score_scale([Pair("a", "b", 1.0), Pair("c", "d", None)])
    with pytest.raises(DataError, match=r"outside \[0, 5\]"):
        infer_score_scale([Pair("a", "b", 7.0)])
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        infer_score_scale([Pair("a", "b", -0.5)])


# --- encode: the reference ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_encode_of_untuned_minilm_equals_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    base = minilm_path()
    texts = ["A man is playing a guitar.", "", "Ünïcode naïve café 東京", "word " * 400, "short", "A dog runs."]
    reference = SentenceTransformer(str(base), device="cpu").encode(texts, normalize_embeddings=True)
    max_seq_len = resolve_max_seq_len(base, None)
    assert max_seq_len == 256
    ours = encode(AutoModel.from_pretrained(base), AutoTokenizer.from_pretrained(base), texts, max_seq_len, "mean",
                  True, batch_size=4)  # several batches, padded differently
    assert ours.dtype == torch.float32 and ours.device.type == "cpu" and ours.shape == (len(texts), 384)
    assert float((ours - torch.from_numpy(reference)).abs().max()) <= 1e-5
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(texts)), atol=1e-6)


def test_encode_pools_mean_or_cls_and_truncates(fixtures_dir: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    base = fixtures_dir / "tiny_bert_base"
    model, tokenizer = AutoModel.from_pretrained(base).train(), AutoTokenizer.from_pretrained(base)
    texts = ["apple river", "stone " * 100]
    with torch.no_grad():
        model.eval()
        hidden = model(**tokenizer(texts[:1], return_tensors="pt")).last_hidden_state[0]
    model.train()
    mean = encode(model, tokenizer, texts, 16, "mean", False)
    assert model.training  # encode restores the caller's mode
    assert torch.allclose(mean[0], hidden.mean(dim=0), atol=1e-6)
    assert torch.allclose(encode(model, tokenizer, texts, 16, "cls", False)[0], hidden[0], atol=1e-6)
    assert torch.allclose(encode(model, tokenizer, texts, 16, "cls", True)[0], hidden[0] / hidden[0].norm(),
                          atol=1e-6)
    long = tokenizer([texts[1]], truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        model.eval()
        truncated = model(**long).last_hidden_state[0].mean(dim=0)
    assert torch.allclose(mean[1], truncated, atol=1e-6)
    with pytest.raises(LorakitError, match="pooling must be one of mean, cls"):
        encode(model, tokenizer, texts, 16, "max", True)


# --- metrics -----------------------------------------------------------------------------------------------------

def test_pair_metrics_perfect_and_inverted() -> None:
    scores = np.array([0.0, 0.5, 1.0, 2.5, 4.0, 4.5, 5.0])
    cosines = np.array([0.05, 0.1, 0.2, 0.5, 0.8, 0.85, 0.95])
    perfect = pair_metrics(cosines, scores, 5.0)
    assert perfect["n"] == 7 and perfect["spearman"] == pytest.approx(1.0)
    assert perfect["pearson"] == pytest.approx(np.corrcoef(cosines, scores)[0, 1])
    assert (perfect["n_compatible"], perfect["n_incompatible"]) == (3, 3)  # >= 4 of 5, <= 1 of 5
    assert perfect["auc_roc"] == 1.0 and perfect["best_f1"] == 1.0
    assert perfect["best_threshold"] == pytest.approx(0.8)
    assert perfect["margin"] == pytest.approx(np.mean([0.8, 0.85, 0.95]) - np.mean([0.05, 0.1, 0.2]))
    assert perfect["cohens_d"] > 5
    inverted = pair_metrics(-cosines, scores, 5.0)
    assert inverted["spearman"] == pytest.approx(-1.0) and inverted["auc_roc"] == 0.0
    assert inverted["margin"] == pytest.approx(-perfect["margin"]) and inverted["cohens_d"] < -5
    assert pair_metrics(cosines, scores / 5, 1.0)["n_compatible"] == 3  # the thresholds follow the scale


def test_separation_metrics_hand_computed_and_undefined() -> None:
    out = separation_metrics(np.array([0.9, 0.7, 0.4]), np.array([0.5, 0.1]))
    assert out["margin"] == pytest.approx(2 / 3 - 0.3)
    pooled_sd = np.sqrt((2 * np.var([0.9, 0.7, 0.4], ddof=1) + np.var([0.5, 0.1], ddof=1)) / 3)
    assert out["cohens_d"] == pytest.approx((2 / 3 - 0.3) / pooled_sd)
    assert out["auc_roc"] == pytest.approx(5 / 6)  # 0.4 loses to 0.5: one of six pairs misordered
    # threshold 0.7: P 1, R 2/3, F1 0.8; threshold 0.4: P 3/4, R 1, F1 6/7 (the best)
    assert out["best_f1"] == pytest.approx(6 / 7) and out["best_threshold"] == 0.4
    empty = separation_metrics(np.array([0.9]), np.empty(0))
    assert empty["auc_roc"] is None and empty["margin"] is None and empty["n_compatible"] == 1


# --- training ----------------------------------------------------------------------------------------------------

def scored_pairs(n: int, seed: int) -> list[Pair]:
    """Two topics: texts from the same topic score 5, across topics 0 (a relation a random model must learn)."""
    rng = random.Random(seed)
    topics = (WORDS[:6], WORDS[6:])
    pairs = []
    for i in range(n):
        first = rng.randrange(2)
        second = first if i % 2 == 0 else 1 - first
        pairs.append(Pair(" ".join(rng.sample(topics[first], 2)), " ".join(rng.sample(topics[second], 2)),
                          5.0 if first == second else 0.0))
    return pairs


def anchor_pairs(n: int, seed: int) -> list[Pair]:
    rng = random.Random(seed)
    return [Pair(" ".join(words), " ".join(rng.sample(words, 3)), None)
            for words in (rng.sample(WORDS, 3) for _ in range(n))]


def pair_loss(model: torch.nn.Module, tokenizer: object, pairs: list[Pair], scored: bool) -> float:
    u = encode(model, tokenizer, [p.text for p in pairs], 32, "mean", True)
    v = encode(model, tokenizer, [p.text_pair for p in pairs], 32, "mean", True)
    if scored:
        return float(cosine_loss(u, v, torch.tensor([p.score / 5 for p in pairs if p.score is not None])))
    return float(np.mean([float(ranking_loss(u[i:i + 8], v[i:i + 8])) for i in range(0, len(pairs), 8)]))


@pytest.mark.parametrize("scored", [True, False], ids=["cosine", "ranking"])
def test_training_lowers_the_loss(fixtures_dir: Path, tmp_path: Path, scored: bool) -> None:
    from transformers import AutoModel, AutoTokenizer

    base = fixtures_dir / "tiny_bert_base"
    make = scored_pairs if scored else anchor_pairs
    train, validation = make(48, seed=1), make(16, seed=2)
    config = EmbeddingConfig(epochs=6, learning_rate=5e-3, batch_size=8, r=4, alpha=8, dropout=0.0, patience=6)
    result = train_embedding(base, train, validation, config, tmp_path / "work", progress=False)
    tokenizer = AutoTokenizer.from_pretrained(base)
    before = pair_loss(AutoModel.from_pretrained(base), tokenizer, train, scored)
    after = pair_loss(result.model, result.tokenizer, train, scored)
    assert after < 0.7 * before, (before, after)

    stats = result.stats
    assert stats["loss"] == ("cosine" if scored else "ranking") and stats["score_scale"] == (5.0 if scored else None)
    assert stats["train_examples"] == 48 and stats["max_seq_len"] == 64  # the tiny base's 64 positions
    assert 0 < stats["trainable_percent"] < 5 and stats["train_seconds"] > 0
    assert stats["best_metric"] == ("spearman" if scored else "loss")
    assert sum("eval_loss" in entry for entry in result.history) == 6
    lora = result.model.peft_config["default"]  # type: ignore[index]
    assert lora.task_type == "FEATURE_EXTRACTION" and lora.exclude_modules == {"pooler.dense"}
    assert not any("pooler" in name for name, _ in result.model.named_parameters() if "lora_" in name)
    assert not result.model.training and next(result.model.parameters()).dtype == torch.float32
    metrics = evaluate_embedding(result.model, result.tokenizer, validation, 64, "mean", True)
    assert metrics["n"] == 16 and metrics["auc_roc"] > 0.5
    assert (metrics["spearman"] is not None) == scored  # unscored: given pairs against mismatched ones


def test_training_refuses_bad_inputs(fixtures_dir: Path, tmp_path: Path) -> None:
    base = fixtures_dir / "tiny_bert_base"
    pairs = scored_pairs(8, seed=0)
    with pytest.raises(LorakitError, match="--max-seq-len 128 must be in 1..64"):
        train_embedding(base, pairs, pairs, EmbeddingConfig(max_seq_len=128), tmp_path, progress=False)
    with pytest.raises(DataError, match="both be scored"):
        train_embedding(base, pairs, anchor_pairs(4, seed=0), EmbeddingConfig(), tmp_path, progress=False)
    with pytest.raises(DataError, match="need training and validation pairs"):
        train_embedding(base, pairs, [], EmbeddingConfig(), tmp_path, progress=False)
    with pytest.raises(LorakitError, match="pooling must be one of"):
        train_embedding(base, pairs, pairs, EmbeddingConfig(pooling="max"), tmp_path, progress=False)


# --- full fine-tuning --------------------------------------------------------------------------------------------

def test_full_fine_tuning_defaults_to_the_sentence_transformers_rate() -> None:
    assert EmbeddingConfig(full=True).lr() == 2e-5 and EmbeddingConfig().lr() == 2e-4
    assert EmbeddingConfig(full=True, learning_rate=1e-4).lr() == 1e-4
    assert EmbeddingConfig(full=True).to_json()["learning_rate"] == 2e-5


def test_full_training_trains_the_encoder_and_lowers_the_loss(fixtures_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    base = fixtures_dir / "tiny_bert_base"
    train, validation = scored_pairs(48, seed=1), scored_pairs(16, seed=2)
    config = EmbeddingConfig(full=True, epochs=6, learning_rate=1e-3, batch_size=8, patience=6)
    result = train_embedding(base, train, validation, config, tmp_path / "work", progress=False)
    untrained = AutoModel.from_pretrained(base)
    before = pair_loss(untrained, AutoTokenizer.from_pretrained(base), train, True)
    after = pair_loss(result.model, result.tokenizer, train, True)
    assert after < 0.7 * before, (before, after)

    assert not hasattr(result.model, "peft_config") and type(result.model) is type(untrained)
    trained_weights, base_weights = result.model.state_dict(), untrained.state_dict()
    assert trained_weights.keys() == base_weights.keys()
    changed = {name for name in base_weights if not torch.equal(trained_weights[name], base_weights[name])}
    assert {"embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight",
            "encoder.layer.1.output.dense.weight"} <= changed
    assert not any(name.startswith("pooler.") for name in changed)  # feeds no embedding: left as the base has it
    pooler = sum(p.numel() for name, p in untrained.named_parameters() if name.startswith("pooler."))
    stats = result.stats
    assert stats["trainable_params"] == stats["total_params"] - pooler and stats["trainable_percent"] > 90
    assert stats["loss"] == "cosine" and stats["best_metric"] == "spearman"
    assert sum("eval_loss" in entry for entry in result.history) == 6
    assert not result.model.training and next(result.model.parameters()).dtype == torch.float32


def test_full_training_stops_early_and_keeps_the_best_epoch(fixtures_dir: Path, tmp_path: Path) -> None:
    base = fixtures_dir / "tiny_bert_base"
    train, validation = anchor_pairs(32, seed=1), anchor_pairs(16, seed=2)
    # A rate this high collapses the embeddings within an epoch: the validation loss stops improving.
    config = EmbeddingConfig(full=True, epochs=12, learning_rate=0.3, batch_size=8, patience=1, warmup=0.0)
    result = train_embedding(base, train, validation, config, tmp_path / "work", progress=False)
    evaluations = [entry for entry in result.history if "eval_loss" in entry]
    assert len(evaluations) < 12  # stopped before the last epoch ...
    best = min(evaluations, key=lambda entry: entry["eval_loss"])  # the first of equals, as the Trainer keeps
    assert result.stats["best_metric"] == "loss" and result.stats["best_metric_value"] == best["eval_loss"]
    assert best is not evaluations[-1]  # ... so the weights kept are not the last ones
    assert result.stats["best_checkpoint"] == f"checkpoint-{best['step']}"
    kept = load_file(str(tmp_path / "work" / result.stats["best_checkpoint"] / "model.safetensors"))
    weights = result.model.state_dict()
    assert kept.keys() == weights.keys() and all(torch.equal(kept[name], weights[name]) for name in kept)


@pytest.fixture(scope="module")
def full_model(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> dict[str, Path]:
    """`lorakit train --task embedding --full` at its default learning rate, with a checkpoint directory."""
    work = tmp_path_factory.mktemp("full_embedding")
    data = write_pairs_csv(work / "pairs.csv")
    out, run = work / "model", work / "run"
    assert main(["train", "--task", "embedding", "--full", "--data", str(data), "--score-column", "score",
                 "--base", str(fixtures_dir / "tiny_bert_base"), "--output", str(out), "--epochs", "1",
                 "--max-seq-len", "32", "--batch-size", "8", "--checkpoint-dir", str(run)]) == 0
    return {"data": data, "model": out, "run": run, "base": fixtures_dir / "tiny_bert_base"}


def test_full_export_has_no_adapter_and_records_the_rate(full_model: dict[str, Path]) -> None:
    model = full_model["model"]
    manifest = read_manifest(model)
    assert manifest.task == "embedding" and manifest.adapter is None and manifest.labels == ()
    assert (manifest.pooling, manifest.normalize, manifest.max_seq_len) == ("mean", True, 32)
    assert "model.safetensors" in manifest.files
    assert not any(name.startswith("adapter_") for name in manifest.files)
    assert not (model / "adapter_config.json").exists() and not (model / "adapter_model.safetensors").exists()
    raw = json.loads((model / "lorakit.json").read_text("utf-8"))
    assert "adapter" in raw and raw["adapter"] is None
    metrics = json.loads((model / "report" / "metrics.json").read_text("utf-8"))
    assert metrics["config"]["full"] is True and metrics["config"]["learning_rate"] == 2e-5
    assert metrics["embedding_config"]["full"] is True and metrics["embedding_config"]["learning_rate"] == 2e-5
    assert manifest.metrics["training"]["trainable_percent"] > 90  # every encoder weight, not an adapter
    run_config = json.loads((full_model["run"] / "lorakit_run.json").read_text("utf-8"))["config"]
    assert run_config["full"] is True and run_config["learning_rate"] == 2e-5


def test_full_export_weights_differ_from_the_base(full_model: dict[str, Path]) -> None:
    exported = load_file(str(full_model["model"] / "model.safetensors"))
    base = load_file(str(full_model["base"] / "model.safetensors"))
    assert {name.removeprefix("bert.") for name in base} >= set(exported)
    name = "encoder.layer.0.attention.self.query.weight"
    base_name = name if name in base else "bert." + name
    assert not torch.equal(exported[name], base[base_name])  # trained, not merely copied


def test_native_core_loads_the_full_model_and_matches_the_golden(full_model: dict[str, Path]) -> None:
    model = native.Model.load(full_model["model"])
    assert model.task == "embedding" and model.runtime_adapter is False
    golden = read_golden(full_model["model"])
    assert golden.output == "embeddings"
    vectors = model.embed(list(golden.texts))
    np.testing.assert_allclose(vectors, golden.values.numpy(), atol=1e-4, rtol=0)
    report = model.verify_golden()
    assert report["ok"] is True and report["max_abs_diff"] <= report["tolerance"], report


def test_lorakit_verify_passes_on_the_full_model(full_model: dict[str, Path], capsys: pytest.CaptureFixture[str]) \
        -> None:
    assert main(["verify", str(full_model["model"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert {"native-merged", "torch-merged", "onnxruntime"} <= set(report["backends"])
    assert all(result["ok"] is not False for result in report["backends"].values())


def test_a_tampered_full_weight_fails_verification(full_model: dict[str, Path]) -> None:
    model = full_model["model"].parent / "tampered"  # a sibling: the relative base path still resolves
    shutil.copytree(full_model["model"], model)
    weights = model / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["encoder.layer.1.attention.self.value.weight"].view(-1)[0] += 0.5
    save_file(tensors, str(weights), metadata={"format": "pt"})
    manifest = json.loads((model / "lorakit.json").read_text("utf-8"))
    manifest["files"]["model.safetensors"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (model / "lorakit.json").write_text(json.dumps(manifest, indent=2), "utf-8")  # only the numbers can tell now
    report = native.Model.load(model).verify_golden()
    assert report["ok"] is False and report["max_abs_diff"] > report["tolerance"], report
    full_report = verify_model(model)
    assert full_report["ok"] is False and full_report["checksums"]["ok"] is True
    assert full_report["backends"]["torch-merged"]["ok"] is False


def test_export_reexports_the_full_run(full_model: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "again"
    assert main(["export", str(full_model["run"]), "--output", str(out)]) == 0
    first, again = read_manifest(full_model["model"]), read_manifest(out)
    assert again.adapter is None and (again.task, again.pooling, again.normalize) == ("embedding", "mean", True)
    assert not (out / "adapter_config.json").exists()
    assert again.files["model.safetensors"] == first.files["model.safetensors"]
    assert torch.equal(read_golden(out).values, read_golden(full_model["model"]).values)
    assert verify_model(out)["ok"] is True


def test_full_stays_refused_for_generative(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["train", "--task", "generative", "--full", "--data", str(tmp_path / "d.jsonl"),
                 "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--full does not apply to --task generative" in err and "\n" not in err and not out.exists()
