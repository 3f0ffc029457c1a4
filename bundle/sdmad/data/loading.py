"""Load a scan (NIfTI, DICOM series or file, fastMRI `.h5`, PNG/JPG) with the right MONAI reader.

`LoadScand` is MONAI's `LoadImage` with the reader chosen per item: NibabelReader for NIfTI (`.nii.gz` inflated
by ISA-L: sdmad.data.nifti_gzip), ITKReader for DICOM (GDCM sorts a series by geometry and selects one series of
several; the lean `itk-io` wheels suffice),
PILReader for PNG/JPG (numpy row order: row 0 at the top) and our FastMRIH5Reader, which reads only the item's
slices. What MONAI does not check, it checks first (sdmad.data.dicom_series: non-image objects, several image
series, missing pixels, 4-D series, mosaics; a 4-D NIfTI) and every failure becomes a `DataError` that names
the file and says what to do.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pydicom
import torch
from monai.data import ITKReader, MetaTensor, PILReader
from monai.transforms import LoadImage, MapTransform

from sdmad.data.dicom_series import PIXEL_TAGS, choose_series
from sdmad.data.errors import DataError
from sdmad.data.fastmri_h5 import H5_SUFFIXES, FastMRIH5Reader
from sdmad.data.nifti_gzip import IsalNibabelReader

__all__ = ["DICOM_SUFFIXES", "IMAGE_SUFFIXES", "NIFTI_SUFFIXES", "PIXEL_TAGS", "LoadScand", "scan_format"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def scan_format(path: str | Path) -> str:
    """ "nifti", "dicom" (a file or a series folder), "h5" or "image"; an unsupported path is a DataError."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    for fmt, suffixes in (
        ("nifti", NIFTI_SUFFIXES),
        ("h5", H5_SUFFIXES),
        ("dicom", DICOM_SUFFIXES),
        ("image", IMAGE_SUFFIXES),
    ):
        if name.endswith(suffixes):
            return fmt
    if pydicom.misc.is_dicom(path):
        return "dicom"
    raise DataError(f"{path}: unsupported format (expected NIfTI, DICOM, fastMRI .h5, PNG or JPG)")


def gdcm_series_identifier(folder: str | Path, series_uid: str) -> str:
    """ITKReader's `series_name` is GDCM's series identifier: the SeriesInstanceUID plus details (MONAI asks GDCM
    for series details and restricts on the series date); find the one of ``series_uid`` with the same settings."""
    import itk

    names = itk.GDCMSeriesFileNames.New()
    names.SetUseSeriesDetails(True)
    names.AddSeriesRestriction("0008|0021")
    names.SetDirectory(str(folder))
    for identifier in names.GetSeriesUIDs():
        if identifier.startswith(series_uid):
            return identifier
    raise DataError(f"{folder}: GDCM finds no readable image series {series_uid}")


class LoadScand(MapTransform):
    """Load each key's scan as a channel-first MetaTensor, reader chosen by format: a volume `[C, i, j, k]` in its
    file's index order with its RAS affine (sdmad.data.DisplayOrientationd then orients it), a 2-D image
    `[C, row, column]` as stored (row 0 at the top).

    A key that already holds a MetaTensor (a volume an app loaded itself, e.g. a DICOM series read by the MONAI
    Deploy SDK) passes through unchanged: it must be channel-first with its affine and `filename_or_obj` in the meta.

    Args:
        keys: keys holding file or DICOM-folder paths.
        slices_key: item key with the slice indices to read from `.h5` files (absent or None: all slices).
        series_key: item key with the SeriesInstanceUID to read from a folder of several series.
        h5_source: "auto", "reconstruction_rss" or "kspace" (see FastMRIH5Reader).
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = "image",
        slices_key: str = "slices",
        series_key: str = "series_uid",
        h5_source: str = "auto",
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.slices_key, self.series_key, self.h5_source = slices_key, series_key, h5_source
        self._loader = LoadImage(image_only=True, ensure_channel_first=True)
        self._readers = {"nifti": IsalNibabelReader(), "image": PILReader(reverse_indexing=False)}

    def _reader(self, path: str, fmt: str, item: Mapping[Hashable, Any]):
        if fmt == "h5":
            return FastMRIH5Reader(slices=item.get(self.slices_key), source=self.h5_source)
        if fmt == "dicom":
            series, others_present = choose_series(path, item.get(self.series_key))
            return ITKReader(series_name=gdcm_series_identifier(path, series) if others_present else "")
        return self._readers[fmt]

    @staticmethod
    def _as_read(image: MetaTensor, path: str, fmt: str) -> MetaTensor:
        """A 2-D DICOM image back in its stored row order (ITKReader returns `[column, row]`), and no 4-D NIfTI
        taken for a multi-channel image (MONAI moves a 4th dimension to the channels)."""
        if fmt == "dicom" and image.ndim == 3:
            image = MetaTensor(image.as_tensor().transpose(1, 2), meta=dict(image.meta))
            image.affine = torch.eye(4, dtype=torch.float64)  # a 2-D image is displayed as stored
        if fmt == "nifti" and image.ndim == 4 and image.shape[0] > 1:
            raise DataError(
                f"{path}: a 4-D NIfTI ({image.shape[0]} volumes of {tuple(image.shape[1:])}); SD-MAD "
                f"scores 3-D volumes: save one volume (e.g. nibabel: img.slicer[..., t]) and score that"
            )
        return image

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        for key in self.key_iterator(item):
            if isinstance(item[key], MetaTensor):
                continue
            path = str(item[key])
            fmt = scan_format(path)
            reader = self._reader(path, fmt, item)
            try:
                image = self._loader(path, reader=reader)
            except DataError:
                raise
            except Exception as err:  # readers raise EOFError, zlib.error, RuntimeError, ... for corrupt files
                raise DataError(
                    f"{path}: cannot be read as {fmt} ({type(err).__name__}: {err}); the file is corrupt, "
                    f"truncated or not {fmt}: re-export it, or leave it out"
                ) from err
            item[key] = self._as_read(image, path, fmt)
        return item
