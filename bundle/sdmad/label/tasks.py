"""MONAI Label tasks of SD-MAD: per-category findings (infer) and few-shot retraining (train).

Active learning is sdmad.label.uncertainty; a study's label format is sdmad.label.labels.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import itk
import nibabel as nib
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.train import TrainTask

from sdmad import RESEARCH_USE_ONLY
from sdmad.atomic import atomic_path, write_csv_atomic
from sdmad.data.errors import DataError
from sdmad.errors import one_line
from sdmad.label.datastore import FINAL
from sdmad.label.errors import Invalid
from sdmad.label.folder import CATEGORY_LABEL_SUFFIX
from sdmad.label.labels import read_category_label
from sdmad.label.scans import label_volume_categories, load
from sdmad.maps import label_values
from sdmad.predictor import BundlePredictor
from sdmad.workflows import run_workflow

logger = logging.getLogger(__name__)
NOT_FOR_DIAGNOSIS = f"SD-MAD suggestions for annotation; {RESEARCH_USE_ONLY}."
MAX_LEARNING_RATE = 1.0


class ServedModelTask(InferTask):
    """An infer task of the served model (a 3-D study in, always available: the served file or zero-shot CLIP)."""

    def __init__(self, predictor: BundlePredictor, model_path: Path, **info: Any):
        super().__init__(dimension=3, **info)
        self.predictor, self.model_path = predictor, model_path

    def is_valid(self) -> bool:
        return True

    def get_path(self, validate: bool = True) -> str | None:
        return str(self.model_path) if self.model_path.is_file() or not validate else None


class SDMADInferTask(ServedModelTask):
    """Classification result: per category the volume's score (max over slices), decision and margin, plus slices.

    Args:
        predictor: the served predictor.
        model_path: the served checkpoint (what `GET /model/sdmad` downloads; missing: zero-shot).
    """

    def __init__(self, predictor: BundlePredictor, model_path: Path):
        super().__init__(
            predictor,
            model_path,
            type=InferType.CLASSIFICATION,
            labels=predictor.categories,
            description="SD-MAD: per-category anomaly scores and decisions of every slice and the study",
        )

    def __call__(self, request: dict) -> tuple[None, dict]:
        return None, findings(self.predictor.predict(request["image"]))


def findings(result: dict) -> dict[str, Any]:
    """The JSON of an inference result: per category the study's score, decision, margin and positive slices, the
    study's entry, every slice's, the sign selection and the research-use note."""
    volume = result["volumes"][0]
    prediction = [
        {
            "idx": i,
            "label": name,
            "score": volume["scores"][name],
            "decision": volume["decisions"][name],
            "margin": volume["margins"][name],
            "positive_slices": volume["positive_slices"][name],
        }
        for i, name in enumerate(result["categories"])
    ]
    return {
        "prediction": prediction,
        "study": volume,
        "slices": result["slices"],
        "sign_selection": result["sign_selection"],
        "note": NOT_FOR_DIAGNOSIS,
    }


RESULT_EXTENSIONS = (".nii.gz", ".nii", ".nrrd")  # the Slicer and OHIF plugins ask for .nrrd


class SDMADMapsTask(ServedModelTask):
    """Segmentation result (what the 3D Slicer and OHIF plugins draw): the study's label image in its own geometry,
    each voxel the category (1..C) whose map is highest where it reaches the category's map threshold on a slice
    where the category is decided present (sdmad.maps.label_slice), 0 elsewhere; the JSON is the classification
    result plus ``label_names``. Listed for a served model with the patch path (methods sdmad+mvfa, mvfa).

    The request's ``result_extension`` picks the file format (NIfTI by default, NRRD as the plugins ask); the file
    is written to the request's ``result_dir`` (the server's scratch folder, set by the server, required), and the
    server removes it once sent; on a failure it is removed here.

    Args:
        predictor: the served predictor.
        model_path: the served checkpoint.
    """

    def __init__(self, predictor: BundlePredictor, model_path: Path):
        super().__init__(
            predictor,
            model_path,
            type=InferType.SEGMENTATION,
            labels=label_values(predictor.categories),
            description="SD-MAD maps: where each category decided present shows, as a label image",
        )

    def __call__(self, request: dict) -> tuple[str, dict]:
        extension = result_extension(request)
        results = Path(request["result_dir"])
        with tempfile.TemporaryDirectory(dir=results) as work:
            result = self.predictor.predict(request["image"], maps_dir=work)
            volume = result["volumes"][0]
            if "labels" not in volume:
                raise Invalid("a 2-D image has no label volume: use the classification model 'sdmad'")
            handle, name = tempfile.mkstemp(dir=results, prefix="sdmad_labels_", suffix=extension)
            os.close(handle)
            try:
                if extension == ".nrrd":  # ITK turns the NIfTI's RAS affine into NRRD's LPS space directions
                    itk.imwrite(itk.imread(volume["labels"]), name)
                else:
                    nib.save(nib.load(volume["labels"]), name)
            except BaseException:
                os.unlink(name)
                raise
        volume["labels"] = Path(name).name  # the file sent, not a server path
        return name, {**findings(result), "label_names": volume["label_names"]}


def result_extension(options: dict) -> str:
    """The label image's format a request asks for (``result_extension``; NIfTI by default); Invalid otherwise."""
    extension = str(options.get("result_extension") or ".nii.gz")
    if extension not in RESULT_EXTENSIONS:
        raise Invalid(f"result_extension {extension!r}: one of {list(RESULT_EXTENSIONS)}")
    return extension


