"""Every reader gives the same slices for the same phantom volume; fastMRI .h5 specifics; bad files."""

from __future__ import annotations

import gzip
import json
import shutil

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from conftest import clip_ready
from monai.transforms import Compose
from sdmad.data import CLIP_MEAN, CLIP_STD, DataError, FastMRIH5Reader, scan_to_slices, scan_transforms
from sdmad.data.dicom_series import choose_series, read_headers, series_uid_of


def manifest(phantom_dir):
    return json.loads((phantom_dir / "manifest.json").read_text())


def load_slices(path, **item):
    return Compose(scan_to_slices())({"image": str(path), **item})


def test_nifti_dicom_and_h5_give_the_same_slices(phantom_dir):
    name = manifest(phantom_dir)["volumes"][0]["name"]
    nifti = load_slices(phantom_dir / "nifti" / f"{name}.nii.gz")
    dicom = load_slices(phantom_dir / "dicom" / name)
    h5 = load_slices(phantom_dir / "h5" / f"{name}.h5")
    assert len(nifti) == len(dicom) == len(h5) == 12
    for a, b, c in zip(nifti, dicom, h5, strict=True):
        assert a["slice_index"] == b["slice_index"] == c["slice_index"]
        assert a["image"].shape == (1, 64, 64)
        assert torch.equal(a["image"].as_tensor(), b["image"].as_tensor())
        assert torch.equal(a["image"].as_tensor(), c["image"].as_tensor())
    # NIfTI and DICOM carry the same geometry (display orientation of an axial volume), the .h5 a unit one
    assert nib.aff2axcodes(nifti[0]["image"].affine.numpy()) == ("P", "L", "S")
    np.testing.assert_allclose(nifti[0]["image"].affine.numpy(), dicom[0]["image"].affine.numpy(), atol=1e-4)
    assert nifti[3]["source"].endswith(f"{name}.nii.gz")


def test_rss_from_kspace_equals_the_stored_reconstruction(phantom_dir):
    volumes = [v for v in manifest(phantom_dir)["volumes"] if v["kspace"]]
    path = str(phantom_dir / "h5" / f"{volumes[0]['name']}.h5")
    from_kspace, meta = FastMRIH5Reader(source="kspace").get_data(FastMRIH5Reader().read(path))
    stored, _ = FastMRIH5Reader(source="reconstruction_rss").get_data(FastMRIH5Reader().read(path))
    assert meta["h5_source"].startswith("kspace")
    with h5py.File(path) as handle:
        assert handle["kspace"].shape[-2] == 2 * handle["reconstruction_rss"].shape[-2]  # oversampled readout
    np.testing.assert_allclose(from_kspace, stored, rtol=0, atol=1e-3 * stored.max())


def test_h5_reader_reads_only_the_slices_asked_for(phantom_dir, monkeypatch):
    path = str(phantom_dir / "h5" / f"{manifest(phantom_dir)['volumes'][1]['name']}.h5")
    requested = []
    original = h5py.Dataset.__getitem__

    def recording(self, key):
        requested.append((self.name, key))
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    reader = FastMRIH5Reader(slices=[10, 5])
    volume, meta = reader.get_data(reader.read(path))
    assert volume.shape == (64, 64, 2) and meta["slice_indices"] == [5, 10]
    assert requested == [("/reconstruction_rss", [5, 10])]
    items = load_slices(path, slices=[5])
    assert len(items) == 1 and items[0]["slice_index"] == 5
    out_of_range = FastMRIH5Reader(slices=[12])
    with pytest.raises(DataError, match=r"slices \[12\] are outside the file's 0..11"):
        out_of_range.get_data(out_of_range.read(path))


