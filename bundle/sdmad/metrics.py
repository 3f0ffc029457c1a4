"""Metrics of the three evaluation protocols: plain functions (scikit-learn) and Ignite metrics.

A metric that cannot be defined on the data (AUROC with no positive or no negative) is ``None``
("undefined" in reports): never a number, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from sklearn.metrics import accuracy_score, hamming_loss, jaccard_score, roc_auc_score

ArrayLike = np.ndarray | torch.Tensor | Sequence


def _numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy() if values.is_floating_point() else values.detach().cpu().numpy()
    return np.asarray(values)


# ------------------------------------------------------------------------------------------- plain functions
def auroc(scores: ArrayLike, labels: ArrayLike) -> float | None:
    """ROC AUC of binary ``labels`` ranked by ``scores``; None when labels hold one class only."""
    labels = _numpy(labels).astype(bool).ravel()
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, _numpy(scores).ravel()))


def image_auroc(anomaly_scores: ArrayLike, category_labels: ArrayLike) -> float | None:
    """Protocol 1: normal (no category) vs abnormal (any category) AUROC of the anomaly score."""
    labels = _numpy(category_labels)
    abnormal = labels.reshape(len(labels), -1).any(axis=1)
    return auroc(anomaly_scores, abnormal)


def hamming_score(decisions: ArrayLike, labels: ArrayLike) -> float:
    """Protocol 2: 1 - Hamming loss, the fraction of (image, category) decisions that are right."""
    return 1.0 - float(hamming_loss(_numpy(labels).astype(int), _numpy(decisions).astype(int)))


def subset_accuracy(decisions: ArrayLike, labels: ArrayLike) -> float:
    """Protocol 2: fraction of images whose whole decision vector is right."""
    return float(accuracy_score(_numpy(labels).astype(int), _numpy(decisions).astype(int)))


def example_jaccard(decisions: ArrayLike, labels: ArrayLike) -> float:
    """Protocol 2: mean over images of |pred & true| / |pred | true|; an image predicted and labelled normal
    (empty union) counts 1, as a perfect answer."""
    labels, decisions = _numpy(labels).astype(int), _numpy(decisions).astype(int)
    if labels.ndim == 2 and labels.shape[1] == 1:  # one category (BMAD): scikit-learn has no "samples" average
        return float((labels == decisions).mean())  # per image 1 if right (an empty union counts 1), else 0
    return float(jaccard_score(labels, decisions, average="samples", zero_division=1.0))


def category_auroc(scores: ArrayLike, labels: ArrayLike, category_names: Sequence[str]) -> dict[str, Any]:
    """Protocol 3: one-vs-rest AUROC of s_c per category, and their mean over the defined categories.

    Returns:
        ``{"per_category": {name: auroc | None}, "mean": float | None, "defined": int, "total": int}``.
    """
    scores, labels = _numpy(scores), _numpy(labels)
    per_category = {name: auroc(scores[:, c], labels[:, c]) for c, name in enumerate(category_names)}
    defined = [value for value in per_category.values() if value is not None]
    return {
        "per_category": per_category,
        "mean": float(np.mean(defined)) if defined else None,
        "defined": len(defined),
        "total": len(category_names),
    }


class BinnedAUROC:
    """Streaming AUROC over very many scores (pixels): score histograms of positives and negatives.

    Exact up to pairs that fall in the same bin, which count one half (as ties do); with 2^16 bins over the
    score range the error is below 1e-4 for continuous scores. Used because a test set's pixels do not fit in
    memory at once and neither scikit-learn nor MONAI accumulates an AUROC in constant memory.
    """

    def __init__(self, score_range: tuple[float, float] = (0.0, 1.0), num_bins: int = 65536):
        self.low, self.high = score_range
        if not self.high > self.low:
            raise ValueError(f"score_range must be increasing, got {score_range}")
        self.num_bins = num_bins
        self.reset()

    def reset(self) -> None:
        self.positive = torch.zeros(self.num_bins, dtype=torch.float64)
        self.negative = torch.zeros(self.num_bins, dtype=torch.float64)

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        positive, negative = score_histograms(scores, labels, (self.low, self.high), self.num_bins)
        self.positive += positive
        self.negative += negative

    def compute(self) -> float | None:
        return auroc_from_histograms(self.positive, self.negative)


def score_histograms(
    scores: torch.Tensor, labels: torch.Tensor, score_range: tuple[float, float], num_bins: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 histograms (on the CPU) of the scores of positives and of negatives over ``num_bins`` equal bins."""
    scores = scores.detach().flatten().double().cpu()
    labels = labels.detach().flatten().bool().cpu()
    if not torch.isfinite(scores).all():
        raise ValueError("pixel scores contain NaN or Inf")
    low, high = score_range
    bins = ((scores - low) / (high - low) * num_bins).long().clamp(0, num_bins - 1)
    return (
        torch.bincount(bins[labels], minlength=num_bins).double(),
        torch.bincount(bins[~labels], minlength=num_bins).double(),
    )


