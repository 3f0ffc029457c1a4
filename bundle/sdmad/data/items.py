"""Data items (plain dicts, MONAI's convention) and helpers shared by the data sets.

An item: `image` (path of a file or DICOM folder), `label` (float32 multi-hot over the task's categories; all zeros
is normal), `group` (patient or file: splits never cut a group), `id` (unique), optionally `slices` (indices to
read) and `mask` (a pixel mask path).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from sdmad.data.errors import DataError


def multi_hot(labels: Iterable[str], categories: Sequence[str], source: str = "") -> np.ndarray:
    """Multi-hot float32 vector of ``labels`` over ``categories``; an unknown label is a DataError."""
    vector = np.zeros(len(categories), dtype=np.float32)
    index = {name: i for i, name in enumerate(categories)}
    for label in labels:
        if label not in index:
            raise DataError(f"{source + ': ' if source else ''}unknown label '{label}' (known: {list(categories)})")
        vector[index[label]] = 1.0
    return vector


def item_labels(item: dict, categories: Sequence[str]) -> list[str]:
    return [categories[i] for i in np.flatnonzero(np.asarray(item["label"]))]


def with_array_labels(items: list[dict]) -> list[dict]:
    """Items read back from JSON: labels as float32 arrays again."""
    for item in items:
        item["label"] = np.asarray(item["label"], dtype=np.float32)
    return items


def load_items_json(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        return with_array_labels(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read the item list: {err}") from err
