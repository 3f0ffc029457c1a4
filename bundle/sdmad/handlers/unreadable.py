"""Apply the `on_error` policy to the unreadable scans of each batch (see sdmad.data.unreadable)."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events

from sdmad.data.errors import DataError
from sdmad.data.unreadable import ON_ERROR, UNREADABLE_KEY

logger = logging.getLogger(__name__)


class UnreadableScans:
    """In the main process, before each iteration: ``fail`` raises the first unreadable scan's own DataError (its
    message names the file); ``skip`` logs it and keeps it in ``engine.state.sdmad_unreadable`` (errors.csv).

    Args:
        on_error: "skip" or "fail" (resolve "auto" with sdmad.data.error_policy first).
    """

    def __init__(self, on_error: str = "fail"):
        if on_error not in ON_ERROR[1:]:
            raise ValueError(f"on_error must be 'skip' or 'fail' here, got '{on_error}'")
        self.on_error = on_error

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def _reset(self, engine: Engine) -> None:
        engine.state.sdmad_unreadable = []

    def __call__(self, engine: Engine) -> None:
        records = engine.state.batch.pop(UNREADABLE_KEY, []) if isinstance(engine.state.batch, dict) else []
        if records and self.on_error == "fail":
            raise DataError(records[0]["reason"])
        for record in records:
            logger.warning("skipped an unreadable scan: %s", record["reason"])
        engine.state.sdmad_unreadable.extend(records)
