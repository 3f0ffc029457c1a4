"""The SD-MAD network: a frozen open_clip CLIP with Shift Adapters on image blocks and the last text block."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from torch import nn

from sdmad.calibration import Calibration
from sdmad.flags import as_flag, as_optional_flag
from sdmad.inference import Scores, SignSelection, score_images, select_signs
from sdmad.networks.clip_loading import TINY_MODEL_NAME, load_clip, no_weights
from sdmad.networks.patch_path import (
    METHODS,
    CLIPPatchProjection,
    PatchHead,
    PatchMaps,
    map_scores,
    patch_maps,
    state_prompts,
)
from sdmad.networks.shift_adapter import ShiftAdapter
from sdmad.signs import SignSet

logger = logging.getLogger(__name__)

PAPER_IMAGE_ADAPTER_BLOCKS = (6, 12, 18, 24)
PAPER_DEPTH = 24
FROZEN_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def map_adapter_blocks(blocks: Sequence[int], depth: int, reference_depth: int = PAPER_DEPTH) -> list[int]:
    """1-based block numbers given for a ``reference_depth``-block encoder, placed on a ``depth``-block one.

    Each block keeps its relative depth: ``ceil(b * depth / reference_depth)`` (duplicates merged). On the
    paper's 24-block ViT-L this is the identity; on the 4-block tiny model 6/12/18/24 become 1/2/3/4.
    """
    mapped = sorted({max(1, math.ceil(b * depth / reference_depth)) for b in blocks})
    for b in blocks:
        if not 1 <= b <= reference_depth:
            raise ValueError(f"adapter block {b} is outside 1..{reference_depth} (1-based block numbers)")
    return mapped


class SDMADNetwork(nn.Module):
    """CLIP + Shift Adapters, scoring images against the signs of each category.

    Only adapter parameters are trainable, and ``state_dict()`` holds only them (a few MB): the frozen CLIP
    weights come from ``pretrained``, never from an SD-MAD checkpoint. Adapters are attached to open_clip's
    blocks with forward hooks, so CLIP itself is used unmodified.

    Args:
        signs: the task's sign prompts and normal (anchor) prompts.
        model_name: open_clip model name, ``sdmad-tiny`` for tests/demo, or ``local-dir:<folder>``.
        pretrained: open_clip tag, local checkpoint file, or None for random weights.
        image_size: input size (240 in the paper; position embeddings resized).
        image_adapter_blocks: 1-based image blocks to adapt, given for an encoder of ``adapter_blocks_depth`` blocks
            and mapped to the actual depth by ``map_adapter_blocks``.
        adapter_blocks_depth: depth the block numbers refer to (24: the paper's ViT-L).
        text_adapter: adapt the last text block.
        bottleneck_ratio: adapter bottleneck D_b = round(D * ratio).
        activation: adapter activation.
        lam: lambda of Eq. 2.
        quick_gelu: passed to ``load_clip``.
        cache_dir: cache folder for pretrained tags.
        frozen_dtype: "float32", or "bfloat16" for the frozen image encoder (half the weight memory, tensor-core
            speed on GPUs); the adapters keep float32 weights and compute in float32 either way, and the cached text
            side stays float32. Checkpoints are the same for both.
        grad_checkpointing: recompute the image blocks' activations in the backward pass instead of keeping them
            (training memory for time; blocks before the first adapter keep none anyway: nothing there needs grad).
        method: "sdmad" (image level only, the paper's image setting), "sdmad+mvfa" (plus MVFA-style patch heads
            on the adapted blocks: anomaly and per-category maps, sdmad.networks.patch_path) or "mvfa" (the MVFA
            baseline: the patch heads alone against two text states, normal and abnormal; no Shift Adapters, no
            text adapter, no sign loss; the image scores are the anomaly map's peak, the same for every category).
        mvfa_object: method mvfa: the object of its state prompts (e.g. "brain": "a photo of a healthy brain.").
    """

    def __init__(
        self,
        signs: SignSet,
        model_name: str = TINY_MODEL_NAME,
        pretrained: str | os.PathLike | None = None,
        image_size: int = 240,
        image_adapter_blocks: Sequence[int] = PAPER_IMAGE_ADAPTER_BLOCKS,
        adapter_blocks_depth: int = PAPER_DEPTH,
        text_adapter: bool = True,
        bottleneck_ratio: float = 0.5,
        activation: str = "leaky_relu",
        lam: float = 0.9,
        quick_gelu: bool | None = None,
        cache_dir: str | None = None,
        frozen_dtype: str = "float32",
        grad_checkpointing: bool = False,
        method: str = "sdmad",
        mvfa_object: str = "brain",
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got '{method}'")
        text_adapter, grad_checkpointing = (
            as_flag(text_adapter, "text_adapter"),
            as_flag(grad_checkpointing, "grad_checkpointing"),
        )
        adapt_stream = method != "mvfa"  # MVFA adapts neither CLIP's image stream nor its text: its heads learn
        text_adapter = text_adapter and adapt_stream
        quick_gelu = as_optional_flag(quick_gelu, "quick_gelu")
        if frozen_dtype not in FROZEN_DTYPES:
            raise ValueError(f"frozen_dtype must be one of {sorted(FROZEN_DTYPES)}, got '{frozen_dtype}'")
        self.signs = signs
        # set by sdmad.checkpoints.load_model: the loaded file and its calibrated decision thresholds (if any)
        self.checkpoint: str | None = None
        self.calibration: Calibration | None = None
        self.backbone = f"{model_name}, weights: {pretrained if pretrained not in (None, '') else 'random'}"
        self._record = {
            "model_name": model_name,
            "pretrained": weights_identity(pretrained),
            "image_size": image_size,
            "image_adapter_blocks": list(image_adapter_blocks),
            "adapter_blocks_depth": adapter_blocks_depth,
            "text_adapter": text_adapter,
            "bottleneck_ratio": bottleneck_ratio,
            "activation": activation,
            "lam": lam,
            "categories": signs.category_names,
            "sign_prompts": signs.sign_prompts,
            "normal_prompts": list(signs.normal),
        }
        if method != "sdmad":  # image-only records stay as they were: their checkpoints keep loading
            self._record["method"] = method
        states = state_prompts(mvfa_object) if method == "mvfa" else None
        if states is not None:
            self._record["state_prompts"] = states
        self.method = method
        # the support set's normal patch features per level (few-shot maps); set by the FinalModelSaver / load
        self.patch_memory: list[torch.Tensor] | None = None
        self.clip, self.tokenizer = load_clip(model_name, pretrained, image_size, quick_gelu, cache_dir)
        self.clip.requires_grad_(False)
        self.register_buffer("sign_category", torch.tensor(signs.sign_category, dtype=torch.long), persistent=False)
        # Frozen text states are computed before any adapter is attached (see _frozen_text_states).
        self.register_buffer("sign_states", self._frozen_text_states(signs.sign_prompts), persistent=False)
        normal_prompts = list(signs.normal) if states is None else states["normal"]
        self.register_buffer("normal_states", self._frozen_text_states(normal_prompts), persistent=False)
        # method mvfa: the abnormal state's prompts (None otherwise)
        abnormal_states = None if states is None else self._frozen_text_states(states["abnormal"])
        self.register_buffer("abnormal_states", abnormal_states, persistent=False)

        self.image_dtype = FROZEN_DTYPES[frozen_dtype]
        self.clip.visual.to(self.image_dtype)
        self.clip.visual.set_grad_checkpointing(grad_checkpointing)
        visual_blocks = self.clip.visual.transformer.resblocks
        self.image_blocks = map_adapter_blocks(image_adapter_blocks, len(visual_blocks), adapter_blocks_depth)
        image_width = self.clip.visual.transformer.width
        self.image_adapters = nn.ModuleDict(
            {
                str(b): ShiftAdapter(image_width, round(image_width * bottleneck_ratio), activation, lam)
                for b in self.image_blocks
                if adapt_stream
            }
        )
        for b, adapter in self.image_adapters.items():
            visual_blocks[int(b) - 1].register_forward_hook(adapter.block_hook)
        self.text_adapter: ShiftAdapter | None = None
        if text_adapter:
            text_width = self.clip.transformer.width
            self.text_adapter = ShiftAdapter(text_width, round(text_width * bottleneck_ratio), activation, lam)
            self.clip.transformer.resblocks[-1].register_forward_hook(self.text_adapter.block_hook)
        # made after every Shift Adapter (their random initialisation is that of method sdmad); trained after them
        # (sdmad.patch_training), so the image path is exactly that of method sdmad with the same seed
        self.patch_heads: nn.ModuleDict | None = None
        self._captured: dict[str, torch.Tensor] = {}
        self._capturing = False  # the hooks keep block outputs only inside encode_images_and_tokens
        if method != "sdmad":
            projection = CLIPPatchProjection(self.clip.visual)
            self.patch_heads = nn.ModuleDict(
                {
                    str(b): PatchHead(image_width, self.clip.text_projection.shape[-1], projection)
                    for b in self.image_blocks
                }
            )
            # trained in stage 2 only (sdmad.patch_training switches them on): stage 1's optimiser and a
            # DistributedDataParallel wrapper see the Shift Adapters alone
            self.patch_heads.requires_grad_(False)
            for b in self.patch_heads:  # registered after the adapters' hooks: they see the adapted tokens
                visual_blocks[int(b) - 1].register_forward_hook(self._capture_hook(b))
        logger.info(
            "method %s: %s on image blocks %s of %d (1-based)%s",
            method,
            "patch heads" if method == "mvfa" else "Shift Adapters",
            self.image_blocks,
            len(visual_blocks),
            " and on the last text block" if text_adapter else "",
        )

        self.register_state_dict_post_hook(_drop_frozen_weights)
        self.register_load_state_dict_post_hook(_ignore_missing_frozen_weights)

    # ----------------------------------------------------------------------------------------------- text
    @torch.no_grad()
    def _frozen_text_states(self, prompts: list[str]) -> torch.Tensor:
        """[n, W]: the pooled output of the last text block, before its adapter (which is not attached yet).

        Adapter, ln_final and pooling all act per token, so pooling first and adapting afterwards gives the same
        features as the full path while recomputing only what the adapter changes.
        """
        captured: list[torch.Tensor] = []
        if not self.clip.transformer.batch_first:
            raise NotImplementedError("the cached text path needs open_clip's batch_first text transformer")
        tokens = self.tokenizer(prompts)
        handle = self.clip.transformer.resblocks[-1].register_forward_hook(
            lambda module, args, output: captured.append(output)
        )
        try:
            self.clip.encode_text(tokens)
        finally:
            handle.remove()
        return text_global_pool(
            captured[0], tokens, self.clip.text_pool_type, eos_token_id=getattr(self.clip, "text_eos_id", None)
        )

    def _project_text(self, states: torch.Tensor) -> torch.Tensor:
        x = self.text_adapter(states) if self.text_adapter is not None else states
        x = self.clip.ln_final(x)
        projection = self.clip.text_projection
        x = projection(x) if isinstance(projection, nn.Linear) else x @ projection
        return F.normalize(x, dim=-1)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """[n, E] normalised text features of any prompts through the full text encoder (adapter included)."""
        tokens = self.tokenizer(prompts).to(self.sign_states.device)
        return self.clip.encode_text(tokens, normalize=True)

    def sign_features(self) -> torch.Tensor:
        """[n_signs, E] normalised features of all signs (cached frozen states, adapter recomputed). Method mvfa:
        every sign is the abnormal state (the normalised mean of its prompts' features), so that every category's
        map is MVFA's two-state map."""
        if self.abnormal_states is not None:
            abnormal = F.normalize(self._project_text(self.abnormal_states).mean(dim=0), dim=-1)
            return abnormal.expand(len(self.sign_category), -1)
        return self._project_text(self.sign_states)

    def anchor_feature(self) -> torch.Tensor:
        """[E] the anchor: normalised mean of the normal prompts' features (method mvfa: the normal state's)."""
        return F.normalize(self._project_text(self.normal_states).mean(dim=0), dim=-1)

    # ---------------------------------------------------------------------------------------------- image
    @property
    def image_mean(self) -> tuple[float, ...]:
        """The backbone's per-channel normalisation mean, from its open_clip preprocessing config."""
        return tuple(open_clip.get_model_preprocess_cfg(self.clip)["mean"])

    @property
    def image_std(self) -> tuple[float, ...]:
        """The backbone's per-channel normalisation standard deviation (open_clip preprocessing config)."""
        return tuple(open_clip.get_model_preprocess_cfg(self.clip)["std"])

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[B, E] normalised float32 image features (class token after the adapted blocks, projected)."""
        features = self.clip.encode_image(images.to(self.image_dtype))
        return F.normalize(features.float(), dim=-1)

    def _capture_hook(self, block: str):
        def capture(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if self._capturing:
                self._captured[block] = output

        return capture

    @property
    def has_patch_path(self) -> bool:
        return self.patch_heads is not None

    def encode_images_and_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """[B, E] image features and, per adapted block, its [B, N, W] output patch tokens (patch path only)."""
        if not self.has_patch_path:
            raise ValueError("this network has no patch path: build it with method 'sdmad+mvfa' or 'mvfa'")
        self._captured.clear()
        self._capturing = True
        try:
            features = self.encode_images(images)
        finally:
            self._capturing = False
        grid = self.clip.visual.grid_size
        num_patches = grid[0] * grid[1]
        tokens = {block: self._captured.pop(block) for block in self.patch_heads}
        return features, {block: t[:, t.shape[1] - num_patches :] for block, t in tokens.items()}

    def patch_features(self, tokens: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per level, [B, N, E] normalised patch features of the blocks' patch tokens (the patch heads)."""
        return [F.normalize(head(tokens[block]), dim=-1) for block, head in self.patch_heads.items()]

    def encode_images_and_patches(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """[B, E] image features and, per adapted level, [B, N, E] normalised patch features (patch path only)."""
        features, tokens = self.encode_images_and_tokens(images)
        return features, self.patch_features(tokens)

    @property
    def logit_scale(self) -> float:
        """CLIP's learnt temperature (100 for OpenAI weights), used for the maps' two-way softmax."""
        return float(self.clip.logit_scale.exp().clamp(max=100.0))

    def maps(
        self, level_patches: list[torch.Tensor], sign_features: torch.Tensor, anchor: torch.Tensor, category_mask
    ) -> PatchMaps:
        """Anomaly and per-category maps at the patch grid (with the few-shot memory when there is one)."""
        return patch_maps(level_patches, sign_features, anchor, category_mask, self.logit_scale, self.patch_memory)

    def score_images(
        self,
        images: torch.Tensor,
        sign_features: torch.Tensor,
        anchor: torch.Tensor,
        category_mask: torch.Tensor,
        with_maps: bool = True,
    ) -> tuple[Scores, PatchMaps | None]:
        """A batch's scores against the given text side and, with the patch path and ``with_maps``, its maps:
        Eq. 7-8 on the image features, or for method mvfa the anomaly map's peak
        (sdmad.networks.patch_path.map_scores; its scores always need the maps)."""
        if not self.has_patch_path or (not with_maps and self.method != "mvfa"):
            return score_images(self.encode_images(images), sign_features, anchor, category_mask), None
        features, patches = self.encode_images_and_patches(images)
        maps = self.maps(patches, sign_features, anchor, category_mask)
        if self.method == "mvfa":
            return map_scores(maps, category_mask.shape[0]), maps
        return score_images(features, sign_features, anchor, category_mask), maps

    def stage_one_parameters(self) -> list[nn.Parameter]:
        """What the SD-MAD trainer's optimiser updates: the trainable adapters. Method mvfa has no stage 1 (its
        trainer runs one empty epoch; the heads learn in stage 2): its optimiser holds the heads, which it never
        steps, because torch refuses an optimiser without parameters."""
        if self.method == "mvfa":
            return list(self.patch_heads.parameters())
        return [p for p in self.parameters() if p.requires_grad]

    # -------------------------------------------------------------------------------------------- scoring
    def select_signs(self) -> SignSelection:
        """Eq. 6 on the current sign features."""
        return select_signs(self.sign_features(), self.sign_category, self.signs.category_names)

    def score(self, images: torch.Tensor, selection: SignSelection | None = None) -> Scores:
        """Scores, decisions and normal-vs-abnormal score (Eq. 7-8) of a batch of images."""
        sign_features = self.sign_features()
        if selection is None:
            selection = select_signs(sign_features, self.sign_category, self.signs.category_names)
        mask = selection.category_mask()
        return self.score_images(images, sign_features, self.anchor_feature(), mask, with_maps=False)[0]

    def forward(self, images: torch.Tensor, output: str = "scores"):
        """[B, 3, H, W] -> [B, C]: s_c, the max cosine over each category's kept signs.

        ``output="features"`` returns ``(image_features, sign_features, anchor)`` for the loss instead: training
        goes through ``forward`` so that wrappers such as DistributedDataParallel see it.
        """
        if output == "features":
            return self.encode_images(images), self.sign_features(), self.anchor_feature()
        if output != "scores":
            raise ValueError(f"output must be 'scores' or 'features', got '{output}'")
        return self.score(images).category_scores

    def bypass_adapters(self, bypass: bool = True) -> None:
        """Adapters as identity (the network is then exactly the frozen CLIP: the zero-shot baseline), or back."""
        for module in self.modules():
            if isinstance(module, ShiftAdapter | PatchHead):
                module.bypassed = bypass

    def config_record(self) -> dict:
        """What a checkpoint of this network must match: backbone, adapters, lambda, categories and prompts."""
        return dict(self._record)

    # ---------------------------------------------------------------------------------------- parameters
    def train(self, mode: bool = True) -> SDMADNetwork:
        """Adapters follow ``mode``; the frozen CLIP always stays in eval mode."""
        super().train(mode)
        self.clip.eval()
        return self

    def adapter_parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


EDGE_BYTES = 1 << 20  # the first and last MiB of a weights file identify it with its name and size


def weights_identity(pretrained: str | os.PathLike | None) -> str | None:
    """A tag as is; a file by name, size and the sha256 of its first and last MiB (two files of the same name and
    size, e.g. two pretraining recipes of one model, differ there; hashing a whole 1.7 GB file at every load would
    cost seconds)."""
    if no_weights(pretrained):
        return None
    if os.path.isfile(pretrained):
        size = os.path.getsize(pretrained)
        digest = hashlib.sha256()
        with open(pretrained, "rb") as handle:
            digest.update(handle.read(EDGE_BYTES))
            handle.seek(max(size - EDGE_BYTES, 0))
            digest.update(handle.read(EDGE_BYTES))
        return f"{os.path.basename(pretrained)} ({size} bytes, edges sha256 {digest.hexdigest()[:16]})"
    return str(pretrained)


def _frozen_prefix(key: str) -> bool:
    """Whether a (possibly wrapper-prefixed, e.g. ``module.``) state-dict key names a frozen CLIP weight."""
    return key.startswith("clip.") or ".clip." in key


def _drop_frozen_weights(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "clip.")]:
        del state_dict[key]


def _ignore_missing_frozen_weights(module: nn.Module, incompatible_keys) -> None:
    """Strict loading checks the adapters only; the frozen CLIP weights are never part of a checkpoint."""
    frozen = [key for key in incompatible_keys.missing_keys if _frozen_prefix(key)]
    for key in frozen:
        incompatible_keys.missing_keys.remove(key)
