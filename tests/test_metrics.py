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


def test_example_jaccard_with_one_category_is_the_share_of_right_images():
    labels, decisions = np.array([[1], [0], [1], [0]]), np.array([[1], [0], [0], [1]])
    assert metrics.example_jaccard(decisions, labels) == 0.5


def test_pixel_auroc_exact_and_binned():
    assert metrics.pixel_auroc(np.array([[0.1, 0.9], [0.4, 0.6]]), np.array([[0, 1], [0, 1]])) == 1.0
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(8, 32, 32, generator=generator) > 0.9
    maps = (torch.rand(8, 32, 32, generator=generator) * 0.7 + masks * 0.3).clamp(0, 1)
    binned = metrics.BinnedAUROC()
    for map_, mask in zip(maps, masks, strict=True):
        binned.update(map_, mask)
    exact = metrics.pixel_auroc(maps.numpy(), masks.numpy())
    assert 0.6 < exact < 0.99 and binned.compute() == pytest.approx(exact, abs=1e-4)
    empty = metrics.BinnedAUROC()
    empty.update(maps[0], torch.zeros_like(masks[0]))
    assert empty.compute() is None
    with pytest.raises(ValueError, match="NaN"):
        binned.update(torch.tensor([float("nan")]), torch.tensor([True]))


def test_pixel_auroc_metric_per_channel_equals_scikit_learn_on_the_scored_pixels():
    """Grid maps are upsampled to the masks; padding (valid 0) and slices without pixel labels are not scored."""
    generator = torch.Generator().manual_seed(3)
    maps = torch.rand(6, 3, 4, 4, generator=generator)  # anomaly + 2 categories on a 4 x 4 patch grid
    masks = (torch.rand(6, 2, 16, 16, generator=generator) > 0.8).float()
    valid = torch.ones(6, 1, 16, 16)
    valid[:, :, :, 12:] = 0  # a slice narrower than its CLIP input: the padding
    has_mask = torch.tensor([True, True, True, True, False, True])
    metric = metrics.PixelAUROC(["A", "B"])
    metric.reset()
    metric.update((maps[:3], masks[:3], valid[:3], has_mask[:3]))
    metric.update((maps[3:], masks[3:], valid[3:], has_mask[3:]))
    result = metric.compute()
    up = torch.nn.functional.interpolate(maps, size=(16, 16), mode="bilinear", align_corners=False)
    keep = has_mask.nonzero().squeeze(1)
    inside = valid[keep, 0].bool()
    union = masks[keep].amax(dim=1)
    assert result["pixel_auroc"] == pytest.approx(metrics.pixel_auroc(up[keep, 0][inside], union[inside]), abs=1e-4)
    for c, name in enumerate(["A", "B"]):
        expected = metrics.pixel_auroc(up[keep, 1 + c][inside], masks[keep, c][inside])
        assert result[f"pixel_auroc/{name}"] == pytest.approx(expected, abs=1e-4)
    assert result["pixel_labelled_slices"] == 5 and result["pixel_mapped_slices"] == 6


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
