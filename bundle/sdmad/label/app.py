"""The MONAI Label app of the SD-MAD bundle (the app folder's main.py only subclasses it).

Server config (`--conf key value`): `bundle_root` (default: two folders above the app), `model` (the served
checkpoint, default `<bundle>/models/model.pt`; missing: zero-shot CLIP until the first training),
`model_name`, `pretrained`, `quick_gelu`, `sign_file`, `max_epochs` (the bound of one training), `slices`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore

import sdmad
from sdmad.label.tasks import SDMADInferTask, SDMADTrainTask, UncertaintyStrategy, input_error
from sdmad.predictor import BundlePredictor

logger = logging.getLogger(__name__)
STUDY_PATTERNS = ("*.nii.gz", "*.nii", "*.h5", "*.dicom", "*.png")  # a `<id>.dicom/` folder holds a DICOM series
LABEL_PATTERN = "*.label.json"
BACKBONE_KEYS = ("model_name", "pretrained", "quick_gelu", "sign_file", "image_size", "device")


class SDMADLabelApp(MONAILabelApp):
    """Infer (`sdmad`), train (`sdmad`) and active learning (`sdmad_uncertainty`) over the bundle's configs."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        self.bundle_root = Path(conf.get("bundle_root", Path(app_dir).resolve().parents[1]))
        self.model_file = Path(conf.get("model", self.bundle_root / "models" / "model.pt"))
        self.overrides: dict[str, Any] = {key: _value(conf[key]) for key in BACKBONE_KEYS if key in conf}
        self.predictor = BundlePredictor(self.bundle_root, {**self.overrides, "checkpoint": str(self.model_file),
                                                            "num_workers": 0}, zero_shot_until_trained=True)
        self.max_epochs = int(conf.get("max_epochs", 100))
        self.slices = _value(conf.get("slices", "all"))
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="SD-MAD",
                         description="Sign-driven few-shot multi-anomaly detection: per-category findings",
                         version=sdmad.__version__, labels=self.predictor.categories)

    def init_datastore(self) -> Datastore:
        return LocalDatastore(self.studies, extensions=(*STUDY_PATTERNS, LABEL_PATTERN), auto_reload=True)

    def init_infers(self) -> dict:
        return {"sdmad": SDMADInferTask(self.predictor)}

    def init_trainers(self) -> dict:
        return {"sdmad": SDMADTrainTask(self.bundle_root, self.model_file, Path(self.app_dir) / "train_runs",
                                        self.overrides, self.predictor.categories, self.max_epochs, self.slices)}

    def init_strategies(self) -> dict:
        return {"sdmad_uncertainty": UncertaintyStrategy(self.predictor)}

    def infer(self, request: dict, datastore: Datastore | None = None) -> dict:
        """Only image ids of the studies folder (MONAI Label would also take any path on the server), and errors as
        JSON: 404 unknown image id or model, 422 a study that cannot be read, 500 anything else."""
        datastore = datastore or self.datastore()
        image = request.get("image")
        if request.get("model") not in self._infers:
            raise HTTPException(status_code=404, detail=f"unknown model '{request.get('model')}'; "
                                                        f"models: {sorted(self._infers)}")
        if not isinstance(image, str) or image not in datastore.list_images():
            raise HTTPException(status_code=404, detail=f"unknown image id {image!r}: use an id of the studies "
                                                        f"folder (GET /datastore/?output=all)")
        try:
            return super().infer(request, datastore)
        except HTTPException:
            raise
        except Exception as err:  # the server stays up; the client learns what failed
            cause = input_error(err)
            if cause is not None:
                raise HTTPException(status_code=422, detail=str(cause)) from err
            raise HTTPException(status_code=500, detail=f"{type(err).__name__}: {err}") from err


def _value(text: Any) -> Any:
    """Server conf values arrive as strings: parse JSON where it is JSON (numbers, lists, booleans, null)."""
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text
