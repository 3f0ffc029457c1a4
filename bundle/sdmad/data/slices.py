"""Volume -> 2-D slice items, and the intensity checks done on them.

After `DisplayOrientationd` a volume is `[C, row, column, slice]` in the display of its plane (slice axis last),
for every format: NIfTI and DICOM through their affines, fastMRI `.h5` by the reader's convention
(see fastmri_h5.py). A 2-D image is one slice.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import convert_to_tensor

from sdmad.data.errors import DataError

SliceSpec = Sequence[int] | str | None


def source_name(image: Any) -> str:
    """The file an image was read from (its meta `filename_or_obj`)."""
    meta = getattr(image, "meta", {}) or {}
    return str(meta.get("filename_or_obj", "<in-memory image>"))


class CheckFinited(MapTransform):
    """Refuse NaN or Inf intensities, naming the file, before any scaling hides them."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        for key in self.key_iterator(item):
            image = item[key]
            if not torch.isfinite(torch.as_tensor(image)).all():
                bad = int((~torch.isfinite(torch.as_tensor(image))).sum())
                raise DataError(f"{source_name(image)}: {bad} NaN/Inf intensities in '{key}'")
        return item


class ExtractSlicesd(MapTransform):
    """Turn one volume item into a list of 2-D slice items (MONAI applies later transforms to each).

    A 2-D input is one slice (index 0). Each output item keeps every other key of the input (labels, ids) and
    records `slice_index` (the index in the source volume) and `source` (the file) in the item and the image meta.

    Args:
        keys: image keys to slice (all with the same slice count).
        slices: default selection when the item has none: "all", a list of indices, or a `[start, stop)` pair
            given as {"start": a, "stop": b}.
        slices_key: item key with the indices to take (overrides ``slices``); indices refer to the source file
            even when a reader returned only some slices (meta `slice_indices`).
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = "image",
        slices: SliceSpec | Mapping = "all",
        slices_key: str = "slices",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.slices, self.slices_key = slices, slices_key

    def _wanted(self, item: Mapping[Hashable, Any], available: list[int], source: str) -> list[int]:
        spec = item.get(self.slices_key) if item.get(self.slices_key) is not None else self.slices
        if spec is None or spec == "all":
            return available
        if isinstance(spec, Mapping):
            spec = range(int(spec.get("start", 0)), int(spec.get("stop", max(available) + 1)))
        wanted = [int(index) for index in spec]
        missing = [index for index in wanted if index not in available]
        if missing:
            raise DataError(f"{source}: slices {missing} do not exist (available: {available[0]}..{available[-1]})")
        return wanted

    @staticmethod
    def _positions(image: Any) -> dict[int, int]:
        """Source slice index -> position along the image's last axis."""
        if image.ndim == 3:  # [C, row, column]: a 2-D image
            return {0: 0}
        if image.ndim != 4:
            raise DataError(
                f"{source_name(image)}: expected a channel-first 2-D or 3-D image, got shape {tuple(image.shape)}"
            )
        meta = getattr(image, "meta", {}) or {}
        return {int(index): p for p, index in enumerate(meta.get("slice_indices", range(image.shape[-1])))}

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        item = dict(data)
        keys = list(self.key_iterator(item))
        first = item[keys[0]]
        source = source_name(first)
        positions = {key: self._positions(item[key]) for key in keys}  # a reader may return only some slices
        available = list(positions[keys[0]])
        slices = []
        for index in self._wanted(item, available, source):
            out = dict(item)
            for key in keys:
                image = item[key]
                if index not in positions[key]:
                    raise DataError(f"{source_name(image)}: has no slice {index} for '{key}' (its image has)")
                plane = image if image.ndim == 3 else image[..., positions[key][index]]
                if isinstance(plane, MetaTensor):
                    plane.meta["slice_index"] = index
                out[key] = plane
            out.update(slice_index=index, source=source)
            out.pop(self.slices_key, None)
            slices.append(out)
        return slices


class AsRGBd(MapTransform):
    """Grey (1 channel) -> 3 identical channels; RGB kept; RGBA loses alpha. CLIP expects 3 channels."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        for key in self.key_iterator(item):
            image = _without_alpha(item[key])
            item[key] = image.repeat(3, *([1] * (image.ndim - 1))) if image.shape[0] == 1 else image
        return item


class SliceTensord(MapTransform):
    """A slice as the data loader ships it: a plain float32 `[1 or 3, row, column]` tensor at its native size (RGBA
    loses alpha; grey stays one channel), no metadata. sdmad.data.CLIPInput does the rest on the model's device."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        for key in self.key_iterator(item):
            item[key] = convert_to_tensor(_without_alpha(item[key]), dtype=torch.float32, track_meta=False)
        return item


class CategoryMaskd(MapTransform):
    """A slice's pixel labels -> a float32 `[C, row, column]` 0/1 mask, one channel per task category.

    Items with pixel information carry ``labels_key``: ``{"<value>": category index}`` for the values of their
    label image (``"*"``: any non-zero value, e.g. a BMAD anomaly mask), and under ``keys`` the label slice, or
    nothing when the slice is known to be empty (a normal BMAD image). C is the length of the item's `label`.
    Items without ``labels_key`` have no pixel information and are left as they are (no mask). An item that says
    ``labels_from_mask`` (a scan labelled by its label volume alone, e.g. a saved MONAI Label segmentation) gets
    each slice's `label` from that slice's mask: the categories it shows there.
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable = "mask", labels_key: str = "mask_labels"):
        super().__init__(keys, allow_missing_keys=True)
        self.labels_key = labels_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        labels = item.pop(self.labels_key, None)
        if labels is None:
            return item
        rows, columns = item["image"].shape[-2:]
        for key in self.keys:
            mask = torch.zeros(len(item["label"]), rows, columns, dtype=torch.float32)
            values = item.get(key)
            if values is not None:
                values = torch.as_tensor(values)[0]
                if tuple(values.shape) != (rows, columns):
                    raise DataError(
                        f"{item.get('source', '')}: its label image's slice is {tuple(values.shape)}, the scan's "
                        f"{(rows, columns)}: give a label volume with the scan's voxel grid and affine (docs/data.md)"
                    )
                for value, category in labels.items():
                    hit = values != 0 if value == "*" else values == float(value)
                    mask[int(category)] = torch.maximum(mask[int(category)], hit.float())
            item[key] = mask
            if item.pop("labels_from_mask", False):
                item["label"] = (mask.flatten(1).amax(dim=1) > 0).numpy().astype(np.float32)
        return item


def _without_alpha(image: Any) -> Any:
    """1 (grey) or 3 (RGB) channels kept, RGBA -> RGB; any other channel count is a DataError."""
    channels = image.shape[0]
    if channels == 4:
        return image[:3]
    if channels not in (1, 3):
        raise DataError(f"{source_name(image)}: {channels} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA)")
    return image
