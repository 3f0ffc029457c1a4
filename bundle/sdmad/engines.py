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

from sdmad.inference import SignSelection, score_images, select_signs


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The SDMADNetwork inside a DistributedDataParallel (or any ``.module``) wrapper."""
    return network.module if hasattr(network, "module") else network


def train_iteration(engine: Engine, batch: dict[str, Any]) -> dict[str, Any]:
    """One optimisation step on the SD-MAD loss; returns the loss and its parts for the handlers."""
    device = engine.state.device
    images = batch["image"].to(device, non_blocking=True)
    labels = batch["label"].to(device, non_blocking=True).float()
    engine.network.train()
    image_features, sign_features, anchor = engine.network(images, output="features")
    parts = engine.loss_function(image_features, labels, sign_features, unwrap(engine.network).sign_category, anchor)
    engine.optimizer.zero_grad(set_to_none=True)
    parts.total.backward()
    engine.optimizer.step()
    return {"loss": parts.total.detach(), "loss_img_text": parts.img_text.detach(), "loss_pos": parts.pos.detach(),
            "loss_neg": parts.neg.detach()}


@dataclass
class PreparedText:
    """Sign features, anchor and sign selection, computed once per evaluation run."""

    sign_features: torch.Tensor
    anchor: torch.Tensor
    selection: SignSelection


class SignSelectionHandler:
    """At the start of every evaluation run, fix the text side: current sign features, anchor, Eq. 6 selection.

    Stored as ``engine.state.sdmad_text`` for ``evaluate_iteration`` and the report handlers.

    Args:
        mode: sign selection mode ("distance", the paper, or "support").
        support_loader: with mode "support", a loader of the few-shot items (their image features are used).
    """

    def __init__(self, mode: str = "distance", support_loader: Any = None):
        self.mode, self.support_loader = mode, support_loader

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    @torch.no_grad()
    def __call__(self, engine: Engine) -> None:
        network = unwrap(engine.network)
        network.eval()
        sign_features, anchor = network.sign_features(), network.anchor_feature()
        support_features = support_labels = None
        if self.mode == "support":
            if self.support_loader is None:
                raise ValueError("sign selection mode 'support' needs the few-shot items (support_loader)")
            batches = [(network.encode_images(b["image"].to(engine.state.device)), b["label"]) for b in
                       self.support_loader]
            support_features = torch.cat([f for f, _ in batches])
            support_labels = torch.cat([torch.as_tensor(y) for _, y in batches])
        selection = select_signs(sign_features, network.sign_category, network.signs.category_names, self.mode,
                                 support_features, support_labels)
        engine.state.sdmad_text = PreparedText(sign_features, anchor, selection)


def evaluate_iteration(engine: Engine, batch: dict[str, Any]) -> dict[str, Any]:
    """Scores (Eq. 7), decisions (Eq. 8) and normal-vs-abnormal scores of a batch, with its labels and ids."""
    text: PreparedText = engine.state.sdmad_text
    network = unwrap(engine.network)
    network.eval()
    with torch.inference_mode():  # no autograd state at all (lighter than no_grad)
        features = network.encode_images(batch["image"].to(engine.state.device, non_blocking=True))
        scores = score_images(features, text.sign_features, text.anchor, text.selection.category_mask())
    output = {"scores": scores.category_scores, "decisions": scores.decisions, "anomaly": scores.anomaly_score,
              "margins": scores.margins, "source": batch.get("source"), "slice_index": batch.get("slice_index")}
    if "label" in batch:
        output["label"] = batch["label"].to(scores.category_scores.device).float()
    return output
