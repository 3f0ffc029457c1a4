"""glibc keeps a batch-sized freed block in the process for the next batch once reuse_freed_memory ran, and hands
it back to the OS without it (each case in its own process: malloc settings are process-wide)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from monai.bundle import ConfigParser

PROBE = """
import ctypes, sys, torch
from sdmad.allocator import reuse_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                      "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = reuse_freed_memory(enabled=sys.argv[1] == "on")
batch = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, like a CPU batch of 160 slices of 320² in float32
mapped = libc.mallinfo2().hblkhd >= 64 << 20     # fresh pages from the OS (mmap)
del batch
kept = libc.mallinfo2().fordblks >= 64 << 20     # freed, still in the process
print(applied, mapped, kept)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_batches_stay_in_the_process_for_reuse():
    def probe(setting: str) -> str:
        result = subprocess.run([sys.executable, "-c", PROBE, setting], capture_output=True, text=True, check=True)
        return result.stdout.split()

    assert probe("on") == ["True", "False", "True"]
    assert probe("off") == ["False", "True", "False"]  # glibc's default: mmap'd, and returned on free


@pytest.mark.parametrize("run", [[], ["train.yaml"], ["evaluate.yaml"], ["train.yaml", "multi_gpu.yaml"]])
def test_every_run_sets_it_up(run):
    parser = ConfigParser()
    parser.read_config([str(REPO_ROOT / "configs" / name) for name in ["inference.yaml", "common.yaml", *run]])
    assert "$sdmad.allocator.reuse_freed_memory(@reuse_freed_memory)" in parser["initialize"]
    assert parser["reuse_freed_memory"] is True
