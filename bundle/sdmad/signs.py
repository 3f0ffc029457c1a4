"""Sign files: radiological-sign prompts per anomaly category, and the normal (anchor) prompts.

A sign file is YAML::

    task: fastmri_brain
    description: ...            # optional
    normal:                     # one or more prompts; their mean feature is the anchor
      - brain MRI with no abnormality
    categories:                 # ordered: this order is the order of every per-category output
      Craniotomy:
        - brain MRI showing a craniotomy defect in the skull
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sdmad.errors import SDMADError


class SignFileError(SDMADError, ValueError):
    """A sign file is malformed; the message names the file and the problem."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal mapping keys silently; a duplicated category must be an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise SignFileError(f"duplicate key '{key}' (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class SignSet:
    """The prompts of one task: categories in a fixed order, each with its signs, and the normal prompts."""

    task: str
    normal: tuple[str, ...]
    categories: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def category_names(self) -> list[str]:
        return [name for name, _ in self.categories]

    @property
    def sign_prompts(self) -> list[str]:
        """All sign prompts, category after category."""
        return [sign for _, signs in self.categories for sign in signs]

    @property
    def sign_category(self) -> list[int]:
        """For each entry of ``sign_prompts``, the index of its category."""
        return [index for index, (_, signs) in enumerate(self.categories) for _ in signs]

    def subset(self, names: list[str]) -> SignSet:
        """The same task restricted to (and ordered as) ``names``; unknown names are an error."""
        by_name = dict(self.categories)
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise SignFileError(f"task '{self.task}': unknown categories {unknown}; known: {self.category_names}")
        return SignSet(self.task, self.normal, tuple((name, by_name[name]) for name in names))


def _prompt_list(value: Any, what: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise SignFileError(f"{source}: {what} must be a non-empty list of prompts, got {value!r}")
    for prompt in value:
        if not isinstance(prompt, str) or not prompt.strip():
            raise SignFileError(f"{source}: {what} has a prompt that is not a non-empty string: {prompt!r}")
    if len(set(value)) != len(value):
        raise SignFileError(f"{source}: {what} repeats a prompt")
    return tuple(prompt.strip() for prompt in value)


def parse_signs(content: Any, source: str = "<signs>") -> SignSet:
    """Validate the parsed YAML content of a sign file and return it as a ``SignSet``."""
    if not isinstance(content, dict):
        raise SignFileError(f"{source}: expected a mapping with 'task', 'normal' and 'categories'")
    for key in ("normal", "categories"):
        if key not in content:
            raise SignFileError(f"{source}: missing '{key}' (no {key} prompts)")
    normal = _prompt_list(content["normal"], "'normal'", source)
    categories = content["categories"]
    if not isinstance(categories, dict) or not categories:
        raise SignFileError(f"{source}: 'categories' must map each category name to its list of sign prompts")
    parsed = []
    for name, signs in categories.items():
        if not isinstance(name, str) or not name.strip():
            raise SignFileError(f"{source}: category name {name!r} is not a non-empty string")
        if signs is None or signs == []:
            raise SignFileError(f"{source}: category '{name}' is empty (it needs at least one sign prompt)")
        parsed.append((name, _prompt_list(signs, f"category '{name}'", source)))
    return SignSet(task=str(content.get("task", Path(source).stem)), normal=normal, categories=tuple(parsed))


def load_sign_file(path: str | Path, categories: Sequence[str] | None = None) -> SignSet:
    """Read and validate a sign file; ``categories``: keep only these, in this order (None: all of them).

    Raises:
        SignFileError: the file is missing, not YAML, or malformed (no normal prompts, an empty or duplicated
            category, a non-string prompt); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise SignFileError(f"{path}: sign file not found")
    try:
        content = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except SignFileError as err:
        raise SignFileError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise SignFileError(f"{path}: not valid YAML: {err}") from err
    signs = parse_signs(content, source=str(path))
    return signs if categories is None else signs.subset(categories)
