"""Native-size 2-D slices -> CLIP-ready `[B, 3, S, S]` tensors, batched on the model's device.

The data loader's workers only decode, orient and cut slices (sdmad.data.preprocessing.scan_to_slices); the
per-slice work that used to follow on the CPU (percentile scaling, resize + pad, grey -> RGB, CLIP mean/std) runs
here on whole batches, as tensor operations on the device that holds the batch. The numbers are those of the
per-slice chain (`preprocessing.per_slice_reference`) within float32 rounding (tests/test_clip_input.py).

A batch is one tensor: ``stack_slices`` pads slices of different sizes to the batch's largest and records each
slice's `(channels, rows, columns)`; ``CLIPInput`` processes each size group at once (real batches hold one or
two sizes: the slices of a volume share theirs).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from monai.networks.layers.convutils import gaussian_1d
from monai.transforms import Resize, SpatialPad
from monai.utils import convert_to_tensor
from torch.nn import functional as F
from torch.utils.data import default_collate

# open_clip's OPENAI_DATASET_MEAN / _STD, the statistics every CLIP model here was trained with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SHAPE_KEY = "image_shape"
MASK_KEY, HAS_MASK_KEY = "mask", "has_mask"


def stack_slices(images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """`[C, H, W]` slices -> one `[B, C_max, H_max, W_max]` tensor (zero-padded at the end of each axis) and the
    `[B, 3]` int64 `(C, H, W)` of each slice (kept on the CPU: grouping by size then needs no device sync).

    Stacked by torch's ``default_collate``, which in a loader worker writes the batch straight into shared memory
    (no second copy on its way to the main process)."""
    shapes = torch.tensor([tuple(image.shape) for image in images], dtype=torch.int64)
    images = [torch.as_tensor(image) for image in images]
    if not bool((shapes == shapes[0]).all()):
        channels, rows, columns = shapes.max(dim=0).values.tolist()
        images = [
            F.pad(image, (0, columns - image.shape[2], 0, rows - image.shape[1], 0, channels - image.shape[0]))
            for image in images
        ]
    return default_collate(images), shapes


def size_groups(shapes: torch.Tensor, device: torch.device) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """The slices of each size in a batch: (their indices on ``device``, their `(C, H, W)`)."""
    for shape in torch.unique(shapes, dim=0):
        yield (shapes == shape).all(dim=1).nonzero().squeeze(1).to(device), shape.tolist()


@functools.lru_cache(maxsize=32)
def _on_device(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small constant tensor made once per device: copying from pageable host memory on every batch would make
    the host wait for the GPU's queue (a stream sync per batch on the hot path)."""
    return torch.tensor(values, dtype=dtype, device=device)


