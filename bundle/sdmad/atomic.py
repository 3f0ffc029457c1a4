"""Atomic file writes: write a temporary file in the target folder, then rename it over the target.

A reader (or a run killed mid-write) never sees half a report, CSV, plot or checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: str | Path) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_csv_atomic(rows: Iterable[Sequence[object]], path: str | Path) -> None:
    """Rows (the header first) as a CSV file (csv.writer's quoting)."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _jsonable(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json_atomic(content: object, path: str | Path) -> None:
    write_text_atomic(json.dumps(content, indent=1, default=_jsonable) + "\n", path)