def test_full_chain_gives_clip_ready_slices(phantom_dir):
    name = manifest(phantom_dir)["volumes"][0]["name"]
    out = scan_transforms(slices=[0, 5])(
        {"image": str(phantom_dir / "nifti" / f"{name}.nii.gz"), "label": np.zeros(6, np.float32)}
    )
    assert [item["slice_index"] for item in out] == [0, 5]
    assert type(out[0]["image"]) is torch.Tensor and out[0]["image"].shape[0] == 1  # native size, grey, no meta
    image = clip_ready(out)[0]
    assert tuple(image.shape) == (3, 240, 240) and image.dtype == torch.float32
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    grey = image * std + mean  # undo the CLIP normalisation: three identical channels in [0, 1]
    torch.testing.assert_close(grey[0], grey[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(grey[0], grey[2], atol=1e-5, rtol=0)
    assert grey.min() >= -1e-5 and grey.max() <= 1 + 1e-5 and grey.std() > 0.1


def test_png_is_one_slice(phantom_dir):
    png = next((phantom_dir / "bmad" / "PhantomBrain_AD" / "test" / "good" / "img").glob("*.png"))
    out = scan_transforms()({"image": str(png)})
    assert len(out) == 1 and out[0]["slice_index"] == 0 and tuple(clip_ready(out, 120).shape) == (1, 3, 120, 120)


def test_slice_range_selection(phantom_dir):
    name = manifest(phantom_dir)["volumes"][0]["name"]
    chain = Compose(scan_to_slices(slices={"start": 2, "stop": 5}))
    assert [i["slice_index"] for i in chain({"image": str(phantom_dir / "dicom" / name)})] == [2, 3, 4]
    raises_naming(phantom_dir / "nifti" / f"{name}.nii.gz", "slices [40] do not exist", slices=[40])


# ------------------------------------------------------------------------------------------------ bad input
def data_error(call, *fragments: str) -> DataError:
    """Run ``call``; expect a DataError (MONAI's Compose wraps it in RuntimeError) whose message has ``fragments``."""
    with pytest.raises(Exception) as error:
        call()
    exception = error.value
    while exception is not None and not isinstance(exception, DataError):
        exception = exception.__cause__
    assert exception is not None, f"no DataError behind {error.value!r}"
    for fragment in fragments:
        assert fragment in str(exception), str(exception)
    return exception


def raises_naming(path, match, **item):
    data_error(lambda: load_slices(path, **item), str(path), match)


def test_truncated_nifti(phantom_dir, tmp_path):
    source = phantom_dir / "nifti" / f"{manifest(phantom_dir)['volumes'][0]['name']}.nii.gz"
    broken = tmp_path / "truncated.nii.gz"
    broken.write_bytes(source.read_bytes()[: len(source.read_bytes()) // 2])
    raises_naming(broken, "cannot be read as nifti")


def test_dicom_without_pixel_data(phantom_dir, tmp_path):
    series = tmp_path / "series"
    shutil.copytree(phantom_dir / "dicom" / manifest(phantom_dir)["volumes"][0]["name"], series)
    victim = series / "IM0003.dcm"
    ds = pydicom.dcmread(victim)
    del ds.PixelData
    ds.save_as(victim)
    data_error(lambda: load_slices(series), f"{victim}: DICOM image file (MR Image Storage) has no pixel data")


def test_mixed_series_folder_lists_the_series_and_one_can_be_chosen(phantom_dir, tmp_path):
    volumes = manifest(phantom_dir)["volumes"]
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for index, volume in enumerate(volumes[:2]):
        for file in (phantom_dir / "dicom" / volume["name"]).iterdir():
            shutil.copy(file, mixed / f"s{index}_{file.name}")
    uids = {}
    for _, header in read_headers(mixed):
        uids[series_uid_of(header)] = uids.get(series_uid_of(header), 0) + 1
    assert len(uids) == 2 and set(uids.values()) == {12}
    data_error(lambda: load_slices(mixed), str(mixed), "holds 2 DICOM image series", *uids)
    chosen = sorted(uids)[0]
    assert choose_series(mixed, chosen) == (chosen, True)
    items = load_slices(mixed, series_uid=chosen)
    assert len(items) == 12
    data_error(lambda: load_slices(mixed, series_uid="1.2.3"), "has no image series 1.2.3")


def test_h5_with_neither_dataset(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("something_else", data=np.zeros(3))
    raises_naming(path, "has neither 'reconstruction_rss' nor 'kspace'")


def test_nan_volume(tmp_path):
    volume = np.ones((8, 8, 3), dtype=np.float32)
    volume[2, 3, 1] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    raises_naming(path, "1 NaN/Inf intensities")


def test_missing_and_unsupported_files(tmp_path):
    raises_naming(tmp_path / "absent.nii.gz", "no such file")
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    raises_naming(odd, "unsupported format")
    gz = tmp_path / "garbage.nii.gz"
    gz.write_bytes(gzip.compress(b"not a nifti header"))
    raises_naming(gz, "cannot be read as nifti")
