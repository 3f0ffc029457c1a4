"""Decision rules of protocol 2 (present / absent per category).

- ``paper``: Eq. 8, present iff every kept sign of the category is closer to the image than the anchor.
- ``calibrated`` (this project's deviation, docs/method.md): present iff s_c (Eq. 7, the score category AUROC
  ranks) exceeds a per-category threshold chosen on the **validation split only**, maximising F1 (or Youden's J,
  or accuracy). A category with fewer than ``min_positives`` validation positives gets a threshold at a high
  quantile of its validation negatives' scores instead; a run without validation items is calibrated on its
  few-shot training items and says so (optimistic). The thresholds are stored in `model.pt`, so inference, the
  MONAI Label app and the MONAI Deploy app decide exactly as the evaluation did.

scikit-learn's ``roc_curve`` gives every operating point; choosing one per category is this module's work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_curve

logger = logging.getLogger(__name__)

DECISION_RULES = ("paper", "calibrated")
CALIBRATION_METRICS = ("f1", "youden", "accuracy")


def check_decision_rule(rule: str) -> str:
    if rule not in DECISION_RULES:
        raise ValueError(f"decision_rule must be one of {DECISION_RULES}, got '{rule}'")
    return rule


@dataclass
class Calibration:
    """Per-category thresholds on s_c and how each was chosen; ``decide`` applies them."""

    thresholds: list[float]
    how: list[str]
    metric: str
    source: str
    sign_selection: str
    positives: list[int]
    negatives: list[int]
    # per category, the value its map must reach for a label image's pixel (sdmad.maps.label_slice): the best Dice
    # on the same images' pixel labels; None without maps or pixel labels (then MAP_THRESHOLD, one half)
    map_thresholds: list[float] | None = None

    def threshold_tensor(self, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.thresholds, dtype=like.dtype, device=like.device)

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """[B, C] bool: s_c > threshold_c."""
        return scores > self.threshold_tensor(scores)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, content: dict[str, Any]) -> Calibration:
        return cls(**content)


def _cut_between(sorted_scores: np.ndarray, cut: float) -> float:
    """A threshold t with ``score > t`` exactly for the scores >= ``cut``: halfway to the next lower score."""
    below = sorted_scores[sorted_scores < cut]
    if np.isinf(cut):  # predict nothing: above the highest score by half its gap to the next one (or 1e-3)
        top = sorted_scores[-1]
        gap = top - sorted_scores[-2] if len(sorted_scores) > 1 and sorted_scores[-2] < top else 2e-3
        return float(top + gap / 2)
    return float((cut + below[-1]) / 2) if len(below) else float(cut - 1e-3)


def best_threshold(scores: np.ndarray, labels: np.ndarray, metric: str) -> float:
    """The threshold on ``scores`` that maximises ``metric`` (f1, youden or accuracy) for binary ``labels``; among
    equally good thresholds the highest (fewest positive decisions)."""
    positives, negatives = int(labels.sum()), int((~labels).sum())
    fpr, tpr, cuts = roc_curve(labels, scores, drop_intermediate=False)
    if metric == "f1":
        true_positive, false_positive = tpr * positives, fpr * negatives
        value = 2 * true_positive / np.maximum(2 * true_positive + false_positive + (positives - true_positive), 1)
    elif metric == "youden":
        value = tpr - fpr
    elif metric == "accuracy":
        value = (tpr * positives + (1 - fpr) * negatives) / (positives + negatives)
    else:
        raise ValueError(f"calibration metric must be one of {CALIBRATION_METRICS}, got '{metric}'")
    best = int(np.flatnonzero(np.isclose(value, value.max()))[0])  # cuts descend: the first is the highest
    return _cut_between(np.sort(scores), float(cuts[best]))


MAP_BINS = 200  # map values are binned to 0.005 for the map thresholds


def dice_threshold(positive: torch.Tensor, negative: torch.Tensor, default: float) -> float:
    """The threshold on a map (a bin's lower edge, bins equal over [0, 1]) whose "value >= t" best matches the
    pixel labels by Dice, from the histograms of the labelled and the other pixels' values; among equally good
    ones the highest; ``default`` without a labelled pixel."""
    positive, negative = positive.double(), negative.double()
    if float(positive.sum()) == 0:
        return default
    true_positive = positive.flip(0).cumsum(0).flip(0)  # pixels at or above each bin's lower edge
    false_positive = negative.flip(0).cumsum(0).flip(0)
    dice = 2 * true_positive / (2 * true_positive + false_positive + (positive.sum() - true_positive))
    best = int(torch.nonzero(dice >= dice.max() - 1e-12).max())
    return best / len(positive)


def choose_thresholds(
    scores: np.ndarray,
    labels: np.ndarray,
    category_names: Sequence[str],
    metric: str = "f1",
    min_positives: int = 2,
    negative_quantile: float = 0.95,
    source: str = "validation split",
    sign_selection: str = "distance",
) -> Calibration:
    """One threshold per category from calibration images' s_c ``scores`` [N, C] and multi-hot ``labels`` [N, C].

    Rules, per category: at least ``min_positives`` positives and one negative: the threshold maximising ``metric``;
    fewer positives: the ``negative_quantile`` quantile of the negatives' scores (a fixed false-positive rate);
    no negative at all: just below the lowest positive score.
    """
    if metric not in CALIBRATION_METRICS:
        raise ValueError(f"calibration metric must be one of {CALIBRATION_METRICS}, got '{metric}'")
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels) > 0
    thresholds, how = [], []
    for c in range(len(category_names)):
        positive = labels[:, c]
        n_positive, n_negative = int(positive.sum()), int((~positive).sum())
        if n_positive >= min_positives and n_negative > 0:
            thresholds.append(best_threshold(scores[:, c], positive, metric))
            how.append(f"maximises {metric} on {n_positive} positives and {n_negative} negatives")
        elif n_negative > 0:
            thresholds.append(float(np.quantile(scores[~positive, c], negative_quantile)))
            how.append(
                f"fallback: {n_positive} positive(s) < {min_positives}; the {negative_quantile:.0%} quantile "
                f"of {n_negative} negatives' scores"
            )
        else:
            thresholds.append(float(scores[:, c].min() - 1e-3))
            how.append(f"fallback: no negative; just below the lowest of {n_positive} positives")
    return Calibration(
        thresholds=thresholds,
        how=how,
        metric=metric,
        source=source,
        sign_selection=sign_selection,
        positives=[int(n) for n in labels.sum(axis=0)],
        negatives=[int(n) for n in (~labels).sum(axis=0)],
    )


class Calibrator:
    """Computes a network's calibration on a data set: s_c of every calibration image under the run's sign
    selection, then ``choose_thresholds``.

    Args:
        dataset: the validation split's slices (a MONAI data set of scan_transforms' slice items).
        prepare_batch: makes a collated batch CLIP-ready on the network's device (sdmad.data.PrepareSlices).
        fallback_dataset: the few-shot training items, used only when ``dataset`` is empty (flagged optimistic).
        metric, min_positives, negative_quantile: see ``choose_thresholds``.
        batch_size: images per forward pass.
    """

    def __init__(
        self,
        dataset: Any,
        prepare_batch: Callable,
        fallback_dataset: Any = None,
        metric: str = "accuracy",
        min_positives: int = 2,
        negative_quantile: float = 0.95,
        batch_size: int = 16,
    ):
        if metric not in CALIBRATION_METRICS:
            raise ValueError(f"calibration metric must be one of {CALIBRATION_METRICS}, got '{metric}'")
        self.dataset, self.prepare_batch = dataset, prepare_batch
        self.fallback_dataset, self.metric = fallback_dataset, metric
        self.min_positives, self.negative_quantile, self.batch_size = min_positives, negative_quantile, batch_size

    @torch.no_grad()
    def __call__(self, network: torch.nn.Module, text: Any) -> Calibration | None:
        """Thresholds for ``network`` scored against ``text`` (sdmad.engines.PreparedText); None without any
        calibration image."""
        from monai.data import DataLoader

        from sdmad.data import collate_slices
        from sdmad.maps import MAP_THRESHOLD
        from sdmad.metrics import pixel_histograms

        dataset, source = self.dataset, "validation split"
        if len(dataset) == 0 and self.fallback_dataset is not None and len(self.fallback_dataset) > 0:
            dataset, source = self.fallback_dataset, "few-shot training items (no validation split: optimistic)"
        if len(dataset) == 0:
            logger.warning("no calibration images (empty validation split): no calibrated thresholds")
            return None
        device = text.sign_features.device
        scores, labels, pixels = [], [], None
        for batch in DataLoader(dataset, batch_size=self.batch_size, collate_fn=collate_slices):
            images, _ = self.prepare_batch(batch, device)
            masks = self.prepare_batch.masks(batch, device) if network.has_patch_path else None
            batch_scores, maps = network.score_images(
                images, text.sign_features, text.anchor, text.selection.category_mask(), with_maps=masks is not None
            )
            scores.append(batch_scores.category_scores.float().cpu())
            labels.append(torch.as_tensor(batch["label"]).float())
            histograms = None if masks is None else pixel_histograms(maps.maps, *masks, MAP_BINS)
            if histograms is not None:
                pixels = histograms if pixels is None else (pixels[0] + histograms[0], pixels[1] + histograms[1])
        scores, labels = torch.cat(scores).numpy(), torch.cat(labels).numpy()
        calibration = choose_thresholds(
            scores,
            labels,
            network.signs.category_names,
            self.metric,
            self.min_positives,
            self.negative_quantile,
            f"{source}: {len(scores)} images",
            text.selection.mode,
        )
        logger.info(
            "calibrated thresholds (%s): %s",
            calibration.source,
            dict(zip(network.signs.category_names, (round(t, 4) for t in calibration.thresholds), strict=True)),
        )
        if pixels is not None:  # categories only (channel 0 is the anomaly map)
            calibration.map_thresholds = [
                dice_threshold(pixels[0][1 + c], pixels[1][1 + c], MAP_THRESHOLD) for c in range(len(calibration.how))
            ]
            logger.info("map thresholds (best Dice on %s): %s", calibration.source, calibration.map_thresholds)
        return calibration
