"""Few-shot sampling: K images per category (a multi-label image counts for each of its categories) and
K normal images, seeded and deterministic, written to the run folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdmad.atomic import write_json_atomic
from sdmad.data.errors import DataError
from sdmad.data.items import with_array_labels


def sample_few_shot(
    items: list[dict],
    categories: Sequence[str],
    shots: int,
    normal_shots: int | None = None,
    seed: int = 0,
    output_file: str | Path | None = None,
) -> list[dict]:
    """Choose the few-shot training items.

    Categories are filled in order; an image already chosen for one category counts for all its categories, so a
    category may receive more than ``shots`` images but never fewer.

    Args:
        items: the training pool (never the test split).
        categories: the task's categories, in label order.
        shots: K images per category.
        normal_shots: normal images (all-zero label); default ``shots``; 0 for none.
        seed: the sampling seed.
        output_file: where to write the chosen items (JSON, atomically), e.g. `<run>/few_shot.json`.

    Raises:
        DataError: a category (or the normal class) has fewer than K images in the pool; names it and the count.
    """
    normal_shots = shots if normal_shots is None else normal_shots
    rng = np.random.default_rng(seed)
    pool = sorted(items, key=lambda item: str(item.get("id", item["image"])))
    labels = np.stack([np.asarray(item["label"]) for item in pool]) if pool else np.zeros((0, len(categories)))
    chosen: list[int] = []
    for c, name in enumerate(categories):
        candidates = np.flatnonzero(labels[:, c] > 0)
        if len(candidates) < shots:
            raise DataError(
                f"category '{name}' has {len(candidates)} images in the training pool, fewer than the "
                f"{shots} shots asked for: leave it out with --categories (docs/usage.md: the paper's "
                f"slices 5 and 10), ask for fewer --shots, or try another --seed"
            )
        have = int(sum(labels[i, c] > 0 for i in chosen))
        remaining = [i for i in rng.permutation(candidates) if i not in chosen]
        chosen += remaining[: max(0, shots - have)]
    normals = np.flatnonzero(labels.sum(axis=1) == 0)
    if len(normals) < normal_shots:
        raise DataError(
            f"the normal class has {len(normals)} images in the training pool, fewer than the "
            f"{normal_shots} shots asked for"
        )
    chosen += list(rng.permutation(normals)[:normal_shots])
    selected = [pool[i] for i in chosen]
    if output_file is not None:
        write_json_atomic(selected, output_file)
    return selected


def few_shot_split(
    items: list[dict],
    categories: Sequence[str],
    shots: int,
    normal_shots: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    require_test: bool = True,
) -> dict[str, list[dict]]:
    """The run's three item lists, split by group (file or patient), seeded.

    ``val`` takes about ``val_fraction`` of the groups (it only monitors training); the few-shot ``train`` items are
    sampled from the other groups; ``test`` is everything else, minus every group a training item belongs to.
    The test split never chooses anything. A run's split is made and recorded by ``sdmad.runs.run_splits``.
    ``require_test=False`` allows an empty test split (retraining on every labelled study, as in the MONAI Label app).
    """
    from sdmad.data.splits import split_by_group

    parts = split_by_group(items, {"val": val_fraction, "pool": 1.0 - val_fraction}, seed=seed)
    train = sample_few_shot(parts["pool"], categories, shots, normal_shots, seed=seed)
    used = {item.get("group", item["image"]) for item in train}
    test = [item for item in parts["pool"] if item.get("group", item["image"]) not in used]
    if not test and require_test:
        raise DataError(f"no test items left after taking {len(train)} few-shot items from {len(items)}")
    return {"train": train, "val": parts["val"], "test": test}


def load_split(path: str | Path, name: str) -> list[dict]:
    """One item list (``train``, ``val`` or ``test``) of a run's `splits.json` (sdmad.runs.run_splits)."""
    import json

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: splits file not found; run `training` first (it writes <run>/splits.json)")
    content = json.loads(path.read_text())
    if name not in content:
        present = [key for key in content if isinstance(content[key], list)]
        raise DataError(f"{path}: has no split '{name}' (splits: {present})")
    return with_array_labels(content[name])
