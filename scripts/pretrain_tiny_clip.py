"""Pretrain the tiny open_clip model on generated phantom image-caption pairs (offline demo backbone).

    python scripts/pretrain_tiny_clip.py --out models/sdmad-tiny-phantom.pt [--steps N --batch-size N --pool N --seed N]
        [--image-size N]   (default: configs/demo.yaml's image_size, the size the demo adapts it at)

The other defaults are the demo's recipe (sdmad.tools.pretraining.DEMO_RECIPE).

See bundle/sdmad/tools/pretraining.py for what the pairs are (never the phantom data set, never category names).
"""

from __future__ import annotations

import argparse
import json

from sdmad.tools.pretraining import DEMO_BACKBONE, DEMO_RECIPE, demo_image_size, pretrain_tiny_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEMO_BACKBONE))
    parser.add_argument("--steps", type=int, default=DEMO_RECIPE["steps"])
    parser.add_argument("--batch-size", type=int, default=DEMO_RECIPE["batch_size"])
    parser.add_argument(
        "--pool", type=int, default=DEMO_RECIPE["pool"], help="generated image-caption pairs to sample from"
    )
    parser.add_argument("--seed", type=int, default=DEMO_RECIPE["seed"])
    parser.add_argument("--image-size", type=int, default=None, help="default: configs/demo.yaml's image_size")
    args = parser.parse_args()
    summary = pretrain_tiny_clip(
        args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        pool=args.pool,
        seed=args.seed,
        image_size=args.image_size or demo_image_size(),
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
