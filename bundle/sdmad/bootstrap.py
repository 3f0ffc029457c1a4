"""95 % percentile-bootstrap intervals of the headline metrics over test images (a fixed number of seeded resamples).

scikit-learn has no bootstrap and one ``roc_auc_score`` call per resample and category is slow (thousands of
calls), so AUROC is computed for all resamples at once from ranks (the Mann-Whitney U statistic, ties counted
one half), which equals ``roc_auc_score`` (tests/test_bootstrap.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

RESAMPLES = 1000
LEVEL = 0.95


def auroc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``scores`` [R, N] for the binary ``labels`` [R, N]; NaN where a row has one class."""
    labels = labels.astype(bool)
    positives = labels.sum(axis=1)
    negatives = labels.shape[1] - positives
    ranks = rankdata(scores, axis=1)  # average ranks for ties
    rank_sum = np.where(labels, ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), value, np.nan)


def resampled_figures(
    scores: np.ndarray, decisions: np.ndarray, anomaly: np.ndarray, labels: np.ndarray, index: np.ndarray
) -> dict[str, np.ndarray]:
    """The headline metrics on each resample ``index`` [R, N] of the test images."""
    labels = labels > 0
    per_category = np.stack([auroc_rows(scores[index, c], labels[index, c]) for c in range(labels.shape[1])], axis=1)
    defined = ~np.isnan(per_category)
    with np.errstate(invalid="ignore"):
        mean_category = np.where(defined.any(axis=1), np.nansum(per_category, axis=1) / defined.sum(axis=1), np.nan)
    right = decisions[index].astype(bool) == labels[index]
    return {
        "mean_category_auroc": mean_category,
        "image_auroc": auroc_rows(anomaly[index], labels[index].any(axis=2)),
        "hamming_score": right.mean(axis=(1, 2)),
        "subset_accuracy": right.all(axis=2).mean(axis=1),
    }


def bootstrap_intervals(
    scores: np.ndarray,
    decisions: np.ndarray,
    anomaly: np.ndarray,
    labels: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Percentile intervals over ``resamples`` resamples (with replacement) of the N test images.

    Args:
        scores: [N, C] s_c; decisions: [N, C] the run's decisions; anomaly: [N] normal-vs-abnormal score;
        labels: [N, C] multi-hot.
    Returns:
        ``{"method", "resamples", "seed", "level", <metric>: [low, high] | None}`` (None: undefined on too many
        resamples, e.g. a test set with a single positive).
    """
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(labels), size=(resamples, len(labels)))
    figures = resampled_figures(
        np.asarray(scores, float), np.asarray(decisions), np.asarray(anomaly, float), np.asarray(labels), index
    )
    tail = (1 - level) / 2 * 100
    intervals: dict[str, Any] = {
        "method": "percentile bootstrap over test images",
        "resamples": resamples,
        "seed": seed,
        "level": level,
    }
    for name, values in figures.items():
        values = values[~np.isnan(values)]
        intervals[name] = (
            None
            if len(values) < resamples / 2
            else [round(float(np.percentile(values, tail)), 6), round(float(np.percentile(values, 100 - tail)), 6)]
        )
    return intervals
