"""A study's category label: the JSON file a viewer or script stores as its `final` label (training reads it).

``{"categories": ["Craniotomy", "Enlarged ventricles"]}``; an empty list is a normal study.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdmad.data.errors import DataError
from sdmad.label.folder import CATEGORY_LABEL_FORMAT


def parse_category_label(text: str, categories: list[str], source: str) -> list[str]:
    """The categories of a label's text; a DataError naming ``source`` if it is not JSON in the label format or
    names categories the model does not know."""
    try:
        found = json.loads(text)["categories"]
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{source}: not an SD-MAD study label {CATEGORY_LABEL_FORMAT}: {type(err).__name__}") from err
    if not isinstance(found, list) or not all(isinstance(name, str) for name in found):
        raise DataError(f"{source}: 'categories' must be a list of category names {CATEGORY_LABEL_FORMAT}")
    unknown = [name for name in found if name not in categories]
    if unknown:
        raise DataError(f"{source}: unknown categories {unknown} (known: {categories})")
    return list(dict.fromkeys(found))


def read_category_label(path: str | Path, categories: list[str]) -> list[str]:
    """The categories of a stored label file (DataError naming the file if it is unreadable or malformed)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the study label: {err}") from err
    return parse_category_label(text, categories, str(path))
