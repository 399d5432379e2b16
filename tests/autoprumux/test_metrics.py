"""The study's metrics on hand-computed confusion matrices (scikit-learn's definitions:
``accuracy_score``, ``f1_score`` binary and macro with ``zero_division=0``,
``matthews_corrcoef``), and Matthews' coefficient against Gorodkin's R_K computed another way:
the covariance of the one-hot gold and predicted vectors, example by example."""

import math

import pytest

from autoprumux.core.metrics import Metric, one_label_score, score

# confusion[gold][predicted]: 6 gold 0 (5 right), 4 gold 1 (2 right); 7 predicted 0, 3 predicted 1
BINARY = [[5, 1], [2, 2]]
# 3 labels: gold counts 4, 4, 5 and predicted counts 4, 4, 5; 9 of 13 right
THREE = [[3, 1, 0], [1, 2, 1], [0, 1, 4]]


def gorodkin(confusion):
    """R_K as the correlation of one-hot vectors over the examples: cov(X, Y) /
    sqrt(cov(X, X) cov(Y, Y)), each cov summed over the labels (Gorodkin 2004, eq. 2)."""
    k = len(confusion)
    pairs = [(g, p) for g in range(k) for p in range(k) for _ in range(confusion[g][p])]
    gold = [[1.0 if g == label else 0.0 for label in range(k)] for g, _ in pairs]
    predicted = [[1.0 if p == label else 0.0 for label in range(k)] for _, p in pairs]

    def cov(a, b):
        means_a = [sum(row[j] for row in a) / len(a) for j in range(k)]
        means_b = [sum(row[j] for row in b) / len(b) for j in range(k)]
        return sum(
            (x[j] - means_a[j]) * (y[j] - means_b[j])
            for x, y in zip(a, b, strict=True)
            for j in range(k)
        )

    return cov(gold, predicted) / math.sqrt(cov(gold, gold) * cov(predicted, predicted))


def test_binary_values_by_hand():
    assert score(Metric.ACCURACY, BINARY) == pytest.approx(0.7)
    # F1 of 1: 2 hits, 4 gold, 3 predicted: 2 * 2 / (4 + 3)
    assert score(Metric.F1, BINARY) == pytest.approx(4 / 7)
    # F1 of 0: 5 hits, 6 gold, 7 predicted: 10 / 13
    assert score(Metric.F1, BINARY, positive=0) == pytest.approx(10 / 13)
    assert score(Metric.MACRO_F1, BINARY) == pytest.approx((10 / 13 + 4 / 7) / 2)
    # TP 2, TN 5, FP 1, FN 2: (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))
    binary_mcc = (2 * 5 - 1 * 2) / math.sqrt(3 * 4 * 6 * 7)
    # R_K: c = 7, s = 10, t = (6, 4), p = (7, 3)
    r_k = (7 * 10 - (7 * 6 + 3 * 4)) / math.sqrt((100 - 58) * (100 - 52))
    assert binary_mcc == pytest.approx(r_k) == pytest.approx(0.356348, abs=1e-6)
    assert score(Metric.MATTHEWS, BINARY) == pytest.approx(r_k)
    assert score(Metric.MATTHEWS, BINARY) == pytest.approx(gorodkin(BINARY))


def test_three_labels_by_hand():
    assert score(Metric.ACCURACY, THREE) == pytest.approx(9 / 13)
    # F1 per label: 2*3/(4+4), 2*2/(4+4), 2*4/(5+5)
    assert score(Metric.MACRO_F1, THREE) == pytest.approx((0.75 + 0.5 + 0.8) / 3)
    # c = 9, s = 13, t = p = (4, 4, 5): (117 - 57) / sqrt(112 * 112) = 15/28
    assert score(Metric.MATTHEWS, THREE) == pytest.approx(15 / 28)
    assert score(Metric.MATTHEWS, THREE) == pytest.approx(gorodkin(THREE))
    skewed = [[7, 2, 1], [0, 3, 3], [1, 0, 2]]
    assert score(Metric.MATTHEWS, skewed) == pytest.approx(gorodkin(skewed))


def test_degenerate_matrices_count_zero_as_scikit_learn_does():
    one_class = [[5, 0], [0, 0]]  # every example gold 0, predicted 0
    assert score(Metric.ACCURACY, one_class) == 1.0
    assert score(Metric.MATTHEWS, one_class) == 0.0  # a factor of the denominator is 0
    assert score(Metric.F1, one_class) == 0.0  # label 1: no gold, none predicted
    assert score(Metric.MACRO_F1, one_class) == 1.0  # label 1 absent: not averaged
    constant = [[0, 3], [0, 2]]  # every example predicted 1
    assert score(Metric.MATTHEWS, constant) == 0.0
    assert score(Metric.F1, constant) == pytest.approx(2 * 2 / (2 + 5))
    assert score(Metric.MACRO_F1, constant) == pytest.approx((0.0 + 4 / 7) / 2)
    empty = [[0, 0], [0, 0]]
    assert all(score(metric, empty) == 0.0 for metric in Metric)


def test_matthews_reaches_its_lowest_on_the_inverse_predictions():
    inverse = [[0, 3], [2, 0]]
    assert score(Metric.MATTHEWS, inverse) == pytest.approx(-1.0) == Metric.MATTHEWS.lowest
    assert score(Metric.ACCURACY, inverse) == 0.0 == Metric.ACCURACY.lowest
    assert score(Metric.MATTHEWS, [[4, 0], [0, 6]]) == pytest.approx(1.0)


def test_labels_name_the_metric():
    assert [m.label() for m in Metric] == ["accuracy", "F1", "macro-F1", "MCC"]
    assert Metric.F1.label("pos") == "F1 of 'pos'"
    assert Metric.MACRO_F1.label("pos") == "macro-F1"


def test_one_labels_score_is_what_a_model_that_learned_nothing_scores():
    """158 'neg' and 142 'pos' dev examples: all 'neg' is accuracy 158/300; F1 of 'pos' is best
    predicting 'pos' everywhere, 2 x 142 / (142 + 300); macro-F1 halves 'neg''s F1; MCC is 0."""
    counts = [158, 142]
    assert one_label_score(Metric.ACCURACY, counts) == (158 / 300, 0)
    assert one_label_score(Metric.F1, counts, positive=1) == (2 * 142 / (142 + 300), 1)
    assert one_label_score(Metric.MACRO_F1, counts) == ((2 * 158 / (158 + 300)) / 2, 0)
    assert one_label_score(Metric.MATTHEWS, counts)[0] == 0.0
