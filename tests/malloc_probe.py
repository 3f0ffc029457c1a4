"""What glibc does with a freed batch-sized block (tests/test_allocator.py), importable without the test suite's
fixtures by a fresh process and a spawned DataLoader worker."""

from __future__ import annotations

import ctypes

import torch

BLOCK = 24 << 20  # above glibc's default mmap threshold, under the 32 MiB that every glibc accepts as a setting


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def allocate_and_free() -> tuple[bool, bool]:
    """(the block came as fresh pages from the OS, its memory stayed in the process once freed)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    block = torch.ones(BLOCK, dtype=torch.uint8)
    mapped = libc.mallinfo2().hblkhd >= BLOCK
    del block
    return mapped, libc.mallinfo2().fordblks >= BLOCK


class FreedBlockKept(torch.utils.data.Dataset):
    """One item: whether a freed block stayed in the worker that made it."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> bool:
        return allocate_and_free()[1]


if __name__ == "__main__":  # python malloc_probe.py on|off
    import sys

    from sdmad.allocator import reuse_freed_memory

    print(reuse_freed_memory(enabled=sys.argv[1] == "on"), *allocate_and_free())
