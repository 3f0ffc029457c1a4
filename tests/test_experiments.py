"""The multi-seed summary (`make benchmark-phantom`): mean ± std per variant and every category's AUROC per seed."""

from __future__ import annotations

import pytest
from sdmad.tools import experiments
from sdmad.tools.experiments import summarise_seeds, summary_markdown
from sdmad.tools.pretraining import DEMO_BACKBONE


def figures(auroc: float, hamming: float, pixel: float | None = None) -> dict:
    return {
        "mean_category_auroc": auroc,
        "hamming_score": hamming,
        "subset_accuracy": 0.5,
        "image_auroc": None,
        "pixel_auroc": pixel,
    }


def test_summary_has_every_category_per_seed_and_its_lowest_trained_value():
    per_seed = {
        seed: {
            "trained": figures(0.9 + seed / 100, 0.95, 0.92),
            "zero_shot": figures(0.5, 0.8, 0.6 + seed / 10),
            "all_absent": figures(None, 0.86),
        }
        for seed in (0, 1)
    }
    summary = summarise_seeds(per_seed)
    summary["per_category_auroc"] = {
        0: {"trained": {"A": 0.95, "B": 0.7}, "zero_shot": {"A": 0.5, "B": 0.4}},
        1: {"trained": {"A": 0.9, "B": None}, "zero_shot": {"A": 0.6, "B": None}},
    }
    text = summary_markdown(summary, "make benchmark-phantom")
    assert (
        "| SD-MAD (trained adapters), Eq. 8 | 0.905 ± 0.007 | 0.950 ± 0.000 | 0.500 ± 0.000 | — | 0.920 ± 0.000 |"
        in text
    )
    assert "| A | 0.500 → 0.950 | 0.600 → 0.900 | 0.900 |" in text
    assert "| B | 0.400 → 0.700 | — → — | 0.700 |" in text  # undefined on seed 1: the lowest defined value
    assert summary["mean_category_auroc_gain"]["per_seed"] == pytest.approx([0.4, 0.41])
    assert summary["pixel_auroc_gain"]["per_seed"] == pytest.approx([0.32, 0.22])
    assert "Gain in pixel AUROC, trained minus zero-shot, per seed: +0.320, +0.220" in text
    summary["method"] = "mvfa"  # the MVFA baseline's rows say so
    text = summary_markdown(summary, "multi_seed.py -- --method mvfa")
    assert "method mvfa;" in text and "| MVFA baseline (trained heads), text peak > 0.5 | 0.905 ± 0.007 |" in text
    assert "SD-MAD" not in text


def test_the_benchmark_makes_the_demo_inputs_and_keeps_those_it_is_given(tmp_path, monkeypatch):
    """`make benchmark-phantom` makes the phantom data and the current backbone as the demo does, unless the
    command line passes its own."""
    made = []
    monkeypatch.setattr(experiments, "ensure_phantom_dataset", lambda folder, progress: made.append(folder) or True)
    monkeypatch.setattr(experiments, "ensure_tiny_backbone", lambda weights, size: made.append((weights, size)))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("image_size: 120\n")
    assert set(experiments.ensure_demo_inputs(tmp_path)) == {"phantom data"}
    assert made == [tmp_path / "data" / "phantom", (tmp_path / DEMO_BACKBONE, 120)]
    experiments.ensure_demo_inputs(tmp_path, backbone=False)  # `multi_seed.py --demo -- --pretrained FILE`
    assert made[2:] == [tmp_path / "data" / "phantom"]
    experiments.ensure_demo_inputs(tmp_path, phantom=False, backbone=False)  # `-- --phantom_dir D --pretrained F`
    assert made[3:] == []
