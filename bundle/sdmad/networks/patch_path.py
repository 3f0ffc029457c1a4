"""The patch-level path (SD-MAD's pixel setting: SD-MAD combined with MVFA-style multi-level patch adapters), and
the MVFA baseline (method mvfa: the same patch heads against two text states, normal and abnormal).

At each adapted image block the patch tokens are brought into the joint image-text space and compared with the
anchor and each category's selected signs, giving one map per category and an anomaly map (docs/method.md,
"Anomaly maps"). Two choices differ from MVFA (CVPR 2024) on purpose:

- A level's patch feature is CLIP's own patch projection (``ln_post``, ``proj``: what zero-shot CLIP maps use)
  plus a learnt residual (MVFA's bottleneck ``W -> E`` with LeakyReLU, then ``E -> E``, zero-initialised), so an
  untrained or bypassed head gives exactly CLIP's maps (the paper's Fig. 4a) and training starts from them. MVFA's
  heads start from random projections.
- The text and few-shot maps are combined with fixed ranges (text: a probability; memory: ``(1 - cos) / 2``), not
  min-max normalised over the test set as MVFA's evaluation does: the test split never chooses a normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sdmad.inference import Scores

METHODS = ("sdmad", "sdmad+mvfa", "mvfa")
MEMORY_WEIGHT = 0.5  # MVFA: anomaly map = 0.5 * text map + 0.5 * few-shot (memory) map

# Method mvfa's text side: an ensemble of prompts per state, averaged into one feature per state, as MVFA does
# (its state words and templates come from WinCLIP's industrial lists; these are this project's own, written for
# medical images). "{}" is the object, e.g. "brain" (config key `mvfa_object`).
STATE_WORDS = {
    "normal": ("{}", "normal {}", "healthy {}", "unremarkable {}", "{} without abnormality", "{} without lesion"),
    "abnormal": (
        "abnormal {}",
        "diseased {}",
        "{} with an abnormality",
        "{} with a lesion",
        "{} with pathology",
        "{} with a finding",
    ),
}
STATE_TEMPLATES = (
    "a photo of the {}.",
    "an image of the {}.",
    "a medical image of the {}.",
    "a scan of the {}.",
    "a cropped image of the {}.",
    "a close-up image of the {}.",
)


def state_prompts(object_name: str) -> dict[str, list[str]]:
    """The normal and abnormal prompt ensembles of method mvfa for ``object_name``."""
    return {
        state: [template.format(word.format(object_name)) for word in words for template in STATE_TEMPLATES]
        for state, words in STATE_WORDS.items()
    }


class PatchHead(nn.Module):
    """One level's patch tokens ``[B, N, W]`` -> joint-space features ``[B, N, E]`` (not normalised).

    ``clip_projection`` is CLIP's frozen ``ln_post`` + ``proj``; the residual ``up(act(down(x)))`` starts at zero.
    """

    def __init__(self, width: int, embed_dim: int, clip_projection: nn.Module):
        super().__init__()
        self.down = nn.Linear(width, embed_dim, bias=False)
        self.up = nn.Linear(embed_dim, embed_dim, bias=False)
        nn.init.zeros_(self.up.weight)
        self.act = nn.LeakyReLU()
        self._clip_projection = [clip_projection]  # a list: not a submodule (frozen, never in a checkpoint)
        self.bypassed = False  # True: CLIP's own projection only (zero-shot maps)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        projected = self._clip_projection[0](tokens).float()
        if self.bypassed:
            return projected
        tokens = tokens.float()
        return projected + self.up(self.act(self.down(tokens)))


class CLIPPatchProjection(nn.Module):
    """CLIP's own patch-token projection: ``ln_post`` then ``proj`` (the path of CLIP's pooled feature)."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = [visual]  # not a submodule: the frozen encoder is owned by the network

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        visual = self.visual[0]
        x = visual.ln_post(tokens)
        return x @ visual.proj if visual.proj is not None else x


@dataclass
class PatchMaps:
    """Maps of a batch at the patch grid ``[B, 1 + C, g, g]``: channel 0 the anomaly map, then one per category
    (probabilities in [0, 1]); ``level_logits`` keeps each level's ``[B, 1 + C, g, g]`` logits for the pixel
    losses."""

    maps: torch.Tensor
    level_logits: list[torch.Tensor]


