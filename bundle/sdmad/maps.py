"""Anomaly maps in the scan's own geometry: from the patch grid back to each slice's native pixels, and a volume
of maps written as NIfTI with the input's affine (so that it overlays in any viewer).

The CLIP input of a slice is its resize (longest side to ``image_size``) and symmetric padding
(sdmad.data.CLIPInput); a map goes the other way: upsampled to the CLIP input, cropped to the slice's extent,
resized to the slice's rows and columns.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation
from torch.nn import functional as F

from sdmad.atomic import atomic_path
from sdmad.data.loading import LoadScand
from sdmad.data.orientation import DisplayOrientationd


def resized_extent(rows: int, columns: int, image_size: int) -> tuple[int, int, int, int]:
    """Where a `rows x columns` slice lies in its CLIP input: (top, left, height, width), as MONAI's
    ``Resize(size_mode="longest")`` and ``SpatialPad(method="symmetric")`` place it."""
    scale = image_size / max(rows, columns)
    height, width = int(round(rows * scale)), int(round(columns * scale))
    return (image_size - height) // 2, (image_size - width) // 2, height, width


def native_maps(grid_maps: torch.Tensor | np.ndarray, rows: int, columns: int, image_size: int) -> np.ndarray:
    """``[K, g, g]`` patch-grid maps of one slice -> ``[K, rows, columns]`` float32 over the slice's own pixels."""
    maps = torch.as_tensor(np.asarray(grid_maps, dtype=np.float32))[None]
    full = F.interpolate(maps, size=(image_size, image_size), mode="bilinear", align_corners=False)
    top, left, height, width = resized_extent(rows, columns, image_size)
    crop = full[..., top : top + height, left : left + width]
    return F.interpolate(crop, size=(rows, columns), mode="bilinear", align_corners=False)[0].numpy()


def display_volume(source: str | MetaTensor, h5_source: str = "auto", series_uid: str | None = None) -> MetaTensor:
    """The scan as the pipeline saw it (the same reader settings): loaded (or a volume already in memory, as an app
    handed it over) and in display orientation (channel-first, affine in the meta)."""
    item = LoadScand(keys="image", h5_source=h5_source)({"image": source, "series_uid": series_uid})
    return DisplayOrientationd(keys="image")(item)["image"]


def slice_positions(volume: MetaTensor) -> dict[int, int]:
    """Source slice index -> position along the display volume's last axis."""
    return {int(i): p for p, i in enumerate(volume.meta.get("slice_indices", range(volume.shape[-1])))}


def label_values(categories: Sequence[str]) -> dict[str, int]:
    """Each category's value in a label image, 1..C in the task's order (0: background): MONAI Label's
    `label_names` form, shared by the label images, the `sdmad_maps` model and label volumes read back."""
    return {name: value for value, name in enumerate(categories, start=1)}


# A category map's value is the probability of "this category's finding rather than normal" at the patch: one half
# is where a pixel is labelled when the model holds no map thresholds calibrated on pixel labels.
MAP_THRESHOLD = 0.5


def label_slice(
    maps: np.ndarray, decisions: Sequence[bool], thresholds: Sequence[float] | float = MAP_THRESHOLD
) -> np.ndarray:
    """One slice's label image ``[rows, columns]`` uint8 from its native maps ``[1 + C, rows, columns]``: each
    pixel the value c + 1 of the category whose map is highest there among those decided present on the slice and
    reaching its threshold (``thresholds``: per category, or one for all); 0 elsewhere (MONAI Label's convention:
    0 background, categories 1..C)."""
    categories = np.asarray(maps, dtype=np.float32)[1:]
    limits = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), (len(categories),))[:, None, None]
    allowed = np.asarray(decisions, dtype=bool)[:, None, None] & (categories >= limits)
    best = np.where(allowed, categories, -np.inf).argmax(axis=0)
    return np.where(allowed.any(axis=0), best + 1, 0).astype(np.uint8)


def _in_input_geometry(volume: MetaTensor, display: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[K, *display shape]`` values over the display-orientation volume (``display_volume``) -> the same in the
    input's voxel order `[x, y, z, K]` and its affine: turned back with MONAI's ``Orientation`` to the axis codes
    of the input's own affine (axis flips and swaps only: values are moved, never interpolated)."""
    original = np.asarray(volume.meta.get("original_affine", volume.affine), dtype=np.float64)
    codes = "".join(nib.aff2axcodes(original))
    back = Orientation(axcodes=codes, labels=None)(MetaTensor(torch.from_numpy(display), affine=volume.affine.clone()))
    return np.moveaxis(back.numpy(), 0, -1), np.asarray(back.affine, dtype=np.float64)


def _write_nifti(image: nib.Nifti1Image, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as temporary:
        Path(temporary).write_bytes(gzip.compress(image.to_bytes(), compresslevel=6))
    return path


def write_map_nifti(
    volume: MetaTensor, slice_maps: Mapping[int, np.ndarray], channel_names: Sequence[str], path: str | Path
) -> Path:
    """A 4-D NIfTI `[x, y, z, K]` of the maps of a volume's scored slices (0 on slices not scored), in the input's
    voxel order and affine (``volume`` from ``display_volume``). The channel names go into the header's
    description."""
    positions = slice_positions(volume)
    maps = np.zeros((len(channel_names), *volume.shape[1:]), dtype=np.float32)
    for index, values in slice_maps.items():
        maps[..., positions[int(index)]] = values
    values, affine = _in_input_geometry(volume, maps)
    image = nib.Nifti1Image(values, affine)
    image.header["descrip"] = ("maps: " + ", ".join(channel_names))[:79].encode()
    image.header.set_intent("vector", (), name="sdmad maps")
    return _write_nifti(image, path)


def write_label_nifti(
    volume: MetaTensor, slice_labels: Mapping[int, np.ndarray], label_names: Mapping[str, int], path: str | Path
) -> Path:
    """A 3-D uint8 label NIfTI of a volume's scored slices (``label_slice``; 0 on slices not scored) in the input's
    voxel order and affine, as MONAI Label and viewers take a segmentation; the names go into the description."""
    positions = slice_positions(volume)
    labels = np.zeros((1, *volume.shape[1:]), dtype=np.uint8)
    for index, values in slice_labels.items():
        labels[0, ..., positions[int(index)]] = values
    values, affine = _in_input_geometry(volume, labels)
    image = nib.Nifti1Image(values[..., 0], affine)
    image.header["descrip"] = ("labels: " + ", ".join(f"{v} {n}" for n, v in label_names.items()))[:79].encode()
    return _write_nifti(image, path)
