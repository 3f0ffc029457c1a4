"""The evaluation report's montage of maps: the top-scoring test slices with zero-shot CLIP's anomaly map (adapters
off, text only: the paper's Fig. 4a), the evaluated model's anomaly map and its strongest category's map, each
with the ground truth outlined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine

from sdmad.data.unreadable import collate_slices
from sdmad.engines import prepare_text
from sdmad.maps import native_maps
from sdmad.networks.patch_path import patch_maps
from sdmad.overlays import MontageRow, montage_png
from sdmad.plots import _short

MONTAGE_SLICES = 6


def _test_slices(engine: Engine, rows: list[dict]) -> list[dict]:
    """The slice items (native image, masks) of ``rows``, made again from the evaluator's data set."""
    dataset = engine.data_loader.dataset
    by_image = {str(item["image"]): item for item in dataset.data}
    slices = []
    for row in rows:
        made = dataset.transform(by_image[str(row["source"])])
        slices.append(next(s for s in made if s.get("slice_index") == row["slice_index"]))
    return slices


@torch.no_grad()
def zero_shot_maps(network: Any, engine: Engine, slices: list[dict]) -> np.ndarray:
    """``[N, 1 + C, g, g]`` maps of zero-shot CLIP (adapters and patch heads off, no memory) for ``slices``."""
    bypassed = any(getattr(m, "bypassed", False) for m in network.modules())
    network.bypass_adapters(True)
    try:
        text = prepare_text(network, "distance")
        images, _ = engine.prepare_batch(collate_slices(slices), engine.state.device)
        _, patches = network.encode_images_and_patches(images)
        maps = patch_maps(patches, text.sign_features, text.anchor, text.selection.category_mask(), network.logit_scale)
    finally:
        network.bypass_adapters(bypassed)
    return maps.maps.float().cpu().numpy()


def map_montage(engine: Engine, network: Any, rows: list[dict], path: Path, zero_shot: bool) -> Path | None:
    """The montage of the ``MONTAGE_SLICES`` test slices of highest anomaly score (None without maps)."""
    rows = [row for row in rows if "maps" in row]
    if not rows:
        return None
    categories = network.signs.category_names
    chosen = sorted(rows, key=lambda r: -r["anomaly"])[:MONTAGE_SLICES]
    slices = _test_slices(engine, chosen)
    baseline = None if zero_shot else zero_shot_maps(network, engine, slices)
    image_size = network.config_record()["image_size"]
    montage = []
    for i, (row, item) in enumerate(zip(chosen, slices, strict=True)):
        maps = native_maps(row["maps"], *row["shape"], image_size)
        strongest = int(np.argmax(row["scores"]))
        labels = [categories[c] for c in np.flatnonzero(row.get("label", np.zeros(len(categories))))]
        panels = (
            [] if baseline is None else [("zero-shot CLIP", native_maps(baseline[i][:1], *row["shape"], image_size)[0])]
        )
        panels += [
            ("anomaly map" + (" (zero-shot)" if zero_shot else ""), maps[0]),
            (f"map: {_short(categories[strongest], 22)}", maps[1 + strongest]),
        ]
        mask = item.get("mask")
        montage.append(
            MontageRow(
                image=np.asarray(item["image"][0]),
                title=f"{Path(str(row['source'])).name[:24]} #{row['slice_index']}\n"
                + (", ".join(_short(n, 18) for n in labels) or "normal"),
                panels=panels,
                mask=None if mask is None else np.asarray(mask).max(axis=0) > 0.5,
            )
        )
    title = f"top {len(montage)} test slices by anomaly score (white: ground truth)"
    return montage_png(montage, path, title)
