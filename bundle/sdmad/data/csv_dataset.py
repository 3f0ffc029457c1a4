"""A generic multi-label CSV: one row per scan, a path column and a label column, optionally a label-volume column.

path,labels,patient,mask
scans/a.nii.gz,Craniotomy|Enlarged ventricles,P001,masks/a.nii.gz
scans/b/,normal,P002,         (a DICOM series folder; no label volume)

A label volume (the scan's grid) has value v > 0 where category v (1-based, in the task's order) shows: the pixel
labels of the patch path's losses, and each slice's categories (those its mask shows; sdmad.data.CategoryMaskd).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from sdmad.data.errors import DataError
from sdmad.data.items import multi_hot


def csv_items(
    csv_path: str | Path,
    categories: Sequence[str],
    path_column: str = "path",
    label_column: str = "labels",
    separator: str = "|",
    normal_token: str = "normal",
    group_column: str | None = None,
    root: str | Path | None = None,
    mask_column: str | None = None,
) -> list[dict]:
    """Read a multi-label CSV into items.

    Args:
        csv_path: the CSV file.
        categories: the task's categories; any other label is an error.
        path_column, label_column: column names; labels are joined by ``separator``.
        normal_token: the label value of a normal scan (an empty cell is an error, not normal).
        group_column: patient/group column; without it each scan is its own group.
        root: folder relative paths start from (default: the CSV's folder).
        mask_column: a column of label volumes (value v: category v, 1-based); an empty cell: none.

    Raises:
        DataError: missing CSV/column, a missing file, an unknown or empty label, or no rows; naming the row.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: CSV not found")
    root = Path(root) if root is not None else csv_path.parent
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        needed = [path_column, label_column] + [c for c in (group_column, mask_column) if c]
        missing = [column for column in needed if column not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{csv_path}: missing columns {missing} (columns: {reader.fieldnames})")
        items = []
        for line, row in enumerate(reader, start=2):
            where = f"{csv_path}, line {line}"
            path = root / row[path_column]
            if not path.exists():
                raise DataError(f"{where}: file {path} does not exist")
            value = (row[label_column] or "").strip()
            if not value:
                raise DataError(f"{where}: empty label (use '{normal_token}' for a normal scan)")
            labels = [] if value == normal_token else [label.strip() for label in value.split(separator)]
            item = {
                "image": str(path),
                "label": multi_hot(labels, categories, where),
                "group": row[group_column] if group_column else str(path),
                "id": row[path_column],
            }
            if mask_column and (row[mask_column] or "").strip():
                mask = root / row[mask_column].strip()
                if not mask.exists():
                    raise DataError(f"{where}: label volume {mask} does not exist")
                item["mask"] = str(mask)
                item["mask_labels"] = {str(value): value - 1 for value in range(1, len(categories) + 1)}
                item["labels_from_mask"] = True  # each slice: the categories its mask shows
            items.append(item)
    if not items:
        raise DataError(f"{csv_path}: no rows")
    return items
