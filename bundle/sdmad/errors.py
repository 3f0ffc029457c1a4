"""Errors a person can act on, and how a command shows them.

Every error the project raises for bad input (a scan, a label CSV, a sign file, a checkpoint, unavailable
weights, a run folder that belongs to other settings) derives from ``SDMADError``; its message names the file
and says what to do. ``python -m monai.bundle run ...`` would print it in the middle of a long chained traceback
(MONAI wraps it in "Failed to evaluate ConfigExpression", Compose in "applying transform"). Importing ``sdmad``
therefore installs an exception hook that, for an uncaught exception whose chain holds an ``SDMADError`` (or a
full disk), prints only ``sdmad: error: <message>`` as the last line. ``SDMAD_DEBUG=1`` (or ``--debug`` on the
command line) keeps the full traceback. Other exceptions (bugs) keep Python's traceback.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterator
from types import TracebackType

DEBUG_VARIABLE = "SDMAD_DEBUG"
PREFIX = "sdmad: error: "


class SDMADError(Exception):
    """Base of the project's errors about input, files and settings; the message names the file and the fix."""


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """An exception and its causes and contexts, each once."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        yield error
        seen.add(id(error))
        error = error.__cause__ or error.__context__


def project_error(error: BaseException | None) -> SDMADError | None:
    """The first ``SDMADError`` in an exception's chain (its causes and contexts), or None."""
    return next((link for link in _chain(error) if isinstance(link, SDMADError)), None)


def disk_full_message(error: BaseException | None) -> str | None:
    """A full disk or quota anywhere in the chain (``OSError`` ENOSPC or EDQUOT) as one line naming the file (h5py
    names it only inside its message), or None. Not a project error: a folder that skips unreadable scans must stop
    at a full disk, not skip every scan after it."""
    for link in _chain(error):
        if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EDQUOT):
            named = re.search(r"filename = '([^']+)'", str(link))
            where = link.filename or (named.group(1) if named else "a file being written")
            advice = "free some space (or write to another disk) and run the command again"
            return f"{where}: {os.strerror(link.errno).lower()}: {advice}"
    return None


def one_line(error: BaseException) -> str:
    """The message as one line (a DataLoader worker may add its traceback text below it)."""
    return " ".join(str(error).split())


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").lower() not in ("", "0", "false", "no") or "--debug" in sys.argv


def readable_excepthook(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None, fallback=sys.__excepthook__
) -> None:
    """Print a project error as one last line; anything else (or with debugging on) as Python would."""
    cause = project_error(error)
    message = one_line(cause) if cause is not None else disk_full_message(error)
    if message is None or debugging():
        fallback(kind, error, traceback)
        return
    sys.stderr.flush()
    print(f"(the full traceback: set {DEBUG_VARIABLE}=1)", file=sys.stderr)
    print(PREFIX + message, file=sys.stderr)


def install_readable_errors() -> None:
    """Make ``readable_excepthook`` the process's exception hook, keeping the current one for other errors."""
    current = sys.excepthook
    if getattr(current, "__name__", "") == "_sdmad_hook":
        return

    def _sdmad_hook(kind, error, traceback):
        readable_excepthook(kind, error, traceback, fallback=current)

    sys.excepthook = _sdmad_hook
