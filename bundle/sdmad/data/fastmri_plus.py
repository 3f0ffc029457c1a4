"""fastMRI+ brain labels joined with a user's fastMRI files: one item per (file, slice).

`brain.csv` has one row per box (`file, slice, study_level, x, y, width, height, label`); files reviewed with
no finding are listed in `brain_file_list.csv` only. Study-level labels ("Global label: ...") sit on slice 0.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sdmad.data.errors import DataError
from sdmad.data.items import multi_hot

logger = logging.getLogger(__name__)

DEFAULT_CATEGORIES = (
    "Craniotomy",
    "Posttreatment change",
    "Nonspecific lesion",
    "Dural thickening",
    "Enlarged ventricles",
    "Global label: Small vessel chronic white matter ischemic change",
)
STUDY_LEVEL_SCOPES = ("slice0", "all_slices")
OTHER_LABEL_POLICIES = ("exclude", "normal")
RARE_CATEGORY_THRESHOLD = 5
MASK_LABEL_NAMES = "label_names.json"  # in a folder of label volumes: {category name: label value}


@dataclass
class Box:
    """A fastMRI+ box in display coordinates (x: column, y: row of the displayed slice; see ``h5_box``)."""

    x: int
    y: int
    width: int
    height: int
    label: str


@dataclass
class SliceLabels:
    """Labels of one slice task: per file, the chosen categories present; plus what was left out and why."""

    slice_index: int
    categories: list[str]
    labels: dict[str, set[str]]  # file -> chosen categories (empty set: normal)
    excluded: dict[str, set[str]] = field(default_factory=dict)  # file -> its other labels (policy "exclude")
    boxes: dict[str, list[Box]] = field(default_factory=dict)  # file -> boxes as drawn (display coordinates)

    def positives(self) -> dict[str, int]:
        return {c: sum(c in found for found in self.labels.values()) for c in self.categories}

    def abnormal_files(self) -> int:
        return sum(bool(found) for found in self.labels.values())

    def multi_label_files(self) -> int:
        return sum(len(found) >= 2 for found in self.labels.values())

    def rare_categories(self, threshold: int = RARE_CATEGORY_THRESHOLD) -> dict[str, int]:
        """Categories with fewer than ``threshold`` positive files at this slice (AUROC barely or not defined)."""
        return {c: n for c, n in self.positives().items() if n < threshold}


def read_file_list(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: fastMRI+ file list not found")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(names))


def fastmri_plus_slice_labels(
    brain_csv: str | Path,
    file_list: str | Path,
    slice_index: int,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    study_level: str = "slice0",
    other_labels: str = "exclude",
    normal_labels: Sequence[str] = ("Normal for age", "Normal variant"),
) -> SliceLabels:
    """Multi-hot labels of every reviewed file at one slice.

    Args:
        brain_csv, file_list: the fastMRI+ annotation files.
        slice_index: the slice task (the paper: 0, 5, 10).
        categories: the categories to detect; their names must occur in brain.csv.
        study_level: "slice0" (study-level labels count on slice 0 only, as annotated: the paper) or "all_slices".
        other_labels: a slice whose only labels are outside ``categories`` (and not in ``normal_labels``) is
            "exclude"d (default: it is not normal, and not any chosen category) or counted "normal".
        normal_labels: labels that mean "no finding" (e.g. "Normal for age"): such slices are normal.
    """
    if study_level not in STUDY_LEVEL_SCOPES:
        raise ValueError(f"study_level must be one of {STUDY_LEVEL_SCOPES}, got '{study_level}'")
    if other_labels not in OTHER_LABEL_POLICIES:
        raise ValueError(f"other_labels must be one of {OTHER_LABEL_POLICIES}, got '{other_labels}'")
    brain_csv = Path(brain_csv)
    if not brain_csv.is_file():
        raise DataError(f"{brain_csv}: fastMRI+ brain.csv not found")
    files = read_file_list(file_list)
    with open(brain_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    vocabulary = {row["label"] for row in rows}
    unknown = [c for c in categories if c not in vocabulary]
    if unknown:
        raise DataError(f"{brain_csv}: categories {unknown} never occur as a label (known: {sorted(vocabulary)})")

    found: dict[str, set[str]] = defaultdict(set)
    boxes: dict[str, list[Box]] = defaultdict(list)
    for row in rows:
        is_study_level = row["study_level"].strip().lower() == "yes"
        if int(row["slice"]) == slice_index or (is_study_level and study_level == "all_slices"):
            found[row["file"]].add(row["label"])
            if row["x"]:
                boxes[row["file"]].append(
                    Box(int(row["x"]), int(row["y"]), int(row["width"]), int(row["height"]), row["label"])
                )
    chosen, excluded = set(categories), {}
    labels = {}
    for name in files:
        present = found.get(name, set())
        in_categories = present & chosen
        others = present - chosen - set(normal_labels)
        if not in_categories and others and other_labels == "exclude":
            excluded[name] = others
            continue
        labels[name] = in_categories
    return SliceLabels(slice_index, list(categories), labels, excluded, dict(boxes))


def h5_box(box: Box, image_height: int) -> Box:
    """A fastMRI+ box in the rows of the `.h5` array. Boxes were drawn on the displayed image, the `.h5` image
    flipped up/down, which is the orientation of this project's slices: there they apply as they are."""
    return Box(box.x, image_height - box.y - box.height, box.width, box.height, box.label)


