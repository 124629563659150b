"""scripts/bench_quality.py and sweep_lora.py without training: each dataset's conversion on tiny synthetic files, the
out-of-scope and benign false-positive arithmetic, targets and gaps, the table / markdown / plots, per-process peak
memory, and a dry run over a synthetic data root."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import bench_quality
import pytest
import quality_datasets as qd
import quality_metrics as qm
import quality_report
import quality_runs
import sweep_lora
from matplotlib.image import imread

from lorakit.data import load_dataset, read_records
from lorakit.tokens import load_token_dataset, read_conll


def write_rows(path: Path, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_banking(folder: Path, per_label: int = 6) -> Path:
    return write_rows(folder / "train.csv", ("text", "category"),
                      [(f"query {label} {i}", f"intent_{label}") for label in range(5) for i in range(per_label)])


def make_clinc(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"train": [[f"in {i} {j}", f"intent_{i}"] for i in range(6) for j in range(5)],
            "val": [[f"val {i}", f"intent_{i}"] for i in range(6)],
            "oos_train": [[f"oos train {i}", "oos"] for i in range(3)],
            "oos_val": [[f"oos val {i}", "oos"] for i in range(2)]}
    path = folder / "data_full.json"
    path.write_text(json.dumps(data), "utf-8")
    return path


LONG_PROMPT = 'You are "DAN", line one,\nline two with "quotes", and ' + "x" * 140_000


def make_jailbreak(folder: Path) -> Path:
    rows = [(LONG_PROMPT if i == 0 else f"jailbreak prompt {i}", "jailbreak") for i in range(40)]
    rows += [(f"benign prompt {i},\nwith a second line", "benign") for i in range(40)]
    return write_rows(folder / "balanced" / "jailbreak_dataset_train_balanced.csv", ("prompt", "type"), rows)


def make_mmlu(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    categories = ["math", "computer science", "law"]
    rows = [{"question_id": i, "question": f"question {i}?", "options": ["a", "b"], "answer": "A", "answer_index": 0,
             "cot_content": "", "category": categories[i % 3], "src": "x"} for i in range(30)]
    path = folder / "mmlu_pro_pool.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")
    return path


def make_presidio(folder: Path, templates: int = 40) -> Path:
    """Three fillings of each template "Call {{PERSON}} now", in both files of shared/data."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, samples = [], []
    for i in range(templates * 3):
        name = f"Name{i}"
        text = f"Call {name} now"
        rows.append({"id": i, "template_id": i % templates, "text": text, "tokens": ["Call", name, "now"],
                     "token_spans": [[0, 4], [5, 5 + len(name)], [6 + len(name), 9 + len(name)]],
                     "ner_tags": ["O", "B-PERSON", "O"]})
        samples.append({"full_text": text, "masked": "Call {{PERSON}} now", "template_id": i % templates})
    (folder / "synth_dataset_v2.json").write_text(json.dumps(samples), "utf-8")
    path = folder / "synth_dataset_v2.bio.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")
    return path


def conll_text(sentences: int) -> str:
    # WNUT-17 separates some sentences with a line holding a lone TAB
    return "".join(f"@user{i}\tO\nParis\tB-location\nrocks\tO\n" + ("\t\n" if i % 2 else "\n")
                   for i in range(sentences))


