"""SD-MAD checkpoints: adapter weights plus the configuration they belong to, written atomically.

A model file (`model.pt`) is ``{"network": <adapter state dict>, "sdmad": <config record>}``; a training
checkpoint adds the optimizer and trainer states. Loading uses ``torch.load(weights_only=True)``: both hold only
tensors and plain Python values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdmad.atomic import atomic_path

RECORD_KEY = "sdmad"


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable, or belongs to another configuration; the message says which and why."""


def save_atomic(content: Any, path: str | Path) -> None:
    """``torch.save`` atomically (see sdmad.atomic)."""
    with atomic_path(path) as temporary:
        torch.save(content, temporary)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file (weights only) or raise a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, not a torch file, unsafe pickle: all mean "not a usable checkpoint"
        raise CheckpointError(f"{path}: not a readable SD-MAD checkpoint (corrupt, truncated or another format): "
                              f"{type(err).__name__}: {err}") from err
    if not isinstance(content, dict) or "network" not in content or RECORD_KEY not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise CheckpointError(f"{path}: not an SD-MAD checkpoint (expected 'network' and '{RECORD_KEY}', got {keys})")
    return content


def mismatches(expected: dict, found: dict) -> list[str]:
    """Readable differences between two configuration records."""
    return [f"{key}: checkpoint {found.get(key)!r} vs config {expected.get(key)!r}"
            for key in sorted(set(expected) | set(found)) if expected.get(key) != found.get(key)]


class ConfigRecord:
    """The network's configuration as a checkpoint entry: saved with the weights, compared when loaded.

    It has ``state_dict``/``load_state_dict`` so that MONAI's and Ignite's checkpoint handlers store and check it
    like any other object of a checkpoint.
    """

    def __init__(self, network: nn.Module, source: str = "checkpoint"):
        self.network, self.source = network, source

    def state_dict(self) -> dict:
        return _unwrap(self.network).config_record()

    def load_state_dict(self, found: dict) -> None:
        differences = mismatches(self.state_dict(), found)
        if differences:
            raise CheckpointError(f"{self.source} belongs to another configuration: " + "; ".join(differences))


def _unwrap(network: nn.Module) -> nn.Module:
    return network.module if hasattr(network, "module") else network


def checkpoint_or_none(value: str | Path | None) -> str | None:
    """A checkpoint path, or None for "none"/"null"/"" (the command line cannot pass None: MONAI drops it)."""
    return None if value is None or str(value).strip().lower() in ("", "none", "null") else str(value)


def load_or_bypass(network: nn.Module, checkpoint: str | Path | None) -> None:
    """Load the checkpoint's adapters, or without one set the adapters to identity: zero-shot CLIP."""
    checkpoint = checkpoint_or_none(checkpoint)
    _unwrap(network).bypass_adapters(checkpoint is None)
    if checkpoint is not None:
        load_model(network, checkpoint)


def save_model(network: nn.Module, path: str | Path) -> None:
    """Write the adapters and their configuration record as `model.pt`, atomically."""
    save_atomic({"network": _unwrap(network).state_dict(), RECORD_KEY: ConfigRecord(network).state_dict()}, path)


def load_model(network: nn.Module, path: str | Path) -> None:
    """Load `model.pt` (or a training checkpoint) into ``network`` after checking its configuration.

    Raises:
        CheckpointError: unreadable file, another configuration, or adapter weights that do not fit.
    """
    content = read_checkpoint(path)
    ConfigRecord(network, source=str(path)).load_state_dict(content[RECORD_KEY])
    try:
        _unwrap(network).load_state_dict(content["network"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: adapter weights do not fit this network: {err}") from err
