"""Load a scan (NIfTI, DICOM series or file, fastMRI `.h5`, PNG/JPG) with the right MONAI reader.

`LoadScand` is MONAI's `LoadImage` with the reader chosen per item: NibabelReader for NIfTI, ITKReader for
DICOM (GDCM sorts a series by geometry and selects one series of several; the lean `itk-io` wheels suffice),
PILReader for PNG/JPG and our FastMRIH5Reader, which reads only the item's slices. What MONAI does not check, it
checks first (several series in one folder, DICOM without pixel data) and every failure becomes a `DataError`
that names the file.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pydicom
from monai.data import ITKReader, MetaTensor, NibabelReader, PILReader
from monai.transforms import LoadImage, MapTransform

from sdmad.data.errors import DataError
from sdmad.data.fastmri_h5 import H5_SUFFIXES, FastMRIH5Reader

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def scan_format(path: str | Path) -> str:
    """"nifti", "dicom" (a file or a series folder), "h5" or "image"; an unsupported path is a DataError."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    for fmt, suffixes in (("nifti", NIFTI_SUFFIXES), ("h5", H5_SUFFIXES), ("dicom", DICOM_SUFFIXES),
                          ("image", IMAGE_SUFFIXES)):
        if name.endswith(suffixes):
            return fmt
    if pydicom.misc.is_dicom(path):
        return "dicom"
    raise DataError(f"{path}: unsupported format (expected NIfTI, DICOM, fastMRI .h5, PNG or JPG)")


def _dicom_headers(path: Path) -> list[tuple[Path, pydicom.Dataset]]:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    headers = []
    for file in files:
        if not pydicom.misc.is_dicom(file):
            continue
        try:
            # defer_size: large values (the pixels) stay on disk, but their elements are listed
            headers.append((file, pydicom.dcmread(file, defer_size="1 KB")))
        except Exception as err:  # pydicom raises many types for corrupt headers
            raise DataError(f"{file}: corrupt DICOM header: {err}") from err
    if not headers:
        raise DataError(f"{path}: contains no DICOM file")
    return headers


def dicom_series_uids(path: str | Path) -> dict[str, int]:
    """SeriesInstanceUID -> number of files, for a DICOM file or folder (headers only)."""
    counts: dict[str, int] = {}
    for _, header in _dicom_headers(Path(path)):
        uid = str(getattr(header, "SeriesInstanceUID", "unknown"))
        counts[uid] = counts.get(uid, 0) + 1
    return counts


def check_dicom(path: str | Path, series_uid: str | None = None) -> str | None:
    """Check a DICOM file or series folder before reading; return the series to read (None: the only one).

    Raises:
        DataError: several series and none chosen (the message lists them), the chosen one is absent, or a file
            of the series has no pixel data.
    """
    path = Path(path)
    headers = _dicom_headers(path)
    uids = sorted({str(getattr(h, "SeriesInstanceUID", "unknown")) for _, h in headers})
    if series_uid is None and len(uids) > 1:
        listing = ", ".join(f"{uid} ({sum(str(getattr(h, 'SeriesInstanceUID', '')) == uid for _, h in headers)} "
                            f"files)" for uid in uids)
        raise DataError(f"{path}: holds {len(uids)} DICOM series; choose one with series_uid: {listing}")
    if series_uid is not None and series_uid not in uids:
        raise DataError(f"{path}: has no series {series_uid} (series present: {uids})")
    chosen = series_uid or uids[0]
    for file, header in headers:
        if str(getattr(header, "SeriesInstanceUID", "unknown")) == chosen and not any(
                tag in header for tag in PIXEL_TAGS):
            raise DataError(f"{file}: DICOM file has no pixel data (no PixelData element)")
    return series_uid if len(uids) > 1 else None


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
    """Load each key's scan as a channel-first MetaTensor (`[C, x, y(, z)]`), reader chosen by format.

    A key that already holds a MetaTensor (a volume an app loaded itself, e.g. a DICOM series read by the MONAI
    Deploy SDK) passes through unchanged: it must be channel-first with its affine and `filename_or_obj` in the meta.

    Args:
        keys: keys holding file or DICOM-folder paths.
        slices_key: item key with the slice indices to read from `.h5` files (absent or None: all slices).
        series_key: item key with the SeriesInstanceUID to read from a folder of several series.
        h5_source: "auto", "reconstruction_rss" or "kspace" (see FastMRIH5Reader).
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable = "image", slices_key: str = "slices",
                 series_key: str = "series_uid", h5_source: str = "auto", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.slices_key, self.series_key, self.h5_source = slices_key, series_key, h5_source
        self._loader = LoadImage(image_only=True, ensure_channel_first=True)
        self._readers = {"nifti": NibabelReader(), "image": PILReader()}

    def _reader(self, path: str, fmt: str, item: Mapping[Hashable, Any]):
        if fmt == "h5":
            return FastMRIH5Reader(slices=item.get(self.slices_key), source=self.h5_source)
        if fmt == "dicom":
            series = check_dicom(path, item.get(self.series_key))
            return ITKReader(series_name=gdcm_series_identifier(path, series) if series else "")
        return self._readers[fmt]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        for key in self.key_iterator(item):
            if isinstance(item[key], MetaTensor):
                continue
            path = str(item[key])
            fmt = scan_format(path)
            reader = self._reader(path, fmt, item)
            try:
                item[key] = self._loader(path, reader=reader)
            except DataError:
                raise
            except Exception as err:  # readers raise EOFError, zlib.error, RuntimeError, ... for corrupt files
                raise DataError(f"{path}: cannot be read as {fmt}: {type(err).__name__}: {err}") from err
        return item
