"""The one error type of the data code: its message always names the file (or CSV row) and what is wrong."""

from __future__ import annotations

from sdmad.errors import SDMADError


class DataError(SDMADError, ValueError):
    """Bad input data: corrupt or unreadable file, missing pixels, unknown label, too few shots, NaN values."""
