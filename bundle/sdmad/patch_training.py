"""Stage 2 of methods sdmad+mvfa and mvfa: the patch heads, trained on the finished image path (mvfa: CLIP's own).

SD-MAD's loss trains the Shift Adapters (the image path) for the configured epochs; then the patch heads learn
MVFA's losses (sdmad.losses.PatchLoss) on the few-shot items' patch tokens, computed once: the frozen CLIP and the
trained adapters make them fixed, so each step costs only the heads, the maps and the loss. Training the heads
after the adapters rather than with them keeps the image path exactly that of method sdmad (the pixel losses
never move it) and lets the heads learn on the stream they will see (measured on the phantom, seed 0: pixel AUROC
0.94 trained after, 0.88 trained alongside with the same steps; docs/method.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from sdmad.checkpoints import read_checkpoint, unwrap
from sdmad.data.clip_input import PrepareSlices
from sdmad.inference import select_signs
from sdmad.losses import PatchLoss
from sdmad.networks.patch_path import patch_maps

logger = logging.getLogger(__name__)


@torch.no_grad()
def cached_tokens(
    network: Any, loader: Any, prepare_batch: PrepareSlices, device: torch.device | str, loss: PatchLoss
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The patch tokens of every item of ``loader`` (per block ``[M, N, W]``), their labels, pixel-loss targets
    (None when no item has pixel labels) and which items have them; kept on the CPU (each step moves its batch)."""
    network.eval()
    tokens: dict[str, list[torch.Tensor]] = {}
    labels, targets, has_mask = [], [], []
    for batch in loader:
        images, batch_labels = prepare_batch(batch, device)
        _, batch_tokens = network.encode_images_and_tokens(images)
        for block, value in batch_tokens.items():
            tokens.setdefault(block, []).append(value.cpu())
        labels.append(batch_labels.cpu())
        masks = prepare_batch.masks(batch, device)
        if masks is None:  # no pixel labels in this batch: empty targets, never used
            masks = (images.new_zeros(len(images), batch_labels.shape[1], *images.shape[-2:]), None, None)
            has_mask.append(torch.zeros(len(images), dtype=torch.bool))
        else:
            has_mask.append(masks[2].cpu())
        targets.append(loss.targets(masks[0]).cpu())
    has_mask = torch.cat(has_mask)
    stacked = {block: torch.cat(values) for block, values in tokens.items()}
    return stacked, torch.cat(labels), torch.cat(targets) if bool(has_mask.any()) else None, has_mask


def train_patch_heads(
    network: Any,
    loader: Any,
    prepare_batch: PrepareSlices,
    device: torch.device | str,
    loss: PatchLoss,
    steps: int = 600,
    learning_rate: float = 0.003,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, float]:
    """Train ``network``'s patch heads for ``steps`` Adam steps on the cached tokens of ``loader``'s items (batches
    of ``batch_size`` drawn by a ``seed``ed generator); returns the last step's loss parts."""
    network = unwrap(network)
    tokens, labels, targets, has_mask = cached_tokens(network, loader, prepare_batch, device, loss)
    sign_features, anchor = network.sign_features().detach(), network.anchor_feature().detach()
    # every sign of each category (Eq. 6 selects at evaluation)
    every_sign = select_signs(
        sign_features, network.sign_category, network.signs.category_names, "none"
    ).category_mask()
    network.patch_heads.requires_grad_(True)  # off during stage 1 (sdmad.networks.SDMADNetwork)
    optimizer = torch.optim.Adam(network.patch_heads.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    count = len(labels)
    network.patch_heads.train()
    parts: dict[str, torch.Tensor] = {}
    for step in range(steps):
        chosen = torch.randperm(count, generator=generator)[:batch_size]
        level_patches = network.patch_features({block: value[chosen].to(device) for block, value in tokens.items()})
        maps = patch_maps(level_patches, sign_features, anchor, every_sign, network.logit_scale)
        parts = loss(
            maps.level_logits,
            labels[chosen].to(device),
            None if targets is None else targets[chosen].to(device),
            has_mask[chosen].to(device),
        )
        total = sum(parts.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if (step + 1) % max(1, steps // 4) == 0:
            logger.info("patch heads: step %d/%d, %s", step + 1, steps, _rounded(parts))
    network.patch_heads.eval().requires_grad_(False)
    return {name: float(value.detach()) for name, value in parts.items()}


def _rounded(parts: dict[str, torch.Tensor]) -> str:
    return ", ".join(f"{name} {float(value.detach()):.4f}" for name, value in parts.items())


class PatchHeadTraining:
    """On the trainer, when its epochs are done (before the final model is written): ``train_patch_heads`` on the
    few-shot items, for networks with the patch path; nothing for method sdmad.

    A finished run started again (it resumes with no step left to do) reuses the heads of its ``model_file``: they
    were trained on the same adapters.

    Args:
        loss: the patch losses and their weights.
        loader: the few-shot items (the whole training split, on every process).
        prepare_batch: the engines' ``prepare_batch`` (CLIP inputs and masks on the device).
        steps, learning_rate, batch_size, seed: see ``train_patch_heads``.
        model_file: the run's `model.pt`.
    """

    def __init__(
        self,
        loss: PatchLoss,
        loader: Any,
        prepare_batch: PrepareSlices,
        steps: int = 600,
        learning_rate: float = 0.003,
        batch_size: int = 32,
        seed: int = 0,
        model_file: str | Path | None = None,
    ):
        self.loss, self.loader, self.prepare_batch = loss, loader, prepare_batch
        self.steps, self.learning_rate, self.batch_size, self.seed = steps, learning_rate, batch_size, seed
        self.model_file = None if model_file is None else Path(model_file)
        self._first_iteration = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._note_start)  # after ResumeFromCheckpoint has loaded
        engine.add_event_handler(Events.COMPLETED, self)

    def _note_start(self, engine: Engine) -> None:
        self._first_iteration = engine.state.iteration

    def _reuse_finished(self, network: Any) -> bool:
        """The heads of the run's model file, when it has them; True if loaded."""
        if self.model_file is None or not self.model_file.is_file():
            return False
        weights = read_checkpoint(self.model_file)["network"]
        heads = {key.removeprefix("patch_heads."): value for key, value in weights.items() if "patch_heads." in key}
        if not heads:
            return False
        network.patch_heads.load_state_dict(heads)
        logger.info("patch heads of %s reused: the run was finished (no training step in this run)", self.model_file)
        return True

    def __call__(self, engine: Engine) -> None:
        network = unwrap(engine.network)
        if not network.has_patch_path:
            return
        if engine.state.iteration == self._first_iteration and self._reuse_finished(network):
            return
        parts = train_patch_heads(
            engine.network,
            self.loader,
            self.prepare_batch,
            engine.state.device,
            self.loss,
            self.steps,
            self.learning_rate,
            self.batch_size,
            self.seed,
        )
        logger.info("patch heads trained (%d steps): %s", self.steps, parts)
