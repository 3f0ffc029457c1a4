"""Bootstrap intervals: the rank AUROC equals scikit-learn's; intervals are seeded and contain the estimate."""

from __future__ import annotations

import numpy as np
import pytest
from sdmad.bootstrap import auroc_rows, bootstrap_intervals
from sklearn.metrics import roc_auc_score


def test_rank_auroc_equals_sklearn_with_ties_and_undefined_rows():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((20, 30)), 1)  # many ties
    labels = rng.random((20, 30)) < 0.3
    labels[0] = False  # one class only: undefined
    values = auroc_rows(scores, labels)
    assert np.isnan(values[0])
    for row in range(1, 20):
        assert values[row] == pytest.approx(roc_auc_score(labels[row], scores[row]))


def test_intervals_are_seeded_and_bracket_the_estimate():
    rng = np.random.default_rng(1)
    labels = (rng.random((200, 3)) < 0.3).astype(np.float32)
    scores = labels + rng.normal(0, 0.8, size=labels.shape)
    decisions = scores > 0.8
    anomaly = scores.max(axis=1)
    first = bootstrap_intervals(scores, decisions, anomaly, labels, resamples=300, seed=5)
    assert first == bootstrap_intervals(scores, decisions, anomaly, labels, resamples=300, seed=5)
    assert first != bootstrap_intervals(scores, decisions, anomaly, labels, resamples=300, seed=6)
    hamming = (decisions == (labels > 0)).mean()
    low, high = first["hamming_score"]
    assert low < hamming < high and high - low < 0.2
    category = np.mean([roc_auc_score(labels[:, c], scores[:, c]) for c in range(3)])
    assert first["mean_category_auroc"][0] < category < first["mean_category_auroc"][1]


def test_an_undefined_metric_has_no_interval():
    labels = np.zeros((10, 1), dtype=np.float32)  # no positive: AUROC undefined on every resample
    intervals = bootstrap_intervals(
        np.random.default_rng(0).random((10, 1)), np.zeros((10, 1), bool), np.zeros(10), labels, resamples=200
    )
    assert intervals["mean_category_auroc"] is None and intervals["hamming_score"] is not None
