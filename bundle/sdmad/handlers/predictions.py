"""Collect per-slice predictions of an evaluator run, gathered from every process."""

from __future__ import annotations

from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events

from sdmad.checkpoints import unwrap


def _as_list(value: Any, size: int) -> list:
    if value is None:
        return [None] * size
    if hasattr(value, "tolist"):
        return value.tolist()
    return list(value)


class PredictionCollector:
    """Accumulates one row per slice: source, slice index, s_c, p_c, anomaly score, (if given) labels and, for the
    patch path, the slice's patch-grid maps and native size.

    After the run, ``rows`` holds every process's rows (all-gathered), in a stable order (source, slice).
    """

    def __init__(self):
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._gather)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output
        scores = output["scores"].detach().float().cpu().numpy()
        size = len(scores)
        decisions = output["decisions"].detach().cpu().numpy()
        anomaly = output["anomaly"].detach().float().cpu().numpy()
        margins = output["margins"].detach().float().cpu().numpy()
        paper_margins = output["paper_margins"].detach().float().cpu().numpy()
        labels = output["label"].detach().cpu().numpy() if output.get("label") is not None else None
        sources, slices = _as_list(output.get("source"), size), _as_list(output.get("slice_index"), size)
        maps = output.get("maps")
        if maps is not None:  # patch-grid maps (float16 keeps a large test set's in memory) and slice sizes
            maps = maps.detach().to(torch.float16).cpu().numpy()
            shapes = np.asarray(output["image_shape"]) if output.get("image_shape") is not None else None
        for i in range(size):
            row = {
                "source": sources[i],
                "slice_index": None if slices[i] is None else int(slices[i]),
                "scores": scores[i],
                "decisions": decisions[i].astype(bool),
                "anomaly": float(anomaly[i]),
                "margins": margins[i],
                "paper_margins": paper_margins[i],
            }
            if labels is not None:
                row["label"] = labels[i]
            if maps is not None:
                row["maps"] = maps[i]
                if shapes is not None:
                    row["shape"] = tuple(int(v) for v in shapes[i][1:])  # (rows, columns)
            self.rows.append(row)

    def _gather(self, engine: Engine) -> None:
        if idist.get_world_size() > 1:
            self.rows = [row for shard in idist.all_gather(self.rows) for row in shard]
        self.rows.sort(key=lambda row: (str(row["source"]), row["slice_index"] or 0))

    def arrays(self) -> dict[str, np.ndarray]:
        """Stacked arrays: scores, decisions, margins, paper_margins [N, C], anomaly [N] and labels [N, C] when
        present."""
        out = {
            name: np.stack([r[name] for r in self.rows]) for name in ("scores", "decisions", "margins", "paper_margins")
        }
        out["anomaly"] = np.array([r["anomaly"] for r in self.rows])
        if self.rows and "label" in self.rows[0]:
            out["label"] = np.stack([r["label"] for r in self.rows])
        return out


class PredictionWriter:
    """Base of the handlers that write files from a run's gathered predictions: collect on every process, then
    ``write(engine, network)`` on rank 0 once the run completes."""

    def __init__(self):
        self.collector = PredictionCollector()

    def attach(self, engine: Engine) -> None:
        self.collector.attach(engine)  # gathers on COMPLETED before this handler runs
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if idist.get_rank() == 0:
            self.write(engine, unwrap(engine.network))

    def write(self, engine: Engine, network: Any) -> None:
        raise NotImplementedError
