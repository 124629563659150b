"""The accuracy gate: `--min-metric NAME=VALUE` refuses to publish a model whose metrics fall below a floor.

A gate names a metric of one evaluated part of the run: the test part by default, `validation.NAME` for the
validation part. The pipelines call `enforce_gates(metrics)` right before they export; a model below its gate
raises GateError (exit code 3) and nothing is written to the output. A model that passes records its gates and
their values in lorakit.json `metrics.gate`, which `lorakit retrain` applies again.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LorakitError
from .manifest import EMBEDDING, GENERATIVE, SEQUENCE, TOKEN

GATE_EXIT_CODE = 3
GATE_PARTS = ("test", "validation")
TASK_METRICS = {SEQUENCE: ("accuracy", "macro_f1"), TOKEN: ("entity_f1",), EMBEDDING: ("spearman",),
                GENERATIVE: ("accuracy", "macro_f1")}
METRIC_RANGES = {"accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0), "entity_f1": (0.0, 1.0), "spearman": (-1.0, 1.0)}
HELP = ("refuse the model unless METRIC >= VALUE (repeatable): accuracy, macro_f1 (sequence classification; "
        "generative: accuracy, macro_f1), entity_f1 (token classification), spearman (embedding), on the run's "
        "TEST part (validation.METRIC for the validation part). Below the gate: exit code 3, nothing written to "
        "--output (an existing model there stays as it was); the training checkpoint stays for inspection")


class GateError(LorakitError):
    """The model's metrics are below a --min-metric gate; nothing was published."""

    exit_code = GATE_EXIT_CODE


@dataclass(frozen=True)
class Gate:
    part: str
    metric: str
    minimum: float

    @property
    def name(self) -> str:
        return f"{self.part}.{self.metric}"

    @property
    def spec(self) -> str:
        return f"{self.name}={self.minimum:g}"

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.name, "minimum": self.minimum}


def parse_gate(spec: str) -> Gate:
    """`[PART.]METRIC=VALUE` as argparse's `type`: a malformed one is a usage error (exit 2) before any work."""
    name, equals, value = spec.partition("=")
    part, dot, metric = name.strip().rpartition(".")
    part = part if dot else "test"
    if not equals or not metric:
        raise argparse.ArgumentTypeError(f"{spec!r}: write METRIC=VALUE, e.g. accuracy=0.9 or validation.macro_f1=0.85")
    if part not in GATE_PARTS:
        raise argparse.ArgumentTypeError(f"{spec!r}: part {part!r} is not one of {', '.join(GATE_PARTS)}")
    if metric not in METRIC_RANGES:
        raise argparse.ArgumentTypeError(f"{spec!r}: unknown metric {metric!r} (choose from "
                                         f"{', '.join(METRIC_RANGES)})")
    try:
        minimum = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: {value!r} is not a number") from None
    low, high = METRIC_RANGES[metric]
    if not (math.isfinite(minimum) and low <= minimum <= high):
        raise argparse.ArgumentTypeError(f"{spec!r}: {metric} lies in [{low:g}, {high:g}]; {value!r} is not there")
    return Gate(part, metric, minimum)


def check_gates(gates: Sequence[Gate], task: str) -> None:
    """Every gate names a metric the task reports, once; raised before training or export starts (exit 2)."""
    known = TASK_METRICS.get(task, ())
    seen: set[str] = set()
    for gate in gates:
        if gate.metric not in known:
            raise LorakitError(f"--min-metric {gate.spec}: {task} models report {', '.join(known) or 'no gated metric'}"
                               f", not {gate.metric}")
        if gate.name in seen:
            raise LorakitError(f"--min-metric {gate.name} is given twice; keep one")
        seen.add(gate.name)


ACTIVE: ContextVar[tuple[Gate, ...]] = ContextVar("lorakit_gates", default=())


@contextmanager
def required(gates: Sequence[Gate]) -> Iterator[None]:
    """The gates that `enforce_gates` applies to every export within the block (the CLI sets them)."""
    token = ACTIVE.set(tuple(gates))
    try:
        yield
    finally:
        ACTIVE.reset(token)


@contextmanager
def gated(gates: Sequence[Gate], output: Path, checkpoint: Path | None = None) -> Iterator[None]:
    """Train or export into `output` under `gates`; a refusal says that nothing was written there and where the
    training checkpoint stays."""
    with required(gates):
        try:
            yield
        except GateError as exc:
            kept = f"; the training checkpoint stays in {Path(checkpoint).absolute()}" if checkpoint else ""
            raise GateError(f"{exc}; nothing written to {Path(output).absolute()}{kept}") from None


def enforce_gates(metrics: dict[str, Any]) -> None:
    """Raise GateError naming each metric below its gate; otherwise record the gates in `metrics["gate"]`.

    `metrics` holds each evaluated part's headline metrics ({"test": {...}, "validation": {...}}); a gated metric
    the run did not compute is a LorakitError (exit 2), one that is n/a (NaN, None) fails the gate."""
    gates = ACTIVE.get()
    if not gates:
        return
    passed, failed = [], []
    for gate in gates:
        part = metrics.get(gate.part)
        if not isinstance(part, dict) or gate.metric not in part:
            raise LorakitError(f"--min-metric {gate.spec}: this run has no {gate.name} to check (the weights were "
                               "not evaluated); export the run's best weights or drop --min-metric")
        value = part[gate.metric]
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            failed.append(f"{gate.name} is n/a, gate {gate.minimum:g}")
        elif value < gate.minimum:
            failed.append(f"{gate.name} {value:.4f} is below the gate {gate.minimum:g}")
        else:
            passed.append(gate.to_json() | {"value": float(value)})
    if failed:
        raise GateError("model refused by --min-metric: " + "; ".join(failed))
    metrics["gate"] = passed


def gate_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per gate a published model passed."""
    return [f"gate passed: {entry['metric']} {entry['value']:.4f} >= {entry['minimum']:g}"
            for entry in metrics.get("gate") or []]


def stored_gates(metrics: dict[str, Any]) -> tuple[Gate, ...]:
    """The gates a model directory passed when it was published (lorakit.json `metrics.gate`)."""
    gates = []
    for entry in metrics.get("gate") or []:
        try:
            gates.append(parse_gate(f"{entry['metric']}={entry['minimum']}"))
        except (KeyError, TypeError, argparse.ArgumentTypeError) as exc:
            raise LorakitError(f"lorakit.json metrics.gate holds an unreadable gate {entry!r} ({exc}); give "
                               "--min-metric explicitly") from None
    return tuple(gates)


def check_export_gates(gates: Sequence[Gate], checkpoint: Path) -> None:
    """`lorakit export --min-metric`: the run's task reports the metrics, and the weights are the evaluated ones
    (only a run's best weights have metrics); refused before any weights load."""
    if not gates:
        return
    from .pipeline import RUN_FILE, find_run, read_run

    run_dir, weights = find_run(checkpoint)
    check_gates(gates, read_run(run_dir / RUN_FILE)["config"].task)
    if weights != run_dir / "best":
        raise LorakitError(f"--min-metric: {weights.name} was never evaluated (only the run's best weights have "
                           f"metrics); export {run_dir} or drop --min-metric")
