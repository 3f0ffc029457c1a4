"""Unreadable scans as records instead of exceptions.

A DataLoader worker re-raises only the *text* of an exception in the main process (the project's DataError and
its message are lost in a wrapped traceback), and a folder of 150 scans should not write nothing because of one
bad file. So the scan -> slices transform of inference and evaluation is wrapped in ``RecordUnreadable``: a scan
that fails with a project error becomes a record ``{"unreadable": {"source", "id", "reason"}}``; ``collate_slices``
moves the records of a batch to ``batch["unreadable"]``; in the main process the ``UnreadableScans`` handler
(sdmad.handlers) then skips them (listed in errors.csv) or stops with the original message, as ``on_error`` says.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import torch
from monai.data import list_data_collate

from sdmad.data.clip_input import HAS_MASK_KEY, MASK_KEY, SHAPE_KEY, stack_slices
from sdmad.data.slices import source_name
from sdmad.errors import one_line, project_error

UNREADABLE_KEY = "unreadable"
ON_ERROR = ("auto", "skip", "fail")


def _source(item: Mapping[Hashable, Any]) -> str:
    image = item.get("image")
    return source_name(image) if hasattr(image, "meta") else str(image)


class RecordUnreadable:
    """Wraps a transform (scan item -> slice items) so that a project error becomes an unreadable-scan record.

    Any other exception (a bug) propagates unchanged.
    """

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, item: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        try:
            return self.transform(item)
        except Exception as err:
            cause = project_error(err)
            if cause is None:
                raise
            return [
                {
                    UNREADABLE_KEY: {
                        "source": _source(item),
                        "id": str(item.get("id", _source(item))),
                        "reason": one_line(cause),
                    }
                }
            ]


def collate_slices(batch: list) -> dict[str, Any]:
    """The slices of a batch of scans as one batch: ``"image"`` one tensor (slices of different sizes padded,
    their sizes under ``"image_shape"``: sdmad.data.clip_input.stack_slices), every other key by MONAI's
    ``list_data_collate``, category masks (sdmad.data.CategoryMaskd) under ``"mask"`` with ``"has_mask"``, the
    batch's unreadable-scan records under ``"unreadable"`` (a batch of unreadable scans
    only has no ``"image"``)."""
    flat: list[dict] = []
    for element in batch:
        flat.extend(element if isinstance(element, list) else [element])
    records = [item[UNREADABLE_KEY] for item in flat if UNREADABLE_KEY in item]
    slices = [item for item in flat if UNREADABLE_KEY not in item]
    collated = {}
    if slices:
        stacked = ("image", MASK_KEY)
        collated = list_data_collate([{k: v for k, v in item.items() if k not in stacked} for item in slices])
        collated["image"], collated[SHAPE_KEY] = stack_slices([item["image"] for item in slices])
        if any(MASK_KEY in item for item in slices):
            collated[MASK_KEY], collated[HAS_MASK_KEY] = _stack_masks(slices)
    if records:
        collated[UNREADABLE_KEY] = records
    return collated


def _stack_masks(slices: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """The slices' `[C, H, W]` category masks as one padded batch (zeros for a slice without pixel labels) and
    which slices have them."""
    channels = next(item[MASK_KEY].shape[0] for item in slices if MASK_KEY in item)
    masks = [
        item[MASK_KEY] if MASK_KEY in item else torch.zeros(channels, *item["image"].shape[-2:]) for item in slices
    ]
    has_mask = torch.tensor([MASK_KEY in item for item in slices])
    return stack_slices(masks)[0], has_mask


def error_policy(on_error: str, source: Any) -> str:
    """``skip`` or ``fail`` for an inference input: ``auto`` skips unreadable scans of a folder of scans or a list,
    and fails for a single scan (a file or one DICOM series folder)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got '{on_error}'")
    if on_error != "auto":
        return on_error
    from sdmad.data.inputs import is_scan_collection

    return "skip" if is_scan_collection(source) else "fail"
