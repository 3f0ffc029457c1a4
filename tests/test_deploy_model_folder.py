"""The MONAI Deploy app's model folder (core environment): layout, refusals, and that it runs as a bundle alone.
The app itself is tested in tests/deploy/ (deploy environment)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO_ROOT, bundle_inference, trained_tiny_model
from monai.bundle import run
from monai.data import MetaTensor
from sdmad.checkpoints import CheckpointError
from sdmad.data import LoadScand, inference_items
from sdmad.deploy.model_folder import ModelFolderError, make_model_folder, model_folder_configs
from sdmad.predictor import BundlePredictor


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("model_folder")
    backbone, checkpoint = trained_tiny_model(root / "trained")
    folder = make_model_folder(root / "model", REPO_ROOT, checkpoint, "sdmad-tiny", str(backbone))
    return {"root": root, "backbone": backbone, "checkpoint": checkpoint, "folder": folder}


def test_layout_is_a_self_contained_bundle(model):
    folder = model["folder"]
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [
        "configs/inference.yaml",
        "configs/metadata.json",
        "configs/model.yaml",
        "configs/signs/fastmri_brain.yaml",
        "models/backbone.pt",
        "models/model.pt",
    ]
    assert model_folder_configs(folder) == [folder / "configs" / "inference.yaml", folder / "configs" / "model.yaml"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".model.")]  # no staging folder left


def test_model_folder_gives_the_findings_of_the_original_bundle_run(model, phantom_dir, tmp_path):
    scan = sorted((phantom_dir / "nifti").glob("*.nii.gz"))[0]
    bundle_inference(scan, model["backbone"], model["checkpoint"], tmp_path / "original")
    folder = model["folder"]
    run(
        "inference",
        config_file=[str(f) for f in model_folder_configs(folder)],
        bundle_root=str(folder),
        input=str(scan),
        output_dir=str(tmp_path / "folder"),
        num_workers=0,
    )
    original, deployed = (
        json.loads((tmp_path / name / "predictions.json").read_text())["volumes"] for name in ("original", "folder")
    )
    assert deployed == original


def test_in_memory_volume_scores_like_its_file(model, phantom_dir):
    """The path the Deploy app takes: a loaded MetaTensor passes LoadScand and gives the file's findings."""
    scan = sorted((phantom_dir / "nifti").glob("*.nii.gz"))[1]
    predictor = BundlePredictor(model["folder"], {"num_workers": 0}, config_files=model_folder_configs(model["folder"]))
    from_file = predictor.predict(scan)["volumes"][0]
    volume = LoadScand(keys="image")({"image": str(scan)})["image"]
    volume.meta["filename_or_obj"] = "in-memory"
    assert isinstance(volume, MetaTensor)
    in_memory = predictor.predict(volume)["volumes"][0]
    assert in_memory["source"] == "in-memory"
    assert {k: v for k, v in in_memory.items() if k != "source"} == {
        k: v for k, v in from_file.items() if k != "source"
    }
    item = {"image": volume, "id": "in-memory"}
    assert inference_items(item) == [item]


def test_refuses_random_weights_and_bad_checkpoints(model, tmp_path):
    with pytest.raises(ModelFolderError, match="random backbone weights"):
        make_model_folder(tmp_path / "m", REPO_ROOT, model["checkpoint"], "sdmad-tiny", "none")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        make_model_folder(tmp_path / "m", REPO_ROOT, corrupt, "sdmad-tiny", str(model["backbone"]))
    assert not (tmp_path / "m").exists()
    with pytest.raises(ModelFolderError, match="not an SD-MAD model folder"):
        model_folder_configs(tmp_path)


def test_zero_shot_folder_says_so_and_runs_without_adapters(model, tmp_path):
    folder = make_model_folder(tmp_path / "zero", REPO_ROOT, "none", "sdmad-tiny", str(model["backbone"]))
    assert "zero-shot" in (folder / "configs" / "model.yaml").read_text()
    assert not (folder / "models" / "model.pt").exists()
    predictor = BundlePredictor(folder, config_files=model_folder_configs(folder))
    assert predictor.checkpoint is None