def make_wnut(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnut17train.conll").write_text(conll_text(250), "utf-8")
    (folder / "emerging.dev.conll").write_text(conll_text(120), "utf-8")


STSB_LINES = ["main-captions\tMSRvid\t2012test\t0001\t5.000\tA man \"plays\" guitar.\tA man plays a guitar.",
              "main-news\theadlines\t2013\t0002\t1.5\tHe said, 'no'.\tShe left.\tsource-x\tlicense-y"]


def make_stsb(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sts-train.csv").write_text("\n".join(STSB_LINES * 200) + "\n", "utf-8")
    (folder / "sts-dev.csv").write_text("\n".join(STSB_LINES * 60) + "\n", "utf-8")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_banking(root / "banking77")
    make_clinc(root / "clinc150")
    make_jailbreak(root / "jailbreak_classification")
    make_mmlu(root / "mmlu_pro")
    make_presidio(root / "presidio_synth_pii")
    make_wnut(root / "wnut17")
    make_stsb(root / "stsb")
    return root


def flag(prepared: qd.Prepared, name: str) -> str:
    return prepared.flags[prepared.flags.index(name) + 1]


def test_banking77_full_run_reads_the_shared_file_and_quick_keeps_a_few_rows_per_label(tmp_path: Path) -> None:
    source = make_banking(tmp_path / "banking77")
    full = qd.prepare_banking77(tmp_path / "banking77", tmp_path / "work", quick=False)
    assert full.train_file == source and flag(full, "--label-column") == "category"
    quick = qd.prepare_banking77(tmp_path / "banking77", tmp_path / "work", quick=True)
    assert quick.train_file.parent == tmp_path / "work"
    dataset = load_dataset(quick.train_file, "text", "category")
    counts = {label: sum(e.label == label for e in dataset.examples) for label in dataset.labels}
    assert counts == {f"intent_{i}": qd.QUICK.per_label for i in range(5)}


def test_the_imbalanced_banking77_has_a_geometric_tail_and_a_balanced_dev_file_it_never_trains_on(
        tmp_path: Path) -> None:
    make_banking(tmp_path / "banking77", per_label=130)
    prepared = qd.prepare_banking77_imbalanced(tmp_path / "banking77", tmp_path / "work", quick=False)
    train = load_dataset(prepared.train_file, "text", "category")
    counts = sorted(sum(e.label == label for e in train.examples) for label in train.labels)
    assert counts == [5, 11, 22, 47, 100]  # 100 * (1/20) ** (rank / 4), rounded
    assert prepared.dev_file is not None
    dev = load_dataset(prepared.dev_file, "text", "category")
    assert all(sum(e.label == label for e in dev.examples) == qd.BALANCED_DEV_PER_LABEL for label in dev.labels)
    assert not {e.text for e in dev.examples} & {e.text for e in train.examples}
    again = qd.prepare_banking77_imbalanced(tmp_path / "banking77", tmp_path / "again", quick=False)
    assert again.train_file.read_text("utf-8") == prepared.train_file.read_text("utf-8")  # seeded


def test_modes_apply_to_the_tasks_whose_trainer_has_their_flag() -> None:
    assert qd.DATASETS["banking77"].why_unsupported("weighted") is None
    assert qd.DATASETS["presidio_synth_pii"].why_unsupported("qlora") is None
    assert "--class-weighted" in (qd.DATASETS["presidio_synth_pii"].why_unsupported("weighted") or "")
    assert "--quantize 4bit" in (qd.DATASETS["stsb"].why_unsupported("qlora") or "")
    assert qd.DATASETS["mmlu_pro_generative"].why_unsupported("full") == qd.NO_FULL_GENERATIVE


def test_clinc150_trains_in_scope_only_and_keeps_out_of_scope_texts_apart(tmp_path: Path) -> None:
    make_clinc(tmp_path / "clinc150")
    prepared = qd.prepare_clinc150(tmp_path / "clinc150", tmp_path / "work", quick=False)
    dataset = load_dataset(prepared.train_file, "text", "label")
    assert len(dataset.examples) == 36 and "oos" not in dataset.labels and len(dataset.labels) == 6
    assert prepared.oos_file is not None
    oos = [json.loads(line) for line in prepared.oos_file.read_text("utf-8").splitlines()]
    assert oos == ["oos train 0", "oos train 1", "oos train 2", "oos val 0", "oos val 1"]
    quick = qd.prepare_clinc150(tmp_path / "clinc150", tmp_path / "quick", quick=True)
    assert len(load_dataset(quick.train_file, "text", "label").examples) == 6 * (qd.QUICK.per_label - 1)


def test_clinc150_without_its_out_of_scope_parts_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "clinc150"
    folder.mkdir()
    (folder / "data_full.json").write_text(json.dumps({"train": [], "val": []}), "utf-8")
    with pytest.raises(ValueError, match="oos_train, oos_val"):
        qd.prepare_clinc150(folder, tmp_path / "work", quick=False)


def test_jailbreak_quick_subset_keeps_long_multiline_prompts_intact(tmp_path: Path) -> None:
    make_jailbreak(tmp_path / "jb")
    prepared = qd.prepare_jailbreak(tmp_path / "jb", tmp_path / "work", quick=True)
    assert flag(prepared, "--unsafe-labels") == "jailbreak" and flag(prepared, "--text-column") == "prompt"
    dataset = load_dataset(prepared.train_file, "prompt", "type")
    texts = {example.text for example in dataset.examples}
    assert len(dataset.examples) == 2 * qd.QUICK.long_texts_per_label
    assert "benign prompt 3,\nwith a second line" in texts or any("\n" in text for text in texts)
    full = qd.prepare_jailbreak(tmp_path / "jb", tmp_path / "work", quick=False)
    assert LONG_PROMPT in {example.text for example in load_dataset(full.train_file, "prompt", "type").examples}


def test_mmlu_pro_becomes_question_and_category_for_both_bases(tmp_path: Path) -> None:
    make_mmlu(tmp_path / "mmlu")
    sequence = qd.prepare_mmlu_pro(tmp_path / "mmlu", tmp_path / "work", quick=False)
    dataset = load_dataset(sequence.train_file, "text", "label")
    assert dataset.labels == ["computer science", "law", "math"] and dataset.examples[4].text == "question 4?"
    generative = qd.prepare_mmlu_pro_generative(tmp_path / "mmlu", tmp_path / "work", quick=True)
    assert flag(generative, "--base") == qd.GENERATIVE_BASE
    assert len(read_records(generative.train_file)) == 3 * qd.QUICK.per_label_generative


@pytest.mark.parametrize("quick", [False, True])
def test_presidio_holds_out_whole_templates_and_refills_only_the_trained_ones(tmp_path: Path, quick: bool) -> None:
    make_presidio(tmp_path / "presidio")
    prepared = qd.prepare_presidio(tmp_path / "presidio", tmp_path / "work", quick=quick)
    assert flag(prepared, "--group-column") == "template_id" and prepared.dev_file is not None
    train = load_token_dataset(prepared.train_file, group_column="template_id")
    dev = load_token_dataset(prepared.dev_file, group_column="template_id")
    trained, held = {e.group for e in train.examples}, {e.group for e in dev.examples}
    templates = qd.QUICK.templates if quick else 40
    assert not trained & held and len(trained | held) == templates
    assert len(held) == round(templates * qd.PRESIDIO_HELD_OUT)
    fills = qd.QUICK.fills if quick else qd.FILLS_PER_TEMPLATE
    assert len(train.examples) == (3 + fills) * len(trained) and len(dev.examples) == 3 * len(held)
    # the held-out rows are the originals; new fillings carry other names, tagged like the originals
    assert all(e.text.startswith("Call Name") for e in dev.examples)
    refilled = [e for e in train.examples if not e.text.startswith("Call Name")]
    assert len(refilled) >= fills * len(trained) - 2 and train.types == dev.types == ["PERSON"]
    records = read_records(prepared.train_file)
    assert len({r["id"] for r in records}) == len(records)
    again = qd.prepare_presidio(tmp_path / "presidio", tmp_path / "again", quick=quick)
    assert read_records(again.train_file) == records  # seeded


def test_held_out_templates_never_take_the_last_template_of_a_type() -> None:
    masked = {i: "{{PERSON}}" for i in range(10)} | {10: "{{IBAN_CODE}} {{PERSON}}", 11: "{{US_SSN}}",
                                                     12: "{{US_SSN}}"}
    for count in (3, 12):
        held = qd.hold_out_templates(sorted(masked), masked, count)
        assert 10 not in held and not {11, 12} <= held
        assert len(held) == min(count, 11)  # at most: all but the IBAN template and one US_SSN template


def test_presidio_without_a_masked_template_is_an_error(tmp_path: Path) -> None:
    make_presidio(tmp_path / "presidio")
    (tmp_path / "presidio" / "synth_dataset_v2.json").write_text("[]", "utf-8")
    with pytest.raises(ValueError, match="no masked text for template"):
        qd.prepare_presidio(tmp_path / "presidio", tmp_path / "work", quick=True)


def test_wnut17_reads_tab_only_separators_and_writes_conll_the_library_reads_back(tmp_path: Path) -> None:
    make_wnut(tmp_path / "wnut")
    sentences = qd.read_conll_sentences(tmp_path / "wnut" / "wnut17train.conll")
    assert len(sentences) == 250 and sentences[1] == [("@user1", "O"), ("Paris", "B-location"), ("rocks", "O")]
    prepared = qd.prepare_wnut17(tmp_path / "wnut", tmp_path / "work", quick=True)
    assert prepared.dev_file is not None
    written = read_conll(prepared.train_file)
    assert len(written) == qd.QUICK.sentences
    assert all(row["tokens"][1:] == ["Paris", "rocks"] and row["ner_tags"] == ["O", "B-location", "O"]
               for row in written)
    numbers = [int(row["tokens"][0].removeprefix("@user")) for row in written]
    assert numbers == sorted(numbers) and numbers[-1] > qd.QUICK.sentences - 1  # a seeded sample in file order
    assert len(read_conll(prepared.dev_file)) == qd.QUICK.evaluated
    full = qd.prepare_wnut17(tmp_path / "wnut", tmp_path / "work", quick=False)
    assert full.dev_file == tmp_path / "wnut" / "emerging.dev.conll" and full.flags == []


def test_stsb_takes_the_first_seven_fields_and_keeps_quotes_literal(tmp_path: Path) -> None:
    make_stsb(tmp_path / "stsb")
    assert qd.read_stsb(tmp_path / "stsb" / "sts-dev.csv")[:2] == [
        ('A man "plays" guitar.', "A man plays a guitar.", 5.0), ("He said, 'no'.", "She left.", 1.5)]
    prepared = qd.prepare_stsb(tmp_path / "stsb", tmp_path / "work", quick=False)
    records = read_records(prepared.train_file)
    assert len(records) == 400 and records[0] == {"text": 'A man "plays" guitar.', "text_pair": "A man plays a guitar.",
                                                 "score": "5.0"}
    assert prepared.dev_file is not None and len(read_records(prepared.dev_file)) == 120
    assert prepared.dev_columns == {"text_column": "text", "text_pair_column": "text_pair", "score_column": "score"}
    quick = qd.prepare_stsb(tmp_path / "stsb", tmp_path / "quick", quick=True)
    assert len(read_records(quick.train_file)) == qd.QUICK.pairs
    assert {r["text"] for r in read_records(quick.train_file)} == {'A man "plays" guitar.', "He said, 'no'."}
    with pytest.raises(ValueError, match="at least 7"):
        (tmp_path / "bad.csv").write_text("a\tb\tc\n", "utf-8")
        qd.read_stsb(tmp_path / "bad.csv")


def test_dataset_selection_accepts_aliases_and_names_the_choices() -> None:
    assert [spec.name for spec in qd.select("presidio, banking77")] == ["banking77", "presidio_synth_pii"]
    assert len(qd.select(None)) == len(qd.DATASETS)
    assert "mmlu_pro_generative" not in [spec.name for spec in qd.select(None, quick=True)]
    assert [spec.name for spec in qd.select("mmlu_pro_generative", quick=True)] == ["mmlu_pro_generative"]
    with pytest.raises(ValueError, match="unknown dataset.*imdb.*choose from banking77"):
        qd.select("banking77,imdb")
    assert "full" not in qd.DATASETS["stsb"].unsupported and "full" in qd.DATASETS["mmlu_pro_generative"].unsupported


def test_review_threshold_prefers_the_manifest_calibration() -> None:
    assert qm.review_threshold({"calibration": {"temperature": 1.3, "review_threshold": 0.71}}, 0.5)[0] == 0.71
    threshold, source = qm.review_threshold({"calibration": {"temperature": 1.3, "review_threshold": None}}, 0.5)
    assert threshold is None and "lorakit.json" in source
    assert qm.review_threshold({}, 0.4) == (0.4, "--oos-threshold (the model has no calibration.review_threshold)")


def test_out_of_scope_recall_counts_texts_below_the_threshold() -> None:
    assert qm.needs_review([0.2, 0.5, 0.49, 0.9], 0.5) == [True, False, True, False]
    assert qm.needs_review([0.01], None) == [False]
    summary = qm.review_summary([0.1, 0.3, 0.6, 0.95], [0.9, 0.8, 0.4, 0.99, 0.97], 0.5)
    assert summary["oos_recall"] == 0.5 and summary["in_scope_review_rate"] == 0.2
    assert summary["oos_texts"] == 4 and summary["in_scope_texts"] == 5
    assert summary["oos_auroc"] == pytest.approx(16 / 20)  # pairs (oos, in-scope) with oos less confident
    assert qm.auroc([0.1, 0.2], [0.8, 0.9]) == 1.0 and qm.auroc([0.8, 0.9], [0.1, 0.2]) == 0.0
    assert qm.review_summary([], [0.9], 0.5)["oos_recall"] is None


def test_benign_false_positive_rate_reads_the_benign_row_of_the_confusion_matrix() -> None:
    assert qm.benign_fpr([[45, 5], [2, 48]], ["benign", "jailbreak"]) == 0.1
    assert qm.benign_fpr([[48, 2], [5, 45]], ["jailbreak", "benign"]) == 0.1
    assert qm.benign_fpr([[1, 0], [0, 1]], ["a", "b"]) is None
    assert qm.benign_fpr([[0, 0], [0, 3]], ["benign", "jailbreak"]) is None


def row(dataset: str, mode: str, headline: float | None, status: str = "ok",
        metric: str = "accuracy") -> dict[str, Any]:
    return {"dataset": dataset, "mode": mode, "metric": metric, "status": status, "headline": headline,
            "validation": headline, "test": headline, "trainable_percent": 1.23, "train_seconds": 12.0,
            "peak_rss_mb": 900.0, "verify_ok": status == "ok", "extras": {}}


def rows_and_checks() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = [row("banking77", "lora", 0.915), row("banking77", "full", 0.93), row("clinc150", "lora", 0.96),
            row("clinc150", "full", 0.955), row("wnut17", "lora", 0.41, metric="entity_f1"),
            row("stsb", "lora", 0.86, metric="spearman"), row("stsb", "full", None, status="not supported"),
            row("jailbreak_classification", "lora", None, status="failed")]
    rows[-2]["reason"] = qd.NO_FULL_GENERATIVE
    rows[-1] |= {"error": "lorakit train exited 1: boom\nTraceback...", "log": "/tmp/x.log"}
    rows[2]["extras"] = {"oos_recall": 0.75, "review_threshold": 0.7, "in_scope_review_rate": 0.04}
    qm.add_gaps(rows)
    checks = qm.evaluate_targets(rows, {name: spec.target for name, spec in qd.DATASETS.items()},
                                 {name: spec.judged_on for name, spec in qd.DATASETS.items()})
    return rows, checks


def test_a_qlora_row_gets_its_gap_to_full_fine_tuning_too() -> None:
    rows = [row("banking77", "full", 0.93), row("banking77", "qlora", 0.915), row("banking77", "lora", 0.925)]
    qm.add_gaps(rows)
    assert [r.get("gap_points") for r in rows] == [None, -1.5, -0.5]


def test_targets_and_gaps_are_judged_per_row_and_per_dataset() -> None:
    rows, checks = rows_and_checks()
    assert rows[0]["gap_points"] == -1.5 and rows[2]["gap_points"] == 0.5 and rows[5]["gap_points"] is None
    by_key = {(c["dataset"], c["mode"], c["check"]): c for c in checks}
    assert by_key[("banking77", "lora", "accuracy (test) >= 0.92")]["met"] is False
    assert by_key[("banking77", "lora", "accuracy (test) >= 0.92")]["margin_points"] == -0.5
    assert by_key[("banking77", "full", "accuracy (test) >= 0.92")]["met"] is True
    assert by_key[("banking77", "lora", "LoRA within 1 point of full")] | {} == {
        "dataset": "banking77", "mode": "lora", "check": "LoRA within 1 point of full", "value": -1.5,
        "target": -1.0, "met": False, "margin_points": -0.5}
    assert by_key[("clinc150", "lora", "LoRA within 1 point of full")]["met"] is True
    assert by_key[("stsb", "lora", "spearman (dev) >= 0.85")]["met"] is True
    assert not any(c["dataset"] in ("wnut17", "jailbreak_classification") for c in checks)  # no target / failed
    assert qm.gap_points(0.9, float("nan")) is None and qm.gap_points(0.9012, 0.9) == 0.12


def test_table_and_markdown_report_show_every_row_target_and_failure(tmp_path: Path) -> None:
    rows, checks = rows_and_checks()
    printed = quality_report.table(rows)
    assert "banking77" in printed and "-1.50" in printed and "oos_recall=0.750" in printed
    assert "not supported" in printed and "failed" in printed
    assert "MISSED banking77 lora: LoRA within 1 point of full" in quality_report.targets_text(checks)
    plots = quality_report.write_plots(tmp_path, rows)
    assert [Path(p).name for p in plots] == ["quality_metric.png", "quality_cost.png"]
    assert all(imread(p).shape[1] > 500 for p in plots)
    path = quality_report.write_markdown(tmp_path / "out" / "quality.md", rows, checks,
                                         {"quick": True, "commit": "abc"}, {"clinc150": ["18000 in-scope rows"]}, plots)
    text = path.read_text("utf-8")
    assert "Quick smoke run" in text and "- commit: abc" in text and "## Results" in text
    assert "| banking77 | lora | LoRA within 1 point of full | -1.5 | MISSED | -0.50 |" in text
    assert "- 18000 in-scope rows" in text and qd.NO_FULL_GENERATIVE in text
    assert "FAILED (log: `/tmp/x.log`)" in text and "lorakit train exited 1: boom" in text
    assert "![quality_metric](quality_metric.png)" in text


def test_train_command_adds_only_the_knobs_set_and_one_epoch_when_quick(tmp_path: Path) -> None:
    spec, prepared = qd.DATASETS["banking77"], qd.Prepared(tmp_path / "t.csv", ["--label-column", "category"])
    command = quality_runs.train_command(spec, prepared, "full", tmp_path / "m", {"r": None, "epochs": None}, True)
    assert command == ["lorakit.cli", "train", "--task", "sequence-classification", "--data", str(tmp_path / "t.csv"),
                           "--label-column", "category", "--output", str(tmp_path / "m"), "--full", "--epochs", "1.0",
                           "--max-seq-len", "64"]
    lora = quality_runs.train_command(spec, prepared, "lora", tmp_path / "m",
                                      {"epochs": 5.0, "target_modules": ["query", "value"], "r": 4}, True)
    assert lora[-8:] == ["--epochs", "5.0", "--target-modules", "query,value", "--r", "4", "--max-seq-len", "64"]
    assert "--full" not in lora
    qlora = quality_runs.train_command(spec, prepared, "qlora", tmp_path / "m", {"epochs": None}, False)
    assert qlora[-4:] == ["--output", str(tmp_path / "m"), "--quantize", "4bit"] and "--full" not in qlora
    generative = quality_runs.train_command(qd.DATASETS["mmlu_pro_generative"], prepared, "lora", tmp_path / "m",
                                            {"max_seq_len": None}, True)
    assert generative[-4:] == ["--epochs", "1.0", "--max-document-tokens", "64"]
    assert quality_runs.train_command(spec, prepared, "lora", tmp_path / "m", {"epochs": None}, False)[-2:] == [
        "--output", str(tmp_path / "m")]


def test_peak_memory_is_each_child_process_own(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text("x = bytearray(300 * 2**20)\nx[::4096] = b'1' * len(x[::4096])\n"
                                     "print('done')\n")
    (tmp_path / "small.py").write_text("import sys\nprint(sys.argv[1:])\nraise SystemExit(3)\n")
    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"1" * len(ballast[::4096])  # this process is now larger than either child
    big = quality_runs.run_measured([str(tmp_path / "big.py")], tmp_path / "big.log")
    small = quality_runs.run_measured([str(tmp_path / "small.py"), "a", "b"], tmp_path / "small.log")
    assert big.returncode == 0 and 300 < big.peak_rss_mb < 400 and big.peak_source == "VmHWM"
    assert (tmp_path / "big.log").read_text() == "done\n"
    assert small.returncode == 3 and small.peak_rss_mb < 100 and small.peak_source == "VmHWM"
    assert (tmp_path / "small.log").read_text() == "['a', 'b']\n"
    del ballast


def test_a_failed_training_is_a_row_with_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys\nprint('loading')\nsys.exit('error: no such column')\n")

    def failing(*args: Any) -> list[str]:
        return [str(script)]

    monkeypatch.setattr(quality_runs, "train_command", failing)
    spec = qd.DATASETS["banking77"]
    result = quality_runs.run_one(spec, qd.Prepared(tmp_path / "t.csv", []), "lora", tmp_path, {}, True)
    assert result["status"] == "failed" and result["peak_rss_mb"] > 0
    assert result["error"].startswith("lorakit train exited 1: error: no such column\nloading")


def test_read_back_takes_metrics_and_training_figures_from_the_model_directory(tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    confusion = [[18, 2], [1, 19]]
    metrics = {"validation": {"n": 40, "accuracy": 0.9, "macro_f1": 0.89},
               "test": {"n": 40, "accuracy": 0.925, "macro_f1": 0.92, "confusion_matrix": confusion, "ece": 0.03,
                        "calibration": {"coverage": 0.8, "accuracy_at_threshold": 0.97}},
               "training": {"trainable_percent": 1.5, "trainable_params": 300, "total_params": 20000,
                            "train_seconds": 4.5, "epochs": 1.0, "train_examples": 160},
               "data": {"labels": ["benign", "jailbreak"]}}
    (report / "metrics.json").write_text(json.dumps(metrics), "utf-8")
    result = quality_runs.read_back(qd.DATASETS["jailbreak_classification"], tmp_path)
    assert (result["validation"], result["test"], result["headline"]) == (0.9, 0.925, 0.925)
    assert result["trainable_percent"] == 1.5 and result["train_seconds"] == 4.5
    assert result["extras"] == {"validation_macro_f1": 0.89, "test_macro_f1": 0.92, "test_ece": 0.03,
                                "test_review_coverage": 0.8, "test_accuracy_at_threshold": 0.97, "benign_fpr": 0.1}


def test_merge_combines_earlier_runs_into_one_table_with_gaps_and_targets(data_root: Path, tmp_path: Path) -> None:
    def run_file(name: str, rows: list[dict[str, Any]]) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({"meta": {"date": name, "commit": "abc", "command": "c", "quick": False},
                                    "rows": rows, "targets": []}))
        return path

    first = run_file("a.json", [row("clinc150", "full", 0.96), row("banking77", "lora", 0.90)])
    second = run_file("b.json", [row("banking77", "lora", 0.925), row("banking77", "full", 0.93)])
    out, report = tmp_path / "merged.json", tmp_path / "report"
    assert bench_quality.main(["--merge", str(first), str(second), "--data-root", str(data_root), "--json", str(out),
                               "--report", str(report)]) == 0
    merged = json.loads(out.read_text("utf-8"))
    assert [(r["dataset"], r["mode"], r["headline"]) for r in merged["rows"]] == [
        ("banking77", "lora", 0.925), ("banking77", "full", 0.93), ("clinc150", "full", 0.96)]
    assert merged["rows"][0]["gap_points"] == -0.5
    assert {(c["dataset"], c["met"]) for c in merged["targets"]} >= {("banking77", True), ("clinc150", True)}
    assert [run["file"] for run in merged["meta"]["merged_runs"]] == [str(first), str(second)]
    markdown = (report / "quality.md").read_text("utf-8")
    assert f"merged from `{second}`" in markdown and "LoRA within 1 point of full" in markdown
    broken = run_file("broken.json", [])
    broken.write_text("{}")
    with pytest.raises(SystemExit, match="not a bench_quality --json file"):
        bench_quality.main(["--merge", str(broken)])


def test_dry_run_converts_every_dataset_and_prints_the_commands(data_root: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    assert bench_quality.main(["--dry-run", "--quick", "--data-root", str(data_root), "--work", str(work),
                               "--epochs", "2", "--full-learning-rate", "1e-5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    commands = [line for line in lines if line.startswith("lorakit train")]
    assert len(commands) == 2 * len(qd.select(None, quick=True))  # LoRA and full for each quick dataset
    assert any("stsb_full --full" in line for line in commands) and "not supported" not in "\n".join(lines)
    full = next(line for line in commands if "banking77_full" in line)
    assert full.endswith("--full --epochs 2.0 --max-seq-len 64 --learning-rate 1e-05")
    assert "--learning-rate" not in next(line for line in commands if "banking77_lora" in line)
    assert {path.name for path in (work / "data").iterdir()} >= {"clinc150_oos.jsonl", "stsb_dev.csv",
                                                                  "wnut17_dev.conll", "presidio_held_out.jsonl"}


def test_bad_arguments_and_missing_folders_are_one_line_errors(data_root: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as bad:
        bench_quality.main(["--datasets", "imdb"])
    assert bad.value.code == 2 and "unknown dataset(s) imdb" in capsys.readouterr().err
    with pytest.raises(SystemExit) as mode:
        bench_quality.main(["--modes", "lora,int8"])
    assert mode.value.code == 2
    with pytest.raises(SystemExit, match="dataset folder not found"):
        bench_quality.main(["--dry-run", "--data-root", str(tmp_path / "nowhere"), "--datasets", "stsb"])


def test_sweep_parses_ranks_and_target_sets_and_scales_alpha() -> None:
    args = sweep_lora.parse_args([])
    assert args.rank_list == [4, 8, 16, 32]
    assert args.target_sets == [["query", "key", "value"], ["query", "key", "value", "dense"]]
    assert sweep_lora.alpha_for(args, 32) is None  # lorakit's default alpha
    assert sweep_lora.alpha_for(sweep_lora.parse_args(["--alpha-per-rank", "2"]), 16) == 32
    with pytest.raises(SystemExit):
        sweep_lora.parse_args(["--ranks", "4,x"])


def test_sweep_table_and_plot(tmp_path: Path) -> None:
    rows = [row("banking77", "lora", 0.8 + rank / 1000) | {"r": rank, "targets": targets,
                                                           "trainable_params": rank * size, "extras": {}}
            for targets, size in (("query,key,value", 1000), ("query,key,value,dense", 3000)) for rank in (4, 8)]
    rows[0] |= {"status": "failed", "error": "lorakit train exited 1: boom"}
    printed = sweep_lora.table(rows)
    assert "query,key,value,dense" in printed and "24,000" in printed and "failed: lorakit train exited 1" in printed
    path = sweep_lora.plot(rows, tmp_path / "sweep.png", quick=True)
    assert imread(path).shape[1] > 500


def fake_clinc_model(tmp_path: Path, calibration: dict[str, Any] | None) -> tuple[qd.Prepared, Path]:
    make_clinc(tmp_path / "clinc150")
    prepared = qd.prepare_clinc150(tmp_path / "clinc150", tmp_path / "work", quick=False)
    model = tmp_path / "model"
    (model / "report").mkdir(parents=True)
    (model / "lorakit.json").write_text(json.dumps({"task": "sequence_classification"}
                                                   | ({"calibration": calibration} if calibration else {})), "utf-8")
    (model / "report" / "split.json").write_text(json.dumps({"train": [], "validation": [], "test": [0, 7, 35]}))
    return prepared, model


def test_the_strict_threshold_is_lorakits_own_choice_on_the_validation_probabilities(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from lorakit import inference
    from lorakit.calibration import choose_threshold

    (tmp_path / "lorakit.json").write_text(json.dumps({"labels": ["a", "b"]}), "utf-8")
    rows = [{"text": f"t{i}", "label": label} for i, label in enumerate("aabbbaab")]
    top = [0.99, 0.97, 0.95, 0.9, 0.8, 0.7, 0.6, 0.55]  # the top label is "a" for every text
    monkeypatch.setattr(inference, "predict", lambda output, texts, backend, top_k: [
        {"top": [{"label": "b", "probability": 1 - p}, {"label": "a", "probability": p}]} for p in top])
    probabilities = np.array([[p, 1 - p] for p in top])
    expected = choose_threshold(probabilities, [0 if r["label"] == "a" else 1 for r in rows], 0.99).threshold
    assert quality_runs.strict_threshold(tmp_path, rows, "text", "label") == expected == 0.97


def test_out_of_scope_check_scores_the_oos_texts_and_the_in_scope_test_part(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    prepared, model = fake_clinc_model(tmp_path, {"temperature": 1.2, "review_threshold": 0.6})
    seen: list[list[str]] = []
    confidence = {"oos train 0": 0.2, "oos train 1": 0.9, "oos train 2": 0.5, "oos val 0": 0.59, "oos val 1": 0.61,
                  "in 0 0": 0.95, "in 1 2": 0.3, "val 5": 0.99}

    def top(output: Path, texts: list[str]) -> tuple[list[float], list[bool] | None]:
        assert output == model
        seen.append(texts)
        return [confidence[text] for text in texts], None

    monkeypatch.setattr(quality_runs, "top_probabilities", top)
    monkeypatch.setattr(quality_runs, "strict_threshold", lambda *args: 0.55)
    result = quality_runs.out_of_scope(prepared, model, fallback=0.1)
    assert seen[1] == ["in 0 0", "in 1 2", "val 5"]  # rows 0, 7 and 35 of the in-scope CSV
    assert result["review_threshold"] == 0.6 and result["threshold_source"].startswith("lorakit.json")
    assert result["oos_recall"] == 3 / 5 and result["in_scope_review_rate"] == 1 / 3
    assert result["strict_review_threshold"] == 0.55 and result["strict_oos_recall"] == 2 / 5
    assert result["strict_in_scope_review_rate"] == 1 / 3

    def flagged(output: Path, texts: list[str]) -> tuple[list[float], list[bool] | None]:
        return [confidence[text] for text in texts], [text.startswith("oos") for text in texts]

    monkeypatch.setattr(quality_runs, "top_probabilities", flagged)
    runtime = quality_runs.out_of_scope(prepared, model, fallback=0.1)
    assert runtime["oos_recall"] == 1.0 and runtime["in_scope_review_rate"] == 0.0
    assert "needs_review" in runtime["threshold_source"]
    prepared, model = fake_clinc_model(tmp_path / "uncalibrated", None)
    monkeypatch.setattr(quality_runs, "top_probabilities", top)
    assert quality_runs.out_of_scope(prepared, model, fallback=0.55)["oos_recall"] == 2 / 5
