"""One split per run and config-checked resume and evaluation (sdmad.runs): units, then the workflows as a user
runs them (a changed setting is an error naming it; splits.json is never rewritten)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import bundle, last_line, ok
from sdmad.data import csv_items
from sdmad.runs import RunConfigError, check_against_training, differences, prepare_training_dir, run_splits
from sdmad.tools.phantom import CATEGORIES


def settings(**changes) -> dict:
    return {
        "seed": 0,
        "shots": 1,
        "normal_shots": None,
        "val_fraction": 0.1,
        "categories": list(CATEGORIES),
        "data": {"source": "csv", "csv_file": {"labels.csv": "abc"}},
        **changes,
    }


def test_differences_name_each_nested_key_with_both_values():
    found = differences(
        {"split": settings(), "training": {"margin": 0.2, "epochs": 5}},
        {"split": settings(shots=4), "training": {"margin": 0.5, "epochs": 9}},
        ignore=("training.epochs",),
    )
    assert found == ["split.shots: run 1, now 4", "training.margin: run 0.2, now 0.5"]


def test_only_training_makes_the_split_and_changed_settings_are_errors(phantom_dir, tmp_path):
    items = csv_items(phantom_dir / "labels.csv", CATEGORIES, group_column="patient")
    calls = []

    def items_fn():
        calls.append(1)
        return items

    path = tmp_path / "splits.json"
    with pytest.raises(RunConfigError, match="run `training` with the same --run_name first"):
        run_splits(items_fn, settings(), path, write=False)
    first = run_splits(items_fn, settings(), path, write=True)
    written = path.read_bytes()
    for write in (True, False):
        again = run_splits(items_fn, settings(), path, write=write)
        assert [i["id"] for i in again["test"]] == [i["id"] for i in first["test"]]
    assert len(calls) == 1
    for write in (True, False):
        expected = r"data.csv_file.labels.csv: run 'abc', now 'x'; val_fraction: run 0.1, now 0.3"
        with pytest.raises(RunConfigError, match=expected):
            run_splits(
                items_fn,
                settings(val_fraction=0.3, data={"source": "csv", "csv_file": {"labels.csv": "x"}}),
                path,
                write=write,
            )
    assert path.read_bytes() == written and len(calls) == 1


def test_resume_checks_the_checkpoints_run_config_and_resume_false_moves_the_run_aside(tmp_path):
    train_dir = tmp_path / "run" / "training"
    config = {"split": settings(), "model": {"lam": 0.9}, "training": {"margin": 0.2, "epochs": 5}}
    prepare_training_dir(train_dir, config)  # a new run: recorded
    (train_dir / "checkpoints").mkdir()
    torch.save(
        {"network": {}, "sdmad": {}, "run_config": config, "trainer": {"iteration": 10, "epoch_length": 2}},
        train_dir / "checkpoints" / "checkpoint_epoch=5.pt",
    )
    prepare_training_dir(train_dir, {**config, "training": {"margin": 0.2, "epochs": 8}})  # more epochs: continues
    with pytest.raises(RunConfigError, match="has trained 5 epochs already, more than --epochs 3"):
        prepare_training_dir(train_dir, {**config, "training": {"margin": 0.2, "epochs": 3}})
    assert json.loads((train_dir / "config.json").read_text())["training"]["epochs"] == 8  # untouched by a refusal
    with pytest.raises(
        RunConfigError,
        match=r"checkpoint_epoch=5.pt: this run was trained with other settings: "
        r"training.margin: run 0.2, now 0.5\. .*--resume false",
    ):
        prepare_training_dir(train_dir, {**config, "training": {"margin": 0.5, "epochs": 5}})
    prepare_training_dir(train_dir, {**config, "training": {"margin": 0.5, "epochs": 5}}, resume=False)
    aside = [p for p in train_dir.parent.iterdir() if p.name.startswith("training.replaced-")]
    assert len(aside) == 1 and (aside[0] / "checkpoints" / "checkpoint_epoch=5.pt").is_file()
    assert json.loads((train_dir / "config.json").read_text())["training"]["margin"] == 0.5
    check_against_training(train_dir, {**config, "training": {"margin": 9}, "evaluation": {"decision_rule": "x"}})
    with pytest.raises(RunConfigError, match="model.lam: training 0.9, evaluation 0.8"):
        check_against_training(train_dir, {**config, "model": {"lam": 0.8}})


@pytest.fixture(scope="module")
def trained_run(phantom_dir, tmp_path_factory):
    """A 2-epoch run `checked` (tests below extend it) and a copy of its first model, `model_after_2_epochs.pt`."""
    runs = tmp_path_factory.mktemp("runs")
    ok(bundle("training", phantom_dir, runs, "--run_name", "checked", "--epochs", "2", "--val_interval", "1"))
    shutil.copy(runs / "checked" / "training" / "model.pt", runs / "model_after_2_epochs.pt")
    return runs


def test_evaluation_with_a_changed_split_setting_is_an_error_and_never_resplits(trained_run, phantom_dir):
    splits = trained_run / "checked" / "training" / "splits.json"
    before = splits.read_bytes()
    result = bundle("evaluating", phantom_dir, trained_run, "--run_name", "checked", "--shots", "2")
    assert result.returncode != 0
    assert last_line(result).startswith("sdmad: error: ") and "split.shots: training 1, evaluation 2" in last_line(
        result
    )
    assert "Traceback" not in result.stderr
    assert splits.read_bytes() == before and not (trained_run / "checked" / "evaluating").exists()


def test_retraining_with_another_margin_is_refused_and_more_epochs_continue(trained_run, phantom_dir):
    common = ("--run_name", "checked", "--val_interval", "1")
    refused = bundle("training", phantom_dir, trained_run, *common, "--epochs", "2", "--margin", "0.5")
    assert refused.returncode != 0 and "training.margin: run 0.2, now 0.5" in last_line(refused)
    ok(bundle("training", phantom_dir, trained_run, *common, "--epochs", "3"))
    checkpoints = trained_run / "checked" / "training" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["checkpoint_epoch=3.pt"]
    model = torch.load(trained_run / "checked" / "training" / "model.pt", weights_only=True)
    assert model["run_config"]["training"]["epochs"] == 3 and model["calibration"]["source"].startswith("validation")


def test_thresholds_come_from_validation_only_permuted_test_labels_change_nothing(trained_run, phantom_dir):
    """The same run, once more with the test split's labels permuted: training's stored thresholds and the
    zero-shot evaluation's thresholds are identical, while the test figures change."""
    content = json.loads((trained_run / "checked" / "training" / "splits.json").read_text())
    labels = [item["label"] for item in content["test"]]
    for item, label in zip(content["test"], labels[1:] + labels[:1], strict=True):
        item["label"] = label
    assert labels[1:] + labels[:1] != labels
    (trained_run / "permuted" / "training").mkdir(parents=True)
    (trained_run / "permuted" / "training" / "splits.json").write_text(json.dumps(content))
    ok(bundle("training", phantom_dir, trained_run, "--run_name", "permuted", "--epochs", "2", "--val_interval", "1"))
    reference = torch.load(trained_run / "model_after_2_epochs.pt", weights_only=True)["calibration"]
    permuted = torch.load(trained_run / "permuted" / "training" / "model.pt", weights_only=True)["calibration"]
    assert permuted == reference

    def zero_shot(run: str) -> dict:
        ok(bundle("evaluating", phantom_dir, trained_run, "--run_name", run, "--checkpoint", "none"))
        return json.loads((trained_run / run / "evaluating_zero_shot" / "report.json").read_text())

    first, second = zero_shot("checked"), zero_shot("permuted")
    calibration = first["protocols"]["multi_label"]["rules"]["calibrated"]["calibration"]
    assert calibration == second["protocols"]["multi_label"]["rules"]["calibrated"]["calibration"]
    assert calibration["source"].startswith("validation split")
    assert first["protocols"]["category_auroc"] != second["protocols"]["category_auroc"]


