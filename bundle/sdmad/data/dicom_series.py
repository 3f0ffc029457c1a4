"""The rules for a DICOM file or folder as PACS exports it, checked on the headers before any pixel is read.

- Non-image objects (no pixel data and a SOP class that is not an image storage class: structured reports,
  presentation states, key-object notes, spectroscopy, raw data, PDFs) are skipped with a log line.
- Two or more *image* series need an explicit `series_uid` (the message lists them).
- An image file without pixel data is an error.
- A 4-D series (the same ImagePositionPatient repeated for several time points, b-values or echoes) is an error
  that says how many volumes at how many positions and how to score one of them: SD-MAD scores 3-D volumes, and
  stacking every image into one volume would make slice k nonsense.
- A Siemens mosaic (several slices tiled in one image; CSA header read with nibabel) is an error saying "mosaic"
  and how to convert it (dcm2niix), since a mosaic read as one slice per file would be scored as nonsense.

The MONAI Deploy app applies the same rules to the series the SDK loads (sdmad.deploy), so the bundle and the app
read a series alike. GDCM (through MONAI's ITKReader) reads the pixels; these checks are what it does not do.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pydicom

from sdmad.data.errors import DataError

logger = logging.getLogger(__name__)

PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
POSITION_DECIMALS = 2  # mm: positions closer than 0.01 mm are the same slice position
# Attributes that tell the volumes of a 4-D series apart, most specific first.
VOLUME_ATTRIBUTES = (
    "TemporalPositionIdentifier",
    "AcquisitionNumber",
    "DiffusionBValue",
    "EchoNumbers",
    "TriggerTime",
    "SeriesNumber",
)


def has_pixels(dataset: pydicom.Dataset) -> bool:
    return any(tag in dataset for tag in PIXEL_TAGS)


def sop_class_name(dataset: pydicom.Dataset) -> str:
    uid = getattr(dataset, "SOPClassUID", None) or dataset.get("file_meta", {}).get("MediaStorageSOPClassUID")
    return pydicom.uid.UID(str(uid)).name if uid else "unknown SOP class"


def is_non_image_object(dataset: pydicom.Dataset) -> bool:
    """No pixel data and a SOP class that is not an image storage class (SR, PR, KO, spectroscopy, raw data...)."""
    return not has_pixels(dataset) and "Image Storage" not in sop_class_name(dataset)


def series_uid_of(dataset: pydicom.Dataset) -> str:
    return str(getattr(dataset, "SeriesInstanceUID", "unknown"))


def read_headers(path: str | Path, recursive: bool = False) -> list[tuple[Path, pydicom.Dataset]]:
    """The DICOM headers of a file or of the files of a folder (and its subfolders when ``recursive``); large
    values such as the pixels stay on disk."""
    path = Path(path)
    files = (
        sorted(p for p in (path.rglob("*") if recursive else path.iterdir()) if p.is_file())
        if path.is_dir()
        else [path]
    )
    headers = []
    for file in files:
        if not pydicom.misc.is_dicom(file):
            continue
        try:
            headers.append((file, pydicom.dcmread(file, defer_size="1 KB")))
        except Exception as err:  # pydicom raises many types for corrupt headers
            raise DataError(f"{file}: corrupt DICOM header ({err}); re-export the file or remove it") from err
    if not headers:
        raise DataError(f"{path}: contains no DICOM file (files with the DICM preamble)")
    return headers


def mosaic_slices(dataset: pydicom.Dataset) -> int:
    """How many slices a Siemens mosaic image tiles (0 for any other image): ImageType MOSAIC, or the CSA image
    header's NumberOfImagesInMosaic (read with nibabel)."""
    if "MOSAIC" in [str(value).upper() for value in getattr(dataset, "ImageType", [])]:
        try:
            from nibabel.nicom import csareader

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # nibabel calls its DICOM readers experimental
                count = csareader.get_n_mosaic(csareader.get_csa_header(dataset, "image"))
            return int(count) if count else -1
        except Exception:  # no or unreadable CSA header: still a mosaic by its ImageType
            return -1
    return 0


def mosaic_problem(file: str | Path, dataset: pydicom.Dataset) -> str | None:
    count = mosaic_slices(dataset)
    if not count:
        return None
    tiles = f"{count} slices" if count > 0 else "several slices"
    return (
        f"{file}: a Siemens mosaic ({tiles} tiled in one image); SD-MAD does not demosaic: convert the series "
        f"with dcm2niix (it demosaics with the CSA geometry) and score the NIfTI"
    )


