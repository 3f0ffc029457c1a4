"""The bundle's workflows and the config files each one layers: the one table that the MONAI Label app, the
demo, the multi-seed benchmark and the tests use (the README's commands spell the same lists)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.bundle import run as run_bundle

WORKFLOW_CONFIGS = {
    "training": ("configs/inference.yaml", "configs/common.yaml", "configs/train.yaml"),
    "evaluating": ("configs/inference.yaml", "configs/common.yaml", "configs/evaluate.yaml"),
    "inference": ("configs/inference.yaml", "configs/common.yaml"),
}


def config_files(workflow: str, bundle_root: str | Path = ".", extra_configs: Sequence[str] = ()) -> list[str]:
    """The config files of ``workflow`` under ``bundle_root``, then ``extra_configs`` (relative to it too)."""
    if workflow not in WORKFLOW_CONFIGS:
        raise ValueError(f"unknown workflow '{workflow}': one of {sorted(WORKFLOW_CONFIGS)}")
    root = Path(bundle_root)
    return [str(root / name) for name in (*WORKFLOW_CONFIGS[workflow], *extra_configs)]


def run_workflow(
    workflow: str, bundle_root: str | Path = ".", extra_configs: Sequence[str] = (), **overrides: Any
) -> float:
    """Run ``python -m monai.bundle run <workflow>`` in this process; returns the seconds it took."""
    start = time.perf_counter()
    run_bundle(
        run_id=workflow,
        config_file=config_files(workflow, bundle_root, extra_configs),
        bundle_root=str(bundle_root),
        **overrides,
    )
    return time.perf_counter() - start
