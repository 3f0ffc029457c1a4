"""Sign selection (Eq. 6) on constructed geometries, and scoring (Eq. 7-8) on constructed features."""

from __future__ import annotations

import math

import pytest
import torch
from sdmad.inference import score_images, select_signs


def on_circle(*degrees: float) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in degrees])


def d(a: float, b: float) -> float:
    return 1 - math.cos(math.radians(a - b))


def test_a_sign_closer_to_another_category_is_dropped():
    # A at 0 and 10 degrees; B at 90, 100 and an outlier at 25 degrees (near A)
    features = on_circle(0, 10, 90, 100, 25)
    selection = select_signs(features, torch.tensor([0, 0, 1, 1, 1]), ["A", "B"])
    assert selection.kept.tolist() == [True, True, True, True, False]
    assert selection.own_distance[4].item() == pytest.approx(d(25, 90), abs=1e-6)
    assert selection.other_distance[4].item() == pytest.approx(d(25, 10), abs=1e-6)
    assert selection.other_distance[1].item() == pytest.approx(d(10, 25), abs=1e-6)
    assert selection.forced_categories == []
    assert selection.category_mask().tolist() == [[True, True, False, False, False], [False, False, True, True, False]]
    report = selection.to_dict(["a0", "a10", "b90", "b100", "b25"])
    assert report["B"]["dropped"] == 1 and report["B"]["signs"][2]["reason"].startswith("dropped")


def test_single_sign_category_keeps_its_sign():
    features = on_circle(0, 10, 5)  # C's only sign sits between A's signs
    selection = select_signs(features, torch.tensor([0, 0, 1]), ["A", "C"])
    assert selection.kept[2] and selection.reasons[2] == "kept: only sign of its category"
    assert math.isinf(selection.own_distance[2].item())
    assert selection.to_dict(["a", "b", "c"])["C"]["signs"][0]["D_own"] is None


def test_a_category_is_never_left_empty_and_the_forced_keep_is_reported():
    # A = {0, 10}: each is nearer to B's 5-degree sign than to the other A sign; B = {5, 90} likewise
    features = on_circle(0, 10, 5, 90)
    selection = select_signs(features, torch.tensor([0, 0, 1, 1]), ["A", "B"])
    assert selection.forced_categories == ["A", "B"]
    # A: equal margins -> the first; B: margin d(5,90)-d(5,0) > d(90,5)-d(90,10) -> the 90-degree sign
    assert selection.kept.tolist() == [True, False, False, True]
    assert selection.reasons[0].startswith("kept: forced")
    assert selection.category_mask().any(dim=1).all()


def test_none_mode_keeps_every_sign_and_still_reports_the_distances():
    features = on_circle(0, 10, 5, 90)  # distance mode drops signs here (see the forced-keep test)
    selection = select_signs(features, torch.tensor([0, 0, 1, 1]), ["A", "B"], mode="none")
    assert selection.kept.all() and selection.mode == "none" and not selection.forced_categories
    assert set(selection.reasons) == {"kept: sign selection off (none)"}
    assert torch.allclose(
        selection.own_distance, select_signs(features, torch.tensor([0, 0, 1, 1]), ["A", "B"]).own_distance
    )
    assert selection.category_mask().sum() == 4


def test_support_mode_drops_a_sign_that_ranks_its_own_images_last():
    features = on_circle(0, 10, 90, 100)
    # support images: two of A near 90 degrees (!), two of B near 0 degrees, so every sign ranks badly,
    # except where the category would be left empty (forced keep)
    support = on_circle(95, 85, 2, 8)
    labels = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]])
    selection = select_signs(
        features,
        torch.tensor([0, 0, 1, 1]),
        ["A", "B"],
        mode="support",
        support_features=support,
        support_labels=labels,
    )
    assert selection.support_auroc.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert selection.forced_categories == ["A", "B"]
    assert "support" in selection.reasons[1]
    distance_only = select_signs(features, torch.tensor([0, 0, 1, 1]), ["A", "B"])
    assert distance_only.kept.all()
    with pytest.raises(ValueError, match="needs support_features"):
        select_signs(features, torch.tensor([0, 0, 1, 1]), ["A", "B"], mode="support")
    with pytest.raises(ValueError, match="unknown"):
        select_signs(features, torch.tensor([0, 0, 1, 1]), ["A", "B"], mode="vote")


def test_scores_decisions_and_anomaly_score():
    signs = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    anchor = torch.tensor([-1.0, 0.0])
    images = torch.tensor([[0.6, 0.8], [-1.0, 0.0]])
    all_kept = torch.tensor([[True, True, False], [False, False, True]])
    scores = score_images(images, signs, anchor, all_kept)
    # image 0: cos = 0.6, 0.96 | 0.8; anchor cos = -0.6. image 1: cos = -1, -0.8 | 0; anchor cos = 1
    torch.testing.assert_close(scores.category_scores, torch.tensor([[0.96, 0.8], [-0.8, 0.0]]))
    assert scores.decisions.tolist() == [[True, True], [False, False]]
    torch.testing.assert_close(scores.anomaly_score, torch.tensor([0.96 + 0.6, 0.0 - 1.0]))
    # margins: min cosine over kept signs minus the anchor cosine
    torch.testing.assert_close(scores.margins, torch.tensor([[0.6 + 0.6, 0.8 + 0.6], [-1.0 - 1.0, 0.0 - 1.0]]))

    second_dropped = torch.tensor([[True, False, False], [False, False, True]])
    torch.testing.assert_close(
        score_images(images, signs, anchor, second_dropped).category_scores[0, 0], torch.tensor(0.6)
    )


def test_decision_uses_the_least_similar_kept_sign():
    signs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    anchor = torch.tensor([0.6, 0.8])
    image = torch.tensor([[1.0, 0.0]])  # cos: 1 and 0; anchor cos 0.6 -> min 0 < 0.6 -> no
    scores = score_images(image, signs, anchor, torch.tensor([[True, True]]))
    assert scores.category_scores.item() == pytest.approx(1.0) and not scores.decisions.item()


def test_empty_category_mask_is_refused():
    with pytest.raises(ValueError, match="at least one kept sign"):
        score_images(torch.ones(1, 2), torch.ones(2, 2), torch.ones(2), torch.tensor([[True, True], [False, False]]))
