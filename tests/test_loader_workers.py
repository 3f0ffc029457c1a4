"""DataLoader workers run at a lower CPU priority and keep MONAI's per-worker seeding; the configs use them."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import REPO_ROOT
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset
from monai.transforms import RandGaussianNoise
from sdmad.data import LoaderWorkerInit


class Niceness(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return os.nice(0)  # an increment of 0 returns the process's niceness


def read_in_workers(dataset, worker_init_fn) -> list:
    loader = DataLoader(dataset, batch_size=1, num_workers=1, worker_init_fn=worker_init_fn)
    return [batch for batch in loader]


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no nice on this OS")
def test_workers_run_at_the_lower_priority_asked_for():
    here = os.nice(0)
    assert [int(b) for b in read_in_workers(Niceness(), LoaderWorkerInit(19))] == [min(19, here + 19)] * 2
    assert [int(b) for b in read_in_workers(Niceness(), LoaderWorkerInit(0))] == [here] * 2
    with pytest.raises(ValueError, match="0 .* to 19"):
        LoaderWorkerInit(-5)


def test_random_transforms_are_seeded_as_monai_seeds_them():
    """The same noise as with MONAI's own worker_init_fn (each worker's seed), not the parent's random state."""
    dataset = Dataset([torch.zeros(1, 4, 4)] * 2, transform=RandGaussianNoise(prob=1.0))
    torch.manual_seed(3)
    ours = read_in_workers(dataset, LoaderWorkerInit(19))
    torch.manual_seed(3)
    monai_own = [batch for batch in DataLoader(dataset, batch_size=1, num_workers=1)]
    assert all(torch.equal(a, b) for a, b in zip(ours, monai_own, strict=True))
    assert not torch.equal(ours[0], ours[1])


@pytest.mark.parametrize("config, loader", [("inference.yaml", "dataloader"), ("evaluate.yaml", "evaluate#dataloader")])
def test_configs_lower_their_workers_priority(config, loader):
    parser = ConfigParser()
    parser.read_config([str(REPO_ROOT / "configs" / name) for name in ("inference.yaml", "common.yaml", config)])
    assert parser[loader]["worker_init_fn"] == "$sdmad.data.LoaderWorkerInit(@worker_nice, @reuse_freed_memory)"
    assert parser["worker_nice"] == 19
