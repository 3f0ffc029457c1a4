"""The transform chains: scan -> volume in display orientation -> 2-D slices -> CLIP-ready 3 x S x S tensors.

The data code knows nothing about CLIP except the final resize and the normalisation statistics it is given.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.transforms import (
    Compose,
    EnsureTyped,
    NormalizeIntensityd,
    Resized,
    ScaleIntensityRangePercentilesd,
    SpatialPadd,
)

from sdmad.data.loading import LoadScand
from sdmad.data.orientation import DisplayOrientationd
from sdmad.data.slices import AsRGBd, CheckFinited, ExtractSlicesd, SliceSpec

# open_clip's OPENAI_DATASET_MEAN / _STD, the statistics every CLIP model here was trained with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def scan_to_slices(keys: Sequence[str] = ("image",), slices: SliceSpec = "all", h5_source: str = "auto") -> list:
    """Load (any format), orient to the display of the acquisition plane, check intensities, split into 2-D slice
    items `[C, row, column]` as a radiologist sees them."""
    return [
        LoadScand(keys=keys, h5_source=h5_source),
        DisplayOrientationd(keys=keys),
        CheckFinited(keys=keys),
        ExtractSlicesd(keys=keys, slices=slices),
    ]


def slice_to_clip_input(keys: Sequence[str] = ("image",), image_size: int = 240, lower_percentile: float = 0.5,
                        upper_percentile: float = 99.5, mean: Sequence[float] = CLIP_MEAN,
                        std: Sequence[float] = CLIP_STD) -> list:
    """Per-slice robust intensity scaling to [0, 1], resize the longest side and pad to a square, 3 channels,
    CLIP normalisation."""
    return [
        ScaleIntensityRangePercentilesd(keys=keys, lower=lower_percentile, upper=upper_percentile, b_min=0.0,
                                        b_max=1.0, clip=True, channel_wise=True),
        # longest side to image_size (aspect kept), then pad to a square
        Resized(keys=keys, spatial_size=image_size, size_mode="longest", mode="bilinear", anti_aliasing=True),
        SpatialPadd(keys=keys, spatial_size=(image_size, image_size), method="symmetric"),
        AsRGBd(keys=keys),
        NormalizeIntensityd(keys=keys, subtrahend=list(mean), divisor=list(std), channel_wise=True),
        EnsureTyped(keys=keys, track_meta=False),
    ]


def scan_transforms(keys: Sequence[str] = ("image",), image_size: int = 240, slices: SliceSpec = "all",
                    h5_source: str = "auto") -> Compose:
    """The whole chain for a list of scan items; the output items are CLIP-ready slices."""
    return Compose(scan_to_slices(keys, slices, h5_source) + slice_to_clip_input(keys, image_size))
