"""The bundle as a user runs it: MONAI's verify_net_in_out and the network summary of `make demo`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from sdmad.workflows import config_files


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "config_file, extra",
    [
        # the paper's ViT-L (13 s on 2 cores; its build and adapter blocks are checked in the default run by
        # test_network.py::test_paper_model_at_240px_builds_with_adapters_on_the_right_blocks)
        pytest.param("configs/inference.yaml", [], marks=pytest.mark.slow),
        # the tiny model at the metadata's 240 px (the demo runs it at 180)
        ("['configs/inference.yaml','configs/demo.yaml']", ["--pretrained", "none", "--image_size", "240"]),
    ],
    ids=["paper_model_random_weights", "tiny_model"],
)
def test_verify_net_in_out(config_file, extra):
    result = run(
        "-m",
        "monai.bundle",
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        config_file,
        *extra,
    )
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
    result = run(
        "scripts/network_summary.py",
        "--config_file",
        "configs/inference.yaml",
        "configs/demo.yaml",
        "--override",
        "lam=0.8",
        "pretrained=none",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "sdmad-tiny, weights: none" in out
    assert "3 x 180 x 180 -> 9 x 9 patches, 4 blocks of width 128" in out  # the demo's size
    assert "image adapters     on blocks [1, 2, 3, 4] (1-based), lambda 0.8, bottleneck 64, LeakyReLU" in out
    assert "81,920 trainable" in out  # the Shift Adapters; the patch heads train in stage 2 (demo: sdmad+mvfa)
    assert "patch heads        method sdmad+mvfa: on blocks [1, 2, 3, 4], 128 -> 128 -> 128" in out
    assert "131,072 parameters (stage 2)" in out
    assert "(2, 6) per-category scores" in out


@pytest.mark.parametrize(
    "workflow_type, configs",
    [
        ("infer", ["configs/inference.yaml"]),
        ("train", config_files("training", ".", ["configs/demo.yaml"])),
    ],
)
def test_configs_have_every_monai_bundle_property(workflow_type, configs, phantom_dir, tmp_path):
    """As the model zoo's CI checks: generic bundle tools find the ids they expect (monai.bundle.properties)."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(REPO_ROOT / c) for c in configs],
        meta_file=str(REPO_ROOT / "configs" / "metadata.json"),
        logging_file=str(REPO_ROOT / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(REPO_ROOT),
        pretrained="none",
        checkpoint="none",
        output_root=str(tmp_path),
        phantom_dir=str(phantom_dir),
        dataset_dir=str(phantom_dir / "h5"),
        fastmri_plus_dir=str(phantom_dir / "fastmri_plus"),
        model_name="sdmad-tiny",
        shots=1,
        study_level="all_slices",
    )
    workflow.initialize()
    assert not workflow.check_properties()
    assert workflow.dataset_dir == str(phantom_dir / "h5") and workflow.bundle_root == str(REPO_ROOT)


def test_the_configs_preprocessing_is_scan_transforms():
    from monai.bundle import ConfigParser
    from sdmad.data import scan_transforms

    parser = ConfigParser()
    parser.read_config(str(REPO_ROOT / "configs" / "inference.yaml"))
    configured = parser.get_parsed_content("preprocessing").transforms
    assert [type(t) for t in configured] == [type(t) for t in scan_transforms().transforms]
