"""The quality benchmark's outputs: the printed table, DIR/quality.md and its PNG plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quality_datasets import DATASETS
from quality_metrics import status_word

EXTRAS = (("oos_recall", "oos_recall"), ("in_scope_review_rate", "in_review"), ("oos_auroc", "oos_auroc"),
          ("strict_oos_recall", "oos_recall@p.99"), ("strict_in_scope_review_rate", "in_review@p.99"),
          ("benign_fpr", "benign_fpr"), ("dev_macro_f1", "dev_macro_f1"), ("dev_entity_f1", "dev_f1"),
          ("dev_spearman", "dev_spearman"),
          ("test_ece", "ece"), ("test_review_coverage", "coverage"))
MODE_COLOURS = {"lora": "#1f77b4", "full": "#ff7f0e", "qlora": "#2ca02c", "weighted": "#9467bd"}


def number(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def extras_text(row: dict[str, Any]) -> str:
    extras = row.get("extras") or {}
    shown = [f"{short}={number(extras[key], 3)}" for key, short in EXTRAS if extras.get(key) is not None]
    if extras.get("review_threshold") is not None:
        shown.append(f"threshold={extras['review_threshold']:g}")
    return " ".join(shown)


def verify_text(row: dict[str, Any]) -> str:
    return "-" if row.get("verify_ok") is None else "PASS" if row["verify_ok"] else "FAIL"


def gap_text(row: dict[str, Any]) -> str:
    gap = row.get("gap_points")
    return "-" if gap is None else f"{gap:+.2f}"


def cells(row: dict[str, Any]) -> list[str]:
    if row["status"] != "ok":
        return [row["dataset"], row["mode"], row["metric"], row["status"], "", "", "", "", "", "", "", ""]
    return [row["dataset"], row["mode"], row["metric"], number(row["validation"]), number(row["test"]),
            number(row["headline"]), number(row.get("trainable_percent"), 2), number(row.get("train_seconds"), 1),
            number(row.get("peak_rss_mb"), 0), verify_text(row), gap_text(row), extras_text(row)]


HEADER = ["dataset", "mode", "metric", "validation", "test", "judged", "trainable %", "train s", "peak RSS MB",
          "verify", "gap pts", "extras"]


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Fixed-width table for the terminal: one line per (dataset, mode)."""
    body = [cells(row) for row in rows]
    widths = [max(len(HEADER[i]), *(len(line[i]) for line in body)) for i in range(len(HEADER) - 1)]
    lines = ["  ".join(f"{HEADER[i]:<{widths[i]}}" for i in range(len(widths))) + "  " + HEADER[-1]]
    lines.append("-" * len(lines[0]))
    for line in body:
        lines.append("  ".join(f"{line[i]:<{widths[i]}}" for i in range(len(widths))) + "  " + line[-1])
    return "\n".join(lines)


def targets_text(checks: Sequence[dict[str, Any]]) -> str:
    if not checks:
        return "targets: none evaluated"
    lines = ["targets:"]
    for check in checks:
        lines.append(f"  {status_word(check['met']):<6} {check['dataset']} {check['mode']}: {check['check']}: "
                     f"{check['value']:.4g} (margin {check['margin_points']:+.2f} points)")
    return "\n".join(lines)


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    escape = [[cell.replace("|", "\\|") for cell in line] for line in body]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(line) + " |" for line in escape)])


def notes(rows: Sequence[dict[str, Any]], prepared_notes: dict[str, list[str]]) -> list[str]:
    lines: list[str] = []
    for name in dict.fromkeys(row["dataset"] for row in rows):
        spec = DATASETS[name]
        lines += [f"### {name}", "", f"- {spec.description}; task `{spec.task}`, metric `{spec.metric}` judged on "
                  f"the {'test part of the split' if spec.judged_on == 'test' else 'dataset dev file'}"
                  + (f", target >= {spec.target:g}" if spec.target is not None else ", no target") + "."]
        lines += [f"- {note}" for note in prepared_notes.get(name, [])]
        for row in rows:
            if row["dataset"] != name:
                continue
            if row["status"] == "not supported":
                lines.append(f"- {row['mode']}: not supported: {row['reason']}.")
            elif row["status"] == "failed":
                lines.append(f"- {row['mode']}: FAILED (log: `{row.get('log', '-')}`):")
                lines += ["", "```", str(row.get("error", "")), "```", ""]
            elif row.get("command"):
                lines.append(f"- {row['mode']}: `{row['command']}`")
        lines.append("")
    return lines


