"""A progress bar over epochs (ignite's ProgressBar), showing the loss: few-shot epochs are a single batch."""

from __future__ import annotations

from ignite.contrib.handlers import ProgressBar
from ignite.engine import Engine, Events


class EpochProgressBar:
    """tqdm bar advancing once per epoch with the last loss; on rank 0 (ignite's ProgressBar handles that)."""

    def __init__(self, desc: str = "training"):
        self.desc = desc

    def attach(self, engine: Engine) -> None:
        bar = ProgressBar(persist=True, desc=self.desc)
        bar.attach(
            engine,
            output_transform=lambda output: {"loss": float(output["loss"])},
            event_name=Events.EPOCH_COMPLETED,
            closing_event_name=Events.COMPLETED,
        )
