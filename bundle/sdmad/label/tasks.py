"""MONAI Label tasks of SD-MAD: per-category findings (infer), few-shot retraining (train), next study (strategy).

Labels a viewer stores for a study: a JSON file uploaded as its final label
(`PUT /datastore/label?image=<id>&tag=final`, file `<anything>.json`):
``{"categories": ["Craniotomy", "Enlarged ventricles"]}`` (an empty list: normal).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from sdmad.atomic import atomic_path
from sdmad.checkpoints import CheckpointError
from sdmad.data.errors import DataError
from sdmad.experiments import run_workflow
from sdmad.predictor import BundlePredictor

logger = logging.getLogger(__name__)
NOT_FOR_DIAGNOSIS = "SD-MAD suggestions for annotation; research use only, not for diagnosis."


def input_error(err: BaseException | None) -> BaseException | None:
    """The DataError or CheckpointError behind an exception (MONAI's Compose and Ignite wrap them), if any."""
    while err is not None:
        if isinstance(err, (DataError, CheckpointError)):
            return err
        err = err.__cause__ or err.__context__
    return None


class SDMADInferTask(InferTask):
    """Classification result: per category the volume's score (max over slices), decision and margin, plus slices."""

    def __init__(self, predictor: BundlePredictor):
        super().__init__(type=InferType.CLASSIFICATION, labels=predictor.categories, dimension=3,
                         description="SD-MAD: per-category anomaly scores and decisions of every slice and the study")
        self.predictor = predictor

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: dict) -> tuple[None, dict]:
        result = self.predictor.predict(request["image"])
        volume = result["volumes"][0]
        prediction = [{"idx": i, "label": name, "score": volume["scores"][name], "decision": volume["decisions"][name],
                       "margin": volume["margins"][name], "positive_slices": volume["positive_slices"][name]}
                      for i, name in enumerate(self.predictor.categories)]
        return None, {"prediction": prediction, "study": volume, "slices": result["slices"],
                      "sign_selection": result["sign_selection"], "note": NOT_FOR_DIAGNOSIS}


def read_category_label(path: str | Path, categories: list[str]) -> list[str]:
    """The categories of a stored study label; a malformed label is a DataError naming the file."""
    try:
        content = json.loads(Path(path).read_text())
        found = content["categories"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not an SD-MAD study label ({{\"categories\": [...]}}): {err}") from err
    unknown = [c for c in found if c not in categories]
    if unknown:
        raise DataError(f"{path}: unknown categories {unknown} (known: {categories})")
    return list(found)


class SDMADTrainTask(TrainTask):
    """Fine-tune the adapters on the studies labelled so far through the bundle's `training` workflow, then swap
    the new model in atomically (the served model stays intact if training fails).

    Args:
        bundle_root: the bundle.
        model_file: the served checkpoint (replaced atomically on success).
        runs_dir: where training runs are written.
        overrides: config overrides shared with inference (backbone, sign file, ...).
        max_epochs: the upper bound of a request's epochs.
        slices: slices of each study that carry its labels.
    """

    def __init__(self, bundle_root: Path, model_file: Path, runs_dir: Path, overrides: dict[str, Any],
                 categories: list[str], max_epochs: int = 100, slices: Any = "all"):
        super().__init__("SD-MAD few-shot retraining on the labelled studies")
        self.bundle_root, self.model_file, self.runs_dir = bundle_root, model_file, runs_dir
        self.overrides, self.categories, self.max_epochs, self.slices = overrides, categories, max_epochs, slices

    def config(self) -> dict[str, Any]:
        return {"max_epochs": self.max_epochs, "shots": 1, "learning_rate": 0.001}

    def _labelled(self, datastore: Datastore) -> list[tuple[str, list[str]]]:
        studies = []
        for image_id in datastore.get_labeled_images():
            label = datastore.get_label_uri(image_id, DefaultLabelTag.FINAL)
            studies.append((datastore.get_image_uri(image_id), read_category_label(label, self.categories)))
        counts = {c: sum(c in labels for _, labels in studies) for c in self.categories}
        missing = [c for c, n in counts.items() if n == 0]
        if missing:
            raise DataError(f"no labelled study yet for {missing}: label at least one study per category "
                            f"(labelled so far: {counts})")
        return studies

    def __call__(self, request: dict, datastore: Datastore) -> dict[str, Any]:
        studies = self._labelled(datastore)
        epochs = min(int(request.get("max_epochs", self.max_epochs)), self.max_epochs)
        run_name = time.strftime("label_%Y%m%d_%H%M%S")
        table = self.runs_dir / run_name / "labelled_studies.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        with open(table, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "labels", "patient"])  # each study its own group
            writer.writerows([path, "|".join(labels) or "normal", path] for path, labels in studies)
        shots = int(request.get("shots", 1))
        run_workflow("training", self.bundle_root, extra_configs=["configs/csv_task.yaml"], csv_file=str(table),
                     output_root=str(self.runs_dir), run_name=run_name, epochs=epochs,
                     shots=shots, normal_shots=min(shots, sum(not labels for _, labels in studies)), val_fraction=0.0,
                     val_interval=epochs + 1, require_test=False, slices=self.slices, num_workers=0, **self.overrides)
        trained = self.runs_dir / run_name / "training" / "model.pt"
        with atomic_path(self.model_file) as temporary:
            temporary.write_bytes(trained.read_bytes())
        logger.info("new SD-MAD model from %d labelled studies: %s", len(studies), self.model_file)
        return {"model": str(self.model_file), "studies": len(studies), "epochs": epochs, "run": run_name}


class UncertaintyStrategy(Strategy):
    """The unlabelled study whose least certain category decision is closest to the anchor boundary
    (smallest |margin| over categories)."""

    def __init__(self, predictor: BundlePredictor):
        super().__init__("SD-MAD: the study with the least certain category decision")
        self.predictor = predictor

    def __call__(self, request: dict, datastore: Datastore) -> dict[str, Any] | None:
        candidates = datastore.get_unlabeled_images()
        if not candidates:
            return None
        uncertainty = {}
        for image_id in candidates:
            try:
                margins = self.predictor.predict(datastore.get_image_uri(image_id))["volumes"][0]["margins"]
            except Exception as err:  # an unreadable study is never proposed; the others still are
                if input_error(err) is None:
                    raise
                logger.warning("active learning skips %s: %s", image_id, input_error(err))
                continue
            uncertainty[image_id] = min(abs(m) for m in margins.values())
        if not uncertainty:
            return None
        chosen = min(uncertainty, key=uncertainty.get)
        return {"id": chosen, "uncertainty": uncertainty[chosen]}


