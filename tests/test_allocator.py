"""glibc keeps a batch-sized freed block in the process for the next batch once reuse_freed_memory ran, and hands
it back to the OS without it: in a fresh process (malloc settings are process-wide) and in a DataLoader worker
started by spawn, which inherits nothing; every run sets it up."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from malloc_probe import FreedBlockKept
from monai.bundle import ConfigParser
from monai.data import DataLoader
from sdmad.data import LoaderWorkerInit

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


@glibc_only
def test_freed_batches_stay_in_the_process_for_reuse():
    def probe(setting: str) -> list[str]:
        command = [sys.executable, str(Path(__file__).with_name("malloc_probe.py")), setting]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()

    assert probe("on") == ["True", "False", "True"]
    assert probe("off") == ["False", "True", "False"]  # glibc's default: mmap'd, and returned on free


@glibc_only
def test_spawned_loader_workers_set_it_up_themselves():
    loader = DataLoader(
        FreedBlockKept(), num_workers=1, multiprocessing_context="spawn", worker_init_fn=LoaderWorkerInit(0)
    )
    assert [bool(kept) for kept in loader] == [True]


@pytest.mark.parametrize("run", [[], ["train.yaml"], ["evaluate.yaml"], ["train.yaml", "multi_gpu.yaml"]])
def test_every_run_sets_it_up(run):
    parser = ConfigParser()
    parser.read_config([str(REPO_ROOT / "configs" / name) for name in ["inference.yaml", "common.yaml", *run]])
    assert "$sdmad.allocator.reuse_freed_memory(@reuse_freed_memory)" in parser["initialize"]
    assert parser["reuse_freed_memory"] is True