def write_markdown(path: Path, rows: Sequence[dict[str, Any]], checks: Sequence[dict[str, Any]],
                   meta: dict[str, Any], prepared_notes: dict[str, list[str]], plots: Sequence[str]) -> Path:
    lines = ["# lorakit quality benchmark", ""]
    if meta.get("quick"):
        lines += ["> **Quick smoke run** (tiny subsets, one short epoch): these numbers check that the benchmark "
                  "runs; they say nothing about quality.", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items() if key not in ("quick", "merged_runs")]
    for run in meta.get("merged_runs", []):
        lines.append(f"- merged from `{run.get('file')}`: {run.get('date')}, commit {run.get('commit')}, "
                     f"`{run.get('command')}`")
    lines.append("")
    lines += ["## Results", "", markdown_table(HEADER, [cells(row) for row in rows]), ""]
    lines += ["`judged`: the value the target is checked on (the test part, or the dev file where the dataset has "
              "one); `gap pts`: LoRA (or QLoRA) minus full fine-tuning, in points; peak RSS is the training process's "
              "high-water mark.", ""]
    lines += ["## Targets", ""]
    if checks:
        lines.append(markdown_table(["dataset", "mode", "check", "value", "result", "margin (points)"],
                                    [[c["dataset"], c["mode"], c["check"], f"{c['value']:.4g}",
                                      status_word(c["met"]), f"{c['margin_points']:+.2f}"] for c in checks]))
    else:
        lines.append("No target could be evaluated (no successful run with a target).")
    lines += ["", "## Per-dataset notes", "", *notes(rows, prepared_notes)]
    if plots:
        lines += ["## Plots", "", *(f"![{Path(plot).stem}]({Path(plot).name})" for plot in plots), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), "utf-8")
    return path


def grouped_bars(axis: Any, rows: Sequence[dict[str, Any]], key: str, modes: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(row["dataset"] for row in rows))
    width = 0.8 / max(1, len(modes))
    for offset, mode in enumerate(modes):
        values = [next((r.get(key) for r in rows if r["dataset"] == n and r["mode"] == mode and r["status"] == "ok"),
                       None) for n in names]
        xs = [i + (offset - (len(modes) - 1) / 2) * width for i in range(len(names))]
        axis.bar(xs, [v or 0.0 for v in values], width, label=mode, color=MODE_COLOURS.get(mode))
        for x, value in zip(xs, values, strict=True):
            if value is None:
                axis.text(x, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    axis.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
    return names


def write_plots(directory: Path, rows: Sequence[dict[str, Any]]) -> list[str]:
    """quality_metric.png (judged value per dataset, LoRA vs full, targets marked) and quality_cost.png (train
    seconds and peak RSS)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [mode for mode in MODE_COLOURS if any(row["mode"] == mode for row in rows)]
    if not rows or not modes:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.2 * len({r["dataset"] for r in rows})), 4.5))
    names = grouped_bars(axis, rows, "headline", modes)
    for i, name in enumerate(names):
        target = DATASETS[name].target
        if target is not None:
            axis.hlines(target, i - 0.45, i + 0.45, colors="black", linestyles="dashed", linewidth=1)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("judged metric (accuracy, entity F1 or Spearman)")
    axis.set_title("LoRA vs full fine-tuning (dashed: target)")
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    metric_png = directory / "quality_metric.png"
    figure.savefig(metric_png, dpi=120)
    plt.close(figure)
    figure, axes = plt.subplots(1, 2, figsize=(max(9.0, 2.0 * len(names)), 4.5))
    for axis, key, label in ((axes[0], "train_seconds", "train seconds"), (axes[1], "peak_rss_mb", "peak RSS (MB)")):
        grouped_bars(axis, rows, key, modes)
        axis.set_ylabel(label)
        axis.legend()
    axes[0].set_title("Training time")
    axes[1].set_title("Training process peak memory")
    figure.tight_layout()
    cost_png = directory / "quality_cost.png"
    figure.savefig(cost_png, dpi=120)
    plt.close(figure)
    return [str(metric_png), str(cost_png)]
