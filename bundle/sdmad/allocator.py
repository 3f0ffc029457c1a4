"""Large CPU buffers kept for reuse instead of handed back to the OS after every batch (glibc's malloc settings).

glibc serves every allocation above its mmap threshold (128 KiB at first, adapting up to 32 MiB) with fresh pages
from the OS and returns them on free. A batch's tensors on a CPU are that large (32 slices of 320²: 13 MB; a
batch of 256: 105 MB), so each batch faults all of its pages in again, 4 KiB at a time, inside the arithmetic:
on this machine `x - 1.0` over 105 MB took 65 ms with fresh pages and 25 ms with reused ones, and the batched slice
preprocessing 47 -> 26 ms (docs/benchmarks.md). Raising the mmap threshold and the trim threshold keeps freed blocks
in the process for the next batch, as MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ or jemalloc would. The
price: a process keeps about its peak memory instead of shrinking between batches.

Hand-written because neither torch nor MONAI sets it. It calls the C library's ``mallopt`` where that is glibc
(Linux); elsewhere (macOS, Windows, musl) nothing changes. The runs call it in `initialize`, and each DataLoader
worker again (sdmad.data.LoaderWorkerInit: workers started by spawn or forkserver inherit nothing). The MONAI Label
server, a long-lived process, leaves it off.
"""

from __future__ import annotations

import ctypes
import logging
import os

__all__ = ["reuse_freed_memory"]

logger = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h); glibc before 2.35 refuses mmap thresholds above 32 MiB on 64-bit systems
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
OLD_GLIBC_LARGEST_MIB = 32


def _glibc_mallopt():
    """The C library's ``mallopt`` where it is glibc, else None."""
    if not hasattr(os, "confstr") or "CS_GNU_LIBC_VERSION" not in os.confstr_names:
        return None
    try:
        return ctypes.CDLL("libc.so.6").mallopt if os.confstr("CS_GNU_LIBC_VERSION") else None
    except (OSError, AttributeError, ValueError):
        return None


def reuse_freed_memory(enabled: bool = True, largest_block_mib: int = 256, keep_mib: int = 1024) -> bool:
    """Serve blocks up to ``largest_block_mib`` (32 on glibc before 2.35) from the process's heap, and return freed
    memory at the heap's top to the OS only beyond ``keep_mib``. Returns whether both settings took effect (False when
    ``enabled`` is false or the C library is not glibc)."""
    mallopt = _glibc_mallopt() if enabled else None
    if mallopt is None:
        return False
    largest = largest_block_mib if mallopt(M_MMAP_THRESHOLD, largest_block_mib << 20) else OLD_GLIBC_LARGEST_MIB
    applied = largest == largest_block_mib or bool(mallopt(M_MMAP_THRESHOLD, largest << 20))
    applied = bool(mallopt(M_TRIM_THRESHOLD, keep_mib << 20)) and applied
    logger.debug("glibc malloc: blocks up to %d MiB from the heap, %d MiB kept: %s", largest, keep_mib, applied)
    return applied
