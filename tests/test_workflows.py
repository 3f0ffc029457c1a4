"""The bundle workflows end to end on phantom data, as a user runs them (`python -m monai.bundle run ...`)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import jsonschema
import pytest
import torch
from conftest import REPO_ROOT, build_tiny, bundle, ok
from sdmad.checkpoints import CheckpointError, load_model, save_model
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader


@pytest.fixture(scope="module")
def trained(phantom_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    ok(bundle("training", phantom_dir, runs, "--run_name", "e2e", "--epochs", "2", "--val_interval", "1"))
    return runs


def test_training_writes_its_run_folder(trained):
    run = trained / "e2e" / "training"
    for name in ("model.pt", "model_best.pt", "splits.json", "config.json", "checkpoints/checkpoint_epoch=2.pt"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").iterdir())
    splits = json.loads((run / "splits.json").read_text())
    groups = {name: {item["group"] for item in splits[name]} for name in ("train", "val", "test")}
    assert not groups["train"] & groups["test"] and not groups["val"] & groups["test"]
    config = json.loads((run / "config.json").read_text())
    assert config["split"]["shots"] == 1 and config["model"]["model_name"] == "sdmad-tiny"
    assert config["model"]["lam"] == 0.9
    assert config["training"]["margin"] == 0.2


def test_evaluation_report_validates_and_matches_the_predictions(trained, phantom_dir):
    ok(bundle("evaluating", phantom_dir, trained, "--run_name", "e2e"))
    out = trained / "e2e" / "evaluating"
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, json.loads((REPO_ROOT / "configs" / "report.schema.json").read_text()))
    assert not report["run"]["zero_shot"] and report["run"]["checkpoint"].endswith("e2e/training/model.pt")
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == report["data"]["test_slices"] and all(row["slice_index"] == "5" for row in rows)
    for plot in report["files"]["plots"]:
        assert Path(plot).stat().st_size > 1000
    assert "SD-MAD evaluation report" in (out / "report.md").read_text()
    # an image-level model says why there is no pixel AUROC
    assert report["protocols"]["general_ad"]["pixel_auroc"].startswith("not computed: method sdmad makes no maps")

    ok(bundle("evaluating", phantom_dir, trained, "--run_name", "e2e", "--checkpoint", "none"))
    zero_shot = json.loads((trained / "e2e" / "evaluating_zero_shot" / "report.json").read_text())
    assert zero_shot["run"]["zero_shot"] and zero_shot["data"] == report["data"]  # the same test split


@pytest.mark.parametrize("mode", [pytest.param("none", marks=pytest.mark.slow), "support"])
def test_the_sign_selection_ablations_run_from_evaluation(trained, phantom_dir, mode):
    """ "Ours (no SS)" keeps every sign (in the default run: tests/test_inference.py); "support" ranks the run's
    few-shot items. The model's thresholds were calibrated under "distance", so evaluation calibrates again on the
    validation split for the selection used, and writes beside the main report."""
    ok(bundle("evaluating", phantom_dir, trained, "--run_name", "e2e", "--sign_selection", mode))
    report = json.loads((trained / "e2e" / f"evaluating_selection_{mode}" / "report.json").read_text())
    assert report["sign_selection"]["mode"] == mode
    calibration = report["protocols"]["multi_label"]["rules"]["calibrated"]["calibration"]
    assert calibration["sign_selection"] == mode and calibration["source"].startswith("validation split")
    signs = [s for c in report["sign_selection"]["categories"].values() for s in c["signs"]]
    if mode == "none":
        assert all(sign["kept"] for sign in signs)
    else:
        assert all("support_auroc" in sign for sign in signs)


def test_inference_on_nifti_dicom_and_h5_gives_the_same_scores(trained, phantom_dir, tmp_path):
    name = json.loads((phantom_dir / "manifest.json").read_text())["volumes"][0]["name"]
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"{phantom_dir}/nifti/{name}.nii.gz\n{phantom_dir}/dicom/{name}\n{phantom_dir}/h5/{name}.h5\n")
    out = tmp_path / "inference"
    ok(
        bundle(
            "inference",
            phantom_dir,
            trained,
            "--run_name",
            "e2e",
            "--input",
            str(listing),
            "--output_dir",
            str(out),
            "--checkpoint",
            str(trained / "e2e" / "training" / "model.pt"),
        )
    )
    volumes = json.loads((out / "predictions.json").read_text())["volumes"]
    assert len(volumes) == 3 and all(volume["slices"] == 12 for volume in volumes)
    for other in volumes[1:]:
        assert other["scores"] == pytest.approx(volumes[0]["scores"], abs=1e-5)
        assert other["decisions"] == volumes[0]["decisions"]
    assert len(list(csv.reader((out / "slices.csv").open()))) == 1 + 3 * 12
    assert len((out / "volumes.csv").read_text().splitlines()) == 1 + 3


def test_kill_and_resume_ends_with_the_same_weights(phantom_dir, tmp_path):
    common = ("--epochs", "5", "--val_interval", "2")
    ok(bundle("training", phantom_dir, tmp_path, "--run_name", "full", *common))
    kill = tmp_path / "kill.yaml"
    kill.write_text("train#extra_handlers:\n  - _target_: kill_after.KillAfterEpoch\n    epoch: 3\n")
    killed = bundle("training", phantom_dir, tmp_path, "--run_name", "resumed", *common, extra=(str(kill),))
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = tmp_path / "resumed" / "training"
    assert (run / "checkpoints" / "checkpoint_epoch=3.pt").is_file() and not (run / "model.pt").exists()
    ok(bundle("training", phantom_dir, tmp_path, "--run_name", "resumed", *common))  # the same command again
    full = torch.load(tmp_path / "full" / "training" / "model.pt", weights_only=True)["network"]
    resumed = torch.load(run / "model.pt", weights_only=True)["network"]
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)


def test_two_process_gloo_training(phantom_dir, tmp_path):
    """Method sdmad+mvfa: DistributedDataParallel wraps the Shift Adapters alone (the patch heads train in stage 2)."""
    launcher = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533")
    result = ok(
        bundle(
            "training",
            phantom_dir,
            tmp_path,
            "--run_name",
            "ddp",
            "--epochs",
            "2",
            "--val_interval",
            "1",
            "--backend",
            "gloo",
            *("--method", "sdmad+mvfa", "--mask_dir", str(phantom_dir / "masks"), "--patch_head_steps", "5"),
            extra=(str(REPO_ROOT / "configs" / "multi_gpu.yaml"),),
            launcher=launcher,
        )
    )
    assert (tmp_path / "ddp" / "training" / "model.pt").is_file()
    log = result.stdout + result.stderr
    # logging handlers on rank 0 only: one validation line per epoch, events from one process
    assert log.count("] Metrics -- val_hamming_score") == 2, log
    writers = [
        path
        for path in (tmp_path / "ddp" / "training" / "tensorboard").glob("events.*")
        if len(list(EventFileLoader(str(path)).Load())) > 1
    ]  # more than the file-version header
    assert len(writers) == 2 and len({path.name.split(".")[-2] for path in writers}) == 1  # train + val, one pid


def test_ranks_other_than_zero_drop_the_logging_handlers_also_inside_extra_handlers(monkeypatch):
    import ignite.distributed as idist
    from monai.handlers import MLFlowHandler, StatsHandler
    from sdmad.handlers import ExtraHandlers, for_this_rank

    keep, stats = object(), StatsHandler()
    mlflow = object.__new__(MLFlowHandler)  # its type is what counts; constructing it needs the mlflow package
    handlers = [keep, stats, ExtraHandlers([mlflow, keep])]
    assert for_this_rank(handlers) == handlers
    monkeypatch.setattr(idist, "get_rank", lambda: 1)
    kept = for_this_rank(handlers)
    assert kept[0] is keep and len(kept) == 2 and kept[1].handlers == [keep]


def test_the_same_seed_gives_the_same_model_and_figures_with_other_thread_settings(phantom_dir, tmp_path):
    """Two processes started with 1 and 2 threads (OMP_NUM_THREADS), `cpu_threads` fixed as the demo does: bitwise the
    same adapters, thresholds and report figures. (Without it, the last bits of the weights differ: CPU reductions
    are split by thread.)"""
    models, reports = [], []
    for threads in ("1", "2"):
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        runs = tmp_path / f"threads{threads}"
        common = ("--run_name", "det", "--seed", "3", "--cpu_threads", "2")
        ok(bundle("training", phantom_dir, runs, *common, "--epochs", "4", "--val_interval", "2", env=env))
        ok(bundle("evaluating", phantom_dir, runs, *common, env=env))
        models.append(torch.load(runs / "det" / "training" / "model.pt", weights_only=True))
        reports.append(json.loads((runs / "det" / "evaluating" / "report.json").read_text()))
    assert [report["run"]["versions"]["threads"] for report in reports] == [2, 2]
    adapters = [model["network"] for model in models]
    assert adapters[0].keys() == adapters[1].keys()
    assert all(torch.equal(adapters[0][key], adapters[1][key]) for key in adapters[0])
    assert models[0]["calibration"] == models[1]["calibration"]
    assert reports[0]["protocols"] == reports[1]["protocols"]


def test_corrupt_checkpoint_and_checkpoint_of_another_configuration(small_signs, tmp_path):
    network = build_tiny(small_signs)
    good = tmp_path / "model.pt"
    save_model(network, good)
    load_model(build_tiny(small_signs), good)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=f"{broken}: not a readable SD-MAD checkpoint"):
        load_model(network, broken)
    with pytest.raises(CheckpointError, match="lam: checkpoint 0.9 vs config 0.8"):
        load_model(build_tiny(small_signs, lam=0.8), good)
    with pytest.raises(CheckpointError, match="image_adapter_blocks"):
        load_model(build_tiny(small_signs, image_adapter_blocks=[12, 24]), good)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an SD-MAD checkpoint"):
        load_model(network, tmp_path / "other.pt")


def test_own_data_through_the_csv_override(phantom_dir, tmp_path):
    csv_override = (str(REPO_ROOT / "configs" / "csv_task.yaml"),)
    ok(
        bundle(
            "training",
            phantom_dir,
            tmp_path,
            "--run_name",
            "csv",
            "--epochs",
            "1",
            "--val_interval",
            "1",
            "--csv_file",
            str(phantom_dir / "labels.csv"),
            extra=csv_override,
        )
    )
    ok(
        bundle(
            "evaluating",
            phantom_dir,
            tmp_path,
            "--run_name",
            "csv",
            "--csv_file",
            str(phantom_dir / "labels.csv"),
            extra=csv_override,
        )
    )
    report = json.loads((tmp_path / "csv" / "evaluating" / "report.json").read_text())
    splits = json.loads((tmp_path / "csv" / "training" / "splits.json").read_text())
    assert report["data"]["test_slices"] == len(splits["test"])  # one slice ([5]) per scan
    assert all(item["image"].endswith(".nii.gz") for item in splits["test"])
