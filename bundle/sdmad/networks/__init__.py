"""CLIP loading (open_clip), Shift Adapters and the SD-MAD network."""

from sdmad.networks.clip_loading import (
    TINY_MODEL_NAME,
    PretrainedWeightsUnavailableError,
    ResolvedWeights,
    load_clip,
    register_model_configs,
    resolve_pretrained,
)
from sdmad.networks.sdmad_network import PAPER_IMAGE_ADAPTER_BLOCKS, SDMADNetwork, map_adapter_blocks, weights_identity
from sdmad.networks.shift_adapter import ShiftAdapter

__all__ = [
    "PAPER_IMAGE_ADAPTER_BLOCKS",
    "TINY_MODEL_NAME",
    "PretrainedWeightsUnavailableError",
    "ResolvedWeights",
    "SDMADNetwork",
    "ShiftAdapter",
    "load_clip",
    "map_adapter_blocks",
    "register_model_configs",
    "resolve_pretrained",
    "weights_identity",
]
