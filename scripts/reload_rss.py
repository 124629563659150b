"""RSS of lorakit-router across 50 SIGHUP reloads: runs the Go test that bounds it and plots its curve.

Usage: reload_rss.py [--out DIR]   (writes DIR/reload_rss.csv and DIR/reload_rss.png; default target/reload_rss)
Needs `make ffi fixtures`; the MiniLM fixture is used when it was built (make_fixtures.py --with-minilm).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "target" / "reload_rss")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "reload_rss.csv"
    env = dict(
        os.environ, LORAKIT_RSS_CSV=str(table), CGO_ENABLED="1", PKG_CONFIG_PATH=str(REPO / "target" / "pkgconfig")
    )
    env.setdefault("LORAKIT_FIXTURES", str(REPO / ".fixtures"))
    test = subprocess.run(
        ["go", "test", "-count=1", "-run", "TestRSSBoundedAcrossReloads", "-v", "./cmd/lorakit-router/"],
        cwd=REPO / "go",
        env=env,
    )
    if not table.exists():
        print(f"the test wrote no {table}: it failed before the last reload", file=sys.stderr)
        return test.returncode or 1
    with table.open() as f:
        rows = [(int(r["reload"]), int(r["rss_kib"]) / 1024) for r in csv.DictReader(f)]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r for r, _ in rows], [mb for _, mb in rows], marker=".")
    ax.set_xlabel("SIGHUP reloads")
    ax.set_ylabel("router RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("lorakit-router RSS across reloads")
    fig.tight_layout()
    fig.savefig(args.out / "reload_rss.png", dpi=100)
    print(
        f"{table}: start {rows[0][1]:.0f} MiB, reload 5 {rows[5][1]:.0f} MiB, "
        f"reload {rows[-1][0]} {rows[-1][1]:.0f} MiB; plot {args.out / 'reload_rss.png'}"
    )
    return test.returncode


if __name__ == "__main__":
    sys.exit(main())
