"""Contrastive pre-training of the tiny CLIP on generated phantom slices with plain-language captions.

The paper adapts a *pretrained* CLIP with few shots. Offline there are no pretrained weights, so the demo and
the phantom benchmark use a tiny CLIP pretrained here (a few minutes on 2 CPU cores), saved as an open_clip state
dict and loaded through the real local-file path. Honesty rules: the images are freshly generated phantom slices
(their own random streams, never the phantom data set's volumes, so never its test split) and the captions
describe what is visible in plain words. They never contain a category name or a sign or normal prompt, so no
prompt of the task is trained here; some of their words (skull, cavity, ventricles, white matter...) occur in
the prompts too, as a real CLIP knows some radiological words.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import yaml
from open_clip.loss import ClipLoss
from open_clip.transformer import text_global_pool
from torch.nn.attention import SDPBackend, sdpa_kernel

from sdmad.atomic import write_json_atomic
from sdmad.checkpoints import save_atomic
from sdmad.data.clip_input import CLIPInput
from sdmad.networks.clip_loading import TINY_MODEL_NAME, load_clip
from sdmad.runs import fixed_cpu_threads
from sdmad.tools.phantom import CATEGORIES, make_volume, to_display

logger = logging.getLogger(__name__)

# The recipe's version, stamped beside the weights: a backbone made by another recipe is made again (demo).
RECIPE_VERSION = 6  # 2: slices in display orientation; 3: captions with radiological words; 4: the demo's image size;
# 5: 500 steps (fused AdamW, captions at their own length); 6: bfloat16 forward, 700 steps on a pool of 5,000

# What each finding looks like, in plain words that partly overlap with radiological language (skull, gap, cavity,
# spot, ventricles, white matter, ...), as a real CLIP's vocabulary does, but never a category name or a sign or
# normal prompt of any sign file (tests/test_pretraining.py checks every shipped sign file).
LOOKS = {
    CATEGORIES[0]: (
        "a gap in the skull ring",
        "a missing piece of the skull",
        "an opening in the bright skull outline",
        "a break in the skull on one side",
    ),
    CATEGORIES[1]: (
        "a dark cavity with a ragged bright rim near the edge",
        "an irregular dark hollow ringed in bright",
        "a cavity with an uneven bright border",
        "a dark pocket with an irregular bright wall",
    ),
    CATEGORIES[2]: (
        "a few small bright spots in the brain",
        "one small round bright focus in the brain",
        "small bright blobs in the brain tissue",
        "a bright spot inside the brain",
    ),
    CATEGORIES[3]: (
        "a thick bright band just inside the skull",
        "a broad bright rim along the inner edge of the skull",
        "the inside of the skull lined by a thick bright layer",
        "a thick bright lining under the skull",
    ),
    CATEGORIES[4]: (
        "two large dark ventricles at the center",
        "wide dark ventricles in the middle",
        "big dark central ventricles",
        "very large ventricles",
    ),
    CATEGORIES[5]: (
        "many tiny bright dots around the ventricles",
        "scattered tiny bright specks near the ventricles",
        "a sprinkle of tiny bright points in the white matter",
        "tiny bright dots in the white matter",
    ),
}
PLAIN = (
    "a brain with an intact skull ring and two small dark ventricles",
    "an even grey brain inside a smooth skull",
    "a smooth skull ring around even grey brain tissue",
    "two small dark ventricles in an even grey brain",
)
PREFIXES = ("a brain slice", "an axial head image", "a head scan slice")
STOP_WORDS = frozenset("a an the with and of in on at to or by from its no".split())


def caption(labels: tuple[str, ...], rng: np.random.Generator) -> str:
    """A plain-language caption of a phantom slice with the given findings."""
    prefix = PREFIXES[rng.integers(len(PREFIXES))]
    if not labels:
        return f"{prefix}: {PLAIN[rng.integers(len(PLAIN))]}"
    parts = [LOOKS[label][rng.integers(len(LOOKS[label]))] for label in labels]
    rng.shuffle(parts)
    return f"{prefix} with " + " and ".join(parts)


def caption_pairs(
    count: int,
    seed: int,
    size: int = 96,
    finding_probability: float = 0.3,
    image_size: int = 240,
    dtype: torch.dtype = torch.float32,
    chunk: int = 500,
) -> tuple[torch.Tensor, list[str]]:
    """``count`` preprocessed images `[count, 3, image_size, image_size]` of ``dtype`` and their captions, each
    pair with its own random stream; preprocessed ``chunk`` slices at a time into the pool (5,000 at 180 px hold
    1 GB in bfloat16, 2 GB in float32)."""
    images = torch.empty((count, 3, image_size, image_size), dtype=dtype)
    captions, clip_input = [], CLIPInput(image_size)
    for first in range(0, count, chunk):
        slices = []
        for index in range(first, min(first + chunk, count)):
            rng = np.random.default_rng([seed, 7_000_000 + index])  # disjoint from make_phantom_dataset's streams
            labels = tuple(c for c in CATEGORIES if rng.random() < finding_probability)
            volume = make_volume(f"pretrain{index}", labels, rng, size=size, num_slices=1)
            display = np.ascontiguousarray(to_display(volume.volume[..., 0]))  # as the bundle shows every slice
            slices.append(torch.from_numpy(display[None]).float())
            captions.append(caption(labels, rng))
        images[first : first + len(slices)] = clip_input(torch.stack(slices))
    return images, captions


def encode_short_captions(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens, normalize=True)`` on the captions' own length instead of the context length.

    Hand-written because open_clip's ``encode_text`` always runs all 77 positions, while these captions are at most
    about 32 tokens: the text tower would be half of every pretraining step. With CLIP's causal mask a position
    never sees a later one, and the pooled end-of-text token comes before the cut, so the features (and their
    gradients) are those of the full length (tests/test_pretraining.py).
    """
    length = int((tokens != 0).sum(dim=1).max())
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return torch.nn.functional.normalize(x, dim=-1)


