"""Inference inputs: a scan file, a DICOM series folder, a folder of scans, or a text file listing paths."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydicom

from sdmad.data.errors import DataError
from sdmad.data.loading import DICOM_SUFFIXES, scan_format


def _is_series_folder(folder: Path) -> bool:
    return any(
        p.is_file() and (p.name.lower().endswith(DICOM_SUFFIXES) or pydicom.misc.is_dicom(p)) for p in folder.iterdir()
    )


def is_scan_collection(source: Any) -> bool:
    """A list, a `.txt` list or a folder of scans (not one DICOM series folder): inputs of several scans."""
    if isinstance(source, (list, tuple)):
        return True
    if isinstance(source, Mapping) or source in (None, ""):
        return False
    path = Path(source)
    return (path.suffix == ".txt" and path.is_file()) or (path.is_dir() and not _is_series_folder(path))


def inference_items(source: str | Path | list, series_uid: str | None = None) -> list[dict]:
    """Items (``{"image": path, "id": path}``) for everything ``source`` names.

    A folder holding DICOM files is one series; another folder is scanned one level deep for scans and series
    folders; a `.txt` file lists one path per line (relative to the file). A list is a list of any of these. A
    mapping is an item already made (e.g. ``{"image": <MetaTensor>, "id": name}`` for a volume in memory).
    ``series_uid`` chooses the series to read in DICOM folders holding several image series.
    """
    items = _items(source)
    if series_uid not in (None, "", "none", "null"):
        for item in items:
            item["series_uid"] = str(series_uid)
    return items


def _items(source: str | Path | list) -> list[dict]:
    if isinstance(source, Mapping):
        return [dict(source)]
    if isinstance(source, (list, tuple)):
        return [item for entry in source for item in _items(entry)]
    if source in (None, ""):
        raise DataError("no input given: pass --input <scan | DICOM folder | folder of scans | list.txt>")
    path = Path(source)
    if path.suffix == ".txt" and path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        return _items([str((path.parent / line) if not Path(line).is_absolute() else line) for line in lines])
    if path.is_dir() and not _is_series_folder(path):
        entries = []
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            try:
                scan_format(child)
            except DataError:  # not a scan (notes, CSVs, ...): skipped
                continue
            entries.append(child)
        if not entries:
            raise DataError(f"{path}: no scans (NIfTI, DICOM, .h5, PNG/JPG) in this folder")
        return [{"image": str(child), "id": str(child)} for child in entries]
    scan_format(path)  # raises for a missing or unsupported path
    return [{"image": str(path), "id": str(path)}]
