"""Scans as the app reads them outside inference, all through the bundle's own loader (`LoadScand`), so a check
or a viewer sees the volume inference sees: an upload checked readable before it becomes a study, a label volume
checked against its study, a DICOM series written as NIfTI for a viewer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from monai.data import MetaTensor, NibabelWriter

from sdmad.data.errors import DataError
from sdmad.data.loading import LoadScand
from sdmad.errors import one_line
from sdmad.label.errors import Invalid


def load(path: str | Path) -> MetaTensor:
    """The scan as a channel-first MetaTensor (DataError naming the file if it cannot be read)."""
    return LoadScand(keys="image")({"image": str(path)})["image"]


def check_readable(path: Path, study: str) -> None:
    """Invalid, naming the study (not the server's staging path), unless the uploaded scan at ``path`` loads."""
    try:
        load(path)
    except DataError as err:
        raise Invalid(f"study '{study}': {one_line(err).replace(str(path), 'the uploaded file')}") from err


def check_label_volume(label: Path, study_path: Path, study: str, tag: str) -> MetaTensor:
    """The label volume; Invalid unless it loads, has one channel and the study's spatial shape."""
    try:
        volume = load(label)
        label_shape, study_shape = tuple(volume.shape[1:]), tuple(load(study_path).shape[1:])
    except DataError as err:
        raise Invalid(
            f"label '{tag}' of study '{study}' is not a readable volume: "
            f"{one_line(err).replace(str(label), 'the upload')}"
        ) from err
    if volume.shape[0] != 1:
        raise Invalid(
            f"label '{tag}' of study '{study}': {volume.shape[0]} channels; a label volume has one (value v: "
            "category v)"
        )
    if label_shape != study_shape:
        raise Invalid(
            f"label '{tag}' of study '{study}': a volume of shape {list(label_shape)} does not match the "
            f"study's {list(study_shape)}"
        )
    return volume


def label_volume_categories(volume: torch.Tensor, categories: list[str], source: str) -> list[str]:
    """The categories a label volume shows: value v > 0 is category v (1-based, the order of ``categories``: the
    `label_names` of `sdmad_maps`; values are read, not segment names: keep that order); a DataError naming
    ``source`` for any other value (whole numbers only)."""
    values = volume.unique()
    known = set(range(len(categories) + 1))
    unknown = sorted({float(v) for v in values} - known)
    if unknown:
        names = ", ".join(f"{v} {name}" for v, name in enumerate(categories, start=1))
        raise DataError(
            f"{source}: label values {unknown[:5]} are not 0 (background) or a category's whole number ({names})"
        )
    return [categories[int(v) - 1] for v in sorted(values.tolist()) if v > 0]


def write_nifti(scan: Path, target: Path) -> Path:
    """Write ``scan`` (e.g. a DICOM series folder) as a NIfTI file with its affine, for a viewer."""
    volume = load(scan)
    writer = NibabelWriter()
    writer.set_data_array(volume, channel_dim=0)
    writer.set_metadata(volume.meta, resample=False)
    writer.write(str(target), verbose=False)
    return target
