"""Handler lists: a handler that attaches a list of handlers (the extension point of a config's handler list), and
the handlers one process of a multi-GPU run attaches.

MONAI's bundle tools read a workflow's `train#handlers` as a list of `_target_` items (ConfigWorkflow's property
checks look there for the ValidationHandler), so the list cannot be an expression that concatenates two lists.
Its last item is this handler, which attaches whatever a layered config puts in `train#extra_handlers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ignite.distributed as idist
from ignite.engine import Engine
from monai.handlers import MLFlowHandler, StatsHandler, TensorBoardStatsHandler

LOGGING_HANDLERS = (StatsHandler, TensorBoardStatsHandler, MLFlowHandler)


class ExtraHandlers:
    """Attach each of ``handlers`` (objects with ``attach(engine)``, as MONAI's handlers) to the engine."""

    def __init__(self, handlers: Sequence[Any] = ()):
        self.handlers = list(handlers)

    def attach(self, engine: Engine) -> None:
        for handler in self.handlers:
            handler.attach(engine)


def for_this_rank(handlers: Sequence[Any]) -> list[Any]:
    """``handlers`` on rank 0; on the other ranks without the logging handlers (console stats, TensorBoard, MLflow,
    also inside ``ExtraHandlers``), which would print every line once per process and write to the same files. As
    the model zoo's multi-GPU configs do; the checkpoint, report and progress handlers check the rank themselves, the
    others must run everywhere."""
    if idist.get_rank() == 0:
        return list(handlers)
    kept = []
    for handler in handlers:
        if isinstance(handler, ExtraHandlers):
            handler = ExtraHandlers(for_this_rank(handler.handlers))
        if not isinstance(handler, LOGGING_HANDLERS):
            kept.append(handler)
    return kept
