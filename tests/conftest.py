"""Shared fixtures: a small sign set and tiny SD-MAD networks (random weights, CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from sdmad.networks import SDMADNetwork
from sdmad.signs import SignSet
from sdmad.workflows import config_files

REPO_ROOT = Path(__file__).resolve().parents[1]
FASTMRI_PLUS = REPO_ROOT / "tests" / "data" / "fastmri_plus"  # the real fastMRI+ label files (MIT, README beside)


@pytest.fixture
def small_signs() -> SignSet:
    return SignSet(
        task="test",
        normal=("a normal brain MRI", "a brain MRI with no finding"),
        categories=(
            ("Lesion", ("a brain MRI with a focal lesion", "a bright spot in the brain")),
            ("Ventricles", ("enlarged ventricles",)),
            ("Skull", ("a gap in the skull", "a craniotomy defect", "a bone flap")),
        ),
    )


def clip_ready(items: list[dict], image_size: int = 240) -> torch.Tensor:
    """``scan_transforms`` slice items -> `[B, 3, S, S]` CLIP inputs, as the engines' ``prepare_batch`` makes them."""
    from sdmad.data import CLIPInput, PrepareSlices, collate_slices

    return PrepareSlices(CLIPInput(image_size))(collate_slices(items), "cpu")[0]


def build_tiny(signs: SignSet, seed: int = 0, **kwargs) -> SDMADNetwork:
    torch.manual_seed(seed)
    return SDMADNetwork(signs, model_name="sdmad-tiny", **kwargs)


def randomize_adapters(network: SDMADNetwork, seed: int = 1, scale: float = 0.5) -> None:
    """Give the adapters weights large enough that they change every feature noticeably."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


@pytest.fixture
def tiny_network(small_signs) -> SDMADNetwork:
    return build_tiny(small_signs)


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """A small phantom data set in every format, generated once per test session (about a second)."""
    from sdmad.tools.phantom import make_phantom_dataset

    out = tmp_path_factory.mktemp("phantom")
    make_phantom_dataset(
        out,
        volumes_per_category=2,
        normal_volumes=4,
        multi_label_volumes=2,
        size=64,
        num_slices=12,
        kspace_volumes=2,
        seed=0,
    )
    return out


def trained_tiny_model(folder: Path, method: str = "sdmad") -> tuple[Path, Path]:
    """A fixed random tiny backbone file and an SD-MAD `model.pt` of ``method`` with random adapters for it (the
    shipped sign file), as `monai.bundle run inference` builds the network: (backbone, checkpoint)."""
    from monai.bundle import ConfigParser
    from sdmad.checkpoints import save_model
    from sdmad.networks import load_clip

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    backbone = folder / "backbone.pt"
    torch.save(load_clip("sdmad-tiny")[0].state_dict(), backbone)
    parser = ConfigParser()
    parser.read_config(str(REPO_ROOT / "configs" / "inference.yaml"))
    parser.update(
        {
            "bundle_root": str(REPO_ROOT),
            "model_name": "sdmad-tiny",
            "pretrained": str(backbone),
            "device": "$torch.device('cpu')",
            "method": method,
        }
    )
    network = parser.get_parsed_content("network_def")
    randomize_adapters(network, scale=0.05)
    checkpoint = folder / "model.pt"
    save_model(network, checkpoint, run_config={"model": {"method": method}})
    return backbone, checkpoint


def bundle_inference(scan: Path, backbone: str | Path, checkpoint: str | Path, out: Path, **overrides: Any) -> dict:
    """`predictions.json` of `monai.bundle run inference` with the repository's config on the tiny model (and
    ``overrides``, e.g. ``method``), the reference the apps' findings are compared with."""
    import json

    from monai.bundle import run

    run(
        "inference",
        config_file=str(REPO_ROOT / "configs" / "inference.yaml"),
        bundle_root=str(REPO_ROOT),
        model_name="sdmad-tiny",
        pretrained=str(backbone),
        checkpoint=str(checkpoint),
        input=str(scan),
        output_dir=str(out),
        num_workers=0,
        **overrides,
    )
    return json.loads((out / "predictions.json").read_text())


def inference_command(pretrained: str | Path, checkpoint: str | Path, inputs: str | Path, out: str | Path) -> list[str]:
    """`python -m monai.bundle run inference` with the repository's config on the tiny model, as a user types it."""
    return [
        *(sys.executable, "-m", "monai.bundle", "run", "inference"),
        *("--config_file", str(REPO_ROOT / "configs" / "inference.yaml"), "--bundle_root", str(REPO_ROOT)),
        *("--model_name", "sdmad-tiny", "--pretrained", str(pretrained), "--checkpoint", str(checkpoint)),
        *("--input", str(inputs), "--output_dir", str(out)),
    ]


def bundle(
    workflow: str,
    phantom_dir: Path,
    runs: Path,
    *overrides: str,
    extra: tuple[str, ...] = (),
    launcher: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """`python -m monai.bundle run <workflow>` in a subprocess on the phantom's fastMRI form, tiny random CLIP;
    ``env`` adds environment variables."""
    files = config_files(workflow, REPO_ROOT) + list(extra)
    command = [
        *(launcher or (sys.executable,)),
        "-m",
        "monai.bundle",
        "run",
        workflow,
        "--config_file",
        str(files),
        "--bundle_root",
        str(REPO_ROOT),
        "--output_root",
        str(runs),
        "--model_name",
        "sdmad-tiny",
        "--pretrained",
        "none",
        "--dataset_dir",
        str(phantom_dir / "h5"),
        "--fastmri_plus_dir",
        str(phantom_dir / "fastmri_plus"),
        "--slice_index",
        "5",
        "--study_level",
        "all_slices",
        "--shots",
        "1",
        "--margin",
        "0.2",
        "--num_workers",
        "0",
        *overrides,
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), **(env or {})}
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The result of a command that must succeed (else its output's tail is the assertion message)."""
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def last_line(result: subprocess.CompletedProcess) -> str:
    """The last non-empty line a person sees on stderr."""
    return [line for line in result.stderr.splitlines() if line.strip()][-1]


def four_d_series(series: Path, folder: Path, positions: int = 3, time_points: int = 2) -> Path:
    """A 4-D DICOM series in ``folder``: ``positions`` slices of the phantom ``series``, acquired ``time_points``
    times (the same ImagePositionPatient repeated, TemporalPositionIdentifier and AcquisitionNumber 1, 2, ...)."""
    import pydicom

    source = sorted(series.glob("*.dcm"))[:positions]
    folder.mkdir(parents=True)
    for t in range(time_points):
        for k, file in enumerate(source):
            dataset = pydicom.dcmread(file)
            dataset.TemporalPositionIdentifier = t + 1
            dataset.AcquisitionNumber = t + 1
            dataset.InstanceNumber = t * positions + k + 1
            dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
            dataset.save_as(folder / f"IM{t}_{k}.dcm")
    return folder
