"""The tiny CLIP's pretraining captions: partly radiological words, never a category name or a prompt of any sign
file (so no prompt of a task is trained before its shots)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from conftest import REPO_ROOT
from sdmad.networks.clip_loading import TINY_MODEL_NAME, load_clip
from sdmad.signs import load_sign_file
from sdmad.tools import pretraining
from sdmad.tools.phantom import CATEGORIES
from sdmad.tools.pretraining import (
    LOOKS,
    PLAIN,
    PREFIXES,
    STOP_WORDS,
    caption,
    caption_pairs,
    encode_short_captions,
    ensure_tiny_backbone,
    pretrain_tiny_clip,
    recipe_file,
)

TINY_RECIPE = dict(image_size=60, steps=3, batch_size=8, pool=16, progress=False)  # seconds, not minutes


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower())) - STOP_WORDS


def every_caption_part() -> list[str]:
    return [look for looks in LOOKS.values() for look in looks] + list(PLAIN) + list(PREFIXES)


def test_captions_never_hold_a_category_name_or_a_prompt_of_any_sign_file():
    parts = [part.lower() for part in every_caption_part()]
    for path in sorted((REPO_ROOT / "configs" / "signs").glob("*.yaml")):
        signs = load_sign_file(path)
        names = [name.lower().removeprefix("global label: ") for name in signs.category_names]
        prompts = [prompt.lower() for prompt in signs.sign_prompts + list(signs.normal)]
        for part in parts:
            assert not any(name in part for name in names), (path.name, part)
            assert not any(prompt in part or part in prompt for prompt in prompts), (path.name, part)


def test_the_vocabulary_overlaps_the_brain_sign_file_only_in_part():
    signs = load_sign_file(REPO_ROOT / "configs" / "signs" / "fastmri_brain.yaml")
    sign_words = set().union(*map(words, signs.sign_prompts))
    shared = set().union(*map(words, every_caption_part())) & sign_words
    assert {"skull", "cavity", "ventricles"} <= shared
    assert len(shared) < 0.5 * len(sign_words)  # most radiological words (craniotomy, gliosis, ...) stay unknown


def test_captions_describe_the_findings_and_pairs_are_generated():
    rng = np.random.default_rng(0)
    plain = caption((), rng)
    assert any(plain.endswith(look) for look in PLAIN)
    two = caption((CATEGORIES[0], CATEGORIES[4]), rng)
    assert any(look in two for look in LOOKS[CATEGORIES[0]]) and any(look in two for look in LOOKS[CATEGORIES[4]])
    images, captions = caption_pairs(4, seed=0, size=48)
    assert images.shape == (4, 3, 240, 240) and len(captions) == 4


def test_the_pool_is_the_same_made_in_chunks_and_kept_in_bfloat16():
    whole, captions = caption_pairs(5, seed=3, size=48, image_size=60)
    chunked, chunk_captions = caption_pairs(5, seed=3, size=48, image_size=60, dtype=torch.bfloat16, chunk=2)
    assert chunk_captions == captions and chunked.dtype == torch.bfloat16
    torch.testing.assert_close(chunked, whole.to(torch.bfloat16), rtol=0, atol=0)


def test_short_captions_give_the_full_length_features_and_gradients():
    model, tokenizer = load_clip(TINY_MODEL_NAME, image_size=60)
    tokens = tokenizer([caption((CATEGORIES[1], CATEGORIES[5]), np.random.default_rng(1)), "a brain slice"])
    full = model.encode_text(tokens, normalize=True)
    short = encode_short_captions(model, tokens)
    torch.testing.assert_close(short, full, rtol=0, atol=1e-6)
    grads = [torch.autograd.grad(f.pow(2).sum(), model.token_embedding.weight)[0] for f in (full, short)]
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-6)


def test_the_demo_backbone_is_made_again_when_any_recipe_setting_changed(tmp_path, monkeypatch):
    made = []

    def fake_pretraining(output_file, image_size):  # writes the weights and the demo recipe's stamp at once
        made.append(image_size)
        Path(output_file).write_bytes(b"weights")
        stamp = pretraining.recipe_stamp(image_size, pretraining.DEMO_RECIPE)
        recipe_file(output_file).write_text(json.dumps(stamp))

    monkeypatch.setattr(pretraining, "pretrain_tiny_clip", fake_pretraining)
    weights = tmp_path / "tiny.pt"
    assert ensure_tiny_backbone(weights, 180) and not ensure_tiny_backbone(weights, 180)
    assert ensure_tiny_backbone(weights, 160)  # another image size
    stamp = json.loads(recipe_file(weights).read_text())
    recipe_file(weights).write_text(json.dumps({**stamp, "steps": 3}))  # made by a recipe with other steps
    assert ensure_tiny_backbone(weights, 160) and made == [180, 160, 160]


def test_pretraining_gives_the_same_weights_in_processes_with_other_thread_settings(tmp_path):
    """As the demo makes its backbone on each machine: another process started with 1 thread and this one (with
    torch's default threads) make bitwise the same weights (``cpu_threads`` fixes the threads; the forward pass in
    bfloat16 where this CPU has it fast)."""
    script = (
        "import sys; from sdmad.tools.pretraining import pretrain_tiny_clip; "
        f"pretrain_tiny_clip(sys.argv[1], **{TINY_RECIPE!r})"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "other.pt")], check=True, env=env, timeout=300)
    pretrain_tiny_clip(tmp_path / "this.pt", **TINY_RECIPE)
    other, this = (torch.load(tmp_path / name, weights_only=True) for name in ("other.pt", "this.pt"))
    assert other.keys() == this.keys() and all(torch.equal(other[key], this[key]) for key in this)


def test_a_cpu_without_fast_bfloat16_pretrains_in_float32_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(pretraining, "bfloat16_is_fast", lambda: False)
    summary = pretrain_tiny_clip(tmp_path / "tiny.pt", **TINY_RECIPE)
    assert summary["forward"] == "float32" and summary["last_loss"] == summary["last_loss"]  # not NaN
    assert json.loads(recipe_file(tmp_path / "tiny.pt").read_text())["forward"] == "float32"
