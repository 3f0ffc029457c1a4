"""Checkpoint handlers: atomic periodic checkpoints, resume after a kill, the final model file.

MONAI's CheckpointSaver writes non-atomically (``atomic=False``), so a kill during a save can leave a broken
newest checkpoint; these write through ``sdmad.atomic`` instead. Resuming uses MONAI's CheckpointLoader
(``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import ignite.distributed as idist
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

from sdmad.calibration import Calibrator
from sdmad.checkpoints import save_atomic, save_model, unwrap
from sdmad.engines import patch_memory, prepare_text

logger = logging.getLogger(__name__)
_EPOCH = re.compile(r"checkpoint_epoch=(\d+)\.pt$")


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """The checkpoint of the highest epoch in ``ckpt_dir``, or None."""
    found = [(int(m.group(1)), p) for p in Path(ckpt_dir).glob("checkpoint_epoch=*.pt") if (m := _EPOCH.search(p.name))]
    return max(found)[1] if found else None


class EpochCheckpointSaver:
    """Every ``interval`` epochs, save ``save_dict`` (objects with ``state_dict``) and the engine's own state
    (as "trainer": a config cannot reference the trainer from its own handlers) atomically; keep the last ``keep``.

    On rank 0 only. Files: ``<ckpt_dir>/checkpoint_epoch=<N>.pt``.
    """

    def __init__(self, ckpt_dir: str | Path, save_dict: dict[str, Any], interval: int = 1, keep: int = 1):
        self.ckpt_dir, self.save_dict, self.interval, self.keep = Path(ckpt_dir), dict(save_dict), interval, keep

    def attach(self, engine: Engine) -> None:
        self.save_dict["trainer"] = engine
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
        state = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        save_atomic(state, self.ckpt_dir / f"checkpoint_epoch={engine.state.epoch}.pt")
        for old in sorted(self.ckpt_dir.glob("checkpoint_epoch=*.pt"), key=lambda p: int(_EPOCH.search(p.name)[1]))[
            : -self.keep
        ]:
            old.unlink(missing_ok=True)


class ResumeFromCheckpoint:
    """If ``ckpt_dir`` holds a checkpoint, restore ``load_dict`` from the newest one when the run starts.

    The same training command after a kill thus continues where the last checkpoint left off; a finished run
    re-run does no more epochs. The configured ``max_epochs`` wins over the checkpoint's (to extend a run).
    """

    def __init__(self, ckpt_dir: str | Path, load_dict: dict[str, Any], map_location: Any = "cpu"):
        self.ckpt_dir, self.load_dict, self.map_location = Path(ckpt_dir), dict(load_dict), map_location

    def attach(self, engine: Engine) -> None:
        path = latest_checkpoint(self.ckpt_dir)
        if path is None:
            return
        logger.info("resuming from %s", path)
        CheckpointLoader(
            load_path=str(path),
            load_dict={**self.load_dict, "trainer": engine},
            map_location=self.map_location,
            strict=True,
        ).attach(engine)


class BestModelSaver:
    """On the evaluator: when ``metric_name`` beats every earlier validation, write `model_best.pt` (rank 0), with
    thresholds calibrated on the same validation run's text side.

    Has ``state_dict`` so that the trainer checkpoint keeps the best value across a resume. Validation data choose
    this model; the default model for evaluation stays the last one (docs/method.md).
    """

    def __init__(
        self,
        network: Any,
        path: str | Path,
        metric_name: str,
        calibrator: Calibrator | None = None,
        run_config: dict | None = None,
        support_loader: Any = None,
    ):
        self.network, self.path, self.metric_name = network, Path(path), metric_name
        self.calibrator, self.run_config, self.support_loader = calibrator, run_config, support_loader
        self.best, self.best_epoch = float("-inf"), 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        value = engine.state.metrics.get(self.metric_name)
        if value is None or value != value or value <= self.best:  # None or NaN never wins
            return
        self.best = float(value)
        self.best_epoch = engine.state.epoch  # ValidationHandler runs the evaluator with the trainer's epoch
        if idist.get_rank() == 0:
            network = unwrap(self.network)
            memory = patch_memory(network, self.support_loader, engine.state.device, engine.prepare_batch)
            # thresholds of the scores the saved model will give: with its memory (method mvfa's scores use it)
            previous, network.patch_memory = network.patch_memory, memory
            try:
                calibration = self.calibrator(network, engine.state.sdmad_text) if self.calibrator else None
            finally:
                network.patch_memory = previous
            save_model(self.network, self.path, calibration, self.run_config, memory)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])


class FinalModelSaver:
    """When the run completes, write the adapters, their configuration, the run config and the decision thresholds
    calibrated on the validation split (sdmad.calibration) to ``path`` (`model.pt`), on rank 0.

    Args:
        network: the trained network.
        path: `<run>/training/model.pt`.
        calibrator: computes the calibrated thresholds (None: the model has none).
        run_config: the run's settings, recorded in the file.
        sign_selection, support_loader: the sign selection the thresholds are computed under (as in evaluation);
            the support set's normal slices are also the patch path's few-shot memory.
    """

    def __init__(
        self,
        network: Any,
        path: str | Path,
        calibrator: Calibrator | None = None,
        run_config: dict | None = None,
        sign_selection: str = "distance",
        support_loader: Any = None,
    ):
        self.network, self.path, self.calibrator, self.run_config = network, Path(path), calibrator, run_config
        self.sign_selection, self.support_loader = sign_selection, support_loader

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
        network = unwrap(self.network)
        network.patch_memory = patch_memory(network, self.support_loader, engine.state.device, engine.prepare_batch)
        calibration = None
        if self.calibrator is not None:
            text = prepare_text(
                network, self.sign_selection, self.support_loader, engine.state.device, engine.prepare_batch
            )
            calibration = self.calibrator(network, text)
            network.calibration = calibration
        save_model(self.network, self.path, calibration, self.run_config, network.patch_memory)
        logger.info("final model written to %s", self.path)
