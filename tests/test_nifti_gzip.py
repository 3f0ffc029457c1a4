"""`.nii.gz` inflated by ISA-L reads exactly as nibabel reads it (data, scaling, affine, MONAI metadata), for
NIfTI-1 and -2; damaged files still end in a DataError naming the file."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import NibabelReader
from monai.transforms import LoadImage
from sdmad.data import LoadScand
from sdmad.data.nifti_gzip import IsalNibabelReader, nifti_from_gzip
from test_data_readers import data_error


def both_readers(path):
    """(MONAI's NibabelReader, ours) on ``path``: channel-first MetaTensors."""
    load = LoadImage(image_only=True, ensure_channel_first=True)
    return [load(str(path), reader=reader) for reader in (NibabelReader(), IsalNibabelReader())]  # no fallback


def same_meta(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key, value in a.items():
        if isinstance(value, (np.ndarray, torch.Tensor)):
            assert np.array_equal(np.asarray(value), np.asarray(b[key]), equal_nan=True), key
        elif value == value:  # NaN (e.g. no channel dimension) is not equal to itself
            assert value == b[key], key


def oblique_affine() -> np.ndarray:
    affine = np.diag([0.9, 1.1, 3.0, 1.0])
    affine[:3, :3] = affine[:3, :3] @ nib.eulerangles.euler2mat(0.3, 0.1, -0.2)
    affine[:3, 3] = (-80.0, 12.5, 40.0)
    return affine


@pytest.mark.parametrize(
    "image_class, dtype, slope",
    [
        (nib.Nifti1Image, np.float32, None),
        (nib.Nifti1Image, np.int16, (0.5, -3.0)),  # scaled integers, as scanners store MR
        (nib.Nifti2Image, np.uint16, None),
    ],
)
def test_isal_reads_what_nibabel_reads(tmp_path, image_class, dtype, slope):
    values = np.random.default_rng(0).integers(0, 4000, size=(40, 36, 5)).astype(dtype)
    image = image_class(values, oblique_affine())
    if slope:
        image.header.set_slope_inter(*slope)
    path = tmp_path / "volume.nii.gz"
    nib.save(image, path)
    ours = nifti_from_gzip(path)
    assert type(ours) is image_class
    expected, read = both_readers(path)
    assert torch.equal(expected.as_tensor(), read.as_tensor()) and torch.equal(expected.affine, read.affine)
    same_meta(expected.meta, read.meta)
    assert read.meta["filename_or_obj"] == str(path)


def test_phantom_volume_and_uncompressed_file(phantom_dir, tmp_path):
    name = next((phantom_dir / "nifti").glob("*.nii.gz"))
    expected, read = both_readers(name)
    assert torch.equal(expected.as_tensor(), read.as_tensor())
    same_meta(expected.meta, read.meta)
    plain = tmp_path / "plain.nii"  # not gzip: NibabelReader's own path (memory-mapped)
    plain.write_bytes(gzip.decompress(name.read_bytes()))
    expected, read = both_readers(plain)
    assert torch.equal(expected.as_tensor(), read.as_tensor())


def test_damaged_gzip_is_a_data_error_naming_the_file(phantom_dir, tmp_path):
    """Also a bad checksum or a lost end, which nibabel reads without a word (it stops after the image data)."""
    source = next((phantom_dir / "nifti").glob("*.nii.gz")).read_bytes()
    flipped = bytearray(source)
    flipped[len(flipped) // 2] ^= 0xFF  # one bad byte in the deflate stream: a CRC or stream error
    bad_crc = bytearray(source)
    bad_crc[-8] ^= 0xFF  # the data intact, its CRC-32 not
    cases = {
        "flipped.nii.gz": bytes(flipped),
        "bad_crc.nii.gz": bytes(bad_crc),
        "no_end.nii.gz": source[:-8],
        "not_nifti.nii.gz": gzip.compress(b"this is not a NIfTI header" * 40),
    }
    original = np.asanyarray(nib.load(next((phantom_dir / "nifti").glob("*.nii.gz"))).dataobj)
    for name in ("bad_crc.nii.gz", "no_end.nii.gz"):  # nibabel alone reads them without a word
        (tmp_path / name).write_bytes(cases[name])
        assert np.array_equal(np.asanyarray(nib.load(tmp_path / name).dataobj), original)
    for file_name, content in cases.items():
        path = tmp_path / file_name
        path.write_bytes(content)
        data_error(lambda path=path: LoadScand()({"image": str(path)}), str(path), "cannot be read as nifti")
