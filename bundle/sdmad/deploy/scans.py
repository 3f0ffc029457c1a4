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

from sdmad.data.dicom_series import check_image_series, read_headers, series_uid_of
from sdmad.data.errors import DataError
from sdmad.data.loading import NIFTI_SUFFIXES


@dataclass
class ScanInput:
    """A scan for inference: a file path or a volume in memory, with its DICOM study and series (None for NIfTI)."""

    name: str
    scan: Path | MetaTensor
    study: Any = None  # monai.deploy.core.domain.DICOMStudy
    series: Any = None  # monai.deploy.core.domain.DICOMSeries


def _file_of(dataset: pydicom.Dataset) -> str:
    return str(getattr(dataset, "filename", None) or f"SOP instance {getattr(dataset, 'SOPInstanceUID', '?')}")


def input_headers(input_folder: Path) -> list[tuple[Path, pydicom.Dataset]]:
    """The headers of every DICOM file under the app's input folder, read once for all its series."""
    return read_headers(input_folder, recursive=True)


def check_series(series: Any, headers: list[tuple[Path, pydicom.Dataset]]) -> None:
    """The bundle loader's rules (sdmad.data.dicom_series) for a series the SDK selected, on the series' files as
    they are in the input folder (``headers``: ``input_headers``): pixel data in every file, no Siemens mosaic, not
    4-D. The SDK's loader keeps one image per slice position (the highest AcquisitionNumber) and would score one
    volume of a 4-D series without a word; this check refuses it with the message the bundle gives for the same
    folder (a DataError)."""
    uid = str(series.SeriesInstanceUID)
    headers = [(file, header) for file, header in headers if series_uid_of(header) == uid]
    if not headers:  # e.g. a series handed over in memory: check what the SDK kept
        headers = [(_file_of(d), d) for d in (i.get_native_sop_instance() for i in series.get_sop_instances())]
    folders = {str(Path(file).parent) for file, _ in headers}
    check_image_series(folders.pop() if len(folders) == 1 else f"series {uid}", headers)


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
    """ "dicom" when ``path`` holds DICOM files, "nifti" when it holds NIfTI files; else a DataError."""
    if not path.exists():
        raise DataError(f"{path}: input folder not found")
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if any(pydicom.misc.is_dicom(p) or p.suffix.lower() in (".dcm", ".dicom") for p in files):
        return "dicom"
    if nifti_files(path):
        return "nifti"
    raise DataError(
        f"{path}: no DICOM files (with the DICM preamble) and no NIfTI files (.nii, .nii.gz) in the "
        f"input ({len(files)} other files)"
    )
