"""The SD-MAD objective (paper Eq. 3-5, with the Eq. 4 erratum fixed), d(u, v) = 1 - cos(u, v).

For an image with positive categories P and negative categories N (normal: P empty, N = all):

- ``L_img-text = sum_{c in P} agg_i d(f, t_i^c)``; a normal image is pulled to the anchor: ``d(f, f_anchor)``.
- ``L_pos = sum_{c in P} agg_i max(0, d(f, t_i^c) - d(f, f_anchor) + m)``
- ``L_neg = sum_{k in N} agg_j max(0, d(f, f_anchor) - d(f, t_j^k) + m)``

``agg`` over a category's signs is the mean (default) or sum; the outer sum over categories may be a mean.
The printed Eq. 4 has ``d(f, t_j^k) - d(f, t_j^k)`` (identically zero); ``L_neg`` above is the term intended by
Remark 3.1 (the anchor closer to the image than every sign of a negative category). See docs/method.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.losses import DiceLoss, FocalLoss
from torch import nn

REDUCTIONS = ("mean", "sum")


@dataclass
class LossParts:
    """The total loss and its three parts, each averaged over the batch."""

    total: torch.Tensor
    img_text: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The parts, detached, under the names the training handlers log."""
        return {
            "loss": self.total.detach(),
            "loss_img_text": self.img_text.detach(),
            "loss_pos": self.pos.detach(),
            "loss_neg": self.neg.detach(),
        }


