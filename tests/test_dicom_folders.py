"""DICOM folders as PACS export them (docs/data.md): non-image objects beside the images are skipped, a 4-D series
and a Siemens mosaic are refused with what to do, a single DICOM image is shown as stored; a 4-D NIfTI is refused."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from conftest import four_d_series
from monai.transforms import Compose
from pydicom.uid import (
    ComprehensiveSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    KeyObjectSelectionDocumentStorage,
)
from sdmad.data import DataError, scan_to_slices
from sdmad.tools.phantom import write_non_image_object


def load(path, **item):
    return Compose(scan_to_slices())({"image": str(path), **item})


def data_error(path, **item) -> str:
    with pytest.raises(Exception) as error:
        load(path, **item)
    cause = error.value
    while cause is not None and not isinstance(cause, DataError):
        cause = cause.__cause__
    assert cause is not None, repr(error.value)
    return str(cause)


def phantom_series(phantom_dir: Path, tmp_path: Path, index: int = 0) -> Path:
    import json

    name = json.loads((phantom_dir / "manifest.json").read_text())["volumes"][index]["name"]
    folder = tmp_path / f"series{index}"
    shutil.copytree(phantom_dir / "dicom" / name, folder)
    return folder


def test_sr_presentation_state_and_key_object_beside_the_images_are_skipped(phantom_dir, tmp_path, caplog):
    series = phantom_series(phantom_dir, tmp_path)
    reference = pydicom.dcmread(next(series.glob("*.dcm")), stop_before_pixels=True)
    expected = load(series)
    for number, sop_class in enumerate(
        (ComprehensiveSRStorage, GrayscaleSoftcopyPresentationStateStorage, KeyObjectSelectionDocumentStorage)
    ):
        write_non_image_object(series, reference, sop_class, "a PACS object", series_number=91 + number)
    with caplog.at_level("INFO", logger="sdmad.data.dicom_series"):
        found = load(series)
    assert len(found) == len(expected) == 12
    assert all(
        torch.equal(a["image"].as_tensor(), b["image"].as_tensor()) for a, b in zip(found, expected, strict=True)
    )
    assert (
        "skipped 3 non-image DICOM object(s): Comprehensive SR Storage (1), Grayscale Softcopy Presentation "
        "State Storage (1), Key Object Selection Document Storage (1)" in caplog.text
    )


def test_two_image_series_still_need_a_choice_and_an_image_without_pixels_is_an_error(phantom_dir, tmp_path):
    series = phantom_series(phantom_dir, tmp_path)
    for file in phantom_series(phantom_dir, tmp_path, 1).iterdir():
        shutil.copy(file, series / f"other_{file.name}")
    assert "holds 2 DICOM image series; choose one with --series_uid <UID>" in data_error(series)
    single = phantom_series(phantom_dir, tmp_path, 2)
    victim = sorted(single.glob("*.dcm"))[4]
    dataset = pydicom.dcmread(victim)
    del dataset.PixelData
    dataset.save_as(victim)
    assert f"{victim}: DICOM image file (MR Image Storage) has no pixel data" in data_error(single)


def test_a_4d_series_is_refused_saying_how_many_volumes_at_how_many_positions(phantom_dir, tmp_path):
    folder = four_d_series(phantom_series(phantom_dir, tmp_path), tmp_path / "fmri")
    message = data_error(folder)
    assert message.startswith(
        f"{folder}: a 4-D series: 6 images at 3 slice positions (2 volumes, told apart by "
        f"TemporalPositionIdentifier: 1, 2)"
    )
    assert "put the images of one TemporalPositionIdentifier in their own folder" in message


def csa_image_header(tags: dict[str, tuple[str, list[str]]]) -> bytes:
    """A Siemens CSA2 header ("SV10") with the given tags, as nibabel's csareader reads it."""
    out = b"SV10" + b"\x04\x03\x02\x01" + struct.pack("<2I", len(tags), 77)
    for name, (vr, values) in tags.items():
        out += struct.pack("<64si4s3i", name.encode(), len(values), vr.encode(), 0, len(values), 77)
        for value in values:
            data = value.encode() + b"\0"
            out += struct.pack("<4i", len(data), len(data), 77, len(data)) + data + b"\0" * (-len(data) % 4)
    return out


def test_a_siemens_mosaic_is_refused_naming_the_file_and_dcm2niix(phantom_dir, tmp_path):
    series = phantom_series(phantom_dir, tmp_path)
    mosaic = sorted(series.glob("*.dcm"))[0]
    dataset = pydicom.dcmread(mosaic)
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    dataset.add_new((0x0029, 0x0010), "LO", "SIEMENS CSA HEADER")
    dataset.add_new((0x0029, 0x1010), "OB", csa_image_header({"NumberOfImagesInMosaic": ("US", ["16"])}))
    dataset.save_as(mosaic)
    for path in (series, mosaic):
        message = data_error(path)
        assert message.startswith(f"{mosaic}: a Siemens mosaic (16 slices tiled in one image)")
        assert "dcm2niix" in message


def test_a_single_dicom_image_is_shown_as_stored(phantom_dir, tmp_path):
    file = sorted(phantom_series(phantom_dir, tmp_path).glob("*.dcm"))[5]
    stored = pydicom.dcmread(file).pixel_array.astype(np.float32)
    (item,) = load(file)
    assert item["image"].shape == (1, *stored.shape)
    np.testing.assert_array_equal(item["image"][0].numpy(), stored)


def test_a_4d_nifti_is_refused(tmp_path):
    path = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.float32), np.eye(4)), path)
    assert data_error(path).startswith(f"{path}: a 4-D NIfTI (3 volumes of (8, 8, 4))")
