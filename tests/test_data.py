"""Data loading and the one split: formats, label order, no overlap, grouping, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.data import PARTS, Split, load_dataset, read_split, split_dataset, write_split
from lorakit.errors import DataError

from conftest import write_labelled_csv


def all_ids(split: Split) -> list[int]:
    return split.train + split.validation + split.test


def test_csv_jsonl_and_json_load_the_same_examples(tmp_path: Path, labelled_csv: Path) -> None:
    from_csv = load_dataset(labelled_csv, "text", "label", "group")
    records = [{"text": e.text, "label": e.label, "group": e.group} for e in from_csv.examples]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", "utf-8")
    (tmp_path / "d.json").write_text(json.dumps(records), "utf-8")
    for name in ("d.jsonl", "d.json"):
        loaded = load_dataset(tmp_path / name, "text", "label", "group")
        assert loaded.examples == from_csv.examples
        assert loaded.labels == from_csv.labels


def test_label_order_is_sorted_and_independent_of_row_order(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("t,l\nx,zeta\ny,alpha\nz,mid\n", "utf-8")
    (tmp_path / "b.csv").write_text("t,l\nz,mid\nx,zeta\ny,alpha\n", "utf-8")
    assert load_dataset(tmp_path / "a.csv", "t", "l").labels == ["alpha", "mid", "zeta"]
    assert load_dataset(tmp_path / "b.csv", "t", "l").labels == ["alpha", "mid", "zeta"]


def test_stratified_split_has_no_overlap_and_covers_every_row(labelled_csv: Path) -> None:
    dataset = load_dataset(labelled_csv, "text", "label")
    split = split_dataset(dataset, 0.2, 0.2, seed=7)
    ids = all_ids(split)
    assert len(ids) == len(set(ids)) == len(dataset.examples)
    assert not set(split.train) & set(split.validation)
    assert not set(split.train) & set(split.test)
    assert not set(split.validation) & set(split.test)
    for part in PARTS:  # stratified: every label in every part
        assert {e.label for e in split.part(dataset, part)} == set(dataset.labels)


def test_split_is_deterministic_for_a_seed_and_changes_with_it(labelled_csv: Path) -> None:
    dataset = load_dataset(labelled_csv, "text", "label")
    first = split_dataset(dataset, seed=3)
    again = split_dataset(load_dataset(labelled_csv, "text", "label"), seed=3)
    other = split_dataset(dataset, seed=4)
    assert first.to_json() == again.to_json()
    assert first.test != other.test


def test_grouped_split_keeps_each_group_in_one_part(tmp_path: Path) -> None:
    path = write_labelled_csv(tmp_path / "g.csv", rows=120, groups=12)
    dataset = load_dataset(path, "text", "label", "group")
    split = split_dataset(dataset, 0.2, 0.2, seed=1, grouped=True)
    groups = {part: {e.group for e in split.part(dataset, part)} for part in PARTS}
    assert groups["train"] and groups["validation"] and groups["test"]
    assert not groups["train"] & groups["validation"]
    assert not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    assert sorted(all_ids(split)) == [e.row_id for e in dataset.examples]


def test_resplitting_a_recombined_split_is_detectably_different(labelled_csv: Path, tmp_path: Path) -> None:
    """The "split, recombine, split again" bug: the split on disk must be the one and only split.

    Re-splitting train+validation (what the bug does) moves rows across parts; the written split round-trips
    exactly, so any code path that re-splits instead of reading it disagrees with the file.
    """
    dataset = load_dataset(labelled_csv, "text", "label")
    split = split_dataset(dataset, 0.2, 0.2, seed=11)
    write_split(tmp_path / "split.json", split)
    assert read_split(tmp_path / "split.json").to_json() == split.to_json()
    recombined = type(dataset)(examples=split.part(dataset, "train") + split.part(dataset, "validation"),
                               labels=dataset.labels)
    resplit = split_dataset(recombined, 0.2, 0.2, seed=11)
    assert set(resplit.test) <= set(split.train) | set(split.validation)  # old test rows never come back...
    assert set(resplit.train) != set(split.train)  # ...but the training rows silently change


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data.txt", "a,b\n", "unknown file type"),
        ("empty.csv", "", "empty"),
        ("blank.jsonl", "\n\n", "empty"),
        ("bad.jsonl", '{"text": "a", "label": "x"}\n{not json\n', "invalid JSON"),
        ("latin1.csv", "text,label\ncaf\xe9,x\n".encode("latin-1"), "not UTF-8"),
        ("nolabel.csv", "text,category\na,x\n", "label column 'label' not found"),
        ("obj.json", '{"text": "a"}', "list of objects"),
    ],
)
def test_bad_files_raise_data_errors(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(DataError, match=message):
        load_dataset(path, "text", "label")


def test_label_with_too_few_examples_cannot_be_split(tmp_path: Path) -> None:
    rows = ["text,label"] + [f"t{i},common" for i in range(10)] + ["r1,rare", "r2,rare"]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n", "utf-8")
    with pytest.raises(DataError, match="label 'rare' has 2 example"):
        split_dataset(load_dataset(tmp_path / "d.csv", "text", "label"))


def test_grouped_split_needs_three_groups(tmp_path: Path) -> None:
    path = write_labelled_csv(tmp_path / "g.csv", rows=30, groups=2)
    with pytest.raises(DataError, match="at least 3 groups"):
        split_dataset(load_dataset(path, "text", "label", "group"), grouped=True)


def test_labels_unknown_to_a_model_are_rejected(labelled_csv: Path) -> None:
    with pytest.raises(DataError, match="not known to the model"):
        load_dataset(labelled_csv, "text", "label", labels=["positive", "negative"])
