"""What `lorakit train` prints when its output goes to a file or a pipe: plain lines (no progress-bar carriage
returns or cursor escapes), the launch, and the top confusions that report/metrics.json also lists."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from lorakit.confusions import top_confusions

from conftest import ROOT, write_labelled_csv


def test_captured_training_output_is_plain_lines(fixtures_dir: Path, tmp_path: Path) -> None:
    data = write_labelled_csv(tmp_path / "data.csv", rows=60)
    model = tmp_path / "model"
    env = os.environ | {"PYTHONPATH": str(ROOT / "python"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "lorakit.cli", "train", "--data", str(data), "--base",
         str(fixtures_dir / "tiny_bert_base"), "--output", str(model), "--epochs", "2", "--batch-size", "4",
         "--max-seq-len", "16", "--learning-rate", "5e-3"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stream in (proc.stdout, proc.stderr):
        assert "\r" not in stream and "\x1b[" not in stream, stream[-2000:]
    # progress survives as periodic lines: training losses and each epoch's validation metrics
    steps = re.findall(r"^step (\d+)/(\d+) epoch ([\d.]+): (.*)$", proc.stderr, flags=re.MULTILINE)
    assert len({line[3].startswith("eval_loss") for line in steps}) == 2
    assert int(steps[-1][0]) == int(steps[-1][1]) == 24  # 48 training rows / 4 per step x 2 epochs
    assert "on 1 process; effective batch 4 = 4 per process x 1 x 1 accumulated" in proc.stdout

    metrics = json.loads((model / "report" / "metrics.json").read_text("utf-8"))
    labels = metrics["data"]["labels"]
    listed = metrics["test"]["top_confusions"]
    assert listed == top_confusions(metrics["test"]["confusion_matrix"], labels)
    printed = proc.stdout.split("top confusions (test, true -> predicted):\n")[1].split("\nvalidation ")[0]
    assert len(printed.splitlines()) == max(1, len(listed))
    for item, line in zip(listed, printed.splitlines(), strict=False):
        assert line.split()[:4] == [item["true"], "->", item["predicted"], str(item["count"])]
