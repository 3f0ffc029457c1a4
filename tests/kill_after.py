"""Test helper: a handler that kills its own process (SIGKILL, no clean-up) after a given epoch."""

import os
import signal

from ignite.engine import Engine, Events


class KillAfterEpoch:
    def __init__(self, epoch: int):
        self.epoch = epoch

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(
            Events.EPOCH_COMPLETED(once=self.epoch), lambda _: os.kill(os.getpid(), signal.SIGKILL)
        )