def test_a_model_of_another_run_is_refused_and_resume_false_typed_on_the_command_line_starts_over(
    trained_run, phantom_dir
):
    other = ("--run_name", "other", "--seed", "1", "--epochs", "1", "--val_interval", "1")
    ok(bundle("training", phantom_dir, trained_run, *other))
    foreign = trained_run / "other" / "training" / "model.pt"
    result = bundle("evaluating", phantom_dir, trained_run, "--run_name", "checked", "--checkpoint", str(foreign))
    assert result.returncode != 0
    assert last_line(result).startswith(
        f"sdmad: error: {foreign}: was trained in another run than checked: split.seed: checkpoint 1, run 0"
    )
    ok(bundle("training", phantom_dir, trained_run, *other, "--margin", "0.5", "--resume", "false"))
    assert [p.name for p in (trained_run / "other").iterdir() if p.name.startswith("training.replaced-")]
    assert json.loads((trained_run / "other" / "training" / "config.json").read_text())["training"]["margin"] == 0.5


def test_yes_no_settings_from_the_command_line():
    from sdmad.flags import as_flag, as_optional_flag

    assert [as_flag(v, "x") for v in (True, "false", "False", "TRUE", "0", "yes")] == [
        True,
        False,
        False,
        True,
        False,
        True,
    ]
    assert as_optional_flag("null", "quick_gelu") is None and as_optional_flag("true", "quick_gelu") is True
    with pytest.raises(ValueError, match="resume must be true or false, got 'maybe'"):
        as_flag("maybe", "resume")


def test_a_run_recorded_before_a_setting_existed_keeps_its_value_then():
    """Run folders made before `model.method` (and the patch-path keys, None for method sdmad) stay usable."""
    recorded = {"model": {"lam": 0.9}, "split": {"data": {"source": "x"}}, "training": {"epochs": 2}}
    now = {
        "model": {"lam": 0.9, "method": "sdmad"},
        "split": {"data": {"source": "x", "masks": None}},
        "training": {"epochs": 2, "patch_heads": None},
    }
    assert differences(recorded, now) == []
    assert differences(recorded, {**now, "model": {"lam": 0.9, "method": "sdmad+mvfa"}}) == [
        "model.method: run 'absent', now 'sdmad+mvfa'"
    ]
