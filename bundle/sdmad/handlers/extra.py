"""A handler that attaches a list of handlers: the extension point of a config's handler list.

MONAI's bundle tools read a workflow's `train#handlers` as a list of `_target_` items (ConfigWorkflow's property
checks look there for the ValidationHandler), so the list cannot be an expression that concatenates two lists.
Its last item is this handler, which attaches whatever a layered config puts in `train#extra_handlers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ignite.engine import Engine


class ExtraHandlers:
    """Attach each of ``handlers`` (objects with ``attach(engine)``, as MONAI's handlers) to the engine."""

    def __init__(self, handlers: Sequence[Any] = ()):
        self.handlers = list(handlers)

    def attach(self, engine: Engine) -> None:
        for handler in self.handlers:
            handler.attach(engine)
