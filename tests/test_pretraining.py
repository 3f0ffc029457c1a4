"""The tiny CLIP's pretraining captions never share a content word with any sign file."""

from __future__ import annotations

import re

import numpy as np
from conftest import REPO_ROOT
from sdmad.data.phantom import CATEGORIES
from sdmad.pretraining import LOOKS, PLAIN, STOP_WORDS, caption, caption_pairs
from sdmad.signs import load_sign_file


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower())) - STOP_WORDS


def test_caption_vocabulary_is_disjoint_from_every_sign_file():
    caption_words = set().union(*(words(look) for looks in LOOKS.values() for look in looks), *map(words, PLAIN),
                                words("an oval:"))
    for path in sorted((REPO_ROOT / "configs" / "signs").glob("*.yaml")):
        signs = load_sign_file(path)
        sign_words = set().union(*map(words, signs.sign_prompts + list(signs.normal) + signs.category_names))
        assert not caption_words & sign_words, (path.name, sorted(caption_words & sign_words))


def test_captions_describe_the_findings_and_pairs_are_generated():
    rng = np.random.default_rng(0)
    assert caption((), rng) in PLAIN
    two = caption((CATEGORIES[0], CATEGORIES[4]), rng)
    assert any(look in two for look in LOOKS[CATEGORIES[0]]) and any(look in two for look in LOOKS[CATEGORIES[4]])
    images, captions = caption_pairs(4, seed=0, size=48)
    assert images.shape == (4, 3, 240, 240) and len(captions) == 4
