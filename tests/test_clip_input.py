"""The batched slice preprocessing on the model's device (sdmad.data.CLIPInput) gives the numbers of the per-slice
MONAI chain it replaced, on every input format and on batches of mixed sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, Resize, SpatialPad
from PIL import Image
from sdmad.data import (
    CLIP_MEAN,
    CLIP_STD,
    CLIPInput,
    PrepareSlices,
    collate_slices,
    per_slice_reference,
    scan_to_slices,
    scan_transforms,
)
from sdmad.data.clip_input import (
    SHAPE_KEY,
    batched_quantile,
    longest_side_size,
    percentile_scale,
    smooth_before_shrinking,
    stack_slices,
)


def per_slice(path: str, image_size: int) -> torch.Tensor:
    chain = Compose([*scan_to_slices(), *per_slice_reference(image_size=image_size)])
    return torch.stack([item["image"] for item in chain({"image": path})])


@pytest.fixture(scope="module")
def mixed_scans(phantom_dir, tmp_path_factory) -> list[str]:
    """One scan of each format, of four different slice sizes: NIfTI, DICOM series, fastMRI .h5, grey and RGB PNG."""
    names = [volume["name"] for volume in json.loads((phantom_dir / "manifest.json").read_text())["volumes"]]
    folder = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 4096, (70, 130), dtype=np.uint16)).save(folder / "grey16.png")
    Image.fromarray(rng.integers(0, 256, (150, 60, 3), dtype=np.uint8)).save(folder / "rgb.png")
    return [
        str(phantom_dir / "nifti" / f"{names[0]}.nii.gz"),
        str(phantom_dir / "dicom" / names[1]),
        str(phantom_dir / "h5" / f"{names[2]}.h5"),
        str(folder / "grey16.png"),
        str(folder / "rgb.png"),
    ]


@pytest.mark.parametrize("image_size", [240, 64])  # down- and upsampling
def test_one_mixed_batch_equals_the_per_slice_chain_on_every_format(mixed_scans, image_size):
    items = [item for path in mixed_scans for item in scan_transforms()({"image": path})]
    batch = collate_slices(items)
    assert len({tuple(shape) for shape in batch[SHAPE_KEY].tolist()}) >= 3  # really a batch of mixed sizes
    images, _ = PrepareSlices(CLIPInput(image_size))(batch, "cpu")
    expected = torch.cat([per_slice(path, image_size) for path in mixed_scans])
    assert images.shape == expected.shape == (len(items), 3, image_size, image_size)
    torch.testing.assert_close(images, expected, atol=1e-4, rtol=0)


def test_a_loader_batch_of_two_sizes_is_one_tensor_with_its_sizes(mixed_scans):
    loader = DataLoader(
        Dataset([{"image": p} for p in mixed_scans[2:4]], scan_transforms()), batch_size=2, collate_fn=collate_slices
    )
    batch = next(iter(loader))
    assert isinstance(batch["image"], torch.Tensor) and batch["image"].ndim == 4
    assert {tuple(s) for s in batch[SHAPE_KEY].tolist()} == {(1, 64, 64), (1, 70, 130)}
    images, _ = PrepareSlices(CLIPInput(96))(batch, "cpu")
    expected = torch.cat([per_slice(p, 96) for p in mixed_scans[2:4]])
    torch.testing.assert_close(images, expected, atol=1e-4, rtol=0)


def test_padding_never_reaches_the_statistics():
    small, large = torch.full((1, 4, 4), 5.0), torch.rand(1, 8, 8)
    small[0, 0, 0] = 9.0
    batch, shapes = stack_slices([small, large])
    assert batch.shape == (2, 1, 8, 8) and shapes.tolist() == [[1, 4, 4], [1, 8, 8]]
    alone = CLIPInput(16)(small[None])
    torch.testing.assert_close(CLIPInput(16)(batch, shapes)[0], alone[0])


def test_percentiles_are_per_image():
    images = torch.stack([torch.arange(100.0).reshape(10, 10) * (i + 1) for i in range(5)])
    whole = percentile_scale(images, 10, 90)
    torch.testing.assert_close(whole[0], whole[4])  # the same picture at 5x the intensity scales the same


PINNED_TORCH = "2.14."  # constraints.txt


@pytest.mark.parametrize("fraction", [0.0, 0.005, 0.3, 0.5, 0.7, 0.995, 1.0])
def test_batched_quantile_equals_torch_quantile(fraction):
    rows = torch.cat([torch.randn(3, 1001, generator=torch.Generator().manual_seed(0)), torch.ones(1, 1001)])
    rows[:, :5] = 7.0  # ties
    expected = torch.quantile(rows, fraction, dim=1)
    torch.testing.assert_close(batched_quantile(rows, fraction), expected, rtol=0, atol=1e-4)
    if torch.__version__.startswith(PINNED_TORCH):  # the pinned torch: bit for bit (torch 2.11 rounds the
        assert torch.equal(batched_quantile(rows, fraction), expected)  # position in float32: 1e-5 apart)


def test_grey_and_rgb_slices_of_one_size_share_a_batch_and_rgba_loses_alpha(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)).save(tmp_path / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(tmp_path / "grey.png")
    paths = [str(tmp_path / "rgba.png"), str(tmp_path / "grey.png")]
    batch = collate_slices([item for p in paths for item in scan_transforms()({"image": p})])
    assert batch[SHAPE_KEY].tolist() == [[3, 40, 50], [1, 40, 50]]
    images, _ = PrepareSlices(CLIPInput(64))(batch, "cpu")
    torch.testing.assert_close(images, torch.cat([per_slice(p, 64) for p in paths]), atol=1e-4, rtol=0)


def test_a_nearly_empty_slice_is_clipped_to_the_unit_range_unlike_monai():
    slice_ = torch.zeros(1, 64, 64)
    slice_[0, 10, 10] = 1000.0  # both percentiles are 0: MONAI would pass 1000 on unscaled
    grey = CLIPInput(64, mean=(0.0,) * 3, std=(1.0,) * 3)(slice_[None])[0, 0]
    assert float(grey.max()) == 1.0 and float(grey.min()) == 0.0
    monai = Compose(per_slice_reference(image_size=64, mean=(0.0,) * 3, std=(1.0,) * 3))({"image": slice_})["image"]
    assert float(monai.max()) > 1.0  # the documented difference (sdmad.data.clip_input.percentile_scale)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_numbers():
    generator = torch.Generator().manual_seed(0)
    slices = [
        torch.rand(1, 320, 320, generator=generator) * 900,
        torch.rand(1, 200, 150, generator=generator) * 50,
        torch.rand(3, 64, 90, generator=generator),
    ]
    batch = collate_slices([{"image": image} for image in slices])
    on_cpu = PrepareSlices(CLIPInput(240))(batch, "cpu")[0]
    on_cuda = PrepareSlices(CLIPInput(240))(batch, "cuda")[0]
    assert on_cuda.device.type == "cuda"
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, atol=1e-4, rtol=0)


def clip_input_from_monai_transforms(grey: torch.Tensor) -> torch.Tensor:
    """CLIPInput as first written: MONAI's anti-aliased Resize and SpatialPad, then `(x - mean) / std`."""
    planes = percentile_scale(grey[:, 0], 0.5, 99.5)
    planes = Resize(spatial_size=240, size_mode="longest", mode="bilinear", anti_aliasing=True)(planes)
    planes = torch.as_tensor(SpatialPad((240, 240), method="symmetric")(planes))[:, None].expand(-1, 3, -1, -1)
    return (planes - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


@pytest.mark.parametrize("size", [(320, 320), (320, 256), (200, 300), (240, 240), (96, 64)])
def test_anti_aliasing_and_normalisation_are_monais_bit_for_bit(size):
    """The faster smoothing (smooth_before_shrinking) and normalisation give exactly what MONAI's transforms gave:
    no figure moves."""
    grey = torch.rand(5, 1, *size, generator=torch.Generator().manual_seed(0)) * 1000
    grey[..., : size[0] // 4, :] = 0.0  # background, as in MR
    planes = grey[:, 0] / 1000
    out_size = longest_side_size(size, 240)
    ours = Resize(spatial_size=240, size_mode="longest", mode="bilinear")(smooth_before_shrinking(planes, out_size))
    monai = Resize(spatial_size=240, size_mode="longest", mode="bilinear", anti_aliasing=True)(planes)
    assert ours.shape[1:] == out_size and torch.equal(torch.as_tensor(ours), torch.as_tensor(monai))
    assert torch.equal(CLIPInput(240)(grey), clip_input_from_monai_transforms(grey))
