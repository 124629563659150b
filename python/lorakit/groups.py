"""Metrics per group (the `--group-column` values, e.g. template_id): which groups a model gets wrong.

Label metrics use scikit-learn's defaults: macro-F1 over the labels present in the group (true or predicted),
so a group holding two labels is not averaged with zeros for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def label_macro_f1(true_ids: Sequence[int], pred_ids: Sequence[int]) -> float:
    """Macro-F1 over the labels present in y_true or y_pred (scikit-learn's default label set)."""
    from sklearn.metrics import f1_score

    if not len(true_ids):
        return float("nan")
    return float(f1_score(list(true_ids), list(pred_ids), average="macro", zero_division=0))


def by_group(groups: Sequence[str | None]) -> dict[str, list[int]]:
    """Positions of each group, groups sorted by name; rows without a group are left out."""
    positions: dict[str, list[int]] = {}
    for position, group in enumerate(groups):
        if group is not None:
            positions.setdefault(str(group), []).append(position)
    return dict(sorted(positions.items()))


def label_group_metrics(groups: Sequence[str | None], true_ids: Sequence[int],
                        pred_ids: Sequence[int]) -> dict[str, dict[str, Any]]:
    """{group: {n, accuracy, macro_f1}} of one evaluated part ({} when no row has a group)."""
    from sklearn.metrics import accuracy_score

    result = {}
    for group, positions in by_group(groups).items():
        truth, predicted = [true_ids[i] for i in positions], [pred_ids[i] for i in positions]
        result[group] = {"n": len(positions), "accuracy": float(accuracy_score(truth, predicted)),
                         "macro_f1": label_macro_f1(truth, predicted)}
    return result


def with_label_groups(metrics: dict[str, Any], logits: Any, dataset: Any, examples: Sequence[Any]) -> dict[str, Any]:
    """`metrics` of `examples` plus `groups` (per group: n, accuracy, macro-F1) from their logits [N, C], when the
    rows have groups."""
    if not examples:
        return metrics
    groups = label_group_metrics([example.group for example in examples], dataset.label_ids(examples),
                                 logits.argmax(axis=1).tolist())
    return metrics | ({"groups": groups} if groups else {})


def confusion_pairs(confusion: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """(true ids, predicted ids) rebuilt from a confusion matrix (rows true, columns predicted)."""
    truth: list[int] = []
    predicted: list[int] = []
    for true_id, row in enumerate(confusion):
        for pred_id, count in enumerate(row):
            truth += [true_id] * int(count)
            predicted += [pred_id] * int(count)
    return truth, predicted


def token_group_metrics(tokenizer: Any, examples: Sequence[Any], labels: Sequence[str], max_seq_len: int,
                        entities: Sequence[Any], logits: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """{group: {n, entity_f1, precision, recall}} of token classification predictions already made."""
    from .entities import token_metrics

    result = {}
    for group, positions in by_group([example.group for example in examples]).items():
        metrics = token_metrics(tokenizer, [examples[i] for i in positions], labels, max_seq_len,
                                [entities[i] for i in positions], [logits[i] for i in positions])
        result[group] = {key: metrics[key] for key in ("n", "entity_f1", "precision", "recall")}
    return result
