"""The transform chains: scan -> volume in display orientation -> native-size 2-D slices (data loader workers);
slices -> CLIP-ready `[B, 3, S, S]` batches on the model's device (sdmad.data.clip_input.CLIPInput).

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

from sdmad.data.clip_input import CLIP_MEAN, CLIP_STD
from sdmad.data.loading import LoadScand
from sdmad.data.orientation import DisplayOrientationd
from sdmad.data.slices import AsRGBd, CategoryMaskd, CheckFinited, ExtractSlicesd, SliceSpec, SliceTensord

SCAN_KEYS = ("image", "mask")  # the scan and, where an item has one, its label image (same geometry)


def scan_to_slices(keys: Sequence[str] = SCAN_KEYS, slices: SliceSpec = "all", h5_source: str = "auto") -> list:
    """Load (any format), orient to the display of the acquisition plane, check intensities, split into 2-D slice
    items `[C, row, column]` as a radiologist sees them (MetaTensors: source file, slice index). Keys after the
    first (a label image) are optional and follow the scan through every step."""
    return [
        LoadScand(keys=keys, h5_source=h5_source, allow_missing_keys=True),
        DisplayOrientationd(keys=keys, allow_missing_keys=True),
        CheckFinited(keys=keys[:1]),
        ExtractSlicesd(keys=keys, slices=slices, allow_missing_keys=True),
    ]


def scan_transforms(keys: Sequence[str] = SCAN_KEYS, slices: SliceSpec = "all", h5_source: str = "auto") -> Compose:
    """What the data loader's workers do for a scan item: its slices as plain float32 tensors at native size
    (and the items' category masks), ready for ``collate_slices`` and the batched ``CLIPInput`` on the model's
    device."""
    return Compose(
        [
            *scan_to_slices(keys, slices, h5_source),
            SliceTensord(keys=keys, allow_missing_keys=True),
            CategoryMaskd(keys=keys[1:]),
        ]
    )


def per_slice_reference(
    keys: Sequence[str] = ("image",),
    image_size: int = 240,
    lower_percentile: float = 0.5,
    upper_percentile: float = 99.5,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> list:
    """The same slice -> CLIP input steps as ``CLIPInput``, one slice at a time with MONAI's dictionary transforms
    on the CPU: the definition the batched path is tested against, and the "per-slice" path of the benchmark."""
    return [
        ScaleIntensityRangePercentilesd(
            keys=keys,
            lower=lower_percentile,
            upper=upper_percentile,
            b_min=0.0,
            b_max=1.0,
            clip=True,
            channel_wise=True,
        ),
        Resized(keys=keys, spatial_size=image_size, size_mode="longest", mode="bilinear", anti_aliasing=True),
        SpatialPadd(keys=keys, spatial_size=(image_size, image_size), method="symmetric"),
        AsRGBd(keys=keys),
        NormalizeIntensityd(keys=keys, subtrahend=list(mean), divisor=list(std), channel_wise=True),
        EnsureTyped(keys=keys, track_meta=False),
    ]
