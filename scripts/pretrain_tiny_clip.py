"""Pretrain the tiny open_clip model on generated phantom image-caption pairs (offline demo backbone).

    python scripts/pretrain_tiny_clip.py --out models/sdmad-tiny-phantom.pt [--steps 500 --batch-size 32 --seed 0]
        [--image-size N]   (default: configs/demo.yaml's image_size, the size the demo adapts it at)

See bundle/sdmad/tools/pretraining.py for what the pairs are (never the phantom data set, never category names).
"""

from __future__ import annotations

import argparse
import json

from sdmad.tools.pretraining import demo_image_size, pretrain_tiny_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="models/sdmad-tiny-phantom.pt")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pool", type=int, default=1500, help="generated image-caption pairs to sample from")
    parser.add_argument("--seed", type=int, default=0)
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