def grid_side(num_patches: int) -> int:
    side = round(num_patches**0.5)
    if side * side != num_patches:
        raise ValueError(f"{num_patches} patch tokens do not form a square grid")
    return side


def text_logits(
    patches: torch.Tensor, sign_features: torch.Tensor, anchor: torch.Tensor, category_mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """``[B, N, E]`` normalised patch features -> ``[B, N, 1 + C]`` logits of "finding vs normal".

    Category c: ``scale * (max_{kept signs i of c} cos(p, t_i) - cos(p, anchor))``, the two-way softmax of the patch
    between the anchor and the category's best sign, as a logit; the anomaly channel uses the best sign of any
    category.
    """
    cos_signs = patches @ sign_features.T  # [B, N, S]
    masked = cos_signs[..., None, :].masked_fill(~category_mask.bool(), float("-inf"))  # [B, N, C, S]
    per_category = masked.amax(dim=-1)  # [B, N, C]
    to_anchor = (patches @ anchor)[..., None]  # [B, N, 1]
    best = per_category.amax(dim=-1, keepdim=True)
    return scale * (torch.cat([best, per_category], dim=-1) - to_anchor)


def memory_distance(patches: torch.Tensor, memory: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """``[B, N, E]`` and ``[M, E]`` normalised features -> ``[B, N]`` in [0, 1]: ``(1 - max cos) / 2``, the
    distance of each patch to its nearest remembered normal patch (MVFA's few-shot branch)."""
    flat = patches.reshape(-1, patches.shape[-1])
    nearest = torch.cat([(part @ memory.T).amax(dim=1) for part in flat.split(chunk)])
    return ((1.0 - nearest) / 2.0).reshape(patches.shape[:2])


def map_scores(maps: PatchMaps, num_categories: int) -> Scores:
    """Method mvfa's image-level outputs from its maps: the anomaly map's peak (MVFA's image score on data sets with
    masks; with the few-shot memory mixed in) for the anomaly score and for every category (the two states know no
    categories). Its decision, the counterpart of Eq. 8: the text map's peak passes 0.5, i.e. at some patch the
    abnormal state is nearer than the normal one (the memory has no such point)."""
    peak = maps.maps[:, 0].flatten(1).amax(dim=1)
    text = torch.stack([torch.sigmoid(logits[:, 0]) for logits in maps.level_logits]).mean(dim=0)
    margins = (text.flatten(1).amax(dim=1) - 0.5)[:, None].expand(-1, num_categories)
    scores = peak[:, None].expand(-1, num_categories)
    return Scores(category_scores=scores, decisions=margins > 0, anomaly_score=peak, margins=margins)


def patch_maps(
    level_patches: Sequence[torch.Tensor],
    sign_features: torch.Tensor,
    anchor: torch.Tensor,
    category_mask: torch.Tensor,
    scale: float,
    memory: Sequence[torch.Tensor] | None = None,
) -> PatchMaps:
    """Per-level maps averaged over levels; with a few-shot ``memory`` (one ``[M, E]`` per level) the anomaly
    channel is ``0.5 * text + 0.5 * memory`` (MVFA's combination, fixed ranges)."""
    logits, text_maps, memory_maps = [], [], []
    for level, patches in enumerate(level_patches):
        side = grid_side(patches.shape[1])
        level_logits = text_logits(patches, sign_features, anchor, category_mask, scale)
        level_logits = level_logits.transpose(1, 2).reshape(patches.shape[0], -1, side, side)
        logits.append(level_logits)
        text_maps.append(torch.sigmoid(level_logits))
        if memory is not None:
            memory_maps.append(memory_distance(patches, memory[level]).reshape(-1, 1, side, side))
    maps = torch.stack(text_maps).mean(dim=0)
    if memory_maps:
        anomaly = (1 - MEMORY_WEIGHT) * maps[:, :1] + MEMORY_WEIGHT * torch.stack(memory_maps).mean(dim=0)
        maps = torch.cat([anomaly, maps[:, 1:]], dim=1)
    return PatchMaps(maps=maps, level_logits=logits)
