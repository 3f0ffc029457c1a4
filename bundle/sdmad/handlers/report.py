"""Write the evaluation report when an evaluator run completes (rank 0)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from ignite.engine import Engine

from sdmad.atomic import write_json_atomic
from sdmad.handlers.montage import map_montage
from sdmad.handlers.predictions import PredictionWriter
from sdmad.plots import auroc_bars, roc_curves, sign_map
from sdmad.reporting import build_report, config_hash, write_report

logger = logging.getLogger(__name__)


class EvaluationReport(PredictionWriter):
    """`report.json`, `report.md`, `predictions.csv` and plots in ``output_dir``.

    Args:
        output_dir: the evaluation run folder.
        run_config: the hyper-parameters of the run (written as `config.json`; its hash goes into the report).
        checkpoint: the evaluated checkpoint (None: zero-shot CLIP).
        seed: the run's seed (it also seeds the bootstrap intervals).
        resamples: bootstrap resamples of the 95 % intervals of the headline metrics.
    """

    def __init__(
        self,
        output_dir: str | Path,
        run_config: dict[str, Any],
        checkpoint: str | None,
        seed: int,
        resamples: int = 1000,
    ):
        super().__init__()
        self.output_dir, self.run_config, self.checkpoint, self.seed = Path(output_dir), run_config, checkpoint, seed
        self.resamples = resamples

    def write(self, engine: Engine, network: Any) -> None:
        categories = network.signs.category_names
        arrays = self.collector.arrays()
        text = engine.state.sdmad_text
        selection = text.selection
        aurocs = {name: engine.state.metrics.get(f"auroc/{name}") for name in categories}
        uses_signs = network.method != "mvfa"  # mvfa's text is two states: no sign selection to draw
        names = ("roc_curves.png", "category_auroc.png") + (("sign_map.png",) if uses_signs else ())
        plots = [self.output_dir / name for name in names]
        roc_curves(
            arrays["scores"],
            arrays["label"],
            categories,
            aurocs,
            plots[0],
            text.calibration.thresholds if text.calibration is not None else None,
        )
        auroc_bars(categories, aurocs, engine.state.metrics.get("mean_category_auroc"), plots[1])
        if uses_signs:
            sign_map(
                text.sign_features.cpu().numpy(),
                selection.sign_category.cpu().numpy(),
                selection.kept.cpu().numpy(),
                text.anchor.cpu().numpy(),
                categories,
                plots[2],
            )
        if network.has_patch_path:
            montage = map_montage(
                engine,
                network,
                self.collector.rows,
                self.output_dir / "maps_montage.png",
                zero_shot=self.checkpoint is None,
            )
            plots += [montage] if montage is not None else []
        run = {
            "command": " ".join(sys.argv),
            "checkpoint": self.checkpoint,
            "zero_shot": self.checkpoint is None,
            "backbone": network.backbone,
            "method": network.method,
            "seed": self.seed,
            "device": str(engine.state.device),
            "config_hash": config_hash(self.run_config),
        }
        files = {
            "report_md": str(self.output_dir / "report.md"),
            "predictions_csv": str(self.output_dir / "predictions.csv"),
            "plots": [str(p) for p in plots],
        }
        report = build_report(
            engine.state.metrics, categories, network.signs.sign_prompts, arrays, text, run, files, self.resamples
        )
        write_json_atomic(self.run_config, self.output_dir / "config.json")
        write_report(self.output_dir, report, self.collector.rows, categories)
        engine.state.sdmad_report = report
        logger.info("report written to %s", self.output_dir / "report.md")
