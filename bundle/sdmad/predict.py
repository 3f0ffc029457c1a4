"""One image, one command: the category table and an overlay PNG from a training run's model.

    python scripts/predict.py IMAGE --run runs/demo [--out prediction/]

IMAGE is a PNG/JPG, a DICOM file, a NIfTI slice or volume, a fastMRI `.h5` or a DICOM series folder. The model's
settings (backbone, adapters, method, categories, sign file) come from the run's `training/model.pt`, which records
them; the backbone weights are found in the bundle's `models/` folder by the identity the run recorded (name, size
and content digest), or given with ``--pretrained``. It runs the bundle's `inference` workflow (one definition of
the model and its preprocessing) with `save_maps` on when the model makes maps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sdmad.checkpoints import (
    RUN_CONFIG_KEY,
    CheckpointError,
    intended_decision_rule,
    read_checkpoint,
    recorded_network,
)
from sdmad.errors import SDMADError
from sdmad.networks.sdmad_network import weights_identity
from sdmad.runs import file_digests

# the run config's "model" keys that are inference.yaml keys of the same name
MODEL_KEYS = (
    "model_name",
    "quick_gelu",
    "image_size",
    "image_adapter_blocks",
    "text_adapter",
    "adapter_bottleneck_ratio",
    "adapter_activation",
    "lam",
)


class PredictError(SDMADError, ValueError):
    """The run folder or the image cannot be used; the message says what to pass instead."""


def find_weights(identity: str | None, bundle_root: Path, pretrained: str | None) -> str:
    """The backbone weights: ``pretrained`` if given, else the file under `models/` whose identity is the run's."""
    if pretrained is not None:
        return pretrained
    if identity is None:
        return "none"
    if not identity.endswith(")"):  # an open_clip tag, recorded as such
        return identity
    for candidate in sorted((bundle_root / "models").glob("*.pt")):
        if weights_identity(str(candidate)) == identity:
            return str(candidate)
    raise PredictError(
        f"the run was trained on the backbone weights '{identity}', and no file in {bundle_root / 'models'} is "
        f"that one: pass it with --pretrained FILE"
    )


def find_sign_file(recorded: dict[str, str], bundle_root: Path) -> str:
    """The run's sign file under `configs/signs/`, checked against the digest the run recorded."""
    ((name, digest),) = recorded.items()
    path = bundle_root / "configs" / "signs" / name
    if not path.is_file() or file_digests([path])[name] != digest:
        raise PredictError(f"{path}: not the sign file the run was trained with (sha256 {digest}…)")
    return str(path)


def inference_overrides(checkpoint: Path, bundle_root: Path, pretrained: str | None) -> dict[str, Any]:
    """The inference config of the model in ``checkpoint`` (its recorded run config)."""
    content = read_checkpoint(checkpoint)
    run_config = content.get(RUN_CONFIG_KEY)
    if not run_config:
        raise PredictError(
            f"{checkpoint}: records no run config (written before they were): use the bundle's inference"
        )
    model = run_config["model"]
    overrides = {key: model[key] for key in MODEL_KEYS}
    overrides.update(
        **recorded_network(content),
        pretrained=find_weights(model["pretrained"], bundle_root, pretrained),
        sign_file=find_sign_file(model["sign_file"], bundle_root),
        categories=run_config["split"]["categories"],
        checkpoint=str(checkpoint),
        decision_rule=intended_decision_rule(content),
    )
    overrides["save_maps"] = overrides["method"] != "sdmad"
    return overrides


def category_table(volume: dict[str, Any]) -> str:
    """The categories by score, with the decision."""
    scores, decisions = volume["scores"], volume["decisions"]
    width = max(len(name) for name in scores)
    lines = [f"{'category':{width}}  score   decision"]
    for name in sorted(scores, key=lambda n: -scores[n]):
        lines.append(f"{name:{width}}  {scores[name]:.3f}   {'present' if decisions[name] else 'absent'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="a PNG/JPG, DICOM file or series folder, NIfTI, or fastMRI .h5")
    parser.add_argument("--run", required=True, help="a training run's folder (runs/<run_name>)")
    parser.add_argument("--out", default=None, help="output folder (default: <run>/predict/<image name>)")
    parser.add_argument("--bundle-root", default=".")
    parser.add_argument("--pretrained", default=None, help="the backbone weights, when not found under models/")
    args = parser.parse_args(argv)
    from sdmad.handlers.inference_writer import file_stem
    from sdmad.workflows import run_workflow

    image, run = Path(args.image), Path(args.run)
    if not image.exists():
        raise PredictError(f"{image}: not found")
    checkpoint = run / "training" / "model.pt"
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: not found; --run takes a training run's folder (runs/<run_name>)")
    root = Path(args.bundle_root)
    out = Path(args.out) if args.out else run / "predict" / file_stem(str(image))
    overrides = inference_overrides(checkpoint, root, args.pretrained)
    run_workflow("inference", root, (), input=str(image), output_dir=str(out), on_error="fail", **overrides)
    predictions = json.loads((out / "predictions.json").read_text())
    for volume in predictions["volumes"]:
        print(f"{volume['source']} ({volume['slices']} slice(s), decisions: {predictions['decision']['rule']})")
        print(category_table(volume))
        for overlay in volume.get("overlays", []):
            print(f"overlay: {overlay}")
        if "maps" in volume:
            print(f"maps:    {volume['maps']}")
    print(f"outputs: {out} ({predictions['note']})")
