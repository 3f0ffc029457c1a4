"""Write inference outputs: per-slice scores and decisions, a per-volume aggregate and the skipped scans, as CSV
and JSON; and the exit status of a run that skipped scans."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from sdmad import RESEARCH_USE_ONLY
from sdmad.atomic import write_csv_atomic, write_json_atomic
from sdmad.checkpoints import unwrap
from sdmad.errors import SDMADError
from sdmad.flags import as_flag
from sdmad.handlers.predictions import PredictionWriter
from sdmad.reporting import prediction_rows

logger = logging.getLogger(__name__)
AGGREGATES = ("max", "mean")


class MapsError(SDMADError, ValueError):
    """Maps asked of a model that makes none."""


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


def file_stem(source: str) -> str:
    """A file name for a scan's outputs: its name without the scan suffix (a DICOM folder: the folder's name)."""
    name = Path(str(source).rstrip("/")).name
    for suffix in (".nii.gz", ".nii", ".h5", ".dcm", ".png", ".jpg", ".jpeg"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def output_names(sources: list[str]) -> dict[str, str]:
    """A distinct file-name stem per scan: its name without suffix; scans of one name in several formats (the same
    study as NIfTI, DICOM and .h5) get the format added, then a number if still alike."""
    from sdmad.data.loading import scan_format

    stems = [file_stem(source) for source in sources]
    names: dict[str, str] = {}
    for source, stem in zip(sources, stems, strict=True):
        name = stem if stems.count(stem) == 1 else f"{stem}_{scan_format(source)}"
        candidate, number = name, 2
        while candidate in names.values():
            candidate, number = f"{name}_{number}", number + 1
        names[source] = candidate
    return names


def overlay_slices(members: list[dict], limit: int) -> list[dict]:
    """The slices to picture: those with a positive decision, highest anomaly score first, else the top-scoring
    one; at most ``limit``."""
    ranked = sorted(members, key=lambda r: -r["anomaly"])
    positive = [r for r in ranked if bool(np.any(r["decisions"]))]
    return (positive or ranked[:1])[:limit]


class InferenceWriter(PredictionWriter):
    """`slices.csv`, `volumes.csv`, `predictions.json` and `errors.csv` (the skipped unreadable scans, with their
    reasons; only a header when none) in ``output_dir`` after the run (rank 0), each written atomically; with
    ``save_maps`` (a method with the patch path), per volume a NIfTI of its maps in the input's geometry
    (`maps/<scan>_maps.nii.gz`: anomaly, then one channel per category), its label image (`maps/<scan>_labels.nii.gz`,
    uint8: category c + 1 where its map is highest among those decided present on the slice and reaches its map
    threshold, calibrated on the validation split's pixel labels when there were some, else one half;
    sdmad.maps.label_slice) and overlay PNGs of its positive or top-scoring slices (`overlays/<scan>_slice<k>.png`).

    Args:
        output_dir: where to write.
        aggregate: "max" (default) or "mean" over a volume's slices for its per-category score.
        save_maps: write the maps and overlays (needs a network with the patch path).
        save_map_volumes: with ``save_maps``, the maps NIfTI too; False writes only the label image (what MONAI Label
            and the Deploy app read: the maps of a 320 x 320 x 16 volume take about 1.7 s to compress).
        max_overlays: overlay PNGs per volume at most.
        h5_source, series_uid: the run's reader settings (the maps' volume is read again with them).
    """

    def __init__(
        self,
        output_dir: str | Path,
        aggregate: str = "max",
        save_maps: bool = False,
        save_map_volumes: bool = True,
        max_overlays: int = 3,
        h5_source: str = "auto",
        series_uid: str | None = None,
    ):
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got '{aggregate}'")
        super().__init__()
        self.output_dir, self.aggregate = Path(output_dir), aggregate
        self.save_maps, self.max_overlays = as_flag(save_maps, "save_maps"), max_overlays
        self.save_map_volumes = as_flag(save_map_volumes, "save_map_volumes")
        self.h5_source, self.series_uid = h5_source, series_uid

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._check_maps)
        super().attach(engine)

    def _check_maps(self, engine: Engine) -> None:
        """Before any scan is read: maps need the patch path."""
        if self.save_maps and not unwrap(engine.network).has_patch_path:
            raise MapsError("save_maps needs the patch path: pass --method sdmad+mvfa and a model trained with it")

    def _write_maps(self, volumes: list[dict], network: Any, text: Any, in_memory: dict[str, Any]) -> None:
        """The maps NIfTI and overlays of every volume, recorded in its ``volumes`` entry (``in_memory``: the volumes
        an app handed over in memory, by name; the others are read again from their files)."""
        from sdmad.maps import (
            MAP_THRESHOLD,
            display_volume,
            label_slice,
            label_values,
            native_maps,
            slice_positions,
            write_label_nifti,
            write_map_nifti,
        )
        from sdmad.overlays import MappedSlice, overlay_png

        categories = network.signs.category_names
        label_names = label_values(categories)
        calibration = text.calibration  # the run's: None when the model's was made under another sign selection
        limits = calibration.map_thresholds if calibration and calibration.map_thresholds else MAP_THRESHOLD
        image_size = network.config_record()["image_size"]
        by_source: dict[str, list[dict]] = {}
        for row in self.collector.rows:
            by_source.setdefault(str(row["source"]), []).append(row)
        names = output_names([volume["source"] for volume in volumes])
        for volume in volumes:
            members = by_source[volume["source"]]
            stem = names[volume["source"]]
            source = in_memory.get(volume["source"], volume["source"])
            display = display_volume(source, self.h5_source, self.series_uid)
            maps = {r["slice_index"]: native_maps(r["maps"], *r["shape"], image_size) for r in members}
            if display.ndim == 4:
                if self.save_map_volumes:
                    path = self.output_dir / "maps" / f"{stem}_maps.nii.gz"
                    volume["maps"] = str(write_map_nifti(display, maps, ["anomaly", *categories], path))
                labels = {
                    r["slice_index"]: label_slice(maps[r["slice_index"]], r["decisions"], limits) for r in members
                }
                path = self.output_dir / "maps" / f"{stem}_labels.nii.gz"
                volume["labels"] = str(write_label_nifti(display, labels, label_names, path))
                volume["label_names"] = label_names
            positions = slice_positions(display) if display.ndim == 4 else {0: None}
            volume["overlays"] = []
            for row in overlay_slices(members, self.max_overlays):
                index = row["slice_index"]
                plane = display[0] if display.ndim == 3 else display[0, ..., positions[index]]
                item = MappedSlice(
                    image=np.asarray(plane, dtype=np.float32),
                    maps=maps[index],
                    scores=row["scores"],
                    decisions=row["decisions"],
                    title=f"{stem}, slice {index}: anomaly score {row['anomaly']:.3f}",
                )
                path = self.output_dir / "overlays" / f"{stem}_slice{index}.png"
                volume["overlays"].append(str(overlay_png(item, categories, path)))

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
        if self.save_maps:  # after the tables: a failure here loses none of them
            items = getattr(engine.data_loader.dataset, "data", [])
            in_memory = {str(i["id"]): i["image"] for i in items if isinstance(i.get("image"), MetaTensor)}
            self._write_maps(volumes, network, text, in_memory)
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
