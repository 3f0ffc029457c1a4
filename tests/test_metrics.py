"""Protocol metrics against hand-computed values, undefined cases, and their Ignite wrappers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from sdmad import metrics

LABELS = np.array([[1, 0], [0, 0], [1, 1]])
DECISIONS = np.array([[1, 1], [0, 0], [0, 1]])


def test_auroc_and_undefined():
    assert metrics.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert metrics.auroc([0.1, 0.2], [1, 1]) is None
    assert metrics.auroc([0.1, 0.2], [0, 0]) is None


def test_image_auroc_is_normal_vs_any_category():
    # abnormal = rows 0 and 2; score ranks row 2 > row 1 > row 0
    assert metrics.image_auroc([0.2, 0.5, 0.9], LABELS) == pytest.approx(0.5)
    assert metrics.image_auroc([0.2, 0.9], [[1, 0], [0, 1]]) is None


def test_multi_label_metrics_by_hand():
    assert metrics.hamming_score(DECISIONS, LABELS) == pytest.approx(1 - 2 / 6)
    assert metrics.subset_accuracy(DECISIONS, LABELS) == pytest.approx(1 / 3)
    # per image: 1/2, empty union counts 1, 1/2
    assert metrics.example_jaccard(DECISIONS, LABELS) == pytest.approx((0.5 + 1 + 0.5) / 3)


def test_category_auroc_with_an_undefined_category():
    scores = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.2], [0.6, 0.7, 0.9], [0.1, 0.2, 0.8]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])  # category C: no positive
    result = metrics.category_auroc(scores, labels, ["A", "B", "C"])
    assert result["per_category"] == {"A": pytest.approx(1.0), "B": pytest.approx(1.0), "C": None}
    assert result["mean"] == pytest.approx(1.0) and result["defined"] == 2 and result["total"] == 3
    nothing = metrics.category_auroc(scores, np.zeros_like(labels), ["A", "B", "C"])
    assert nothing["mean"] is None and nothing["defined"] == 0


def batches():
    generator = torch.Generator().manual_seed(1)
    labels = (torch.rand(21, 3, generator=generator) > 0.6).float()
    scores = torch.rand(21, 3, generator=generator) + labels * 0.3
    decisions = scores > 0.7
    return (
        [(scores[i : i + 4], decisions[i : i + 4], labels[i : i + 4]) for i in range(0, 21, 4)],
        scores,
        decisions,
        labels,
    )


def attach_all(engine: Engine) -> None:
    metrics.ImageAUROC(lambda o: (o[0].amax(1), o[2])).attach(engine, "image_auroc")
    metrics.HammingScore(lambda o: (o[1], o[2])).attach(engine, "hamming_score")
    metrics.SubsetAccuracy(lambda o: (o[1], o[2])).attach(engine, "subset_accuracy")
    metrics.ExampleJaccard(lambda o: (o[1], o[2])).attach(engine, "jaccard")
    metrics.CategoryAUROC(["A", "B", "C"], lambda o: (o[0], o[2])).attach(engine, "category_auroc")


def expected_metrics(scores, decisions, labels) -> dict:
    categories = metrics.category_auroc(scores, labels, ["A", "B", "C"])
    return {
        "image_auroc": metrics.image_auroc(scores.amax(1), labels),
        "hamming_score": metrics.hamming_score(decisions, labels),
        "subset_accuracy": metrics.subset_accuracy(decisions, labels),
        "jaccard": metrics.example_jaccard(decisions, labels),
        "mean_category_auroc": categories["mean"],
        "auroc/A": categories["per_category"]["A"],
    }


def test_ignite_metrics_equal_the_plain_functions():
    data, scores, decisions, labels = batches()
    engine = Engine(lambda engine, batch: batch)
    attach_all(engine)
    state = engine.run(data)
    for name, value in expected_metrics(scores, decisions, labels).items():
        assert state.metrics[name] == pytest.approx(value, abs=1e-4), name
    assert state.metrics["defined_categories"] == 3
