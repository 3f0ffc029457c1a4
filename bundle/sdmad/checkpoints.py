"""SD-MAD checkpoints: adapter weights plus the configuration they belong to, written atomically.

A model file (`model.pt`) is ``{"network": <adapter state dict>, "sdmad": <config record>}`` plus, when
training made them, ``"calibration"`` (the calibrated decision thresholds, sdmad.calibration),
``"run_config"`` (the settings of the run that trained it) and, for the patch path, ``"patch_memory"`` (the
few-shot normal patch features per level, sdmad.networks.patch_path); a training checkpoint adds the optimizer, trainer
and run config. Loading uses ``torch.load(weights_only=True)``: both hold only
tensors and plain Python values.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdmad.atomic import atomic_path
from sdmad.calibration import Calibration
from sdmad.errors import SDMADError

FULL_DISK_BYTES = 2**20  # a failed save with less free space than this was a full disk

RECORD_KEY = "sdmad"
CALIBRATION_KEY = "calibration"
RUN_CONFIG_KEY = "run_config"
MEMORY_KEY = "patch_memory"


class CheckpointError(SDMADError, RuntimeError):
    """A checkpoint is unreadable, or belongs to another configuration; the message says which and why."""


def save_atomic(content: Any, path: str | Path) -> None:
    """``torch.save`` atomically (see sdmad.atomic). On a full disk torch only says "unexpected pos": that is raised
    as the full disk it is (``OSError`` ENOSPC naming ``path``)."""
    with atomic_path(path) as temporary:
        try:
            torch.save(content, temporary)
        except RuntimeError as error:
            if shutil.disk_usage(Path(temporary).parent).free < FULL_DISK_BYTES:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
            raise


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file (weights only) or raise a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found; pass the model.pt of a training run (--checkpoint) or "
            f"none for zero-shot CLIP"
        )
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights-only loading met a pickled object it will not run
        raise CheckpointError(
            f"{path}: holds pickled Python objects, which weights-only loading refuses (a checkpoint "
            f"may run code when unpickled); use a model.pt written by SD-MAD training"
        ) from err
    except Exception as err:  # truncated zip, not a torch file: all mean "not a usable checkpoint"
        raise CheckpointError(
            f"{path}: not a readable SD-MAD checkpoint (corrupt, truncated or another format: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); use a "
            f"model.pt written by SD-MAD training"
        ) from err
    if not isinstance(content, dict) or "network" not in content or RECORD_KEY not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise CheckpointError(f"{path}: not an SD-MAD checkpoint (expected 'network' and '{RECORD_KEY}', got {keys})")
    return content


def mismatches(expected: dict, found: dict) -> list[str]:
    """Readable differences between two configuration records."""
    return [
        f"{key}: checkpoint {found.get(key)!r} vs config {expected.get(key)!r}"
        for key in sorted(set(expected) | set(found))
        if expected.get(key) != found.get(key)
    ]


class ConfigRecord:
    """The network's configuration as a checkpoint entry: saved with the weights, compared when loaded.

    It has ``state_dict``/``load_state_dict`` so that MONAI's and Ignite's checkpoint handlers store and check it
    like any other object of a checkpoint.
    """

    def __init__(self, network: nn.Module, source: str = "checkpoint"):
        self.network, self.source = network, source

    def state_dict(self) -> dict:
        return unwrap(self.network).config_record()

    def load_state_dict(self, found: dict) -> None:
        differences = mismatches(self.state_dict(), found)
        if differences:
            raise CheckpointError(f"{self.source} belongs to another configuration: " + "; ".join(differences))


def unwrap(network: nn.Module) -> nn.Module:
    """The SDMADNetwork inside a DistributedDataParallel (or any ``.module``) wrapper."""
    return network.module if hasattr(network, "module") else network


def intended_decision_rule(content: dict) -> str:
    """The rule a model file is meant to decide with: its training run's `decision_rule` when it also holds the
    calibrated thresholds, else Eq. 8 ("paper")."""
    rule = content.get(RUN_CONFIG_KEY, {}).get("training", {}).get("decision_rule", "paper")
    return "calibrated" if rule == "calibrated" and CALIBRATION_KEY in content else "paper"


def recorded_network(content: dict) -> dict[str, Any]:
    """The network a model file was trained with, as inference overrides: ``method`` (files made before methods
    were named: "sdmad"), for mvfa its ``mvfa_object``, and its ``image_size`` when recorded: what an app must
    build to load it."""
    model = content.get(RUN_CONFIG_KEY, {}).get("model", {})
    settings: dict[str, Any] = {"method": model.get("method", "sdmad")}
    for key in ("mvfa_object", "image_size"):
        if model.get(key) is not None:
            settings[key] = model[key]
    return settings


def checkpoint_or_none(value: str | Path | None) -> str | None:
    """A checkpoint path, or None for "none"/"null"/"" (the command line cannot pass None: MONAI drops it)."""
    return None if value is None or str(value).strip().lower() in ("", "none", "null") else str(value)


def load_or_bypass(network: nn.Module, checkpoint: str | Path | None) -> None:
    """Load the checkpoint's adapters, or without one set the adapters to identity: zero-shot CLIP."""
    checkpoint = checkpoint_or_none(checkpoint)
    unwrap(network).bypass_adapters(checkpoint is None)
    if checkpoint is None:
        unwrap(network).checkpoint, unwrap(network).calibration, unwrap(network).patch_memory = None, None, None
    else:
        load_model(network, checkpoint)


def save_model(
    network: nn.Module,
    path: str | Path,
    calibration: Calibration | None = None,
    run_config: dict | None = None,
    patch_memory: list[torch.Tensor] | None = None,
) -> None:
    """Write the adapters and their configuration record as `model.pt`, atomically, with the calibrated
    thresholds, the run config and the few-shot patch memory when given."""
    content = {"network": unwrap(network).state_dict(), RECORD_KEY: ConfigRecord(network).state_dict()}
    if calibration is not None:
        content[CALIBRATION_KEY] = calibration.to_dict()
    if run_config is not None:
        content[RUN_CONFIG_KEY] = run_config
    if patch_memory is not None:
        content[MEMORY_KEY] = [level.detach().cpu() for level in patch_memory]
    save_atomic(content, path)


def load_model(network: nn.Module, path: str | Path) -> None:
    """Load `model.pt` (or a training checkpoint) into ``network`` after checking its configuration.

    Raises:
        CheckpointError: unreadable file, another configuration, or adapter weights that do not fit.
    """
    content = read_checkpoint(path)
    ConfigRecord(network, source=str(path)).load_state_dict(content[RECORD_KEY])
    try:
        unwrap(network).load_state_dict(content["network"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: adapter weights do not fit this network: {err}") from err
    calibration = content.get(CALIBRATION_KEY)
    unwrap(network).checkpoint = str(path)
    unwrap(network).calibration = Calibration.from_dict(calibration) if calibration else None
    memory = content.get(MEMORY_KEY)
    device = unwrap(network).sign_states.device
    unwrap(network).patch_memory = [level.to(device) for level in memory] if memory else None
