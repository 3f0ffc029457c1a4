"""Write inference outputs: per-slice scores and decisions, a per-volume aggregate and the skipped scans, as CSV
and JSON; and the exit status of a run that skipped scans."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine

from sdmad import RESEARCH_USE_ONLY
from sdmad.atomic import write_csv_atomic, write_json_atomic
from sdmad.handlers.predictions import PredictionWriter
from sdmad.reporting import prediction_rows

logger = logging.getLogger(__name__)
AGGREGATES = ("max", "mean")


def aggregate_volumes(rows: list[dict], categories: list[str], how: str = "max") -> list[dict]:
    """Per source volume: s_c aggregated over its slices (max or mean), p_c = any slice positive, the slice count."""
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got '{how}'")
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(str(row["source"]), []).append(row)
    volumes = []
    for source, members in by_source.items():
        scores = np.stack([r["scores"] for r in members])
        reduce = scores.max(axis=0) if how == "max" else scores.mean(axis=0)
        decisions = np.stack([r["decisions"] for r in members]).any(axis=0)
        margins = np.stack([r["margins"] for r in members]).max(axis=0)  # > 0 exactly where a slice is positive
        volumes.append(
            {
                "source": source,
                "slices": len(members),
                "aggregate": how,
                "anomaly_score": float(max(r["anomaly"] for r in members)),
                "scores": {name: float(reduce[c]) for c, name in enumerate(categories)},
                "decisions": {name: bool(decisions[c]) for c, name in enumerate(categories)},
                "margins": {name: float(margins[c]) for c, name in enumerate(categories)},
                "positive_slices": {
                    name: [r["slice_index"] for r in members if r["decisions"][c]] for c, name in enumerate(categories)
                },
            }
        )
    return volumes


class InferenceWriter(PredictionWriter):
    """`slices.csv`, `volumes.csv`, `predictions.json` and `errors.csv` (the skipped unreadable scans, with their
    reasons; only a header when none) in ``output_dir`` after the run (rank 0), each written atomically.

    Args:
        output_dir: where to write.
        aggregate: "max" (default) or "mean" over a volume's slices for its per-category score.
    """

    def __init__(self, output_dir: str | Path, aggregate: str = "max"):
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got '{aggregate}'")
        super().__init__()
        self.output_dir, self.aggregate = Path(output_dir), aggregate

    def write(self, engine: Engine, network: Any) -> None:
        categories = network.signs.category_names
        text = engine.state.sdmad_text
        volumes = aggregate_volumes(self.collector.rows, categories, self.aggregate)
        skipped = getattr(engine.state, "sdmad_unreadable", [])
        write_csv_atomic(prediction_rows(self.collector.rows, categories), self.output_dir / "slices.csv")
        header = ["source", "slices", "anomaly_score"] + [
            f"{kind}:{n}" for n in categories for kind in ("score", "decision")
        ]
        volume_rows = [
            [volume["source"], volume["slices"], f"{volume['anomaly_score']:.6f}"]
            + [value for n in categories for value in (f"{volume['scores'][n]:.6f}", int(volume["decisions"][n]))]
            for volume in volumes
        ]
        write_csv_atomic([header, *volume_rows], self.output_dir / "volumes.csv")
        reasons = [[r["source"], r["id"], r["reason"]] for r in skipped]
        write_csv_atomic([["source", "id", "reason"], *reasons], self.output_dir / "errors.csv")
        selection = text.selection.to_dict(network.signs.sign_prompts)
        slices = [
            {
                "source": r["source"],
                "slice_index": r["slice_index"],
                "anomaly_score": r["anomaly"],
                "scores": dict(zip(categories, map(float, r["scores"]), strict=True)),
                "decisions": dict(zip(categories, map(bool, r["decisions"]), strict=True)),
            }
            for r in self.collector.rows
        ]
        decision = {"rule": text.decision_rule}
        if text.decision_rule == "calibrated":
            decision["thresholds"] = dict(zip(categories, text.calibration.thresholds, strict=True))
            decision["calibration"] = text.calibration.source
        write_json_atomic(
            {
                "categories": categories,
                "backbone": network.backbone,
                "decision": decision,
                "volumes": volumes,
                "slices": slices,
                "skipped": skipped,
                "sign_selection": selection,
                "note": RESEARCH_USE_ONLY,
            },
            self.output_dir / "predictions.json",
        )
        engine.state.sdmad_predictions = volumes
        logger.info("inference outputs written to %s", self.output_dir)


def exit_if_skipped(engine: Engine, output_dir: str | Path, exit_code: int = 3) -> None:
    """End the process with ``exit_code`` when the run skipped unreadable scans, saying how many and where they are
    listed (every readable scan was scored and written)."""
    skipped = getattr(engine.state, "sdmad_unreadable", [])
    if skipped:
        scored = len(getattr(engine.state, "sdmad_predictions", []))
        print(
            f"sdmad: {len(skipped)} unreadable scan(s) skipped, {scored} scored; reasons in "
            f"{Path(output_dir) / 'errors.csv'}",
            file=sys.stderr,
        )
        raise SystemExit(exit_code)
