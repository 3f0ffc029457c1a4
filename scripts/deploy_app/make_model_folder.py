"""Make the model folder the MONAI Deploy app reads (`-m`): the bundle's inference config plus the weights.

    python scripts/deploy_app/make_model_folder.py --checkpoint runs/sdmad/training/model.pt \
        --model-name ViT-L-14-336 --pretrained openai --out models/deploy

The layout is in bundle/sdmad/deploy/model_folder.py and docs/deploy.md. Runs in the core environment.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdmad.deploy.model_folder import make_model_folder

BUNDLE_ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="model.pt of a training run, or none for zero-shot CLIP")
    parser.add_argument("--model-name", default="ViT-L-14-336")
    parser.add_argument("--pretrained", required=True, help="an open_clip tag (e.g. openai) or a weights file")
    parser.add_argument(
        "--quick-gelu",
        choices=("true", "false"),
        default=None,
        help="set when --pretrained is a file (true for OpenAI weights)",
    )
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--sign-file", default=None, help="default configs/signs/fastmri_brain.yaml")
    parser.add_argument("--categories", nargs="*", default=None)
    parser.add_argument(
        "--decision-rule",
        choices=("paper", "calibrated"),
        default=None,
        help="default: the rule the checkpoint's training run decided with (docs/method.md)",
    )
    parser.add_argument("--out", default="models/deploy")
    args = parser.parse_args()
    folder = make_model_folder(
        args.out,
        BUNDLE_ROOT,
        args.checkpoint,
        args.model_name,
        args.pretrained,
        None if args.quick_gelu is None else args.quick_gelu == "true",
        args.image_size,
        args.sign_file,
        args.categories,
        args.decision_rule,
    )
    print(f"model folder: {folder}")


if __name__ == "__main__":
    main()
