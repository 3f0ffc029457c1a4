"""SD-MAD inference: sign selection (paper Eq. 6) and scoring (Eq. 7-8), vectorised over a batch.

All features are L2-normalised, so cosine similarity is a dot product and d(u, v) = 1 - cos(u, v).
Sign selection is plain tensor algebra over a few dozen signs; no library implements Eq. 6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

SELECTION_MODES = ("distance", "support", "none")


@dataclass
class SignSelection:
    """Which signs each category keeps (Eq. 6), with the distances that decided it.

    ``own_distance[t]`` is D(t, c) for the sign's own category c (inf when c has a single sign);
    ``other_distance[t]`` is delta(t) = min over other categories k of D(t, k) (inf with one category).
    """

    category_names: list[str]
    sign_category: torch.Tensor
    kept: torch.Tensor
    own_distance: torch.Tensor
    other_distance: torch.Tensor
    reasons: list[str]
    support_auroc: torch.Tensor | None = None
    forced_categories: list[str] = field(default_factory=list)
    mode: str = "distance"

    def category_mask(self) -> torch.Tensor:
        """[C, n_signs] bool: sign t counts for category c (kept and of category c)."""
        categories = torch.arange(len(self.category_names), device=self.sign_category.device)
        return (self.sign_category[None, :] == categories[:, None]) & self.kept[None, :]

    def to_dict(self, sign_prompts: list[str]) -> dict[str, Any]:
        """Per category, the kept and dropped signs with D(t,c) and delta(t), for reports."""

        def number(value: torch.Tensor) -> float | None:
            return None if torch.isinf(value) else round(float(value), 6)

        report: dict[str, Any] = {}
        for index, name in enumerate(self.category_names):
            signs = []
            for t in torch.nonzero(self.sign_category == index).flatten().tolist():
                entry = {
                    "prompt": sign_prompts[t],
                    "kept": bool(self.kept[t]),
                    "reason": self.reasons[t],
                    "D_own": number(self.own_distance[t]),
                    "delta": number(self.other_distance[t]),
                }
                if self.support_auroc is not None:
                    entry["support_auroc"] = number(self.support_auroc[t])
                signs.append(entry)
            report[name] = {
                "kept": sum(entry["kept"] for entry in signs),
                "dropped": sum(not entry["kept"] for entry in signs),
                "forced_keep": name in self.forced_categories,
                "signs": signs,
            }
        return report


def _support_auroc(
    sign_features: torch.Tensor,
    sign_category: torch.Tensor,
    support_features: torch.Tensor,
    support_labels: torch.Tensor,
) -> torch.Tensor:
    """Per sign, the AUROC with which cos(support image, sign) ranks its own category's support images first."""
    from sklearn.metrics import roc_auc_score

    similarity = (support_features @ sign_features.T).detach().cpu().numpy()
    labels = support_labels.detach().cpu().numpy().astype(bool)
    auroc = torch.full((sign_features.shape[0],), float("nan"))
    for t, c in enumerate(sign_category.tolist()):
        positives = labels[:, c]
        if positives.any() and not positives.all():
            auroc[t] = float(roc_auc_score(positives, similarity[:, t]))
    return auroc


