"""BMAD data sets in the MVFA folder layout (protocol 1: normal vs abnormal, pixel masks where they exist).

    <root>/<Name>_AD/{valid,test}/good/img/*.png
    <root>/<Name>_AD/{valid,test}/Ungood/img/*.png
    <root>/<Name>_AD/{valid,test}/Ungood/anomaly_mask/*.png     (BrainMRI, LiverCT, RESC only)

Items of a data set with masks carry `mask`: the mask file of an abnormal image, None for a normal one (empty).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sdmad.data.errors import DataError
from sdmad.data.loading import IMAGE_SUFFIXES

BMAD_NAMES = ("BrainMRI", "LiverCT", "RESC", "OCT17", "ChestXray", "HIS")
SPLITS = ("valid", "test")


def bmad_items(root: str | Path, name: str, split: str) -> list[dict]:
    """Items of one BMAD data set and split; the label is one category (abnormal), masks where present.

    Args:
        root: the folder holding `<name>_AD`.
        name: e.g. "BrainMRI" (any name works, the folder must be `<name>_AD`).
        split: "valid" (the few-shot pool, as in MVFA) or "test".
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
    base = Path(root) / f"{name}_AD" / split
    if not base.is_dir():
        raise DataError(f"{base}: BMAD folder not found (expected <root>/{name}_AD/{split}/{{good,Ungood}}/img)")
    items = []
    has_masks = (base / "Ungood" / "anomaly_mask").is_dir()
    for kind, abnormal in (("good", False), ("Ungood", True)):
        image_dir = base / kind / "img"
        if not image_dir.is_dir():
            raise DataError(f"{image_dir}: BMAD image folder not found")
        for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            item = {
                "image": str(image),
                "label": np.array([float(abnormal)], dtype=np.float32),
                "group": f"{kind}/{image.stem}",
                "id": f"{name}/{split}/{kind}/{image.name}",
            }
            if has_masks:  # a normal image's mask is empty: None (no file)
                mask = base / kind / "anomaly_mask" / image.name
                if abnormal and not mask.is_file():
                    raise DataError(f"{image}: its mask {mask} is missing")
                item["mask"] = str(mask) if abnormal else None
            items.append(item)
    if not items:
        raise DataError(f"{base}: no PNG/JPG images in good/img or Ungood/img")
    return items
