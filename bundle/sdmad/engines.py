"""The SD-MAD iterations for MONAI's SupervisedTrainer and SupervisedEvaluator.

MONAI's default iterations compute ``loss(network(x), y)``; SD-MAD's loss needs the image features, the current
features of every sign (the text adapter trains too) and the anchor, and its evaluation needs one sign
selection per run. Both are passed as ``iteration_update``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from ignite.engine import Engine, Events

from sdmad.calibration import Calibration, Calibrator, check_decision_rule
from sdmad.checkpoints import CheckpointError, unwrap
from sdmad.data.clip_input import SHAPE_KEY, PrepareSlices
from sdmad.inference import Scores, SignSelection, score_images, select_signs


def train_iteration(engine: Engine, batch: dict[str, Any]) -> dict[str, Any]:
    """One optimisation step on the SD-MAD loss; returns the loss and its parts for the handlers. Method mvfa has
    no such step (nothing adapts its stream or text; its patch heads learn after the epochs, sdmad.patch_training):
    its single epoch does nothing."""
    if unwrap(engine.network).method == "mvfa":
        return {"loss": torch.zeros(())}
    images, labels = engine.prepare_batch(batch, engine.state.device, non_blocking=True)
    engine.network.train()
    image_features, sign_features, anchor = engine.network(images, output="features")
    parts = engine.loss_function(image_features, labels, sign_features, unwrap(engine.network).sign_category, anchor)
    engine.optimizer.zero_grad(set_to_none=True)
    parts.total.backward()
    engine.optimizer.step()
    return parts.as_dict()


@dataclass
class PreparedText:
    """What scoring needs, fixed once per evaluation run: sign features, anchor, the Eq. 6 selection, and the
    decision rule (with its thresholds when calibrated)."""

    sign_features: torch.Tensor
    anchor: torch.Tensor
    selection: SignSelection
    decision_rule: str = "paper"
    calibration: Calibration | None = None

    def margins(self, scores: Scores) -> torch.Tensor:
        """[B, C] the run's rule as a margin, present iff > 0: Eq. 8's min_t cos(f, t) - cos(f, anchor), or
        s_c - threshold_c."""
        if self.decision_rule == "calibrated":
            return scores.category_scores - self.calibration.threshold_tensor(scores.category_scores)
        return scores.margins


@torch.no_grad()
def prepare_text(
    network: torch.nn.Module,
    mode: str = "distance",
    support_loader: Any = None,
    device: torch.device | str = "cpu",
    prepare_batch: PrepareSlices | None = None,
) -> PreparedText:
    """Current sign features and anchor of ``network`` and their sign selection (``mode`` "support" encodes the
    few-shot images of ``support_loader``, made CLIP-ready by ``prepare_batch``)."""
    network = unwrap(network)
    network.eval()
    sign_features, anchor = network.sign_features(), network.anchor_feature()
    support_features = support_labels = None
    if mode == "support":
        if support_loader is None or prepare_batch is None:
            raise ValueError(
                "sign selection mode 'support' needs the few-shot items and the engine's prepare_batch: "
                "it is available in `training` and `evaluating` (their support loader), not in "
                "`inference`"
            )
        batches = [prepare_batch(b, device) for b in support_loader if "image" in b]
        support_features = torch.cat([network.encode_images(images) for images, _ in batches])
        support_labels = torch.cat([labels for _, labels in batches]).cpu()
    selection = select_signs(
        sign_features, network.sign_category, network.signs.category_names, mode, support_features, support_labels
    )
    return PreparedText(sign_features, anchor, selection)


@torch.no_grad()
def patch_memory(
    network: torch.nn.Module, support_loader: Any, device: torch.device | str, prepare_batch: PrepareSlices
) -> list[torch.Tensor] | None:
    """The few-shot memory of the patch path: per level, the patch features of the support set's normal slices
    `[M, E]` (MVFA's few-shot branch); None without the patch path or without a normal support slice."""
    network = unwrap(network)
    if not network.has_patch_path or support_loader is None:
        return None
    network.eval()
    levels: list[list[torch.Tensor]] = []
    for batch in support_loader:
        if "image" not in batch:
            continue
        images, labels = prepare_batch(batch, device)
        normal = labels.sum(dim=1) == 0
        if bool(normal.any()):
            _, patches = network.encode_images_and_patches(images[normal])
            levels.append([level.reshape(-1, level.shape[-1]) for level in patches])
    if not levels:
        return None
    return [torch.cat(parts) for parts in zip(*levels, strict=True)]


class SignSelectionHandler:
    """At the start of every evaluation run, fix the text side (sign features, anchor, Eq. 6 selection) and the
    decision rule; stored as ``engine.state.sdmad_text`` for ``evaluate_iteration`` and the report handlers.

    Thresholds for the ``calibrated`` rule come from the loaded checkpoint (``network.calibration``) when they were
    computed with the same sign selection; otherwise from ``calibrator`` (the validation split, in `evaluating`).
    Evaluation always prepares them, so that its report can show both rules.

    Args:
        mode: sign selection mode: "distance" (the paper), "support" or "none" (every sign kept: "no SS").
        support_loader: with mode "support", a loader of the few-shot items (their image features are used).
        decision_rule: "paper" (Eq. 8) or "calibrated" (per-category thresholds on s_c).
        calibrator: computes thresholds when the network has none for this selection (see sdmad.calibration).
    """

    def __init__(
        self,
        mode: str = "distance",
        support_loader: Any = None,
        decision_rule: str = "paper",
        calibrator: Calibrator | None = None,
    ):
        self.mode, self.support_loader, self.calibrator = mode, support_loader, calibrator
        self.decision_rule = check_decision_rule(decision_rule)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        network = unwrap(engine.network)
        text = prepare_text(network, self.mode, self.support_loader, engine.state.device, engine.prepare_batch)
        calibration = network.calibration
        if calibration is not None and calibration.sign_selection != self.mode:
            calibration = None  # thresholds of scores under another selection do not apply
        if calibration is None and self.calibrator is not None:
            calibration = self.calibrator(network, text)
        if self.decision_rule == "calibrated" and calibration is None:
            raise CheckpointError(
                f"{network.checkpoint or 'zero-shot CLIP'}: no calibrated thresholds for sign "
                f"selection '{self.mode}' (models trained before thresholds were stored, or with "
                f"another selection, have none); pass --decision_rule paper, or retrain"
            )
        text.decision_rule, text.calibration = self.decision_rule, calibration
        engine.state.sdmad_text = text


def evaluate_iteration(engine: Engine, batch: dict[str, Any]) -> dict[str, Any]:
    """Scores (Eq. 7), decisions and margins of the run's rule, Eq. 8 margins, normal-vs-abnormal scores of a
    batch, with its labels and ids."""
    text: PreparedText = engine.state.sdmad_text
    network = unwrap(engine.network)
    network.eval()
    maps = masks = None
    category_mask = text.selection.category_mask()
    with torch.inference_mode():  # no autograd state at all (lighter than no_grad)
        if "image" in batch:
            images, _ = engine.prepare_batch(batch, engine.state.device, non_blocking=True)
            scores, patch = network.score_images(images, text.sign_features, text.anchor, category_mask)
            if patch is not None:
                maps = patch.maps
                masks = engine.prepare_batch.masks(batch, engine.state.device, non_blocking=True)
        else:  # every scan of the batch was unreadable (recorded by the UnreadableScans handler): no rows
            no_features = text.sign_features.new_zeros(0, text.sign_features.shape[1])
            scores = score_images(no_features, text.sign_features, text.anchor, category_mask)
        margins = text.margins(scores)
    output = {
        "scores": scores.category_scores,
        "decisions": margins > 0,
        "margins": margins,
        "paper_margins": scores.margins,
        "anomaly": scores.anomaly_score,
        "source": batch.get("source"),
        "slice_index": batch.get("slice_index"),
    }
    if "label" in batch:
        output["label"] = batch["label"].to(scores.category_scores.device).float()
    if maps is not None:  # [B, 1 + C, g, g]: the anomaly map, then one per category (patch grid)
        output["maps"] = maps
        output["image_shape"] = batch.get(SHAPE_KEY)
    if masks is not None:  # in the CLIP input's geometry, with the slices' extent (sdmad.data.PrepareSlices.masks)
        output["mask"], output["valid"], output["has_mask"] = masks
    return output
