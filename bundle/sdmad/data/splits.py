"""Seeded splits by group (patient, or file/volume): one group never sits on two sides."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sdmad.data.errors import DataError


def split_by_group(
    items: list[dict], fractions: Mapping[str, float], seed: int = 0, group_key: str = "group"
) -> dict[str, list[dict]]:
    """Split items into named parts of about ``fractions`` of the groups (the last part takes the rest).

    Example: ``split_by_group(items, {"train": 0.5, "val": 0.1, "test": 0.4}, seed=0)``.
    """
    if abs(sum(fractions.values()) - 1.0) > 1e-6 or any(f < 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    if not items:
        raise DataError("nothing to split: the item list is empty")
    groups = sorted({str(item.get(group_key, item["image"])) for item in items})
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    names = list(fractions)
    bounds = np.round(np.cumsum([fractions[name] for name in names]) * len(order)).astype(int)
    side = {}
    start = 0
    for name, stop in zip(names, bounds, strict=True):
        for group in order[start:stop]:
            side[group] = name
        start = stop
    parts: dict[str, list[dict]] = {name: [] for name in names}
    for item in items:
        parts[side[str(item.get(group_key, item["image"]))]].append(item)
    return parts