class SDMADTrainTask(TrainTask):
    """Fine-tune the adapters on the studies labelled so far through the bundle's `training` workflow, then swap
    the new model in atomically (the served model stays intact if training fails).

    Args:
        bundle_root: the bundle.
        model_path: the served checkpoint (replaced atomically on success).
        runs_dir: where training runs are written.
        overrides: config overrides shared with inference (backbone, sign file, ...).
        categories: the model's categories.
        max_epochs: the most epochs a request may ask for (and the default).
        slices: slices of each study that carry its labels.
    """

    def __init__(
        self,
        bundle_root: Path,
        model_path: Path,
        runs_dir: Path,
        overrides: dict[str, Any],
        categories: list[str],
        max_epochs: int = 100,
        slices: Any = "all",
    ):
        super().__init__("SD-MAD few-shot retraining on the labelled studies")
        self.bundle_root, self.model_path, self.runs_dir = bundle_root, model_path, runs_dir
        self.overrides, self.categories, self.max_epochs, self.slices = overrides, categories, max_epochs, slices

    def config(self) -> dict[str, Any]:
        return {"max_epochs": self.max_epochs, "shots": 1, "learning_rate": 0.001}

    def options(self, params: dict[str, Any]) -> dict[str, Any]:
        """The training options of a request's ``params`` (defaults: `config()`); Invalid names a bad one."""
        unknown = sorted(set(params) - set(self.config()) - {"client_id"})  # MONAI Label's client adds its id
        if unknown:
            raise Invalid(f"unknown training options {unknown}; known: {sorted(self.config())}")
        options = {**self.config(), **{key: value for key, value in params.items() if key in self.config()}}
        epochs, shots = _integer(options["max_epochs"], "max_epochs"), _integer(options["shots"], "shots")
        if not 1 <= epochs <= self.max_epochs:
            raise Invalid(f"max_epochs={epochs}: must be between 1 and {self.max_epochs} (the server's bound)")
        if shots < 1:
            raise Invalid(f"shots={shots}: must be at least 1 (labelled studies per category)")
        try:
            rate = float(options["learning_rate"])
        except (TypeError, ValueError):
            rate = float("nan")
        if not 0 < rate <= MAX_LEARNING_RATE:
            raise Invalid(f"learning_rate={options['learning_rate']!r}: must be a number in (0, {MAX_LEARNING_RATE}]")
        return {"max_epochs": epochs, "shots": shots, "learning_rate": rate}

    def labelled(self, datastore: Datastore, shots: int) -> list[tuple[str, list[str], str]]:
        """(study path, categories, label volume or "") of every study with a final label: a category label, or a
        label volume (a corrected `sdmad_maps` result: its categories are the values it shows, its pixels the
        patch path's pixel labels); Invalid if a category has fewer than ``shots`` of them or a stored label is
        unusable."""
        studies = []
        for image_id in datastore.get_labeled_images():
            label = datastore.get_label_uri(image_id, FINAL)
            try:
                if label.endswith(CATEGORY_LABEL_SUFFIX):
                    categories, volume = read_category_label(label, self.categories), ""
                else:
                    categories, volume = label_volume_categories(load(label), self.categories, label), label
            except DataError as err:
                raise Invalid(f"study '{image_id}': {one_line(err)}; upload a corrected final label") from err
            studies.append((datastore.get_image_uri(image_id), categories, volume))
        counts = {c: sum(c in labels for _, labels, _ in studies) for c in self.categories}
        short = {c: n for c, n in counts.items() if n < shots}
        if short:
            raise Invalid(
                f"too few labelled studies for {shots} shot(s) of {sorted(short)}: label at least {shots} "
                f"per category (labelled so far: {counts})"
            )
        return studies

    def check(self, params: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """A request's options, validated with the labels before anything starts (what `__call__` will check)."""
        options = self.options(params)
        self.labelled(datastore, options["shots"])
        return options

    def __call__(self, request: dict, datastore: Datastore) -> dict[str, Any]:
        options = self.options({key: value for key, value in request.items() if key in self.config()})
        epochs, shots = options["max_epochs"], options["shots"]
        studies = self.labelled(datastore, shots)
        run_name = time.strftime("label_%Y%m%d_%H%M%S")
        table = self.runs_dir / run_name / "labelled_studies.csv"
        rows = [[path, "|".join(labels) or "normal", path, volume] for path, labels, volume in studies]  # own groups
        write_csv_atomic([["path", "labels", "patient", "mask"], *rows], table)
        normals = sum(not labels for _, labels, _ in studies)
        run_workflow(
            "training",
            self.bundle_root,
            extra_configs=["configs/csv_task.yaml"],
            csv_file=str(table),
            csv_mask_column="mask",
            output_root=str(self.runs_dir),
            run_name=run_name,
            epochs=epochs,
            learning_rate=options["learning_rate"],
            shots=shots,
            normal_shots=min(shots, normals),
            val_fraction=0.0,
            val_interval=epochs + 1,
            require_test=False,
            slices=self.slices,
            num_workers=0,
            reuse_freed_memory=False,  # a long-lived server: glibc's default, memory handed back between requests
            **self.overrides,
        )
        trained = self.runs_dir / run_name / "training" / "model.pt"
        with atomic_path(self.model_path) as temporary:
            temporary.write_bytes(trained.read_bytes())
        logger.info("new SD-MAD model from %d labelled studies: %s", len(studies), self.model_path)
        return {"model": str(self.model_path), "studies": len(studies), "epochs": epochs, "run": run_name}


def _integer(value: Any, name: str) -> int:
    """An integer option (JSON number or numeric string, as viewers send them); Invalid otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().lstrip("-").isdigit():
        raise Invalid(f"{name}={value!r}: must be a whole number")
    return int(value)
