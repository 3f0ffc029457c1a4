"""The studies folder as MONAI Label's datastore, confined to that folder.

MONAI Label's LocalDatastore keeps the index (`datastore_v2.json`), the file watcher and the listing; this
subclass guards everything a client can reach:

- ids and tags are plain names (sdmad.label.names) and every path is resolved and checked to lie inside the
  folder before any read, write or delete;
- uploads are scans in a supported format (never `.txt` lists), checked readable before they become studies, and
  placed by an atomic rename from a staging folder inside the studies folder;
- an existing study is replaced only when asked (`replace`), and nothing is deleted: a replaced or removed study
  or label is moved to `<studies>/.sdmad/backup/`;
- labels are validated at upload: a category label JSON naming known categories, or a label volume of the
  study's shape (as `final`, which training reads, its values 0 or a category's 1..C: the categories it shows,
  and its pixels, train);
- a folder whose files would give colliding or unusable ids is refused at start-up, with the list
  (sdmad.label.folder).

Private hooks of LocalDatastore that are overridden: `_to_id` (it strips every occurrence of the extension),
`_list_files` (one extension list for studies and labels: a top-level `x.label.json` became a study) and
`_init_from_datastore_file` (an index written by an unguarded server may hold ids like `../x`, or other folders).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag

from sdmad.data.errors import DataError
from sdmad.errors import one_line
from sdmad.label.errors import BadRequest, Conflict, Invalid, NotFound
from sdmad.label.folder import (
    CATEGORY_LABEL_FORMAT,
    CATEGORY_LABEL_SUFFIX,
    DICOM_SUFFIX,
    LABEL_SUFFIXES,
    STUDY_SUFFIXES,
    check_folder,
    label_upload_suffix,
    study_suffix,
    study_upload_suffix,
    suffix_of,
)
from sdmad.label.labels import parse_category_label
from sdmad.label.names import confined, is_plain_name, plain_name, shown
from sdmad.label.scans import check_label_volume, check_readable, label_volume_categories

logger = logging.getLogger(__name__)
FINAL = DefaultLabelTag.FINAL.value
PRIVATE = ".sdmad"  # staging and backups: inside the folder, so that placing a file is an atomic rename


class StudiesDatastore(LocalDatastore):
    """LocalDatastore over a studies folder, confined to it (see the module docstring).

    Args:
        studies: the studies folder.
        categories: the model's categories (a category label may name only these).
        auto_reload: watch the folder for studies added or removed on disk.

    Raises:
        StudyFolderError: colliding or unusable ids in the folder (the message lists them).
    """

    def __init__(self, studies: str | Path, categories: list[str], auto_reload: bool = True):
        self.root = Path(studies).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        check_folder(self.root)
        self.categories = categories
        self._staging, self._backups = self.root / PRIVATE / "staging", self.root / PRIVATE / "backup"
        self._staging.mkdir(parents=True, exist_ok=True)
        self._mutex = threading.Lock()  # existence checks and the writes they decide on happen as one step
        patterns = [f"*{suffix}" for suffix in (*STUDY_SUFFIXES, DICOM_SUFFIX, *LABEL_SUFFIXES)]
        super().__init__(str(self.root), extensions=patterns, auto_reload=auto_reload)

    # --- LocalDatastore's private hooks ---------------------------------------------------------------------

    def _to_id(self, file: str) -> tuple[str, str]:
        suffix = suffix_of(file, (*STUDY_SUFFIXES, DICOM_SUFFIX, *LABEL_SUFFIXES)) or ""
        return file[: len(file) - len(suffix)], suffix

    def _list_files(self, path: str, patterns: Any) -> dict[str, str]:
        """Studies in the studies folder, label files in a tag folder; only plain-named ids and tags."""
        folder = Path(path).resolve()
        if folder == self.root:
            suffixes = {name: study_suffix(folder / name) for name in os.listdir(folder)}
        elif is_plain_name(folder.name) and folder.parent == self._labels_root():
            suffixes = {name: suffix_of(name, LABEL_SUFFIXES) for name in os.listdir(folder)}
        else:
            return {}
        return {
            name: name
            for name, suffix in suffixes.items()
            if suffix is not None and is_plain_name(name[: -len(suffix)])
        }

    def _init_from_datastore_file(self, throw_exception: bool = False) -> None:
        super()._init_from_datastore_file(throw_exception)
        self._datastore.images_dir, self._datastore.labels_dir = ".", "labels"  # the index may name other folders
        objects = self._datastore.objects
        for image_id in [
            i
            for i, obj in objects.items()
            if not is_plain_name(i) or obj.image.ext not in (*STUDY_SUFFIXES, DICOM_SUFFIX)
        ]:
            logger.warning("datastore index: dropping the unusable entry %s", shown(image_id))
            del objects[image_id]
        for obj in objects.values():
            unusable = [t for t, label in obj.labels.items() if not is_plain_name(t) or label.ext not in LABEL_SUFFIXES]
            for tag in unusable:
                del obj.labels[tag]

    # --- confined paths ----------------------------------------------------------------------------------

    def _labels_root(self) -> Path:
        return confined(self.root, self._datastore.label_path(None))

    def study_path(self, image_id: str) -> Path:
        """The study's file or DICOM folder; NotFound for an unknown id."""
        obj = self._datastore.objects.get(image_id) if is_plain_name(image_id) else None
        if obj is None:
            raise NotFound(
                f"unknown image id {shown(image_id)}: use an id of the studies folder (GET /datastore/?output=all)"
            )
        return confined(self.root, self.root / f"{image_id}{obj.image.ext}")

    def label_path(self, image_id: str, tag: str) -> Path:
        """The study's label file of ``tag``; NotFound if the study or that label does not exist."""
        self.study_path(image_id)
        tag = getattr(tag, "value", tag)  # MONAI Label passes DefaultLabelTag members, whose str() is not the value
        label = self._datastore.label(image_id, tag) if is_plain_name(tag) else None
        if label is None:
            raise NotFound(f"study '{image_id}' has no label {shown(tag)}")
        return confined(self.root, self.root / self._datastore.labels_dir / tag / f"{image_id}{label.ext}")

    def _entries(self, image_id: str, tags: list[str] | None = None) -> list[Path]:
        """The study's entries on disk and its label files (only the label files of ``tags``, when given)."""
        found = (
            []
            if tags is not None
            else [self.root / f"{image_id}{suffix}" for suffix in (*STUDY_SUFFIXES, DICOM_SUFFIX)]
        )
        labels_root = self._labels_root()
        tag_folders = (
            [labels_root / tag for tag in tags]
            if tags is not None
            else (sorted(p for p in labels_root.iterdir() if p.is_dir() and is_plain_name(p.name)))
        )
        for folder in tag_folders:
            if folder.is_dir() and labels_root in folder.resolve().parents:  # never a linked folder elsewhere
                found += [folder / f"{image_id}{suffix}" for suffix in LABEL_SUFFIXES]
        return [path for path in found if path.exists() or path.is_symlink()]

    def _to_backup(self, image_id: str, paths: list[Path]) -> Path | None:
        """Move ``paths`` (inside the folder) to a new backup folder, keeping their place relative to the folder."""
        if not paths:
            return None
        backup = self._backups / f"{time.strftime('%Y%m%dT%H%M%S')}_{uuid.uuid4().hex[:6]}_{image_id}"
        for path in paths:
            target = backup / path.relative_to(self.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)  # a link is moved as a link, never followed
        logger.info("study '%s': %d entries kept in %s", image_id, len(paths), backup)
        return backup

    @contextmanager
    def staging_file(self, suffix: str) -> Iterator[Path]:
        """A new empty file in the staging folder, removed on leaving (when it was not placed as a study)."""
        handle, name = tempfile.mkstemp(dir=self._staging, suffix=suffix)
        os.close(handle)
        try:
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    def _place(self, source: Path, target: Path) -> None:
        """Put ``source`` at ``target`` atomically (a rename from the staging folder; other files copied there
        first)."""
        if source.resolve().parent == self._staging.resolve():
            os.replace(source, target)
            return
        with self.staging_file("".join(target.suffixes)) as staged:
            shutil.copyfile(source, staged)
            os.replace(staged, target)

    # --- the Datastore interface -------------------------------------------------------------------------

    def get_image_uri(self, image_id: str) -> str:
        return str(self.study_path(image_id))

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        return str(self.label_path(label_id, label_tag))

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        self.study_path(image_id)
        return super().get_image_info(image_id)

    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        self.label_path(label_id, label_tag)
        return super().get_label_info(label_id, label_tag)

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        self.study_path(image_id)
        if not isinstance(info, dict):
            raise BadRequest(f"study '{image_id}': the info must be a JSON object")
        super().update_image_info(image_id, info)

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        self.label_path(label_id, label_tag)
        if not isinstance(info, dict):
            raise BadRequest(f"label '{label_tag}' of study '{label_id}': the info must be a JSON object")
        super().update_label_info(label_id, label_tag, info)

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any], replace: bool = False) -> str:
        """Add a scan as study ``image_id`` (default: its file name without the suffix).

        Raises:
            BadRequest: the id is not a plain name. UnsupportedFormat: not a study format. Invalid: unreadable.
            Conflict: the id exists and ``replace`` is false (with ``replace`` the old study and its labels go to
                the backup folder).
        """
        source = Path(image_filename)
        suffix = study_upload_suffix(source.name)
        image_id = plain_name(image_id or source.name[: -len(suffix)], "image id")
        self._existing(image_id, replace)
        check_readable(source, image_id)
        with self._mutex:
            self._to_backup(image_id, self._existing(image_id, replace))
            target = self.root / f"{image_id}{suffix}"
            self._place(source, target)
            info = {**(image_info or {}), "ts": int(time.time()), "name": target.name}
            self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=suffix))
            self._update_datastore_file()
        return image_id

    def _existing(self, image_id: str, replace: bool) -> list[Path]:
        """The study's entries and labels on disk, to be replaced; Conflict if it exists and ``replace`` is false."""
        existing = self._entries(image_id)
        if (existing or image_id in self._datastore.objects) and not replace:
            raise Conflict(
                f"study '{image_id}' exists: to replace it, upload again with replace=true (the old study "
                f"and its labels are kept in {PRIVATE}/backup/ of the studies folder)"
            )
        return existing

    def remove_image(self, image_id: str) -> None:
        """Move the study and its labels to the backup folder."""
        self.study_path(image_id)
        with self._mutex:
            self._to_backup(image_id, self._entries(image_id))
            self._datastore.objects.pop(image_id, None)
            self._update_datastore_file()

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Store a validated label of the study (a previous one of the same tag goes to the backup folder)."""
        study = self.study_path(image_id)
        tag = plain_name(label_tag or FINAL, "label tag")
        source = Path(label_filename)
        suffix = label_upload_suffix(source.name)
        if suffix == CATEGORY_LABEL_SUFFIX:
            try:
                parse_category_label(source.read_text(), self.categories, f"label '{tag}' of study '{image_id}'")
            except UnicodeDecodeError as err:
                raise Invalid(f"label '{tag}' of study '{image_id}': not text ({CATEGORY_LABEL_FORMAT})") from err
            except DataError as err:
                raise Invalid(one_line(err)) from err
        else:
            volume = check_label_volume(source, study, image_id, tag)
            if tag == FINAL:  # what training reads: its values must be the model's categories
                try:
                    label_volume_categories(volume, self.categories, f"label '{tag}' of study '{image_id}'")
                except DataError as err:
                    raise Invalid(one_line(err)) from err
        with self._mutex:
            obj = self._datastore.objects.get(image_id)
            if obj is None:
                raise NotFound(f"study '{image_id}' was removed meanwhile")
            folder = confined(self.root, self._labels_root() / tag)
            folder.mkdir(exist_ok=True)
            self._to_backup(image_id, self._entries(image_id, tags=[tag]))
            target = folder / f"{image_id}{suffix}"
            self._place(source, target)
            info = {**(label_info or {}), "ts": int(time.time()), "name": target.name}
            obj.labels[tag] = DataModel(info=info, ext=suffix)
            self._update_datastore_file()
        return image_id

    def remove_label(self, label_id: str, label_tag: str) -> None:
        """Move the label to the backup folder."""
        self.label_path(label_id, label_tag)
        with self._mutex:
            self._to_backup(label_id, self._entries(label_id, tags=[label_tag]))
            obj = self._datastore.objects.get(label_id)
            if obj is not None:
                obj.labels.pop(label_tag, None)
            self._update_datastore_file()

    def write_archive(self, target: Path, limit_cases: int | None = None) -> Path:
        """A ZIP of the studies with a final label (DICOM folders with all their files), their labels and the
        index, at ``target``; NotFound when no study is labelled."""
        labelled = sorted(self.get_labeled_images())[: limit_cases if limit_cases and limit_cases > 0 else None]
        if not labelled:
            raise NotFound("no study has a final label yet: nothing to download")
        with zipfile.ZipFile(target, "w") as archive:
            for image_id in labelled:
                study, label = self.study_path(image_id), self.label_path(image_id, FINAL)
                files = sorted(p for p in study.rglob("*") if p.is_file()) if study.is_dir() else [study]
                for file in files:
                    archive.write(confined(self.root, file), f"image/{file.relative_to(study.parent)}")
                archive.write(label, f"label/{label.name}")
            archive.writestr("metadata.json", self._datastore.model_dump_json(exclude={"base_path"}))
        return target