def four_d_problem(where: str | Path, datasets: Sequence[pydicom.Dataset]) -> str | None:
    """A description of a 4-D series (a slice position repeated), or None for a 3-D one."""
    positions: dict[tuple, list[pydicom.Dataset]] = defaultdict(list)
    for dataset in datasets:
        position = getattr(dataset, "ImagePositionPatient", None)
        if position is None:
            return None  # no geometry (e.g. projection images): nothing to compare
        positions[tuple(round(float(v), POSITION_DECIMALS) for v in position)].append(dataset)
    repeats = Counter(len(group) for group in positions.values())
    if max(repeats) == 1:
        return None
    group = max(positions.values(), key=len)
    found = next(
        (
            (name, sorted({str(getattr(d, name, "")) for d in group}))
            for name in VOLUME_ATTRIBUTES
            if len({str(getattr(d, name, "")) for d in group}) > 1
        ),
        None,
    )
    if found:
        apart = f", told apart by {found[0]}: {', '.join(found[1][:8])}{' ...' if len(found[1]) > 8 else ''}"
        choose = f"put the images of one {found[0]} in their own folder"
    else:
        apart, choose = ", no attribute tells them apart", "put the images of one volume in their own folder"
    return (
        f"{where}: a 4-D series: {len(datasets)} images at {len(positions)} slice positions ({max(repeats)} "
        f"volumes{apart}); SD-MAD scores 3-D volumes: {choose} (or export one volume, e.g. with dcm2niix) and "
        f"score that"
    )


def check_image_series(where: str | Path, headers: Iterable[tuple[Any, pydicom.Dataset]]) -> None:
    """The checks of one image series' headers: pixels present, no mosaic, not 4-D (DataError naming the file)."""
    headers = list(headers)
    for file, dataset in headers:
        if not has_pixels(dataset):
            raise DataError(
                f"{file}: DICOM image file ({sop_class_name(dataset)}) has no pixel data (no PixelData "
                f"element); re-export the series"
            )
        problem = mosaic_problem(file, dataset)
        if problem:
            raise DataError(problem)
    problem = four_d_problem(where, [dataset for _, dataset in headers])
    if problem:
        raise DataError(problem)


def choose_series(path: str | Path, series_uid: str | None = None) -> tuple[str, bool]:
    """Check a DICOM file or folder and choose its image series.

    Returns:
        (the SeriesInstanceUID to read, whether the folder holds other series or objects so that the reader must
        be told which series to read).

    Raises:
        DataError: no image series, several and none chosen (the message lists them), the chosen one is absent, or
            a check of ``check_image_series`` fails.
    """
    path = Path(path)
    headers = read_headers(path)
    non_image = [(file, d) for file, d in headers if is_non_image_object(d)]
    images = [(file, d) for file, d in headers if not is_non_image_object(d)]
    if non_image:
        kinds = Counter(sop_class_name(d) for _, d in non_image)
        logger.info(
            "%s: skipped %d non-image DICOM object(s): %s",
            path,
            len(non_image),
            ", ".join(f"{name} ({count})" for name, count in sorted(kinds.items())),
        )
    if not images:
        kinds = ", ".join(sorted({sop_class_name(d) for _, d in headers}))
        raise DataError(f"{path}: holds no DICOM image (only {kinds}); point to the folder of an image series")
    by_series: dict[str, list] = defaultdict(list)
    for file, dataset in images:
        by_series[series_uid_of(dataset)].append((file, dataset))
    if series_uid is None and len(by_series) > 1:
        listing = ", ".join(
            f"{uid} ({len(files)} files, {getattr(files[0][1], 'SeriesDescription', '') or 'no description'})"
            for uid, files in sorted(by_series.items())
        )
        raise DataError(
            f"{path}: holds {len(by_series)} DICOM image series; choose one with --series_uid <UID> "
            f"(inference) or the item key series_uid: {listing}"
        )
    if series_uid is not None and series_uid not in by_series:
        raise DataError(f"{path}: has no image series {series_uid} (image series present: {sorted(by_series)})")
    chosen = series_uid or next(iter(by_series))
    check_image_series(path, by_series[chosen])
    return chosen, len({series_uid_of(d) for _, d in headers}) > 1
