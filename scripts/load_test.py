"""Bounded loopback load test of lorakit-router: mixed valid and invalid requests, SIGHUP reloads mid-run.

Usage: load_test.py [--duration 5m] [--concurrency 8] [--reloads 10] [--out DIR]
Builds lorakit-router and lorakit-loadtest (go/cmd), serves copies of the fixture models (the MiniLM one too
when it was built), and writes DIR/load_test.json and DIR/load_test.png (RSS and generation over time).
Exits 1 when a valid request failed or an invalid one got another status than documented.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = ["tiny_bert_base", "tiny_bert_lora_a", "tiny_bert_token_lora", "tiny_bert_embed_lora", "minilm_lora"]


def go_env() -> dict[str, str]:
    env = dict(os.environ, CGO_ENABLED="1", PKG_CONFIG_PATH=str(REPO / "target" / "pkgconfig"))
    env.setdefault("LORAKIT_FIXTURES", str(REPO / ".fixtures"))
    return env


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] for s in report["rss"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [s["rss_kib"] / 1024 for s in report["rss"]], label="RSS (MiB)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("router RSS (MiB)")
    ax.set_ylim(bottom=0)
    gen = ax.twinx()
    gen.step(t, [s["generation"] for s in report["rss"]], color="tab:orange", where="post", label="generation")
    gen.set_ylabel("generation (reloads + 1)")
    lat = report["valid_latency"]
    ax.set_title(
        f"{report['throughput_rps']:.0f} req/s, valid p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, "
        f"{report['valid_errors']} errors"
    )
    fig.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="5m", help="Go duration: 30s, 5m, ...")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "target" / "load_test")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = go_env()
    bins = args.out / "bin"
    for cmd in ("lorakit-router", "lorakit-loadtest"):
        subprocess.run(["go", "build", "-o", str(bins / cmd), f"./cmd/{cmd}"], cwd=REPO / "go", env=env, check=True)
    fixtures = Path(env["LORAKIT_FIXTURES"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        served = [name for name in FIXTURES if (fixtures / name).is_dir()]
        for name in served:
            shutil.copytree(fixtures / name, root / name)
        report_path = args.out / "load_test.json"
        env["TMPDIR"] = str(args.out)
        run = subprocess.run(
            [
                str(bins / "lorakit-loadtest"),
                f"--router={bins / 'lorakit-router'}",
                f"--models={root}",
                f"--duration={args.duration}",
                f"--concurrency={args.concurrency}",
                f"--reloads={args.reloads}",
                "--router-args=--predict-model tiny_bert_lora_a",
                f"--out={report_path}",
            ],
            env=env,
        )
        if not report_path.exists():
            return run.returncode or 1
    report = json.loads(report_path.read_text())
    plot(report, args.out / "load_test.png")
    print(f"models: {', '.join(served)}; report {report_path}, plot {args.out / 'load_test.png'}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
