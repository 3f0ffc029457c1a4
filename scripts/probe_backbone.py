"""How much a backbone's frozen image features separate the categories: a nearest-centroid probe on a run's split.

    python scripts/probe_backbone.py --splits runs/phantom_benchmark/seed0/training/splits.json --demo

It uses the run's few-shot items as centroids and its test (or validation) split for AUROC; no adapters, no
text prompts.
"""

from __future__ import annotations

import argparse
import json

from monai.bundle import ConfigParser
from sdmad.tools.probe import nearest_centroid_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", required=True, help="splits.json of a training run")
    parser.add_argument("--demo", action="store_true", help="layer configs/demo.yaml (the tiny phantom backbone)")
    parser.add_argument("--pretrained", help="override the backbone weights")
    parser.add_argument("--split", default="test", choices=("val", "test"), help="compare recipes on val only")
    args = parser.parse_args()
    config = ConfigParser()
    config.read_config(["configs/inference.yaml"] + (["configs/demo.yaml"] if args.demo else []))
    if args.pretrained:
        config["pretrained"] = args.pretrained
    result = nearest_centroid_probe(config.get_parsed_content("network_def"), args.splits, split=args.split)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
