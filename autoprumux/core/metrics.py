"""The metric a study judges its models by (``[study] metric``), computed from a confusion
matrix: ``confusion[gold][predicted]`` counts the examples of gold label ``gold`` predicted as
``predicted``. Every figure the search reads (the budget, the threshold, the surface, early
stopping) is in the study's metric; the records' ``accuracy`` field holds it.

The definitions are scikit-learn's (``accuracy_score``, ``f1_score`` with ``average="binary"``
or ``"macro"``, ``matthews_corrcoef``), with its ``zero_division=0`` convention: a class no
example is gold of and none is predicted as does not enter the macro average, and a ratio whose
denominator is 0 counts 0.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence


class Metric(enum.Enum):
    ACCURACY = "accuracy"
    F1 = "f1"  # binary: the F1 of one label, the positive one
    MACRO_F1 = "macro_f1"  # the unweighted mean of every label's F1
    MATTHEWS = "matthews"  # Matthews' correlation coefficient (Gorodkin's multi-class R_K)

    @property
    def lowest(self) -> float:
        """The worst value: Matthews' coefficient goes down to -1, the others to 0."""
        return -1.0 if self is Metric.MATTHEWS else 0.0

    def label(self, positive: str = "") -> str:
        """How reports and summaries name it: ``accuracy``, ``F1 of 'pos'``, ``macro-F1``,
        ``MCC``."""
        if self is Metric.F1:
            return f"F1 of {positive!r}" if positive else "F1"
        return {Metric.ACCURACY: "accuracy", Metric.MACRO_F1: "macro-F1", Metric.MATTHEWS: "MCC"}[
            self
        ]


Confusion = Sequence[Sequence[int]]


def score(metric: Metric, confusion: Confusion, positive: int = 1) -> float:
    """``metric`` of the predictions counted in ``confusion`` (``positive``: the label id whose
    F1 :attr:`Metric.F1` is)."""
    if metric is Metric.ACCURACY:
        total = sum(map(sum, confusion))
        return sum(confusion[k][k] for k in range(len(confusion))) / total if total else 0.0
    if metric is Metric.F1:
        return _f1(confusion, positive)
    if metric is Metric.MACRO_F1:
        present = [
            k for k in range(len(confusion)) if sum(confusion[k]) or sum(r[k] for r in confusion)
        ]
        return sum(_f1(confusion, k) for k in present) / len(present) if present else 0.0
    return _matthews(confusion)


def one_label_score(
    metric: Metric, gold_counts: Sequence[int], positive: int = 1
) -> tuple[float, int]:
    """The best ``metric`` of a model that predicts one label for every example of a split whose
    gold labels are counted in ``gold_counts`` (``[k]``: examples of label k), and that label:
    what a classifier that learned nothing scores (accuracy: the largest label's share; MCC:
    0)."""
    labels = range(len(gold_counts))
    scores = [
        (score(metric, [[n if p == k else 0 for p in labels] for n in gold_counts], positive), k)
        for k in labels
    ]
    return max(scores, key=lambda pair: pair[0])


def _f1(confusion: Confusion, label: int) -> float:
    hits = confusion[label][label]
    gold = sum(confusion[label])  # hits + misses
    predicted = sum(row[label] for row in confusion)  # hits + false alarms
    return 2 * hits / (gold + predicted) if gold + predicted else 0.0


def _matthews(confusion: Confusion) -> float:
    """R_K = (c·s − Σ p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)): c correct, s examples, t_k
    gold and p_k predicted counts of label k; 0 where a factor is 0 (one class only)."""
    labels = range(len(confusion))
    gold = [sum(confusion[k]) for k in labels]
    predicted = [sum(row[k] for row in confusion) for k in labels]
    correct, total = sum(confusion[k][k] for k in labels), sum(gold)
    covariance = correct * total - sum(p * t for p, t in zip(predicted, gold, strict=True))
    spread = (total**2 - sum(p * p for p in predicted)) * (total**2 - sum(t * t for t in gold))
    return covariance / math.sqrt(spread) if spread else 0.0
