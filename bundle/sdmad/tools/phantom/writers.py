"""Writers of a phantom volume in the real formats: NIfTI, a DICOM series (plus a non-image object), fastMRI
`.h5` (with multi-coil k-space), fastMRI+ box rows and a BMAD PNG slice with its mask.

Volumes are in RAS index order `volume[x, y, slice]`; the DICOM copy holds the same voxels in display orientation
with matching geometry, the `.h5` copy holds them as fastMRI does (the display flipped up/down, see
fastmri_h5.py), the PNGs as displayed.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, MRSpectroscopyStorage, generate_uid

from sdmad.data.fastmri_h5 import fft2c
from sdmad.maps import label_values as category_values
from sdmad.tools.phantom.findings import CATEGORIES, FINDINGS, INTENSITY_SCALE, PhantomVolume

GLOBAL_PREFIX = "Global label:"
SPACING = (2.0, 2.0, 5.0)  # mm: x, y, slice


def to_display(plane: np.ndarray) -> np.ndarray:
    """RAS `[x, y]` slice -> display `[row, column]` (row 0 anterior, column 0 the patient's right)."""
    return plane[::-1, ::-1].T


def write_nifti(phantom: PhantomVolume, path: Path) -> None:
    nib.save(nib.Nifti1Image(phantom.volume, np.diag([*SPACING, 1.0])), path)


def label_values() -> dict[str, int]:
    """The label value of each category in the phantom's label volumes (0: background), MONAI Label's
    `label_names` form."""
    return category_values(CATEGORIES)


def write_label_nifti(phantom: PhantomVolume, path: Path) -> None:
    """The findings as a label volume in the NIfTI copy's geometry: each voxel the value of the finding drawn on
    top there (the drawing order of FINDINGS: the one a reader sees), 0 elsewhere."""
    labels = np.zeros(phantom.volume.shape, dtype=np.uint8)
    values = label_values()
    for category in FINDINGS:
        if category in phantom.masks:
            labels[phantom.masks[category]] = values[category]
    nib.save(nib.Nifti1Image(labels, np.diag([*SPACING, 1.0])), path)


def _new_instance(sop_class_uid: str) -> pydicom.Dataset:
    """A dataset of ``sop_class_uid`` with its file meta and a fresh SOP Instance UID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class_uid, meta.MediaStorageSOPInstanceUID
    return ds


def _save(ds: pydicom.Dataset, path: Path) -> None:
    """Write a Part 10 file with pydicom 3 or 2 (the MONAI Label environment has pydicom 2)."""
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, write_like_original=False)


def write_dicom_series(
    phantom: PhantomVolume, folder: Path, study_uid: str, series_uid: str, series_number: int = 1
) -> None:
    """One MR Image Storage file per slice, axial, with geometry matching the NIfTI copy's affine."""
    folder.mkdir(parents=True, exist_ok=True)
    size_x, size_y, num_slices = phantom.volume.shape
    for k in range(num_slices):
        ds = _new_instance(MRImageStorage)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "frame"])
        ds.Modality, ds.PatientID, ds.PatientName = "MR", phantom.name, "Phantom^" + phantom.name
        ds.StudyDate, ds.SeriesDescription, ds.SeriesNumber = "20260101", "AX FLAIR phantom", series_number
        ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "090000", "1", "", ""
        ds.PatientBirthDate, ds.PatientSex, ds.PatientPosition = "", "O", "HFS"
        ds.InstanceNumber = k + 1
        # Display rows run posterior (LPS +y), columns toward the patient's left (LPS +x); see fastmri_h5.py.
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [-(size_x - 1) * SPACING[0], -(size_y - 1) * SPACING[1], k * SPACING[2]]
        ds.PixelSpacing = [SPACING[1], SPACING[0]]
        ds.SliceThickness = SPACING[2]
        ds.SpacingBetweenSlices = SPACING[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = size_y, size_x
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = to_display(phantom.volume[..., k]).astype(np.uint16).tobytes()
        _save(ds, folder / f"IM{k + 1:04d}.dcm")


def write_non_image_object(
    folder: Path,
    reference: pydicom.Dataset,
    sop_class_uid: str = MRSpectroscopyStorage,
    description: str = "SVS PRESS phantom (no pixel data)",
    series_number: int = 90,
) -> Path:
    """One instance without pixel data (by default MR Spectroscopy, Modality MR) in its own series of the study of
    ``reference``: an object a loader must skip (PACS exports put SRs, presentation states and key-object notes
    beside the images)."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = _new_instance(sop_class_uid)
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "FrameOfReferenceUID"):
        setattr(ds, keyword, getattr(reference, keyword))
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[reference.StudyInstanceUID, sop_class_uid])
    ds.Modality = "MR" if sop_class_uid == MRSpectroscopyStorage else "OT"
    ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = series_number, 1, description
    if sop_class_uid == MRSpectroscopyStorage:
        ds.ImageOrientationPatient, ds.ImagePositionPatient = reference.ImageOrientationPatient, [0.0, 0.0, 0.0]
        ds.PixelSpacing = reference.PixelSpacing
    path = folder / f"{pydicom.uid.UID(sop_class_uid).name.split()[0]}_{series_number:04d}.dcm"
    _save(ds, path)
    return path


def _ismrmrd_header(rows: int, columns: int, oversampled_rows: int) -> bytes:
    return (
        '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>'
        f"<encodedSpace><matrixSize><x>{oversampled_rows}</x><y>{columns}</y><z>1</z></matrixSize></encodedSpace>"
        f"<reconSpace><matrixSize><x>{rows}</x><y>{columns}</y><z>1</z></matrixSize></reconSpace>"
        "</encoding></ismrmrdHeader>"
    ).encode()


def coil_sensitivities(rows: int, columns: int, coils: int) -> np.ndarray:
    """Smooth complex coil maps normalised so that the root-sum-of-squares is 1 everywhere."""
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, columns), indexing="ij")
    maps = []
    for coil in range(coils):
        angle = 2 * np.pi * coil / coils
        weight = np.exp(-((x - 0.8 * np.cos(angle)) ** 2 + (y - 0.8 * np.sin(angle)) ** 2))
        maps.append(weight * np.exp(1j * (angle + 0.5 * x)))
    maps = np.stack(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))


def write_fastmri_h5(phantom: PhantomVolume, path: Path, with_kspace: bool, coils: int = 4) -> None:
    """`reconstruction_rss` `[slice, row, column]` as fastMRI stores it (the display flipped up/down), plus
    multi-coil `kspace` with 2x readout oversampling."""
    display = np.stack([to_display(phantom.volume[..., k])[::-1] for k in range(phantom.volume.shape[-1])])
    with h5py.File(path, "w") as handle:
        handle.create_dataset("reconstruction_rss", data=display.astype(np.float32))
        rows, columns = display.shape[1:]
        handle.create_dataset("ismrmrd_header", data=_ismrmrd_header(rows, columns, 2 * rows))
        if with_kspace:
            padded = np.pad(display, ((0, 0), (rows // 2, rows - rows // 2), (0, 0)))
            coil_images = padded[:, None] * coil_sensitivities(2 * rows, columns, coils)[None]
            handle.create_dataset("kspace", data=fft2c(coil_images).astype(np.complex64))
        handle.attrs.update(
            acquisition="AXFLAIR",
            patient_id=phantom.name,
            max=float(display.max()),
            norm=float(np.linalg.norm(display)),
        )


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (x, y, width, height) of a display-orientation mask, or None when empty."""
    rows, columns = np.nonzero(mask)
    if len(rows) == 0:
        return None
    return int(columns.min()), int(rows.min()), int(columns.max() - columns.min() + 1), int(rows.max() - rows.min() + 1)


def fastmri_plus_rows(phantom: PhantomVolume) -> list[list]:
    """brain.csv rows as fastMRI+ writes them: a box per finding and slice, drawn on the displayed image (the `.h5`
    flipped up/down); a study-level (global) label as one slice-0 row without a box."""
    rows = []
    for label in phantom.labels:
        if label.startswith(GLOBAL_PREFIX):
            rows.append([phantom.name, 0, "Yes", "", "", "", "", label])
            continue
        for k in range(phantom.volume.shape[-1]):
            box = _box(to_display(phantom.masks[label][..., k]))
            if box is not None:
                rows.append([phantom.name, k, "No", *box, label])
    return rows


def _png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_bmad_slice(phantom: PhantomVolume, root: Path, split: str) -> None:
    """The middle slice in the MVFA/BMAD layout: `{split}/{good,Ungood}/img` and `Ungood/anomaly_mask`."""
    k = phantom.volume.shape[-1] // 2
    image = to_display(phantom.volume[..., k]) / (1.25 * INTENSITY_SCALE) * 255
    folder = root / split / ("Ungood" if phantom.labels else "good")
    _png(np.clip(image, 0, 255).astype(np.uint8), folder / "img" / f"{phantom.name}.png")
    if phantom.labels:
        mask = np.zeros(phantom.volume.shape[:2], dtype=bool)
        for label_mask in phantom.masks.values():
            mask |= label_mask[..., k]
        _png((to_display(mask) * 255).astype(np.uint8), folder / "anomaly_mask" / f"{phantom.name}.png")
