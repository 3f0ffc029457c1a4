"""The evaluation report's montage of maps: for each category, the test slice it scores highest, with zero-shot
CLIP's anomaly map (adapters off, text only: the paper's Fig. 4a), the evaluated model's anomaly map and that
category's map, each with the ground truth outlined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine

from sdmad.data.unreadable import collate_slices
from sdmad.engines import prepare_text
from sdmad.handlers.inference_writer import file_stem
from sdmad.maps import native_maps
from sdmad.networks.patch_path import patch_maps
from sdmad.overlays import MontageRow, montage_png
from sdmad.plots import _short


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


def _candidates(rows: list[dict], category: int, method: str) -> list[dict]:
    """The rows a category's montage row is chosen from: all of them; for method mvfa, whose scores are one anomaly
    score for every category (so every category's top slice would be the same), the slices showing that category
    when the rows have labels (a picture only: nothing is chosen for the model)."""
    if method == "mvfa":
        showing = [row for row in rows if "label" in row and row["label"][category]]
        return showing or rows
    return rows


def map_montage(engine: Engine, network: Any, rows: list[dict], path: Path, zero_shot: bool) -> Path | None:
    """The montage (None without maps): one row per category, its highest-scoring test slice."""
    rows = [row for row in rows if "maps" in row]
    if not rows:
        return None
    categories = network.signs.category_names
    chosen = [
        max(_candidates(rows, c, network.method), key=lambda r, c=c: r["scores"][c]) for c in range(len(categories))
    ]
    slices = _test_slices(engine, chosen)
    baseline = None if zero_shot else zero_shot_maps(network, engine, slices)
    image_size = network.config_record()["image_size"]
    montage = []
    for c, (row, item) in enumerate(zip(chosen, slices, strict=True)):
        maps = native_maps(row["maps"], *row["shape"], image_size)
        labels = [categories[k] for k in np.flatnonzero(row.get("label", np.zeros(len(categories))))]
        panels = []
        if baseline is not None:
            panels.append(("zero-shot CLIP", native_maps(baseline[c][:1], *row["shape"], image_size)[0]))
        panels += [
            ("anomaly map" + (" (zero-shot)" if zero_shot else ""), maps[0]),
            (f"map: {_short(categories[c], 22)} (s_c {row['scores'][c]:.3f})", maps[1 + c]),
        ]
        mask = item.get("mask")
        montage.append(
            MontageRow(
                image=np.asarray(item["image"][0]),
                title=f"top {_short(categories[c], 20)}: {file_stem(str(row['source']))} #{row['slice_index']}"
                + "\nlabels: "
                + (", ".join(_short(n, 18) for n in labels) or "normal"),
                panels=panels,
                mask=None if mask is None else np.asarray(mask).max(axis=0) > 0.5,
            )
        )
    which = "test slice showing it" if network.method == "mvfa" else "test slice"
    return montage_png(montage, path, f"each category's highest-scoring {which} (white: ground truth, all findings)")
