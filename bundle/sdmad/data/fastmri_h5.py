"""MONAI ImageReader for fastMRI `.h5` files (MONAI has none).

Reads `reconstruction_rss` when present, otherwise reconstructs the root-sum-of-squares image from `kspace`
(fastMRI's test files hold k-space only), and reads only the slices asked for (h5py slicing).

Axis convention (docs/data.md gives the evidence): a fastMRI `.h5` image `[slice, row, column]` shown with row 0
at the top is upside down. fastMRI+ made its DICOMs for the radiologists by flipping the `.h5` images up/down "to
provide a view that was closer to DICOM orientation", and drew its boxes on those: the display of an axial slice is
the file's image flipped up/down (row 0 of the display is anterior; column 0 is the patient's right, unflipped).
The reader therefore returns `volume[r, c, k] = file[k, r, c]` with the affine of that geometry (rows toward
anterior, columns toward the patient's left, slices toward superior, unit spacing: the files carry no geometry),
and sdmad.data.DisplayOrientationd turns it into the display like any NIfTI or DICOM copy of the same scan. The
slice axis keeps the file's order (fastMRI+ labels index it).
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys

from sdmad.data.errors import DataError

H5_SUFFIXES = (".h5", ".hdf5")
SOURCES = ("auto", "reconstruction_rss", "kspace")
# RAS affine of `[row, column, slice]`: rows grow toward anterior, columns toward the patient's left (-R), slices up
H5_AFFINE = np.array([[0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def ifft2c(kspace: np.ndarray) -> np.ndarray:
    """Centred, orthonormal 2-D inverse FFT over the last two axes (fastMRI's `ifft2c`)."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=axes), axes=axes, norm="ortho"), axes=axes)


def fft2c(image: np.ndarray) -> np.ndarray:
    """Centred, orthonormal 2-D FFT over the last two axes (the inverse of ``ifft2c``)."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=axes), axes=axes, norm="ortho"), axes=axes)


def rss_from_kspace(kspace: np.ndarray, recon_size: tuple[int, int] | None) -> np.ndarray:
    """`[s, coils, h, w]` (or single-coil `[s, h, w]`) k-space -> `[s, H, W]` RSS magnitude, centre-cropped."""
    images = np.abs(ifft2c(kspace))
    rss = np.sqrt((images**2).sum(axis=1)) if kspace.ndim == 4 else images
    if recon_size is not None:
        rows, cols = recon_size
        top, left = (rss.shape[-2] - rows) // 2, (rss.shape[-1] - cols) // 2
        rss = rss[..., top : top + rows, left : left + cols]
    return rss.astype(np.float32)


def recon_size_from_header(header: bytes | str) -> tuple[int, int] | None:
    """The reconstruction matrix (x, y) = (rows, columns) of fastMRI's ISMRMRD XML header."""
    root = ElementTree.fromstring(header)
    namespace = {"m": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else None
    prefix = "m:" if namespace else ""
    size = root.find(f"{prefix}encoding/{prefix}reconSpace/{prefix}matrixSize", namespace)
    if size is None:
        return None
    return int(size.find(f"{prefix}x", namespace).text), int(size.find(f"{prefix}y", namespace).text)


@dataclass
class _H5Request:
    path: str
    slices: list[int] | None


class FastMRIH5Reader(ImageReader):
    """Read fastMRI `.h5` volumes, only the slices asked for.

    Args:
        slices: slice indices to read (file order); None reads all.
        source: "auto" (reconstruction_rss when present, else k-space), "reconstruction_rss" or "kspace".
    """

    def __init__(self, slices: Sequence[int] | None = None, source: str = "auto"):
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got '{source}'")
        self.slices = None if slices is None else [int(s) for s in slices]
        self.source = source

    def verify_suffix(self, filename: Sequence[str] | str) -> bool:
        names = [filename] if isinstance(filename, (str, Path)) else filename
        return all(str(name).endswith(H5_SUFFIXES) for name in names)

    def read(self, data: Sequence[str] | str, **kwargs: Any) -> _H5Request:
        if not isinstance(data, (str, Path)):
            if len(data) != 1:
                raise DataError(f"{list(data)}: FastMRIH5Reader reads one file at a time")
            data = data[0]
        return _H5Request(str(data), kwargs.get("slices", self.slices))

    def _slice_indices(self, path: str, count: int, asked: list[int] | None) -> list[int]:
        if asked is None:
            return list(range(count))
        wrong = [s for s in asked if not 0 <= s < count]
        if wrong:
            raise DataError(f"{path}: slices {wrong} are outside the file's 0..{count - 1}")
        return sorted(set(asked))

    def get_data(self, img: _H5Request) -> tuple[np.ndarray, dict]:
        try:
            handle = h5py.File(img.path, "r")
        except OSError as err:
            raise DataError(
                f"{img.path}: cannot be opened as an HDF5 (fastMRI .h5) file ({err}); the file is corrupt "
                f"or truncated: download it again, or leave it out"
            ) from err
        with handle:
            has_rss, has_kspace = "reconstruction_rss" in handle, "kspace" in handle
            use_rss = has_rss and self.source in ("auto", "reconstruction_rss")
            if self.source == "reconstruction_rss" and not has_rss:
                raise DataError(f"{img.path}: has no 'reconstruction_rss' dataset (datasets: {list(handle)})")
            if not use_rss and not has_kspace:
                raise DataError(
                    f"{img.path}: has neither 'reconstruction_rss' nor 'kspace' "
                    f"(datasets: {list(handle)}); not a fastMRI file?"
                )
            dataset = handle["reconstruction_rss" if use_rss else "kspace"]
            indices = self._slice_indices(img.path, dataset.shape[0], img.slices)
            if use_rss:
                images = np.asarray(dataset[indices], dtype=np.float32)
            else:
                header = handle["ismrmrd_header"][()] if "ismrmrd_header" in handle else None
                images = rss_from_kspace(dataset[indices], recon_size_from_header(header) if header else None)
        volume = np.ascontiguousarray(images.transpose(1, 2, 0))  # [s, row, col] -> [row, col, s]
        affine = H5_AFFINE.copy()
        meta = {
            MetaKeys.AFFINE: affine,
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(volume.shape),
            MetaKeys.ORIGINAL_CHANNEL_DIM: "no_channel",
            MetaKeys.SPACE: SpaceKeys.RAS,
            "slice_indices": indices,
            "h5_source": "reconstruction_rss" if use_rss else "kspace (root-sum-of-squares)",
        }
        return volume, meta