def bfloat16_is_fast() -> bool:
    """Whether this CPU runs bfloat16 matrix products through oneDNN (x86 with AVX-512 or AMX). Without it they are
    about 12 x slower than float32 (docs/usage.md, "What helped, what did not")."""
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled and bool(supported())


@contextlib.contextmanager
def training_precision(bfloat16: bool) -> Iterator[None]:
    """With ``bfloat16``, the pretraining forward pass under bfloat16 autocast (weights, optimizer and loss stay
    float32) with attention as plain matrix products (PyTorch's CPU flash attention is the slower one at 82 tokens
    of 32 per head); else float32 as it is."""
    if not bfloat16:
        yield
        return
    with torch.autocast("cpu", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.MATH):
        yield


def pretrain_tiny_clip(
    output_file: str | Path,
    image_size: int,
    steps: int = 700,
    batch_size: int = 32,
    pool: int = 5000,
    learning_rate: float = 5e-4,
    finding_probability: float = 0.3,
    seed: int = 0,
    cpu_threads: int = 2,
    progress: bool = True,
) -> dict:
    """Train ``sdmad-tiny`` at ``image_size`` from random weights with the CLIP loss; write its state dict to
    ``output_file``.

    ``cpu_threads`` fixes torch's intra-op threads, so that the weights do not depend on the core count (CPU
    reductions are split by thread). The forward pass runs in bfloat16 where the CPU has fast bfloat16
    (``bfloat16_is_fast``), else in float32 (slower, and other weights). Returns a summary: steps, seconds, first
    and last loss, the forward pass's dtype, and the top-1 image->text accuracy on 256 fresh pairs.
    """
    with fixed_cpu_threads(cpu_threads):
        torch.manual_seed(seed)
        start = time.perf_counter()
        model, tokenizer = load_clip(TINY_MODEL_NAME, image_size=image_size, to_pretrain=True)
        model.train()
        bfloat16 = bfloat16_is_fast()
        forward = "bfloat16" if bfloat16 else "float32"  # recorded in the stamp, not compared: the machine's
        logger.info("pretraining forward pass in %s", forward)
        images, captions = caption_pairs(
            pool,
            seed,
            finding_probability=finding_probability,
            image_size=image_size,
            dtype=getattr(torch, forward),  # bfloat16: what autocast makes of the pool anyway
        )
        tokens = tokenizer(captions)
        # fused: one kernel per tensor instead of a loop of ops (the 6.3M-entry token embedding is most of the weights)
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.1, fused=True)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1
        )
        loss_fn = ClipLoss()
        generator = torch.Generator().manual_seed(seed)
        losses = []
        iterator = range(steps)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc="pretraining sdmad-tiny", unit="step")
        for _ in iterator:
            batch = torch.randperm(pool, generator=generator)[:batch_size]
            with training_precision(bfloat16):
                image_features = model.encode_image(images[batch], normalize=True)
                text_features = encode_short_captions(model, tokens[batch])
            loss = loss_fn(image_features.float(), text_features.float(), model.logit_scale.exp())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if progress:
                iterator.set_postfix(loss=f"{losses[-1]:.3f}")
        model.eval()
        save_atomic(model.state_dict(), output_file)
        settings = dict(
            steps=steps,
            batch_size=batch_size,
            pool=pool,
            learning_rate=learning_rate,
            finding_probability=finding_probability,
            seed=seed,
        )
        write_json_atomic({**recipe_stamp(image_size, settings), "forward": forward}, recipe_file(output_file))
        held_out_images, held_out_captions = caption_pairs(256, seed + 1, image_size=image_size)
        with torch.no_grad():
            similarity = (
                model.encode_image(held_out_images, normalize=True)
                @ encode_short_captions(model, tokenizer(held_out_captions)).T
            )
        # a caption may fit several images (same findings): count a hit when the chosen caption has the same findings
        chosen = [held_out_captions[i] for i in similarity.argmax(dim=1).tolist()]
        accuracy = float(
            np.mean([_findings(a) == _findings(b) for a, b in zip(chosen, held_out_captions, strict=True)])
        )
        summary = {
            "steps": steps,
            "seconds": round(time.perf_counter() - start, 1),
            "first_loss": losses[0],
            "last_loss": float(np.mean(losses[-10:])),
            "held_out_retrieval_accuracy": accuracy,
            "forward": forward,
            "output_file": str(output_file),
        }
        logger.info("pretraining done: %s", summary)
        return summary


