"""Training defaults: the linear-probe head, the head's own learning rate, early stopping."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, DataCollatorWithPadding

from lorakit.data import load_dataset
from lorakit.errors import LorakitError
from lorakit.manifest import EMBEDDING, TOKEN
from lorakit.train import EncodedDataset, TrainConfig, build_model, optimizer, output_layer, probe_head
from lorakit.train_options import OptionError, check_numbers

from conftest import write_labelled_csv


def probed(base: Path, csv: Path, full: bool = False) -> tuple[torch.nn.Module, EncodedDataset, TrainConfig]:
    dataset = load_dataset(csv, "text", "label")
    config = TrainConfig(base=str(base), labels=dataset.labels, full=full, max_seq_len=16)
    torch.manual_seed(0)
    model = build_model(config)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    train_set = EncodedDataset(tokenizer, dataset.examples, dataset.label_ids(dataset.examples), config.max_seq_len)
    return model, train_set, config


def train_accuracy(model: torch.nn.Module, train_set: EncodedDataset, tokenizer_base: Path) -> float:
    collator = DataCollatorWithPadding(AutoTokenizer.from_pretrained(str(tokenizer_base)))
    batch = collator([{k: v for k, v in train_set[i].items() if k != "labels"} for i in range(len(train_set))])
    model.eval()
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).numpy()
    return float((predicted == np.asarray(train_set.label_ids)).mean())


@pytest.mark.parametrize("full", [False, True])
def test_the_probe_turns_a_random_head_into_a_working_one(fixtures_dir: Path, tmp_path: Path, full: bool) -> None:
    base = fixtures_dir / "tiny_bert_base"
    model, train_set, config = probed(base, write_labelled_csv(tmp_path / "data.csv", rows=90))
    before = train_accuracy(model, train_set, base)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if "classifier" not in name}
    probe_head(model, train_set, DataCollatorWithPadding(AutoTokenizer.from_pretrained(str(base))),
               len(config.labels), class_weighted=False, progress=False)
    after = train_accuracy(model, train_set, base)
    assert after >= 0.9 > before + 0.2, (before, after)
    # Only the output layer moved: the body is what fine-tuning adapts next.
    assert all(torch.equal(p, frozen[name]) for name, p in model.named_parameters() if name in frozen)


def test_a_class_missing_from_train_is_never_predicted_by_the_probe(fixtures_dir: Path, tmp_path: Path) -> None:
    base = fixtures_dir / "tiny_bert_base"
    csv = write_labelled_csv(tmp_path / "data.csv", rows=90)
    dataset = load_dataset(csv, "text", "label")
    model, train_set, config = probed(base, csv)
    config.labels = [*dataset.labels]
    absent = dataset.label_ids(dataset.examples)[0]
    keep = [i for i, label in enumerate(train_set.label_ids) if label != absent]
    train_set.label_ids = [train_set.label_ids[i] for i in keep]
    train_set.encodings = {key: [values[i] for i in keep] for key, values in train_set.encodings.items()}
    probe_head(model, train_set, DataCollatorWithPadding(AutoTokenizer.from_pretrained(str(base))),
               len(config.labels), class_weighted=False, progress=False)
    layer = output_layer(model, len(config.labels))
    others = [i for i in range(len(config.labels)) if i != absent]
    assert layer.bias[absent] < layer.bias[others].min() - 5


def test_the_head_learns_at_its_own_rate(fixtures_dir: Path, tmp_path: Path) -> None:
    base = fixtures_dir / "tiny_bert_base"
    model, _, config = probed(base, write_labelled_csv(tmp_path / "data.csv"))
    config.learning_rate, config.head_learning_rate = 1e-4, 5e-3
    names = {id(p): name for name, p in model.named_parameters()}
    rates = {names[id(p)]: group["lr"] for group in optimizer(model, config).param_groups for p in group["params"]}
    assert {rate for name, rate in rates.items() if "modules_to_save" in name} == {5e-3}
    assert {rate for name, rate in rates.items() if "lora_" in name} == {1e-4}
    assert set(rates) == {name for name, p in model.named_parameters() if p.requires_grad}


def test_head_rate_defaults() -> None:
    assert TrainConfig(base="b", labels=[]).head_lr() == 3e-3
    assert TrainConfig(base="b", labels=[], learning_rate=5e-3).head_lr() == 5e-3
    assert TrainConfig(base="b", labels=[], full=True).head_lr() == TrainConfig(base="b", labels=[], full=True).lr()
    # a fresh head (token classification, or a sequence head without the probe) learns at 3e-3 under full tuning too
    assert TrainConfig(base="b", labels=[], full=True, task=TOKEN).head_lr() == 3e-3
    assert TrainConfig(base="b", labels=[], full=True, probe_head=False).head_lr() == 3e-3


def test_full_fine_tuning_gives_the_head_modules_their_own_rate(fixtures_dir: Path, tmp_path: Path) -> None:
    model, _, config = probed(fixtures_dir / "tiny_bert_base", write_labelled_csv(tmp_path / "data.csv"), full=True)
    config.learning_rate, config.head_learning_rate = 1e-5, 2e-3
    names = {id(p): name for name, p in model.named_parameters()}
    rates = {names[id(p)]: group["lr"] for group in optimizer(model, config).param_groups for p in group["params"]}
    assert {rate for name, rate in rates.items() if name.startswith("classifier.")} == {2e-3}
    assert {rate for name, rate in rates.items() if not name.startswith("classifier.")} == {1e-5}


@pytest.mark.parametrize("change, flag", [({"head_learning_rate": 0.0}, "--head-learning-rate"),
                                          ({"patience": -1}, "--patience")])
def test_bad_new_options_are_refused(change: dict[str, float], flag: str) -> None:
    config = TrainConfig(base="b", labels=[], **change)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=flag):
        check_numbers(config)


def test_no_output_layer_is_a_clear_error() -> None:
    with pytest.raises(LorakitError, match="no trainable output layer"):
        output_layer(torch.nn.Sequential(torch.nn.Linear(4, 3)), num_labels=7)


def test_small_training_sets_get_enough_epochs_for_the_minimum_updates() -> None:
    from lorakit.train import MAX_AUTO_EPOCHS, MIN_UPDATES

    sequence = TrainConfig(base="b", labels=[])
    assert sequence.epochs_for(500) == 3.0  # banking77: 8,000 texts / 16 per update
    assert sequence.epochs_for(61) == math.ceil(MIN_UPDATES / 61)  # Presidio's 966 training texts
    assert sequence.epochs_for(3) == MAX_AUTO_EPOCHS
    assert TrainConfig(base="b", labels=[], task=TOKEN).epochs_for(100) == 10.0
    assert TrainConfig(base="b", labels=[], epochs=2.0).epochs_for(61) == 2.0  # an explicit --epochs wins
    assert TrainConfig(base="b", labels=[], task=EMBEDDING).epochs_for(10) == 3.0
    assert sequence.epochs_for() == 3.0


def test_the_trainer_runs_the_chosen_epochs_and_records_them(fixtures_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from lorakit import train as train_module

    monkeypatch.setattr(train_module, "MIN_UPDATES", 20)
    dataset = load_dataset(write_labelled_csv(tmp_path / "data.csv", rows=30), "text", "label")
    config = TrainConfig(base=str(fixtures_dir / "tiny_bert_base"), labels=dataset.labels, max_seq_len=16,
                         batch_size=8, patience=0)
    ids = dataset.label_ids(dataset.examples)
    result = train_module.train(config, dataset.examples, ids, dataset.examples[:6], ids[:6], tmp_path / "work",
                                progress=False)
    # 30 texts, 8 per update: 4 updates an epoch, so 5 epochs reach 20 updates
    assert result.stats["epochs"] == result.stats["epochs_run"] == 5.0


def test_long_tailed_labels_get_a_class_weighting_hint_and_balanced_ones_do_not() -> None:
    from lorakit.pipeline import imbalance_note

    labels = ["common", "rare", "mid"]
    tail = [0] * 50 + [1] * 4 + [2] * 20
    note = imbalance_note(tail, labels, class_weighted=False)
    assert note is not None and "50 to 4" in note and "'rare'" in note and "--class-weighted" in note
    assert imbalance_note(tail, labels, class_weighted=True) is None
    assert imbalance_note([0] * 50 + [1] * 6 + [2] * 20, labels, class_weighted=False) is None  # 8.3:1
