"""Hand-computed SD-MAD losses in 2-D/3-D feature space (docs/method.md, "Loss")."""

from __future__ import annotations

import pytest
import torch
from sdmad.losses import SDMADLoss

# 2-D geometry: anchor along x; category 0 has one sign (0, 1); category 1 has two signs (0, -1) and (-1, 0).
ANCHOR = torch.tensor([1.0, 0.0])
SIGNS = torch.tensor([[0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]])
SIGN_CATEGORY = torch.tensor([0, 1, 1])


def loss_of(features, labels, **kwargs):
    return SDMADLoss(**kwargs)(torch.tensor(features), torch.tensor(labels), SIGNS, SIGN_CATEGORY, ANCHOR)


def close(value, expected):
    assert float(value) == pytest.approx(expected, abs=1e-6)


def test_image_on_the_wrong_side_of_the_anchor():
    # f = (0.6, -0.8) labelled category 0: d(f, t0) = 1.8, d(f, anchor) = 0.4, d(f, t1) = 0.2, d(f, t2) = 1.6
    parts = loss_of([[0.6, -0.8]], [[1.0, 0.0]])
    close(parts.img_text, 1.8)
    close(parts.pos, 1.8 - 0.4)
    close(parts.neg, (max(0, 0.4 - 0.2) + max(0, 0.4 - 1.6)) / 2)  # mean over category 1's two signs
    close(parts.total, 1.8 + 1.4 + 0.1)


def test_negative_term_is_not_the_printed_eq4_which_is_identically_zero():
    features = torch.tensor([[0.6, -0.8]])
    d = 1 - features @ SIGNS.T
    printed_eq4 = torch.relu(d - d).sum()  # max(0, d(f, t_j^k) - d(f, t_j^k)) as printed
    assert float(printed_eq4) == 0.0
    close(loss_of([[0.6, -0.8]], [[1.0, 0.0]]).neg, 0.1)


def test_sum_over_signs_reduction():
    close(loss_of([[0.6, -0.8]], [[1.0, 0.0]], sign_reduction="sum").neg, 0.2)


def test_normal_image_is_pulled_to_the_anchor_and_pushed_from_every_category():
    parts = loss_of([[0.6, -0.8]], [[0.0, 0.0]])
    close(parts.img_text, 0.4)  # d(f, anchor)
    close(parts.pos, 0.0)
    close(parts.neg, 0.0 + 0.1)  # category 0: max(0, 0.4 - 1.8) = 0; category 1: 0.1
    close(loss_of([[0.6, -0.8]], [[0.0, 0.0]], pull_normal_to_anchor=False).img_text, 0.0)


def test_well_placed_image_and_margin():
    # f = (0.6, 0.8), category 0: d(t0) = 0.2 < d(anchor) = 0.4 < d(t1) = 1.8, d(t2) = 1.6
    parts = loss_of([[0.6, 0.8]], [[1.0, 0.0]])
    close(parts.img_text, 0.2), close(parts.pos, 0.0), close(parts.neg, 0.0)
    with_margin = loss_of([[0.6, 0.8]], [[1.0, 0.0]], margin=1.5)
    close(with_margin.pos, 0.2 - 0.4 + 1.5)
    close(with_margin.neg, ((0.4 - 1.8 + 1.5) + (0.4 - 1.6 + 1.5)) / 2)


def test_batch_mean():
    parts = loss_of([[0.6, -0.8], [0.6, -0.8]], [[1.0, 0.0], [0.0, 0.0]])
    close(parts.img_text, (1.8 + 0.4) / 2), close(parts.pos, 1.4 / 2), close(parts.neg, (0.1 + 0.1) / 2)


def test_multi_label_image_in_3d_and_category_reduction():
    anchor = torch.tensor([0.0, 0.0, 1.0])
    signs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    category = torch.tensor([0, 1, 2])
    features, labels = torch.tensor([[0.6, 0.8, 0.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    # d(t0) = 0.4, d(t1) = 0.2, d(anchor) = 1, d(t2) = 1
    summed = SDMADLoss()(features, labels, signs, category, anchor)
    close(summed.img_text, 0.6), close(summed.pos, 0.0), close(summed.neg, 0.0)
    averaged = SDMADLoss(category_reduction="mean", margin=0.1)(features, labels, signs, category, anchor)
    close(averaged.img_text, 0.3), close(averaged.pos, 0.0), close(averaged.neg, 0.1)


def test_gradients_flow_to_image_signs_and_anchor_only_through_active_terms():
    features = torch.tensor([[0.6, -0.8]], requires_grad=True)
    signs, anchor = SIGNS.clone().requires_grad_(), ANCHOR.clone().requires_grad_()
    SDMADLoss()(features, torch.tensor([[1.0, 0.0]]), signs, SIGN_CATEGORY, anchor).total.backward()
    assert features.grad.abs().sum() > 0 and anchor.grad.abs().sum() > 0
    # sign t2 only enters L_neg through a hinge that is inactive (0.4 - 1.6 < 0): no gradient
    assert torch.equal(signs.grad[2], torch.zeros(2))
    assert signs.grad[0].abs().sum() > 0 and signs.grad[1].abs().sum() > 0


def test_bad_configuration():
    with pytest.raises(ValueError, match="sign_reduction"):
        SDMADLoss(sign_reduction="max")
    with pytest.raises(ValueError, match="margin"):
        SDMADLoss(margin=-1)
    with pytest.raises(ValueError, match="at least one sign"):
        SDMADLoss()(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]), SIGNS, SIGN_CATEGORY, ANCHOR)
