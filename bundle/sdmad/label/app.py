"""The MONAI Label app of the SD-MAD bundle (the app folder's main.py only subclasses it).

Server config (`--conf key value`): `bundle_root` (default: two folders above the app), `model` (the served
checkpoint, default `<bundle>/models/model.pt`; missing: zero-shot CLIP until the first training),
`model_name`, `pretrained`, `quick_gelu`, `sign_file`, `decision_rule` (paper, or calibrated: the thresholds stored
in the served model), `method` and `mvfa_object` (default: the served model's), `max_epochs` (the bound of one
training), `slices`;
`cors_origins` and `allowed_hosts` are read by the web server (sdmad.label.server).

It is served by sdmad.label.server (`--uvicorn_app sdmad.label.server:app`, as scripts/monailabel_app/serve.py
does), which adds the guards of a server left running; started by MONAI Label's own web app it refuses to start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore

import sdmad
from sdmad.checkpoints import read_checkpoint, recorded_network
from sdmad.errors import one_line, project_error
from sdmad.label import SERVER_APP
from sdmad.label.datastore import StudiesDatastore
from sdmad.label.errors import Invalid, NotFound, RequestError, ServerError
from sdmad.label.tasks import SDMADInferTask, SDMADMapsTask, SDMADTrainTask
from sdmad.label.uncertainty import UncertaintyCache, UncertaintyStrategy
from sdmad.predictor import BundlePredictor

logger = logging.getLogger(__name__)
BACKBONE_KEYS = (
    "model_name",
    "pretrained",
    "quick_gelu",
    "sign_file",
    "image_size",
    "device",
    "decision_rule",
    "method",
    "mvfa_object",
)


class SDMADLabelApp(MONAILabelApp):
    """Infer (`sdmad`: findings; `sdmad_maps`: the maps as a label image, for a model with the patch path), train
    (`sdmad`) and active learning (`sdmad_uncertainty`) over the bundle's configs."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        self.bundle_root = Path(conf.get("bundle_root", Path(app_dir).resolve().parents[1]))
        self.model_path = Path(conf.get("model", self.bundle_root / "models" / "model.pt"))
        # the served model's network (method, image size) unless the conf names them: inference builds the
        # network it needs, and training makes models of the same kind
        served = recorded_network(read_checkpoint(self.model_path)) if self.model_path.is_file() else {}
        self.overrides: dict[str, Any] = {
            **served,
            **{key: conf_value(conf[key]) for key in BACKBONE_KEYS if key in conf},
        }
        self.predictor = BundlePredictor(
            self.bundle_root,
            {**self.overrides, "checkpoint": str(self.model_path), "num_workers": 0},
            zero_shot_until_trained=True,
        )
        self.max_epochs = int(conf.get("max_epochs", 100))
        self.slices = conf_value(conf.get("slices", "all"))
        self.uncertainty: UncertaintyCache | None = None  # made with the strategies (they need the datastore)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="SD-MAD",
            description="Sign-driven few-shot multi-anomaly detection: per-category findings",
            version=sdmad.__version__,
            labels=self.predictor.categories,
        )

    def init_datastore(self) -> Datastore:
        return StudiesDatastore(self.studies, self.predictor.categories, settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD)

    def init_infers(self) -> dict:
        infers = {"sdmad": SDMADInferTask(self.predictor, self.model_path)}
        if self.predictor.has_maps:  # a served model with the patch path: its maps as a label image
            infers["sdmad_maps"] = SDMADMapsTask(self.predictor, self.model_path)
        return infers

    def init_trainers(self) -> dict:
        return {
            "sdmad": SDMADTrainTask(
                self.bundle_root,
                self.model_path,
                Path(self.app_dir) / "train_runs",
                self.overrides,
                self.predictor.categories,
                self.max_epochs,
                self.slices,
            )
        }

    def init_strategies(self) -> dict:
        self.uncertainty = UncertaintyCache(self.predictor, self._datastore, self.model_path)
        return {"sdmad_uncertainty": UncertaintyStrategy(self.uncertainty)}

    def on_init_complete(self) -> None:
        """MONAI Label's web app calls this at start-up: refuse, it lacks the guards (see sdmad.label.server)."""
        raise RuntimeError(
            f"the SD-MAD app must be served by {SERVER_APP}: start it with scripts/monailabel_app/"
            f"serve.py, or add `--uvicorn_app {SERVER_APP}` to `monailabel start_server`"
        )

    def start_serving(self) -> None:
        """sdmad.label.server's start-up: the uncertainty cache's thread, then MONAI Label's start-up jobs."""
        if self.uncertainty is not None:
            self.uncertainty.start()
        super().on_init_complete()

    def stop_serving(self) -> None:
        if self.uncertainty is not None:
            self.uncertainty.stop()

    def _trainer(self, model: Any) -> SDMADTrainTask:
        if model not in self._trainers:
            raise NotFound(f"unknown trainer {model!r}; trainers: {sorted(self._trainers)}")
        return self._trainers[model]

    def training_options(self, model: str, params: dict[str, Any]) -> dict[str, Any]:
        """A training request's options, validated with the labels before it starts (NotFound, Invalid)."""
        return self._trainer(model).check(params, self.datastore())

    def infer(self, request: dict, datastore: Datastore | None = None) -> dict:
        """Only image ids of the studies folder (MONAI Label would also take any path on the server, or a path
        relative to its working folder before the id); failures as RequestErrors naming the study."""
        datastore = datastore or self.datastore()
        if request.get("model") not in self._infers:
            raise NotFound(f"unknown model {request.get('model')!r}; models: {sorted(self._infers)}")
        image = request.get("image")
        request = {**request, "image": datastore.get_image_uri(image)}  # NotFound for anything but a study id
        try:
            return super().infer(request, datastore)
        except RequestError:  # a task's own answer to a bad request (a 4xx naming it)
            raise
        except Exception as err:  # the server stays up; the client learns what failed
            cause = project_error(err)
            if cause is not None:
                raise Invalid(f"study '{image}': {one_line(cause)}") from err
            logger.exception("inference on study '%s' failed", image)
            raise ServerError(f"inference on study '{image}' failed: {type(err).__name__}: {one_line(err)}") from err

    def next_sample(self, request: dict) -> dict:
        if request.get("strategy") not in self._strategies:
            raise NotFound(
                f"unknown active learning strategy {request.get('strategy')!r}; strategies: {sorted(self._strategies)}"
            )
        return super().next_sample(request)

    def train(self, request: dict) -> dict:
        self._trainer(request.get("model"))
        return super().train(request)


def conf_value(text: Any) -> Any:
    """Server conf values arrive as strings: parse JSON where it is JSON (numbers, lists, booleans, null)."""
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text
