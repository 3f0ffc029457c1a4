"""Study ids and label tags are plain names; every path built from them must lie inside the studies folder.

MONAI Label's LocalDatastore joins client ids and tags into paths unchecked (`PUT /datastore/image?image=/abs/x`
wrote `/abs/x.txt`), so the app's datastore checks both: the name before it becomes a path, and the resolved
path before any read, write or delete.
"""

from __future__ import annotations

import re
from pathlib import Path

from sdmad.label.errors import BadRequest, Forbidden

MAX_NAME_LENGTH = 128
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RULE = (
    f"letters, digits, '.', '_' and '-', starting with a letter or digit, no '..', at most {MAX_NAME_LENGTH} characters"
)


def shown(value: object, limit: int = 80) -> str:
    """A client's value quoted for an error message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def is_plain_name(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= MAX_NAME_LENGTH
        and _PLAIN.fullmatch(value) is not None
        and ".." not in value
    )


def plain_name(value: object, what: str) -> str:
    """``value`` if it is a plain name, else a BadRequest saying what ``what`` (e.g. "image id") may be."""
    if not is_plain_name(value):
        raise BadRequest(f"{what} {shown(value)} is not a plain name ({RULE})")
    return str(value)


def confined(root: Path, path: str | Path) -> Path:
    """``path`` resolved (symbolic links followed); Forbidden unless it lies inside ``root`` (itself resolved)."""
    resolved = Path(path).resolve()
    if root not in resolved.parents:
        raise Forbidden(f"{Path(path).name!r} resolves outside the studies folder (a symbolic link?): refused")
    return resolved