def find_scan(folder: Path, name: str) -> Path | None:
    """The user's copy of a fastMRI file: `<name>.h5`, a DICOM folder `<name>/`, or `<name>.nii(.gz)`."""
    for candidate in (folder / f"{name}.h5", folder / name, folder / f"{name}.nii.gz", folder / f"{name}.nii"):
        if candidate.exists():
            return candidate
    return None


def read_mask_labels(mask_dir: str | Path, categories: Sequence[str]) -> dict[str, int]:
    """``{"<label value>": task category index}`` from the `label_names.json` of a folder of label volumes
    (``{"Craniotomy": 1, ...}``, MONAI Label's `label_names` convention; 0 is background). Categories of the file
    outside the task are ignored; a task category missing from it is an error (its masks would be empty)."""
    path = Path(mask_dir) / MASK_LABEL_NAMES
    try:
        names = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read the label names of the mask folder ({err})") from err
    missing = [c for c in categories if c not in names]
    if missing:
        raise DataError(f"{path}: no label value for the categories {missing}; add them (name: value)")
    values = [int(names[c]) for c in categories]
    shared = sorted({v for v in values if values.count(v) > 1 or v == 0})
    if shared:
        raise DataError(f"{path}: label values {shared} are 0 or given to two categories; give each its own value > 0")
    return {str(value): i for i, value in enumerate(values)}


def fastmri_plus_items(data_dir: str | Path, labels: SliceLabels, mask_dir: str | Path | None = None) -> list[dict]:
    """Items for the files of ``labels`` that the user has under ``data_dir`` (a subset is normal: fastMRI's
    splits are separate downloads); none found is an error. With ``mask_dir``, each file's label volume
    `<mask_dir>/<file>.nii.gz` (the scan's geometry, values as in `label_names.json`) gives its pixel masks."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: fastMRI data folder not found")
    mask_labels = read_mask_labels(mask_dir, labels.categories) if mask_dir is not None else None
    items, missing = [], 0
    for name, found in labels.labels.items():
        path = find_scan(data_dir, name)
        if path is None:
            missing += 1
            continue
        item = {
            "image": str(path),
            "slices": [labels.slice_index],
            "label": multi_hot(found, labels.categories),
            "group": name,
            "id": f"{name}#{labels.slice_index}",
        }
        if mask_labels is not None:
            mask = Path(mask_dir) / f"{name}.nii.gz"
            if not mask.is_file():
                raise DataError(f"{mask}: the label volume of {path} is missing (every file needs one in {mask_dir})")
            item.update(mask=str(mask), mask_labels=mask_labels)
        items.append(item)
    if not items:
        raise DataError(
            f"{data_dir}: none of the {len(labels.labels)} fastMRI+ files of slice {labels.slice_index} "
            f"is there (expected <file>.h5, a DICOM folder <file>/ or <file>.nii.gz)"
        )
    if missing:
        logger.info(
            "fastMRI+ slice %d: %d files found in %s, %d listed files absent (skipped)",
            labels.slice_index,
            len(items),
            data_dir,
            missing,
        )
    rare = labels.rare_categories()
    if rare:
        logger.warning(
            "fastMRI+ slice %d: categories with fewer than %d positive files: %s",
            labels.slice_index,
            RARE_CATEGORY_THRESHOLD,
            rare,
        )
    return items


def fastmri_plus_dataset_items(
    data_dir: str | Path,
    brain_csv: str | Path,
    file_list: str | Path,
    slice_index: int,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    study_level: str = "slice0",
    other_labels: str = "exclude",
    mask_dir: str | Path | None = None,
) -> list[dict]:
    """Config entry point: labels of one slice task joined with the user's files (and their label volumes)."""
    labels = fastmri_plus_slice_labels(brain_csv, file_list, slice_index, categories, study_level, other_labels)
    return fastmri_plus_items(data_dir, labels, mask_dir)
