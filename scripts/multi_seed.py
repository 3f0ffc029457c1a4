"""Repeat sampling -> training -> evaluation (and the zero-shot baseline) over seeds; write mean ± std.

    python scripts/multi_seed.py --seeds 0 1 2 --run-name bench --demo          # the phantom benchmark
    python scripts/multi_seed.py --seeds 0 1 2 --run-name paper_s0 -- --pretrained openai --slice_index 0

Writes runs/<run-name>/summary.json and summary.md; each seed's runs are in runs/<run-name>/seed<N>/.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

import yaml
from sdmad.tools.experiments import ensure_demo_inputs, multi_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--run-name", default="multi_seed")
    parser.add_argument("--demo", action="store_true", help="layer configs/demo.yaml (phantom data, tiny CLIP)")
    parser.add_argument("--no-zero-shot", action="store_true", help="skip the zero-shot baseline")
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="after --: bundle overrides, e.g. -- --pretrained openai --shots 1"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    pairs = [item for item in args.overrides if item != "--"]
    overrides = {pairs[i].lstrip("-"): yaml.safe_load(pairs[i + 1]) for i in range(0, len(pairs), 2)}
    if args.demo:  # the demo's phantom data and backbone, unless the command line names others
        ensure_demo_inputs(
            phantom="phantom_dir" not in overrides, backbone=not {"pretrained", "image_size"} & set(overrides)
        )
    summary = multi_seed(
        args.seeds,
        args.run_name,
        extra_configs=["configs/demo.yaml"] if args.demo else [],
        zero_shot=not args.no_zero_shot,
        command=" ".join(map(shlex.quote, ["python", *sys.argv])),
        **overrides,
    )
    print(open(f"runs/{args.run_name}/summary.md").read() if summary else "")


if __name__ == "__main__":
    main()
