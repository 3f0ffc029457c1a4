"""The phantom data set: every volume in every format, fastMRI+ label files, a BMAD folder and a CSV table.

Deterministic for a seed (each volume draws from its own generator, `[seed, index]`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from sdmad.atomic import write_csv_atomic
from sdmad.data.fastmri_plus import MASK_LABEL_NAMES
from sdmad.tools.phantom.findings import CATEGORIES, make_volume, phantom_label_sets
from sdmad.tools.phantom.writers import (
    fastmri_plus_rows,
    label_values,
    write_bmad_slice,
    write_dicom_series,
    write_fastmri_h5,
    write_label_nifti,
    write_nifti,
    write_non_image_object,
)

# The data set's layout version: a data set written by another version is made again (demo, benchmark).
PHANTOM_VERSION = 4  # 2: `.h5` in fastMRI's orientation, boxes in display coordinates; 3: 180 volumes; 4: masks/


def make_phantom_dataset(
    out: str | Path,
    volumes_per_category: int = 20,
    normal_volumes: int = 40,
    multi_label_volumes: int = 20,
    size: int = 96,
    num_slices: int = 12,
    kspace_volumes: int = 4,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Write the phantom data set under ``out`` and return its manifest (also written as manifest.json).

    Layout: `nifti/<name>.nii.gz`, `masks/<name>.nii.gz` (the findings' label volume, values in
    `masks/label_names.json`), `dicom/<name>/IM0001.dcm...`, `h5/<name>.h5` (the first ``kspace_volumes``
    with k-space too), `fastmri_plus/brain.csv` + `brain_file_list.csv`, `bmad/PhantomBrain_AD/{valid,test}/...`
    and `labels.csv` (a generic multi-label CSV of the NIfTI files, patient column included).
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    label_sets = phantom_label_sets(volumes_per_category, normal_volumes, multi_label_volumes, rng)
    for sub in ("nifti", "masks", "dicom", "h5", "fastmri_plus", "bmad/PhantomBrain_AD"):
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
        write_label_nifti(phantom, out / "masks" / f"{name}.nii.gz")
        study_uid = generate_uid(entropy_srcs=[str(seed), name, "study"])
        write_dicom_series(
            phantom, out / "dicom" / name, study_uid, generate_uid(entropy_srcs=[str(seed), name, "series"])
        )
        write_fastmri_h5(phantom, out / "h5" / f"{name}.h5", with_kspace=index < kspace_volumes)
        write_bmad_slice(phantom, out / "bmad" / "PhantomBrain_AD", "valid" if index % 2 == 0 else "test")
        csv_rows += fastmri_plus_rows(phantom)
        manifest["volumes"].append(
            {"name": name, "labels": list(labels), "kspace": index < kspace_volumes, "patient": f"P{index // 2:04d}"}
        )
    header = ["file", "slice", "study_level", "x", "y", "width", "height", "label"]
    write_csv_atomic([header, *csv_rows], out / "fastmri_plus" / "brain.csv")
    (out / "fastmri_plus" / "brain_file_list.csv").write_text("".join(f"{v['name']}\n" for v in manifest["volumes"]))
    table = [
        [f"nifti/{volume['name']}.nii.gz", "|".join(volume["labels"]) or "normal", volume["patient"]]
        for volume in manifest["volumes"]
    ]
    write_csv_atomic([["path", "labels", "patient"], *table], out / "labels.csv")
    (out / "masks" / MASK_LABEL_NAMES).write_text(json.dumps(label_values(), indent=1))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def ensure_phantom_dataset(out: str | Path, progress: bool = False) -> bool:
    """Make the default phantom data set under ``out`` unless it is there in the current version; True if made."""
    manifest = Path(out) / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("version") == PHANTOM_VERSION:
        return False
    make_phantom_dataset(out, progress=progress)
    return True


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