def _findings(text: str) -> frozenset[str]:
    return frozenset(label for label, looks in LOOKS.items() if any(look in text for look in looks))


DEMO_BACKBONE = Path("models") / "sdmad-tiny-phantom.pt"  # under the bundle root: configs/demo.yaml's `pretrained`
RECIPE_SETTINGS = ("steps", "batch_size", "pool", "learning_rate", "finding_probability", "seed")  # in the stamp
# the demo's recipe: pretrain_tiny_clip's defaults
DEMO_RECIPE = {name: inspect.signature(pretrain_tiny_clip).parameters[name].default for name in RECIPE_SETTINGS}


def recipe_stamp(image_size: int, settings: dict) -> dict:
    """What the stamp beside a backbone records: the recipe version, the image size and ``RECIPE_SETTINGS``."""
    return {
        "recipe_version": RECIPE_VERSION,
        "image_size": image_size,
        **{name: settings[name] for name in RECIPE_SETTINGS},
    }


def recipe_file(weights: str | Path) -> Path:
    """The JSON stamp beside a pretrained backbone: which recipe made it."""
    return Path(weights).with_suffix(".recipe.json")


def demo_image_size(bundle_root: str | Path = ".") -> int:
    """The demo's image size (`configs/demo.yaml`): the tiny CLIP is pretrained at the size it is adapted at."""
    return int(yaml.safe_load((Path(bundle_root) / "configs" / "demo.yaml").read_text())["image_size"])


def ensure_tiny_backbone(weights: str | Path, image_size: int) -> bool:
    """Pretrain the demo backbone into ``weights`` at ``image_size`` unless it is there from the current recipe at
    that size (its stamp equal to ``recipe_stamp`` of ``DEMO_RECIPE``); True if made."""
    stamp = recipe_file(weights)
    wanted = recipe_stamp(image_size, DEMO_RECIPE)
    if Path(weights).is_file() and stamp.is_file():
        recipe = json.loads(stamp.read_text())
        if all(recipe.get(name) == value for name, value in wanted.items()):
            return False
    print(f"pretraining the tiny CLIP on phantom image-caption pairs at {image_size} px -> {weights} (once per recipe)")
    pretrain_tiny_clip(weights, image_size=image_size)
    return True
