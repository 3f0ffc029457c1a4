"""A generated brain-like phantom data set in the real formats (NIfTI, DICOM series, fastMRI `.h5`, BMAD PNG).

Deterministic for a seed. Each volume is an axial head: a bright skull ring, grey brain tissue with texture,
two dark ventricles. The six fastMRI+ categories are visually distinct synthetic findings:

| category | finding |
|---|---|
| Craniotomy | a gap in the skull ring |
| Posttreatment change | a dark cavity with an irregular bright rim near the cortex |
| Nonspecific lesion | one to three small bright focal lesions |
| Dural thickening | a thick bright rim just inside the skull |
| Enlarged ventricles | ventricles about twice as large |
| Global label: Small vessel ... | bright dots around the ventricles (a study-level label, as in fastMRI+) |

Findings span every slice of a volume. Volumes are stored in RAS index order `volume[x, y, slice]`; the DICOM
copy holds the same voxels in display orientation with matching geometry, the `.h5` copy holds them as fastMRI
does (the display flipped up/down, see fastmri_h5.py), the PNGs as displayed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, MRSpectroscopyStorage, generate_uid

from sdmad.data.fastmri_h5 import fft2c
from sdmad.data.fastmri_plus import DEFAULT_CATEGORIES

CATEGORIES = DEFAULT_CATEGORIES  # the phantom mimics fastMRI+ brain
GLOBAL_PREFIX = "Global label:"
SPACING = (2.0, 2.0, 5.0)  # mm: x, y, slice
INTENSITY_SCALE = 1000.0  # phantom values in [0, ~1.2] are stored as integers 0..~1200 (exact in every format)
# The data set's layout version: a data set written by another version is made again (demo, benchmark).
PHANTOM_VERSION = 3  # 2: `.h5` in fastMRI's orientation, boxes in display coordinates; 3: 180 volumes


@dataclass
class PhantomVolume:
    name: str
    labels: tuple[str, ...]
    volume: np.ndarray  # float32 [x, y, slice], integer-valued
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # category -> bool [x, y, slice]


def _ellipse(shape: tuple[int, int], center: tuple[float, float], radii: tuple[float, float],
             angle: float = 0.0) -> np.ndarray:
    """Normalised elliptic radius r (r <= 1 inside) on a 2-D grid."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    dx, dy = x - center[0], y - center[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    return np.sqrt((u / radii[0]) ** 2 + (v / radii[1]) ** 2)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: int) -> np.ndarray:
    coarse = rng.standard_normal((shape[0] // scale + 2, shape[1] // scale + 2))
    image = np.asarray(Image.fromarray(coarse.astype(np.float32)).resize((shape[1] + 2 * scale, shape[0] + 2 * scale),
                                                                         Image.BICUBIC))
    return image[scale:scale + shape[0], scale:scale + shape[1]]


def make_volume(name: str, labels: Sequence[str], rng: np.random.Generator, size: int = 96,
                num_slices: int = 12) -> PhantomVolume:
    """One phantom head with the given findings; every random choice comes from ``rng``."""
    unknown = set(labels) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown phantom categories {sorted(unknown)}")
    shape = (size, size)
    c = size / 2 + rng.uniform(-2, 2, size=2)
    radii = np.array([0.36, 0.43]) * size * rng.uniform(0.92, 1.05, size=2)
    angle = rng.uniform(-0.15, 0.15)
    gap_angle = rng.uniform(0, 2 * np.pi)
    cavity_angle = rng.uniform(0, 2 * np.pi)
    lesions = [(rng.uniform(-0.45, 0.45, size=2), rng.uniform(2.5, 4.0)) for _ in range(rng.integers(1, 4))]
    dots = [rng.uniform(-1, 1, size=2) for _ in range(rng.integers(10, 16))]
    ventricle_scale = 2.0 if "Enlarged ventricles" in labels else rng.uniform(0.9, 1.1)

    volume = np.zeros((size, size, num_slices), dtype=np.float32)
    masks = {label: np.zeros((size, size, num_slices), dtype=bool) for label in labels}
    x, y = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    for k in range(num_slices):
        taper = 1.0 - 0.25 * ((k - (num_slices - 1) / 2) / num_slices) ** 2
        r = _ellipse(shape, c, radii * taper, angle)
        theta = np.arctan2(y - c[1], x - c[0])
        brain = r < 0.9
        skull = (r >= 0.9) & (r < 1.0)
        plane = np.where(brain, 0.5 + 0.05 * _smooth_noise(rng, shape, 8), 0.0)
        plane[skull] = 0.95
        ventricles = np.zeros(shape, dtype=bool)
        for side in (-1, 1):
            ventricles |= _ellipse(shape, (c[0] + side * 0.08 * size * ventricle_scale, c[1] + 0.02 * size),
                                   (0.04 * size * ventricle_scale, 0.11 * size * ventricle_scale), side * 0.3) < 1
        plane[ventricles] = 0.12
        if "Enlarged ventricles" in labels:
            masks["Enlarged ventricles"][..., k] = ventricles
        if "Craniotomy" in labels:
            gap = skull & (np.abs(np.angle(np.exp(1j * (theta - gap_angle)))) < 0.4)
            plane[gap] = 0.05
            masks["Craniotomy"][..., k] = gap
        if "Dural thickening" in labels:
            rim = (r >= 0.78) & (r < 0.9)
            plane[rim] = 0.8
            masks["Dural thickening"][..., k] = rim
        if "Posttreatment change" in labels:
            center = (c[0] + 0.55 * radii[0] * np.cos(cavity_angle), c[1] + 0.55 * radii[1] * np.sin(cavity_angle))
            wobble = 1.0 + 0.25 * _smooth_noise(rng, shape, 6)
            cavity_r = _ellipse(shape, center, (0.11 * size, 0.08 * size), cavity_angle) * wobble
            cavity = (cavity_r < 1.0) & brain
            rim = (cavity_r >= 1.0) & (cavity_r < 1.35) & brain
            plane[cavity], plane[rim] = 0.08, 0.85
            masks["Posttreatment change"][..., k] = cavity | rim
        if "Nonspecific lesion" in labels:
            for offset, radius in lesions:
                spot = _ellipse(shape, (c[0] + offset[0] * radii[0], c[1] + offset[1] * radii[1]),
                                (radius, radius)) < 1
                spot &= brain  # drawn over anything, so the finding is on every slice
                plane[spot] = 1.0
                masks["Nonspecific lesion"][..., k] |= spot
        if CATEGORIES[5] in labels:
            for offset in dots:
                around = (c[0] + offset[0] * 0.22 * size, c[1] + offset[1] * 0.2 * size)
                dot = (_ellipse(shape, around, (1.6, 1.6)) < 1) & brain
                plane[dot] = 0.9
                masks[CATEGORIES[5]][..., k] |= dot
        plane += 0.015 * rng.standard_normal(shape)
        volume[..., k] = np.clip(plane, 0, None)
    volume = np.round(volume * INTENSITY_SCALE).astype(np.float32)
    return PhantomVolume(name=name, labels=tuple(labels), volume=volume, masks=masks)


def phantom_label_sets(volumes_per_category: int, normal_volumes: int, multi_label_volumes: int,
                       rng: np.random.Generator) -> list[tuple[str, ...]]:
    """Normal volumes, single-category volumes for each category, and volumes with two categories."""
    label_sets: list[tuple[str, ...]] = [() for _ in range(normal_volumes)]
    for category in CATEGORIES:
        label_sets += [(category,)] * volumes_per_category
    for _ in range(multi_label_volumes):
        first, second = sorted(rng.choice(len(CATEGORIES), size=2, replace=False))
        label_sets.append((CATEGORIES[first], CATEGORIES[second]))
    order = rng.permutation(len(label_sets))
    return [label_sets[i] for i in order]


def to_display(plane: np.ndarray) -> np.ndarray:
    """RAS `[x, y]` slice -> display `[row, column]` (row 0 anterior, column 0 the patient's right)."""
    return plane[::-1, ::-1].T


# ------------------------------------------------------------------------------------------------- writers
def write_nifti(phantom: PhantomVolume, path: Path) -> None:
    nib.save(nib.Nifti1Image(phantom.volume, np.diag([*SPACING, 1.0])), path)


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


def write_dicom_series(phantom: PhantomVolume, folder: Path, study_uid: str, series_uid: str,
                       series_number: int = 1) -> None:
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


def write_non_image_object(folder: Path, reference: pydicom.Dataset, sop_class_uid: str = MRSpectroscopyStorage,
                           description: str = "SVS PRESS phantom (no pixel data)", series_number: int = 90) -> Path:
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


def make_dicom_study(phantom_dir: str | Path, name: str, out: str | Path) -> Path:
    """A DICOM study folder of two series: the phantom ``name``'s MR image series (`out/mr/`) and an MR
    spectroscopy series without pixel data (`out/spectroscopy/`)."""
    out = Path(out)
    series = sorted((Path(phantom_dir) / "dicom" / name).glob("*.dcm"))
    if not series:
        raise FileNotFoundError(f"{Path(phantom_dir) / 'dicom' / name}: no phantom DICOM series")
    (out / "mr").mkdir(parents=True, exist_ok=True)
    for file in series:
        (out / "mr" / file.name).write_bytes(file.read_bytes())
    write_non_image_object(out / "spectroscopy", pydicom.dcmread(series[0], stop_before_pixels=True))
    return out


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
        handle.attrs.update(acquisition="AXFLAIR", patient_id=phantom.name, max=float(display.max()),
                            norm=float(np.linalg.norm(display)))


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


def make_phantom_dataset(out: str | Path, volumes_per_category: int = 20, normal_volumes: int = 40,
                         multi_label_volumes: int = 20, size: int = 96, num_slices: int = 12,
                         kspace_volumes: int = 4, seed: int = 0, progress: bool = False) -> dict:
    """Write the phantom data set under ``out`` and return its manifest (also written as manifest.json).

    Layout: `nifti/<name>.nii.gz`, `dicom/<name>/IM0001.dcm...`, `h5/<name>.h5` (the first ``kspace_volumes``
    with k-space too), `fastmri_plus/brain.csv` + `brain_file_list.csv`, `bmad/PhantomBrain_AD/{valid,test}/...`
    and `labels.csv` (a generic multi-label CSV of the NIfTI files, patient column included).
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    label_sets = phantom_label_sets(volumes_per_category, normal_volumes, multi_label_volumes, rng)
    for sub in ("nifti", "dicom", "h5", "fastmri_plus", "bmad/PhantomBrain_AD"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    csv_rows, manifest = [], {"version": PHANTOM_VERSION, "seed": seed, "categories": list(CATEGORIES), "volumes": []}
    iterator = enumerate(label_sets)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(label_sets), desc="phantom volumes", unit="vol")
    for index, labels in iterator:
        name = f"file_brain_PHANTOM_{index:04d}"
        phantom = make_volume(name, labels, np.random.default_rng([seed, index]), size, num_slices)
        write_nifti(phantom, out / "nifti" / f"{name}.nii.gz")
        study_uid = generate_uid(entropy_srcs=[str(seed), name, "study"])
        write_dicom_series(phantom, out / "dicom" / name, study_uid,
                           generate_uid(entropy_srcs=[str(seed), name, "series"]))
        write_fastmri_h5(phantom, out / "h5" / f"{name}.h5", with_kspace=index < kspace_volumes)
        write_bmad_slice(phantom, out / "bmad" / "PhantomBrain_AD", "valid" if index % 2 == 0 else "test")
        csv_rows += fastmri_plus_rows(phantom)
        manifest["volumes"].append({"name": name, "labels": list(labels), "kspace": index < kspace_volumes,
                                    "patient": f"P{index // 2:04d}"})
    with open(out / "fastmri_plus" / "brain.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "slice", "study_level", "x", "y", "width", "height", "label"])
        writer.writerows(csv_rows)
    (out / "fastmri_plus" / "brain_file_list.csv").write_text(
        "".join(f"{v['name']}\n" for v in manifest["volumes"]))
    with open(out / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "labels", "patient"])
        for volume in manifest["volumes"]:
            writer.writerow([f"nifti/{volume['name']}.nii.gz", "|".join(volume["labels"]) or "normal",
                             volume["patient"]])
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def ensure_phantom_dataset(out: str | Path, progress: bool = False) -> bool:
    """Make the default phantom data set under ``out`` unless it is there in the current version; True if made."""
    manifest = Path(out) / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("version") == PHANTOM_VERSION:
        return False
    make_phantom_dataset(out, progress=progress)
    return True
