"""What a studies folder holds, by name: studies (scan files and DICOM series folders `<id>.dicom/`, each named
by a plain id), labels, the formats accepted as uploads, and what keeps a folder from being served.

Light on purpose (no MONAI, no torch): scripts/monailabel_app/serve.py checks a folder with it before it starts
the server.
"""

from __future__ import annotations

from pathlib import Path

from sdmad.errors import SDMADError
from sdmad.label.errors import UnsupportedFormat
from sdmad.label.names import RULE, is_plain_name, shown

STUDY_SUFFIXES = (".nii.gz", ".nii", ".h5", ".png")  # study files, and the only formats accepted as uploads
DICOM_SUFFIX = ".dicom"  # a DICOM series is a folder `<id>.dicom/`
CATEGORY_LABEL_SUFFIX = ".label.json"
CATEGORY_LABEL_FORMAT = '{"categories": [<category names>]}'
LABEL_VOLUME_SUFFIXES = (".nii.gz", ".nii")
LABEL_SUFFIXES = (CATEGORY_LABEL_SUFFIX, *LABEL_VOLUME_SUFFIXES)


class StudyFolderError(SDMADError, ValueError):
    """The studies folder cannot be served as it is; the message lists the entries to rename or remove."""


def suffix_of(name: str | None, suffixes: tuple[str, ...]) -> str | None:
    """The longest of ``suffixes`` that ``name`` ends with (and is more than), if any."""
    matching = [s for s in suffixes if name and name.endswith(s) and len(name) > len(s)]
    return max(matching, key=len) if matching else None


def study_suffix(entry: Path) -> str | None:
    """The suffix that makes ``entry`` a study (a scan file, or a `.dicom` series folder); None for anything else,
    hidden entries included."""
    if entry.name.startswith("."):
        return None
    return suffix_of(entry.name, (DICOM_SUFFIX,) if entry.is_dir() else STUDY_SUFFIXES)


def study_upload_suffix(filename: str | None) -> str:
    """The suffix of an uploaded scan's file name; UnsupportedFormat unless it is a study format."""
    suffix = suffix_of(filename, STUDY_SUFFIXES)
    if suffix is None:
        raise UnsupportedFormat(
            f"file {shown(filename)}: upload a study as one of {list(STUDY_SUFFIXES)}; a DICOM "
            f"series is served from a folder `<id>{DICOM_SUFFIX}/` placed in the studies folder"
        )
    return suffix


def label_upload_suffix(filename: str | None) -> str:
    """The suffix a label upload is stored with (`.json` becomes `.label.json`); UnsupportedFormat otherwise."""
    suffix = suffix_of(filename, (*LABEL_SUFFIXES, ".json"))
    if suffix is None:
        raise UnsupportedFormat(
            f"file {shown(filename)}: a label is a category label (`.json`, "
            f"{CATEGORY_LABEL_FORMAT}) or a label volume {list(LABEL_VOLUME_SUFFIXES)}"
        )
    return CATEGORY_LABEL_SUFFIX if suffix == ".json" else suffix


def check_folder(root: Path) -> None:
    """StudyFolderError listing what keeps the folder from being served: ids that are not plain names, ids shared
    by several entries (all but one would be unreachable), entries resolving outside the folder."""
    problems, by_id = [], {}
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        suffix = study_suffix(entry)
        if suffix is None:
            continue
        study = entry.name[: -len(suffix)]
        if not is_plain_name(study):
            problems.append(f"{entry.name}: the id {study!r} is not a plain name ({RULE})")
        elif root.resolve() not in entry.resolve().parents:
            problems.append(f"{entry.name}: resolves outside the studies folder (a symbolic link?)")
        by_id.setdefault(study, []).append(entry.name)
    problems += [
        f"id '{study}' is shared by {names}: only one of them would be reachable"
        for study, names in by_id.items()
        if len(names) > 1
    ]
    if problems:
        raise StudyFolderError(
            f"{root}: cannot serve this studies folder; rename or remove:\n  - " + "\n  - ".join(problems)
        )
