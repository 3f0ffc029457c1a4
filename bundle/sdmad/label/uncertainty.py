"""Active learning from a cache: per-study uncertainty computed in the background with the served model.

A study's uncertainty is its least certain category decision: the smallest |margin| over categories (the margin
is the distance of the most positive slice from the decision boundary). Computing it means one inference per
study, so a request never does it: a daemon thread keeps the cache of every unlabelled study up to date, each
entry keyed by the served model's stamp and the study's, and the strategy answers from the cache at once.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from sdmad.errors import one_line, project_error
from sdmad.label.errors import NotFound, RequestError, StillComputing
from sdmad.predictor import BundlePredictor

logger = logging.getLogger(__name__)
Stamp = tuple[int, int]


def file_stamp(path: Path) -> Stamp:
    """(modification time in ns, size) of a file or folder: one `stat`, so that a request can check every study's.
    A DICOM series folder's changes when files are added, removed or renamed in it."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


class UncertaintyCache:
    """Per-study uncertainty of the unlabelled studies, kept current by a background thread.

    Args:
        predictor: the served predictor (its lock serialises the thread's inferences with the requests').
        datastore: the studies.
        model_path: the served checkpoint (missing: zero-shot); its stamp is part of every entry's key.
        poll_seconds: how often the thread looks for new studies, changed studies or a new model.
    """

    def __init__(self, predictor: BundlePredictor, datastore: Datastore, model_path: Path, poll_seconds: float = 2.0):
        self.predictor, self.datastore, self.model_path = predictor, datastore, model_path
        self.poll_seconds = poll_seconds
        self._entries: dict[str, tuple[tuple, float | None]] = {}  # id -> (key, uncertainty; None: unreadable)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def model_stamp(self) -> Stamp | str:
        return file_stamp(self.model_path) if self.model_path.is_file() else "zero-shot"

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sdmad-uncertainty", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.update()
            except Exception:  # the thread must outlive a bug; the next round retries
                logger.exception("active learning: updating the uncertainty cache failed")
            self._stop.wait(self.poll_seconds)

    def _key(self, image_id: str) -> tuple | None:
        try:
            return self.model_stamp(), file_stamp(Path(self.datastore.get_image_uri(image_id)))
        except (NotFound, OSError):  # removed meanwhile
            return None

    def update(self) -> None:
        """Compute the missing or outdated entries of the unlabelled studies (one inference each)."""
        candidates = self.datastore.get_unlabeled_images()
        with self._lock:
            for image_id in set(self._entries) - set(candidates):
                del self._entries[image_id]
        for image_id in candidates:
            if self._stop.is_set():
                return
            key = self._key(image_id)
            if key is None or self._entries.get(image_id, (None,))[0] == key:
                continue
            value = self._uncertainty(image_id)
            with self._lock:
                self._entries[image_id] = (key, value)

    def _uncertainty(self, image_id: str) -> float | None:
        try:
            margins = self.predictor.predict(self.datastore.get_image_uri(image_id))["volumes"][0]["margins"]
        except RequestError:  # removed meanwhile
            return None
        except Exception as err:  # an unreadable study is never proposed; the others still are
            cause = project_error(err)
            if cause is None:
                logger.exception("active learning skips study '%s' (not an input error)", image_id)
            else:
                logger.warning("active learning skips study '%s': %s", image_id, one_line(cause))
            return None
        return min(abs(m) for m in margins.values())

    def lookup(self, image_ids: list[str]) -> tuple[dict[str, float], list[str]]:
        """(uncertainty of the studies computed for the current model and study files, the ids still pending);
        unreadable studies are in neither."""
        values, pending = {}, []
        for image_id in image_ids:
            key = self._key(image_id)
            with self._lock:
                entry = self._entries.get(image_id)
            if entry is None or entry[0] != key:
                pending.append(image_id)
            elif entry[1] is not None:
                values[image_id] = entry[1]
        return values, pending


class UncertaintyStrategy(Strategy):
    """The unlabelled study whose least certain category decision is closest to the boundary, from the cache."""

    def __init__(self, cache: UncertaintyCache):
        super().__init__("SD-MAD: the study with the least certain category decision")
        self.cache = cache

    def __call__(self, request: dict, datastore: Datastore) -> dict[str, Any] | None:
        candidates = datastore.get_unlabeled_images()
        values, pending = self.cache.lookup(candidates)
        if not values:
            if pending:
                raise StillComputing(
                    f"active learning: uncertainty still being computed for {len(pending)} of "
                    f"{len(candidates)} unlabelled studies; retry in a few seconds"
                )
            return None  # nothing unlabelled (or nothing readable) left
        chosen = min(values, key=values.get)
        return {"id": chosen, "uncertainty": values[chosen], "computed": len(values), "pending": len(pending)}
