"""The model folder a MONAI Deploy app is given (`-m`): the bundle's inference config and weights, self-contained.

    <model folder>/
      configs/inference.yaml      the bundle's, unchanged: network, preprocessing, sign selection, decisions
      configs/metadata.json       the bundle's metadata
      configs/signs/<name>.yaml   the sign file the adapters were trained with
      configs/model.yaml          what this model sets: model_name, pretrained, quick_gelu, image_size,
                                  decision_rule and method (those of the training run), ...
      models/model.pt             the trained Shift Adapters (`model.pt` of a training run)
      models/<weights file>       the CLIP weights, when `pretrained` is a local file (an open_clip tag stays a tag);
                                  its name is kept: the checkpoint's configuration record names it

It is a MONAI bundle in its own right: `python -m monai.bundle run inference --bundle_root <folder>
--config_file "['<folder>/configs/inference.yaml','<folder>/configs/model.yaml']" --input <scans>` gives the
findings the app gives.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from sdmad.calibration import check_decision_rule
from sdmad.checkpoints import (
    CALIBRATION_KEY,
    checkpoint_or_none,
    intended_decision_rule,
    read_checkpoint,
    recorded_network,
)
from sdmad.networks.clip_loading import no_weights

INFERENCE_CONFIG = Path("configs") / "inference.yaml"
MODEL_CONFIG = Path("configs") / "model.yaml"


class ModelFolderError(ValueError):
    """A model folder is incomplete, or cannot be made from what was given; the message says what is missing."""


def make_model_folder(
    out: str | Path,
    bundle_root: str | Path,
    checkpoint: str | Path | None,
    model_name: str,
    pretrained: str,
    quick_gelu: bool | None = None,
    image_size: int | None = None,
    sign_file: str | Path | None = None,
    categories: Sequence[str] | None = None,
    decision_rule: str | None = None,
) -> Path:
    """Write the model folder ``out`` (replacing one already there only once the new one is complete).

    Args:
        bundle_root: the bundle whose `configs/` are copied.
        checkpoint: `model.pt` of a training run; None (or "none") deploys zero-shot CLIP, adapters off.
        model_name, pretrained, quick_gelu, image_size: the backbone, as for `monai.bundle run inference`.
            ``pretrained`` must name weights (a tag or a file): a deployed model never runs on random weights.
        sign_file: default the bundle's `configs/signs/fastmri_brain.yaml`.
        categories: a subset (and order) of the sign file's categories; None: all of them.
        decision_rule: "paper" (Eq. 8) or "calibrated" (the thresholds stored in the checkpoint); None: the rule the
            checkpoint's training run decided with (sdmad.checkpoints.intended_decision_rule).
    """
    bundle_root, out = Path(bundle_root), Path(out)
    if no_weights(pretrained):
        raise ModelFolderError(
            f"pretrained={pretrained!r} means random backbone weights; a deployed model needs an "
            "open_clip tag or a weights file"
        )
    checkpoint = checkpoint_or_none(None if checkpoint is None else str(checkpoint))
    content = read_checkpoint(checkpoint) if checkpoint is not None else {}  # CheckpointError if not a model file
    decision_rule = check_decision_rule(decision_rule or intended_decision_rule(content))
    if decision_rule == "calibrated" and CALIBRATION_KEY not in content:
        raise ModelFolderError(
            f"{checkpoint or 'zero-shot CLIP'}: holds no calibrated thresholds; use "
            "--decision-rule paper, or a model.pt trained with a validation split"
        )
    sign_file = Path(sign_file) if sign_file else bundle_root / "configs" / "signs" / "fastmri_brain.yaml"
    for required in (bundle_root / INFERENCE_CONFIG, sign_file):
        if not required.is_file():
            raise ModelFolderError(f"{required}: not found")

    settings: dict = {
        "model_name": model_name,
        "quick_gelu": quick_gelu,
        "decision_rule": decision_rule,
        "sign_file": f"$@bundle_root + '/configs/signs/{sign_file.name}'",
        "checkpoint": "$@bundle_root + '/models/model.pt'" if checkpoint else None,
        **recorded_network(content),  # the network the checkpoint needs: method (and mvfa_object), image_size
    }
    if image_size is not None:
        settings["image_size"] = int(image_size)
    if categories:
        settings["categories"] = list(categories)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        (staging / "configs" / "signs").mkdir(parents=True)
        (staging / "models").mkdir()
        shutil.copy(bundle_root / INFERENCE_CONFIG, staging / INFERENCE_CONFIG)
        if (bundle_root / "configs" / "metadata.json").is_file():
            shutil.copy(bundle_root / "configs" / "metadata.json", staging / "configs" / "metadata.json")
        shutil.copy(sign_file, staging / "configs" / "signs" / sign_file.name)
        if checkpoint:
            shutil.copy(checkpoint, staging / "models" / "model.pt")
        if Path(pretrained).is_file():
            weights = Path(pretrained).name
            if weights == "model.pt":
                raise ModelFolderError(f"{pretrained}: rename the backbone weights file (model.pt is the adapters')")
            shutil.copy(pretrained, staging / "models" / weights)
            settings["pretrained"] = f"$@bundle_root + '/models/{weights}'"
        else:
            settings["pretrained"] = str(pretrained)  # an open_clip tag, resolved (or refused offline) at start
        header = "# This model's settings over configs/inference.yaml (written by sdmad.deploy.model_folder).\n" + (
            "" if checkpoint else "# checkpoint: null -> zero-shot CLIP (adapters off)\n"
        )
        (staging / MODEL_CONFIG).write_text(header + yaml.safe_dump(settings, sort_keys=False))
        os.chmod(staging, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def model_folder_configs(folder: str | Path) -> list[Path]:
    """The config files of the model in ``folder``, in merge order; a ModelFolderError if it is not one."""
    folder = Path(folder)
    files = [folder / INFERENCE_CONFIG, folder / MODEL_CONFIG]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ModelFolderError(
            f"{folder}: not an SD-MAD model folder (missing {', '.join(missing)}); make one with "
            "scripts/deploy_app/make_model_folder.py"
        )
    return files