def select_signs(
    sign_features: torch.Tensor,
    sign_category: torch.Tensor,
    category_names: list[str],
    mode: str = "distance",
    support_features: torch.Tensor | None = None,
    support_labels: torch.Tensor | None = None,
) -> SignSelection:
    """Eq. 6: keep sign t of category c iff D(t, c) < delta(t); its nearest other sign is of its own category.

    Decisions beyond the paper (docs/method.md): a category with one sign keeps it; when every sign of a
    category would be dropped, the one with the smallest D(t,c) - delta(t) is kept and the category is reported
    in ``forced_categories``. ``mode="none"`` keeps every sign (the paper's "Ours (no SS)" ablation; D and delta
    are still reported). ``mode="support"`` additionally drops a sign whose cosine ranks the few-shot
    images of its own category below those of the others (AUROC <= 0.5; signs whose category has no
    positive or no negative support image are judged by distance alone).

    Args:
        sign_features: [n_signs, E] normalised text features of all signs.
        sign_category: [n_signs] category index of each sign.
        category_names: names of the C categories, in index order.
        mode: "distance" (the paper), "support" or "none".
        support_features: [N, E] normalised few-shot image features (mode "support").
        support_labels: [N, C] multi-hot labels of the support images (mode "support").
    """
    if mode not in SELECTION_MODES:
        raise ValueError(f"sign selection mode '{mode}' is unknown; use one of {SELECTION_MODES}")
    num_categories = len(category_names)
    sign_category = sign_category.to(sign_features.device).long()
    with torch.no_grad():
        distance = 1.0 - sign_features @ sign_features.T  # d(t', t)
        distance.fill_diagonal_(float("inf"))  # t' != t
        member = sign_category[None, :] == torch.arange(num_categories, device=distance.device)[:, None]  # [C, n]
        # D[t, k] = min over signs t' of category k of d(t', t)
        per_category = distance[:, None, :].expand(-1, num_categories, -1).masked_fill(~member[None], float("inf"))
        to_category = per_category.min(dim=-1).values  # [n, C]
        own = to_category.gather(1, sign_category[:, None]).squeeze(1)
        others = to_category.scatter(1, sign_category[:, None], float("inf")).min(dim=1).values
        if mode == "none":
            kept = torch.ones_like(own, dtype=torch.bool)
            reasons = ["kept: sign selection off (none)"] * len(kept)
        else:
            kept = own < others
            reasons = ["kept" if k else "dropped: nearer to another category" for k in kept.tolist()]

        support_auroc = None
        if mode == "support":
            if support_features is None or support_labels is None:
                raise ValueError("sign selection mode 'support' needs support_features and support_labels")
            support_auroc = _support_auroc(sign_features, sign_category, support_features, support_labels)
            ranks_badly = (support_auroc <= 0.5).to(kept.device)  # NaN (undefined) compares False: not judged
            for t in torch.nonzero(kept & ranks_badly).flatten().tolist():
                reasons[t] = "dropped: ranks its support images below others"
            kept = kept & ~ranks_badly

        forced = []
        for c, name in enumerate(category_names):
            signs = torch.nonzero(sign_category == c).flatten()
            if len(signs) == 1:
                kept[signs[0]] = True
                reasons[int(signs[0])] = "kept: only sign of its category"
            elif not kept[signs].any():
                margin = own[signs] - others[signs]
                best = int(signs[torch.argmin(margin)])
                kept[best] = True
                reasons[best] = "kept: forced, every sign of its category would be dropped"
                forced.append(name)
    return SignSelection(
        category_names=list(category_names),
        sign_category=sign_category,
        kept=kept,
        own_distance=own,
        other_distance=others,
        reasons=reasons,
        support_auroc=support_auroc,
        forced_categories=forced,
        mode=mode,
    )


@dataclass
class Scores:
    """Per-image outputs: s_c (Eq. 7), p_c (Eq. 8) and the normal-vs-abnormal score."""

    category_scores: torch.Tensor  # [B, C] max cosine over kept signs
    decisions: torch.Tensor  # [B, C] bool
    anomaly_score: torch.Tensor  # [B] max_c s_c - cos(f_img, anchor)
    margins: torch.Tensor  # [B, C] min cosine over kept signs - cos(f_img, anchor): decision iff > 0


def score_images(
    image_features: torch.Tensor, sign_features: torch.Tensor, anchor: torch.Tensor, category_mask: torch.Tensor
) -> Scores:
    """Eq. 7-8 over a batch.

    Args:
        image_features: [B, E] normalised image features.
        sign_features: [n_signs, E] normalised sign features.
        anchor: [E] normalised anchor (mean of the normal prompts' features, renormalised).
        category_mask: [C, n_signs] bool from ``SignSelection.category_mask()``; every row has a True.
    """
    if not bool(category_mask.any(dim=1).all()):
        raise ValueError("every category needs at least one kept sign (see select_signs)")
    cosine = image_features @ sign_features.T  # [B, n]
    masked = cosine[:, None, :]  # [B, 1, n] against [C, n]
    s = masked.masked_fill(~category_mask[None], float("-inf")).amax(dim=-1)
    lowest = masked.masked_fill(~category_mask[None], float("inf")).amin(dim=-1)
    anchor_cosine = image_features @ anchor  # [B]
    margins = lowest - anchor_cosine[:, None]
    return Scores(
        category_scores=s, decisions=margins > 0, anomaly_score=s.amax(dim=1) - anchor_cosine, margins=margins
    )
