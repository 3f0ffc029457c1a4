"""What the app's inference step receives: a scan to score, and where it came from (DICOM study and series).

The MONAI Deploy SDK reads a DICOM series into an `Image` (voxels `[D, H, W]`, RAS affine for `[W, H, D]`);
`image_to_metatensor` turns it into the channel-first MetaTensor the bundle's transforms take after their
loader, so the SDK's DICOM reading feeds the one implementation of the model (sdmad.predictor.BundlePredictor).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor

from sdmad.data.errors import DataError
from sdmad.data.loading import NIFTI_SUFFIXES, PIXEL_TAGS


@dataclass
class ScanInput:
    """A scan for inference: a file path or a volume in memory, with its DICOM study and series (None for NIfTI)."""

    name: str
    scan: Path | MetaTensor
    study: Any = None   # monai.deploy.core.domain.DICOMStudy
    series: Any = None  # monai.deploy.core.domain.DICOMSeries


def _file_of(dataset: pydicom.Dataset) -> str:
    return str(getattr(dataset, "filename", None) or f"SOP instance {getattr(dataset, 'SOPInstanceUID', '?')}")


def check_pixel_data(series: Any) -> None:
    """A DataError naming the first file of ``series`` (a DICOMSeries) that has no pixel data."""
    for instance in series.get_sop_instances():
        dataset = instance.get_native_sop_instance()
        if not any(tag in dataset for tag in PIXEL_TAGS):
            raise DataError(f"{_file_of(dataset)}: DICOM file of series {series.SeriesInstanceUID} has no pixel data "
                            "(no PixelData element)")


def image_to_metatensor(image: Any, name: str) -> MetaTensor:
    """An SDK `Image` of a DICOM series (`[D, H, W]`, meta "affine" in RAS) -> MetaTensor `[1, W, H, D]`."""
    voxels = np.asarray(image.asnumpy())
    meta = image.metadata()
    if voxels.ndim != 3 or meta.get("affine") is None:
        raise DataError(f"{name}: the DICOM series did not load as a 3-D volume with geometry (shape {voxels.shape})")
    volume = torch.from_numpy(np.ascontiguousarray(np.swapaxes(voxels, 0, 2)).astype(np.float32))[None]
    affine = torch.as_tensor(np.asarray(meta["affine"], dtype=np.float64))
    return MetaTensor(volume, affine=affine, meta={"filename_or_obj": name, "space": "RAS"})


def nifti_files(folder: Path) -> list[Path]:
    """The NIfTI files of ``folder`` (a file is a list of itself), sorted."""
    if folder.is_file():
        return [folder] if folder.name.lower().endswith(NIFTI_SUFFIXES) else []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES))


def input_kind(path: Path) -> str:
    """"dicom" when ``path`` holds DICOM files, "nifti" when it holds NIfTI files; else a DataError."""
    if not path.exists():
        raise DataError(f"{path}: input folder not found")
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if any(pydicom.misc.is_dicom(p) or p.suffix.lower() in (".dcm", ".dicom") for p in files):
        return "dicom"
    if nifti_files(path):
        return "nifti"
    raise DataError(f"{path}: no DICOM files (with the DICM preamble) and no NIfTI files (.nii, .nii.gz) in the "
                    f"input ({len(files)} other files)")
