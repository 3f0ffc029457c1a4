"""Display orientation (docs/data.md): every format reaches CLIP as a radiologist sees the slice, row 0 at the top,
anterior up and the patient's right on the image's left for axial slices; PNGs exactly as a viewer shows them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import clip_ready
from monai.data import MetaTensor
from monai.transforms import Compose
from PIL import Image
from pydicom.uid import generate_uid
from sdmad.data import scan_transforms
from sdmad.data.orientation import DisplayOrientationd, acquisition_plane
from sdmad.tools.phantom import PhantomVolume, to_display, write_dicom_series, write_fastmri_h5, write_nifti

SIZE, SLICES = 40, 4


def marker_volume() -> PhantomVolume:
    """A RAS volume `[x, y, slice]` (x toward the patient's right, y toward anterior) with a bright block at the
    front left (high y, low x) and a dimmer one at the back right, integer values 0..250 (exact in a PNG)."""
    volume = np.full((SIZE, SIZE, SLICES), 40.0, dtype=np.float32)
    volume[:8, -8:, :] = 250.0  # patient's left, anterior
    volume[-6:, :6, :] = 120.0  # patient's right, posterior
    return PhantomVolume(name="marker", labels=(), volume=volume)


def clip_inputs(path) -> torch.Tensor:
    return clip_ready(Compose([scan_transforms()])({"image": str(path)}))


def test_one_marker_volume_gives_the_same_clip_input_in_nifti_dicom_h5_and_png(tmp_path):
    phantom = marker_volume()
    write_nifti(phantom, tmp_path / "marker.nii.gz")
    write_dicom_series(phantom, tmp_path / "dicom", generate_uid(), generate_uid())
    write_fastmri_h5(phantom, tmp_path / "marker.h5", with_kspace=False)
    Image.fromarray(to_display(phantom.volume[..., 2]).astype(np.uint8)).save(tmp_path / "slice2.png")

    nifti, dicom, h5 = (clip_inputs(tmp_path / name) for name in ("marker.nii.gz", "dicom", "marker.h5"))
    png = clip_inputs(tmp_path / "slice2.png")[0]
    assert len(nifti) == len(dicom) == len(h5) == SLICES
    for a, b, c in zip(nifti, dicom, h5, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)
    torch.testing.assert_close(nifti[2], png)
    # the front-left marker is in the top-right corner of the CLIP input (anterior up, patient's left on the right)
    grey = nifti[2][0]
    assert grey[:20, -20:].mean() > grey[:20, :20].mean() and grey[:20, -20:].mean() > grey[-20:, -20:].mean()
    assert grey[-20:, :20].mean() > grey[:20, :20].mean()  # the back-right block: bottom left


def test_a_png_with_a_bright_top_left_corner_arrives_with_it_top_left(tmp_path):
    image = np.zeros((30, 50), dtype=np.uint8)  # wider than high: a transposed reading would show
    image[:6, :6] = 255
    Image.fromarray(image).save(tmp_path / "corner.png")
    grey = clip_inputs(tmp_path / "corner.png")[0][0]
    assert grey.shape == (240, 240)
    top_left = grey[50:90, :40].mean()  # the 30x50 image is resized to 144x240 and padded to 240x240 (48 rows)
    assert top_left > grey[50:90, -40:].mean() and top_left > grey[150:190, :40].mean()


@pytest.mark.parametrize(
    "slice_direction, plane, codes",
    [
        ((0, 0, 5.0), "axial", ("P", "L", "S")),
        ((0, 5.0, 0), "coronal", ("I", "L", "A")),
        ((-5.0, 0, 0), "sagittal", ("I", "P", "R")),
    ],
)
def test_volumes_are_shown_in_the_display_of_their_acquisition_plane(slice_direction, plane, codes):
    import nibabel as nib

    in_plane = {
        "axial": [(1.0, 0, 0), (0, 1.0, 0)],
        "coronal": [(1.0, 0, 0), (0, 0, 1.0)],
        "sagittal": [(0, 1.0, 0), (0, 0, 1.0)],
    }[plane]
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = in_plane[0], in_plane[1], slice_direction
    assert acquisition_plane(affine) == plane
    volume = MetaTensor(torch.rand(1, 6, 7, 3), affine=torch.as_tensor(affine))
    oriented = DisplayOrientationd(keys="image")({"image": volume})["image"]
    assert nib.aff2axcodes(oriented.affine.numpy()) == codes and oriented.meta["display_plane"] == plane
    assert oriented.shape[-1] == 3  # the slice axis is last


def test_an_isotropic_volume_is_shown_axially():
    assert acquisition_plane(np.diag([1.0, 1.0, 1.0, 1.0])) == "axial"