def percentile_scale(images: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    """`[N, H, W]` -> each image linearly mapped from its own [lower, upper] percentiles to [0, 1], clipped.

    The batched form of MONAI's ScaleIntensityRangePercentiles(b_min=0, b_max=1, clip=True, channel_wise=True),
    which loops over the images in Python (one quantile call each); here ``batched_quantile``. One deliberate
    difference: an image whose two percentiles are equal (a nearly empty edge slice: 99.5 % of its
    pixels alike) is shifted by the lower one and clipped to [0, 1] like every other image, where MONAI returns it
    unclipped, so that a few raw intensities (thousands on MRI) would reach CLIP.
    """
    flat = images.reshape(images.shape[0], -1)
    low, high = (batched_quantile(flat, percentile / 100.0)[:, None, None] for percentile in (lower, upper))
    width = high - low
    return (images - low).div_(torch.where(width != 0, width, 1.0)).clamp_(0.0, 1.0)


def batched_quantile(rows: torch.Tensor, fraction: float) -> torch.Tensor:
    """`[N, n]` -> `[N]`: each row's ``fraction`` quantile, bit for bit torch.quantile's (linear interpolation
    between the two order statistics around ``fraction * (n - 1)``).

    Hand-written because torch.quantile sorts every row whole (and refuses more than 2**24 elements): the two
    order statistics come from a ``torch.topk`` of the tail that holds them, under 1 % of a row for the
    percentiles used here (2.3x faster on a CPU for 320² slices).
    """
    count = rows.shape[1]
    # as torch.quantile: the fraction rounded to the rows' dtype, the position in double
    position = float(torch.tensor(fraction, dtype=rows.dtype)) * (count - 1)
    below, above = math.floor(position), math.ceil(position)
    if fraction <= 0.5:
        tail = torch.topk(rows, above + 1, dim=1, largest=False).values  # ascending
        values = tail[:, below], tail[:, above]
    else:
        tail = torch.topk(rows, count - below, dim=1, largest=True).values  # descending
        values = tail[:, count - 1 - below], tail[:, count - 1 - above]
    weight = torch.tensor(position - below, dtype=rows.dtype, device=rows.device).expand(len(rows))
    return torch.lerp(*values, weight)


def longest_side_size(size: Sequence[int], longest: int) -> tuple[int, ...]:
    """The size of an image of ``size`` resized so that its longest side is ``longest``, aspect kept: MONAI's
    ``Resize(size_mode="longest")`` rounding."""
    scale = longest / max(size)
    return tuple(int(round(side * scale)) for side in size)


@functools.lru_cache(maxsize=32)
def antialiasing_kernels(in_size: tuple[int, ...], out_size: tuple[int, ...]) -> tuple[tuple[float, ...], ...]:
    """MONAI Resize's anti-aliasing kernel along each axis for ``in_size`` -> ``out_size`` (computed as MONAI does
    on a CPU: sigma `max(0, (in / out - 1) / 2)`, erf kernel truncated at 4 sigma), once per pair of sizes."""
    factors = torch.div(torch.Tensor(list(in_size)), torch.Tensor(list(out_size)))
    sigmas = torch.maximum(torch.zeros(factors.shape), (factors - 1) / 2).tolist()
    return tuple(tuple(gaussian_1d(torch.as_tensor(sigma), truncated=4.0, approx="erf").tolist()) for sigma in sigmas)


def smooth_before_shrinking(planes: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
    """`[N, h, w]` float32 planes -> the same, smoothed as MONAI's ``Resize(anti_aliasing=True)`` smooths them before
    shrinking to ``out_size``, bit for bit on a CPU (tests/test_clip_input.py; on CUDA within 1e-4): along each axis
    a Gaussian of sigma `max(0, (in / out - 1) / 2)` (skimage's default), MONAI's erf kernel truncated at 4 sigma,
    zeros beyond the edges, the rows' axis first.

    Hand-written because MONAI's ``separable_filtering`` pads each axis with ``F.pad`` before convolving, which
    allocates two padded copies of the batch: convolving with the padding inside ``conv2d`` gives the same values
    3.7 times faster on a CPU (32 slices of 320², one thread: 30.6 -> 8.2 ms).
    """
    in_size = tuple(planes.shape[1:])
    if not any(out < side for out, side in zip(out_size, in_size, strict=True)):
        return planes  # MONAI smooths only when an axis shrinks
    count, smoothed = planes.shape[0], planes[None]
    for axis, values in enumerate(antialiasing_kernels(in_size, tuple(out_size))):
        kernel = _on_device(values, planes.dtype, planes.device)  # no host-to-device copy per batch
        shape, padding = [count, 1, 1, 1], [0, 0]
        shape[axis + 2], padding[axis] = len(kernel), (len(kernel) - 1) // 2
        smoothed = F.conv2d(smoothed, kernel.reshape(1, 1, *shape[2:]).expand(shape), padding=padding, groups=count)
    return smoothed[0]


class CLIPInput:
    """Batched slice preprocessing on the batch's device: per-slice percentile scaling to [0, 1], resize of the
    longest side to ``image_size`` (aspect kept, anti-aliased), symmetric zero padding to a square, grey -> 3
    channels, CLIP normalisation.

    Args:
        image_size: S, the CLIP input size (the network's ``image_size``).
        lower_percentile, upper_percentile: the intensity window of each slice (robust to outliers).
        mean, std: the backbone's normalisation statistics per RGB channel.
    """

    def __init__(
        self,
        image_size: int = 240,
        lower_percentile: float = 0.5,
        upper_percentile: float = 99.5,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ):
        self.image_size, self.lower, self.upper = image_size, lower_percentile, upper_percentile
        self.mean, self.std = tuple(mean), tuple(std)
        # MONAI's transforms on a channel-first `[N, H, W]` treat the N slices as channels: one call per group. The
        # resize's anti-aliasing is smooth_before_shrinking, before it.
        self._resize = Resize(spatial_size=image_size, size_mode="longest", mode="bilinear")
        self._resize_labels = Resize(spatial_size=image_size, size_mode="longest", mode="nearest")
        self._pad = SpatialPad(spatial_size=(image_size, image_size), method="symmetric")

    def _group(self, images: torch.Tensor) -> torch.Tensor:
        """`[G, C, h, w]` slices of one size -> `[G, 3, S, S]`."""
        count, channels = images.shape[:2]
        planes = percentile_scale(images.reshape(count * channels, *images.shape[2:]), self.lower, self.upper)
        # anti-aliasing convolves in float32: cuDNN's default TF32 (10-bit mantissa) would cost 1e-3
        with torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled,
            benchmark=torch.backends.cudnn.benchmark,
            deterministic=torch.backends.cudnn.deterministic,
            allow_tf32=False,
        ):
            planes = smooth_before_shrinking(planes, longest_side_size(planes.shape[1:], self.image_size))
            planes = convert_to_tensor(self._pad(self._resize(planes)), track_meta=False)
        planes = planes.reshape(count, channels, self.image_size, self.image_size)
        if channels == 1:
            planes = planes.expand(count, 3, self.image_size, self.image_size)
        mean = _on_device(self.mean, planes.dtype, planes.device)[:, None, None]
        std = _on_device(self.std, planes.dtype, planes.device)[:, None, None]
        # `(planes - mean) / std` in one new batch-sized tensor, not two: the same values
        return torch.sub(planes, mean).div_(std)

    def __call__(self, images: torch.Tensor, shapes: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, C, H, W]` slices (``stack_slices``' padded batch with its ``shapes``, or equal-size slices) ->
        `[B, 3, S, S]` float32 on the same device."""
        images = images.float()
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected [B, 1 or 3, H, W] slices, got {tuple(images.shape)}")
        if shapes is None or bool((shapes == shapes[0]).all()):
            if shapes is not None:
                channels, rows, columns = shapes[0].tolist()
                images = images[:, :channels, :rows, :columns]
            return self._group(images)
        out = images.new_empty(images.shape[0], 3, self.image_size, self.image_size)
        for index, (channels, rows, columns) in size_groups(shapes, images.device):
            out[index] = self._group(images[index, :channels, :rows, :columns])
        return out

    def masks(self, masks: torch.Tensor, shapes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, C, H, W]` category masks (padded like their slices) -> the same geometry as the images
        `[B, C, S, S]` (nearest neighbour) and `[B, 1, S, S]`, 1 where the slice is (0 in the padding)."""
        count = masks.shape[0]
        if shapes is None:
            shapes = torch.tensor([[1, *masks.shape[2:]]] * count)
        out = masks.new_zeros(count, masks.shape[1], self.image_size, self.image_size)
        valid = masks.new_zeros(count, 1, self.image_size, self.image_size)
        for members, (_, rows, columns) in size_groups(shapes, masks.device):
            group = masks[members, :, :rows, :columns]
            planes = group.reshape(-1, rows, columns)
            planes = torch.cat([planes, torch.ones_like(planes[:1])])  # the slice's own extent, last
            planes = convert_to_tensor(self._pad(self._resize_labels(planes)), track_meta=False)
            out[members] = planes[:-1].reshape(len(members), masks.shape[1], self.image_size, self.image_size)
            valid[members] = planes[-1:].expand(len(members), 1, -1, -1)
        return out, valid


class PrepareSlices:
    """The engines' ``prepare_batch``: a collated batch of native-size slices (sdmad.data.collate_slices) ->
    CLIP-ready images on ``device`` and float labels (None without labels).

    The slices travel to the device first (pinned memory makes the copy asynchronous), then ``clip_input``
    runs there.
    """

    def __init__(self, clip_input: CLIPInput):
        self.clip_input = clip_input

    def __call__(
        self, batch: dict[str, Any], device: torch.device | str | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        images = torch.as_tensor(batch["image"]).to(device, non_blocking=non_blocking)
        images = self.clip_input(images, batch.get(SHAPE_KEY))
        label = batch.get("label")
        if label is not None:
            label = torch.as_tensor(label).to(device, non_blocking=non_blocking).float()
        return images, label

    def masks(
        self, batch: dict[str, Any], device: torch.device | str | None = None, non_blocking: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The batch's category masks in the images' geometry `[B, C, S, S]`, the slices' extent `[B, 1, S, S]`
        and which slices have pixel labels `[B]`; None when no slice has any."""
        if MASK_KEY not in batch:
            return None
        masks = torch.as_tensor(batch[MASK_KEY]).to(device, non_blocking=non_blocking).float()
        masks, valid = self.clip_input.masks(masks, batch.get(SHAPE_KEY))
        return masks, valid, torch.as_tensor(batch[HAS_MASK_KEY]).to(device)