def pixel_histograms(
    maps: torch.Tensor, masks: torch.Tensor | None, valid: torch.Tensor, has_mask: Any, num_bins: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``[K, num_bins]`` float64 histograms of a batch's map values over [0, 1], of pixels with a finding and of
    the others, inside the slices that have pixel labels (None when none has): ``maps`` `[B, 1 + C, g, g]` (anomaly,
    then categories) upsampled bilinearly to the masks' `[B, C, S, S]` (sdmad.data.PrepareSlices.masks); targets
    the masks' union for the anomaly channel, each category's own mask for its channel; ``valid`` `[B, 1, S, S]`
    the slices' extent, ``has_mask`` `[B]`."""
    if masks is None or not bool(torch.as_tensor(has_mask).any()):
        return None
    has_mask = torch.as_tensor(has_mask).bool().to(maps.device)
    masks, valid = masks[has_mask], valid[has_mask].bool()
    maps = torch.nn.functional.interpolate(
        maps[has_mask].float(), size=masks.shape[-2:], mode="bilinear", align_corners=False
    )
    targets = torch.cat([masks.amax(dim=1, keepdim=True), masks], dim=1) > 0.5
    inside = valid[:, 0]
    pairs = [
        score_histograms(maps[:, k][inside].clamp(0, 1), targets[:, k][inside], (0.0, 1.0), num_bins)
        for k in range(maps.shape[1])
    ]
    return torch.stack([p for p, _ in pairs]), torch.stack([n for _, n in pairs])


def auroc_from_histograms(positive: torch.Tensor, negative: torch.Tensor) -> float | None:
    """AUROC from score histograms over the same bins: P(score+ > score-) + P(same bin) / 2."""
    total_pos, total_neg = float(positive.sum()), float(negative.sum())
    if total_pos == 0 or total_neg == 0:
        return None
    negatives_below = torch.cumsum(negative, 0) - negative
    wins = (positive * (negatives_below + 0.5 * negative)).sum()
    return float(wins / (total_pos * total_neg))


def pixel_auroc(maps: ArrayLike, masks: ArrayLike) -> float | None:
    """Protocol 1, pixel level, exact (scikit-learn); for data that fits in memory. See ``BinnedAUROC``."""
    return auroc(_numpy(maps).ravel(), _numpy(masks).ravel())


# -------------------------------------------------------------------------------------------- Ignite metrics
class GatheredMetric(Metric):
    """Keeps ``(y_pred, y)`` of every iteration, gathers them from all processes, then applies ``compute_fn``.

    Unlike ignite's ``EpochMetric``, every process computes the result itself from the same gathered data, so
    results may be dicts or None (undefined) and shards may differ in size. Subclasses set ``compute_fn``.

    Args:
        output_transform: maps the engine's output to ``(y_pred, y)``.
        device: where states are kept.
    """

    compute_fn: Callable[[np.ndarray, np.ndarray], Any]

    def __init__(self, output_transform: Callable = lambda output: output, device: str | torch.device = "cpu"):
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._predictions: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    @reinit__is_reduced
    def update(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        y_pred, y = output
        self._predictions.append(y_pred.detach().float().cpu())
        self._targets.append(y.detach().float().cpu())

    def compute(self) -> Any:
        if not self._predictions:
            raise NotComputableError(f"{type(self).__name__} needs at least one example before it can be computed")
        local = (torch.cat(self._predictions), torch.cat(self._targets))
        shards = idist.all_gather(local) if idist.get_world_size() > 1 else [local]
        y_pred = torch.cat([shard[0] for shard in shards]).numpy()
        y = torch.cat([shard[1] for shard in shards]).numpy()
        return self.compute_fn(y_pred, y)


class ImageAUROC(GatheredMetric):
    """Protocol 1 image AUROC; ``output_transform`` gives ``(anomaly_score [B], category_labels [B, C])``."""

    compute_fn = staticmethod(image_auroc)


class HammingScore(GatheredMetric):
    """Protocol 2 Hamming score; ``output_transform`` gives ``(decisions [B, C], labels [B, C])``."""

    compute_fn = staticmethod(hamming_score)


class SubsetAccuracy(GatheredMetric):
    """Protocol 2 subset accuracy; ``output_transform`` gives ``(decisions [B, C], labels [B, C])``."""

    compute_fn = staticmethod(subset_accuracy)


class ExampleJaccard(GatheredMetric):
    """Protocol 2 example-based Jaccard; ``output_transform`` gives ``(decisions [B, C], labels [B, C])``."""

    compute_fn = staticmethod(example_jaccard)


class CategoryAUROC(GatheredMetric):
    """Protocol 3; ``output_transform`` gives ``(scores [B, C], labels [B, C])``.

    The result is a flat dict, which Ignite also copies into ``engine.state.metrics``:
    ``mean_category_auroc`` (None if no category is defined), ``defined_categories`` and ``auroc/<category>``.
    """

    def __init__(
        self,
        category_names: Sequence[str],
        output_transform: Callable = lambda output: output,
        device: str | torch.device = "cpu",
    ):
        self.category_names = list(category_names)
        super().__init__(output_transform, device)

    def compute_fn(self, scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        result = category_auroc(scores, labels, self.category_names)
        flat = {f"auroc/{name}": value for name, value in result["per_category"].items()}
        flat.update(mean_category_auroc=result["mean"], defined_categories=result["defined"])
        return flat


class MeanCategoryAUROC(CategoryAUROC):
    """Protocol 3 mean over defined categories as one number, for an engine's key metric (checkpoint selection on
    validation data): NaN, never a made-up value, when no category is defined. Reports use ``CategoryAUROC``."""

    def compute_fn(self, scores: np.ndarray, labels: np.ndarray) -> float:
        mean = category_auroc(scores, labels, self.category_names)["mean"]
        return float("nan") if mean is None else mean


class PixelAUROC(Metric):
    """Protocol 1 pixel AUROC in constant memory (``BinnedAUROC``), summed over processes: the anomaly map against
    the union of the category masks, and each category's map against its mask.

    ``output_transform`` gives ``(maps, masks, valid, has_mask)``: ``[B, 1 + C, g, g]`` patch-grid maps in [0, 1],
    ``[B, C, S, S]`` masks, ``[B, 1, S, S]`` the slices' extent (the padding is not scored) and ``[B]`` which
    slices have pixel labels (others are not scored). ``compute`` returns ``pixel_auroc`` (the anomaly map) and
    ``pixel_auroc/<category>``, None where undefined (no positive pixel, or no map or mask at all).
    """

    def __init__(
        self,
        category_names: Sequence[str],
        num_bins: int = 65536,
        output_transform: Callable = lambda output: output,
        device: str | torch.device = "cpu",
    ):
        self.names = ["anomaly", *category_names]
        self.num_bins = num_bins
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        # [channels, bins] histograms, updated in place: sync_all_reduce sums them across processes
        self._positive = torch.zeros(len(self.names), self.num_bins, dtype=torch.float64)
        self._negative = torch.zeros(len(self.names), self.num_bins, dtype=torch.float64)
        self._slices = torch.zeros((), dtype=torch.float64)  # slices with pixel labels scored
        self._mapped = torch.zeros((), dtype=torch.float64)  # slices with maps (none: an image-level model)

    @reinit__is_reduced
    def update(self, output: tuple) -> None:
        maps, masks, valid, has_mask = output
        if maps is None:
            return
        self._mapped += float(maps.shape[0])
        histograms = pixel_histograms(maps, masks, valid, has_mask, self.num_bins)
        if histograms is None:
            return
        self._slices += float(torch.as_tensor(has_mask).sum())
        self._positive += histograms[0]
        self._negative += histograms[1]

    @sync_all_reduce("_positive", "_negative", "_slices", "_mapped")
    def compute(self) -> dict[str, float | None]:
        values = [auroc_from_histograms(self._positive[c], self._negative[c]) for c in range(len(self.names))]
        labelled = int(self._slices)
        mapped = int(self._mapped)
        return {"pixel_auroc": values[0], "pixel_labelled_slices": labelled, "pixel_mapped_slices": mapped} | {
            f"pixel_auroc/{name}": value for name, value in zip(self.names[1:], values[1:], strict=True)
        }
