"""Yes/no settings as the command line delivers them.

`python -m monai.bundle run ... --resume false` hands the config the *string* "false" (Python Fire turns only
`False` into a bool), and any non-empty string is true. Every yes/no setting therefore goes through ``as_flag``.
"""

from __future__ import annotations

from typing import Any

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")
_NONE = ("none", "null", "")


def as_flag(value: Any, name: str) -> bool:
    """``value`` as a bool: True/False, or "true"/"false" (also yes/no, 1/0, on/off) in any case."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def as_optional_flag(value: Any, name: str) -> bool | None:
    """Like ``as_flag``, with None (also "none"/"null") for "not set"."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        return None
    return as_flag(value, name)