class SDMADLoss(nn.Module):
    """L = L_img-text + L_pos + L_neg for a batch.

    Args:
        sign_reduction: how a category's signs combine: "mean" (default: categories with many signs do not
            dominate) or "sum" (the paper's printed sums).
        category_reduction: how categories combine per image: "sum" (default, the paper) or "mean".
        margin: m >= 0 added inside both hinges (0 in the paper).
        pull_normal_to_anchor: include d(f, f_anchor) as the alignment term of normal images.
    """

    def __init__(
        self,
        sign_reduction: str = "mean",
        category_reduction: str = "sum",
        margin: float = 0.0,
        pull_normal_to_anchor: bool = True,
    ):
        super().__init__()
        for name, value in (("sign_reduction", sign_reduction), ("category_reduction", category_reduction)):
            if value not in REDUCTIONS:
                raise ValueError(f"{name} must be one of {REDUCTIONS}, got '{value}'")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.sign_reduction = sign_reduction
        self.category_reduction = category_reduction
        self.margin = margin
        self.pull_normal_to_anchor = pull_normal_to_anchor

    def _per_category(self, per_sign: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
        """[B, n_signs] -> [B, C]: each category's signs combined by ``sign_reduction``."""
        combined = per_sign @ membership.T
        if self.sign_reduction == "mean":
            combined = combined / membership.sum(dim=1)
        return combined

    def _over_categories(self, per_category: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """[B, C] and a [B, C] 0/1 selection -> [B]: the selected categories combined by ``category_reduction``."""
        total = (per_category * selected).sum(dim=1)
        if self.category_reduction == "mean":
            total = total / selected.sum(dim=1).clamp(min=1)
        return total

    def forward(
        self,
        image_features: torch.Tensor,
        labels: torch.Tensor,
        sign_features: torch.Tensor,
        sign_category: torch.Tensor,
        anchor: torch.Tensor,
    ) -> LossParts:
        """Compute the loss.

        Args:
            image_features: [B, E] normalised image features.
            labels: [B, C] multi-hot category labels (all zeros: normal).
            sign_features: [n_signs, E] normalised sign features; categories may have different numbers of signs.
            sign_category: [n_signs] category index of each sign.
            anchor: [E] normalised anchor feature.
        """
        num_categories = labels.shape[1]
        membership = sign_category[None, :] == torch.arange(num_categories, device=labels.device)[:, None]
        if not bool(membership.any(dim=1).all()):
            raise ValueError("every category needs at least one sign")
        membership = membership.to(image_features.dtype)
        positive = labels.to(image_features.dtype)
        negative = 1.0 - positive
        is_normal = positive.sum(dim=1) == 0

        d_sign = 1.0 - image_features @ sign_features.T  # [B, n]
        d_anchor = (1.0 - image_features @ anchor)[:, None]  # [B, 1]

        img_text = self._over_categories(self._per_category(d_sign, membership), positive)
        if self.pull_normal_to_anchor:
            img_text = torch.where(is_normal, d_anchor[:, 0], img_text)
        pos_hinge = torch.relu(d_sign - d_anchor + self.margin)
        neg_hinge = torch.relu(d_anchor - d_sign + self.margin)
        pos = self._over_categories(self._per_category(pos_hinge, membership), positive)
        neg = self._over_categories(self._per_category(neg_hinge, membership), negative)
        img_text, pos, neg = img_text.mean(), pos.mean(), neg.mean()
        return LossParts(total=img_text + pos + neg, img_text=img_text, pos=pos, neg=neg)


class PatchLoss(nn.Module):
    """MVFA's losses on the patch path's maps (sdmad.networks.patch_path), summed over the adapted levels.

    - Pixel terms, on slices with pixel labels only: focal + Dice of each channel's logits (the anomaly map
      against the union of the category masks, each category map against its own mask), at ``size`` x ``size``
      (logits upsampled bilinearly, masks area-averaged: soft targets).
    - Image term, on every slice: binary cross-entropy of the anomaly map's highest logit against "any finding":
      what trains the patch heads on data without masks.

    Args:
        pixel_weight: weight of focal + Dice (0: image term only).
        image_weight: weight of the image term.
        size: resolution of the pixel terms; None: the masks' (the CLIP input size, as MVFA).
        anomaly_only: the pixel terms on the anomaly map alone (method mvfa: its category maps are the same map,
            which each category's own mask would pull apart).
    """

    def __init__(
        self, pixel_weight: float = 1.0, image_weight: float = 1.0, size: int | None = None, anomaly_only: bool = False
    ):
        super().__init__()
        if pixel_weight < 0 or image_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got pixel {pixel_weight}, image {image_weight}")
        self.pixel_weight, self.image_weight, self.size = pixel_weight, image_weight, size
        self.anomaly_only = anomaly_only
        self.focal = FocalLoss(gamma=2.0)
        self.dice = DiceLoss(sigmoid=True, soft_label=True)

    def targets(self, category_masks: torch.Tensor) -> torch.Tensor:
        """``[B, C, S, S]`` masks -> ``[B, 1 + C, size, size]`` soft targets: their union, then each category."""
        targets = torch.cat([category_masks.amax(dim=1, keepdim=True), category_masks], dim=1)
        size = self.size or targets.shape[-1]
        if size != targets.shape[-1]:
            targets = nn.functional.interpolate(targets, size=(size, size), mode="area")
        return targets

    def forward(
        self,
        level_logits: list[torch.Tensor],
        labels: torch.Tensor,
        targets: torch.Tensor | None = None,
        has_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``level_logits``: per level ``[B, 1 + C, g, g]``; ``labels`` ``[B, C]``; ``targets`` from
        ``self.targets`` and ``has_mask`` ``[B]`` (which slices have pixel labels), or None. Returns the parts."""
        abnormal = (labels.sum(dim=1) > 0).float()
        image = sum(
            nn.functional.binary_cross_entropy_with_logits(logits[:, 0].flatten(1).amax(dim=1), abnormal)
            for logits in level_logits
        )
        pixel = image.new_zeros(())
        if targets is not None and self.pixel_weight > 0 and bool(has_mask.any()):
            everyone = bool(has_mask.all())
            targets = targets if everyone else targets[has_mask]
            if self.anomaly_only:
                targets = targets[:, :1]
            for logits in level_logits:
                logits = logits if everyone else logits[has_mask]
                logits = logits[:, :1] if self.anomaly_only else logits
                logits = nn.functional.interpolate(logits, size=targets.shape[-2:], mode="bilinear")
                pixel = pixel + self.focal(logits, targets) + self.dice(logits, targets)
        return {"pixel": self.pixel_weight * pixel, "patch_image": self.image_weight * image}
