"""Learning is proven end to end (slow: pretrains the tiny CLIP, ~3-4 min on 2 cores): `make test-slow`.

On the phantom data set, with the demo configuration and seed 0, SD-MAD's trained adapters beat zero-shot CLIP by
at least 0.10 mean category AUROC, their calibrated decisions beat the all-absent predictor's Hamming score and
subset accuracy, and the anomaly maps (method sdmad+mvfa) reach pixel AUROC 0.90, 0.05 above zero-shot CLIP's.
"""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT
from sdmad.tools.experiments import headline_metrics, report_variants
from sdmad.tools.phantom import make_phantom_dataset
from sdmad.tools.pretraining import demo_image_size, pretrain_tiny_clip
from sdmad.workflows import run_workflow


@pytest.mark.slow
def test_trained_adapters_beat_zero_shot_on_the_phantom(tmp_path):
    data = tmp_path / "phantom"
    make_phantom_dataset(data)
    backbone = tmp_path / "backbone.pt"
    summary = pretrain_tiny_clip(backbone, demo_image_size(REPO_ROOT), progress=False)
    assert summary["last_loss"] < summary["first_loss"] - 1.0
    overrides = dict(
        extra_configs=["configs/demo.yaml"],
        output_root=str(tmp_path / "runs"),
        pretrained=str(backbone),
        phantom_dir=str(data),
        dataset_dir=str(data / "h5"),
        fastmri_plus_dir=str(data / "fastmri_plus"),
        num_workers=0,
    )
    run_workflow("training", REPO_ROOT, **overrides)
    run_workflow("evaluating", REPO_ROOT, **overrides)
    run_workflow("evaluating", REPO_ROOT, checkpoint="none", **overrides)
    trained = headline_metrics(tmp_path / "runs" / "demo" / "evaluating" / "report.json")
    zero_shot = headline_metrics(tmp_path / "runs" / "demo" / "evaluating_zero_shot" / "report.json")
    assert trained["mean_category_auroc"] >= zero_shot["mean_category_auroc"] + 0.10, (trained, zero_shot)
    assert trained["pixel_auroc"] >= max(0.90, zero_shot["pixel_auroc"] + 0.05), (trained, zero_shot)
    variants = report_variants(tmp_path / "runs" / "demo" / "evaluating" / "report.json", "trained")
    for metric in ("hamming_score", "subset_accuracy"):
        assert variants["trained_calibrated"][metric] > variants["all_absent"][metric], (metric, variants)
