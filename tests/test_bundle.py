"""The bundle as a user runs it: MONAI's verify_net_in_out and the network summary of `make demo`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("config_file, extra", [
    ("configs/inference.yaml", []),
    ("['configs/inference.yaml','configs/demo.yaml']", ["--pretrained", "none"]),
], ids=["paper_model_random_weights", "tiny_model"])
def test_verify_net_in_out(config_file, extra):
    result = run("-m", "monai.bundle", "verify_net_in_out", "network_def", "--meta_file", "configs/metadata.json",
                 "--config_file", config_file, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data shape of network is verified with no error" in result.stdout + result.stderr


def test_metadata_channels_match_the_sign_file():
    metadata = json.loads((REPO_ROOT / "metadata.json").read_text())
    from sdmad.signs import load_sign_file

    signs = load_sign_file(REPO_ROOT / "configs" / "signs" / "fastmri_brain.yaml")
    channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert [channel_def[str(i)] for i in range(len(channel_def))] == signs.category_names
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == [240, 240]
    assert metadata["version"] in metadata["changelog"]


def test_network_summary_prints_facts_of_the_built_network():
    result = run("scripts/network_summary.py", "--config_file", "configs/inference.yaml", "configs/demo.yaml",
                 "--override", "lam=0.8", "pretrained=none")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "sdmad-tiny, weights: none" in out
    assert "12 x 12 patches, 4 blocks of width 128" in out
    assert "image adapters     on blocks [1, 2, 3, 4] (1-based), lambda 0.8, bottleneck 64, LeakyReLU" in out
    assert "81,920 trainable" in out
    assert "(2, 6) per-category scores" in out
