"""DataLoader workers that yield the CPU to the process running the model.

The workers only decode, orient and cut slices; the process that runs the model (and, on a CPU, the batched slice
preprocessing with all of torch's threads) is the one the run waits for. At equal priority, two busy workers on a
two-core machine preempt torch's threads in the middle of each parallel operation, and every thread of it then
waits for the one preempted: end to end on two cores went from 39 % to 45 % of the model-only figure when the
workers ran at nice 19 (docs/benchmarks.md). The workers still get every cycle the model's process leaves idle,
and they run ahead by `prefetch_factor` batches. On a machine shared with other busy processes of normal priority,
nice-19 workers get little CPU time: set `worker_nice: 0` there.
"""

from __future__ import annotations

import os

from monai.data.utils import worker_init_fn as monai_worker_init_fn

from sdmad.allocator import reuse_freed_memory

__all__ = ["LoaderWorkerInit"]


class LoaderWorkerInit:
    """A DataLoader's ``worker_init_fn``: MONAI's (each worker's own seed for random transforms), then the worker's
    CPU priority lowered by ``nice`` (Unix nice increment, 0 to 19; 0 leaves it; ignored where the OS has no nice)
    and, with ``reuse_memory``, sdmad.allocator's settings (whatever the start method).

    A class, not a closure, so that it pickles for spawned workers.
    """

    def __init__(self, nice: int = 19, reuse_memory: bool = True):
        if not isinstance(nice, int) or not 0 <= nice <= 19:
            raise ValueError(
                f"worker nice must be a whole number from 0 (unchanged) to 19 (lowest priority), got {nice}"
            )
        self.nice, self.reuse_memory = nice, reuse_memory

    def __call__(self, worker_id: int) -> None:
        monai_worker_init_fn(worker_id)
        if self.nice and hasattr(os, "nice"):
            os.nice(self.nice)
        reuse_freed_memory(self.reuse_memory)