def test_a_failed_remake_keeps_the_old_folder(model, tmp_path):
    folder = make_model_folder(tmp_path / "m", REPO_ROOT, model["checkpoint"], "sdmad-tiny", str(model["backbone"]))
    with pytest.raises(ModelFolderError):
        make_model_folder(
            folder,
            REPO_ROOT,
            model["checkpoint"],
            "sdmad-tiny",
            str(model["backbone"]),
            sign_file=tmp_path / "missing.yaml",
        )
    assert (folder / "models" / "model.pt").is_file()
    assert (
        torch.load(folder / "models" / "model.pt", weights_only=True).keys()
        == torch.load(model["checkpoint"], weights_only=True).keys()
    )


def test_the_folder_decides_with_the_thresholds_stored_in_the_model(model, phantom_dir, tmp_path):
    """A model.pt whose training decided with calibrated thresholds deploys with them (the app decides as the
    evaluation did); thresholds of a run that decided with Eq. 8, or none, give Eq. 8; asking for calibrated
    decisions without thresholds is refused."""
    from sdmad.calibration import Calibration

    content = torch.load(model["checkpoint"], weights_only=True)
    categories = content["sdmad"]["categories"]
    thresholds = [0.5 - 0.2 * (c % 2) for c in range(len(categories))]
    content["calibration"] = Calibration(
        thresholds,
        ["test"] * len(categories),
        "accuracy",
        "test",
        "distance",
        [1] * len(categories),
        [1] * len(categories),
    ).to_dict()
    paper_run = tmp_path / "paper_run.pt"
    torch.save({**content, "run_config": {"training": {"decision_rule": "paper"}}}, paper_run)
    folder = make_model_folder(tmp_path / "paper", REPO_ROOT, paper_run, "sdmad-tiny", str(model["backbone"]))
    assert "decision_rule: paper" in (folder / "configs" / "model.yaml").read_text()
    calibrated = tmp_path / "calibrated.pt"
    torch.save({**content, "run_config": {"training": {"decision_rule": "calibrated"}}}, calibrated)
    folder = make_model_folder(tmp_path / "cal", REPO_ROOT, calibrated, "sdmad-tiny", str(model["backbone"]))
    assert "decision_rule: calibrated" in (folder / "configs" / "model.yaml").read_text()
    scan = sorted((phantom_dir / "nifti").glob("*.nii.gz"))[2]
    found = BundlePredictor(folder, {"num_workers": 0}, config_files=model_folder_configs(folder)).predict(scan)
    assert found["decision"] == {
        "rule": "calibrated",
        "thresholds": dict(zip(categories, thresholds, strict=True)),
        "calibration": "test",
    }
    for row in found["slices"]:
        assert row["decisions"] == {c: row["scores"][c] > t for c, t in zip(categories, thresholds, strict=True)}
    assert "decision_rule: paper" in (model["folder"] / "configs" / "model.yaml").read_text()
    with pytest.raises(ModelFolderError, match="holds no calibrated thresholds"):
        make_model_folder(
            tmp_path / "x",
            REPO_ROOT,
            model["checkpoint"],
            "sdmad-tiny",
            str(model["backbone"]),
            decision_rule="calibrated",
        )


def test_the_folder_builds_the_network_its_model_was_trained_as(phantom_dir, tmp_path):
    """A model of the patch path (the demo's method sdmad+mvfa) gets a folder that builds that network: the
    folder's configs name the method its run recorded."""
    backbone, checkpoint = trained_tiny_model(tmp_path / "trained", method="sdmad+mvfa")
    folder = make_model_folder(tmp_path / "model", REPO_ROOT, checkpoint, "sdmad-tiny", str(backbone))
    assert "method: sdmad+mvfa" in (folder / "configs" / "model.yaml").read_text()
    predictor = BundlePredictor(folder, {"num_workers": 0}, config_files=model_folder_configs(folder))
    predictor.refresh_weights()  # a CheckpointError if the folder built another network
    scan = sorted((phantom_dir / "nifti").glob("*.nii.gz"))[0]
    assert predictor.predict(scan)["volumes"][0]["slices"] > 0
