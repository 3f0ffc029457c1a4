"""In-process inference with the bundle's own `inference.yaml`, for apps that serve many requests
(MONAI Label, MONAI Deploy): the network is built once, each request runs the config's `evaluator`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser
from monai.data import MetaTensor

from sdmad.checkpoints import checkpoint_or_none, load_or_bypass

logger = logging.getLogger(__name__)


class BundlePredictor:
    """Scores and decisions per category for a scan, exactly as `python -m monai.bundle run inference` gives them.

    Args:
        bundle_root: the repository (bundle) root.
        overrides: config overrides (e.g. ``pretrained``, ``model_name``, ``checkpoint``, ``sign_file``, ``device``).
        zero_shot_until_trained: a checkpoint file that does not exist yet means zero-shot CLIP (an annotation app
            before its first training), instead of an error.
        config_files: the configs to read, merged in order (later files override); default the bundle's
            `configs/inference.yaml`.

    The checkpoint file is reloaded when it changes on disk (e.g. after a training run swapped it in atomically).
    """

    def __init__(
        self,
        bundle_root: str | Path,
        overrides: dict[str, Any] | None = None,
        zero_shot_until_trained: bool = False,
        config_files: Sequence[str | Path] | None = None,
    ):
        self.parser = ConfigParser()
        files = config_files or [Path(bundle_root) / "configs" / "inference.yaml"]
        self.parser.read_config([str(f) for f in files])
        self.parser["bundle_root"] = str(bundle_root)
        for key, value in (overrides or {}).items():
            self.parser[key] = value
        self.parser["save_map_volumes"] = False  # with maps, the label image only: all the servers read
        self.network = self.parser.get_parsed_content("network")
        self.parser["network"] = self.network  # built once; every request's evaluator reuses it
        self.categories: list[str] = self.network.signs.category_names
        self.checkpoint = checkpoint_or_none(self.parser.get_parsed_content("checkpoint"))
        self.zero_shot_until_trained = zero_shot_until_trained
        self._weights_stamp: object = ()
        self._lock = threading.Lock()

    def _current_stamp(self) -> object:
        if self.checkpoint is None:
            return None
        path = Path(self.checkpoint)
        return (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else "missing"

    def refresh_weights(self) -> None:
        """Load the checkpoint if it changed since the last call (CheckpointError if it is missing or unusable)."""
        stamp = self._current_stamp()
        if stamp != self._weights_stamp:
            untrained = stamp == "missing" and self.zero_shot_until_trained
            load_or_bypass(self.network, None if untrained else self.checkpoint)  # CheckpointError if missing/bad
            self._weights_stamp = stamp
            logger.info(
                "SD-MAD weights: %s",
                "zero-shot CLIP (adapters off)" if untrained or not self.checkpoint else self.checkpoint,
            )

    @property
    def has_maps(self) -> bool:
        """Whether the served network makes maps (a method with the patch path)."""
        return self.network.has_patch_path

    def predict(self, scan: str | Path | MetaTensor, maps_dir: str | Path | None = None) -> dict[str, Any]:
        """`predictions.json` of the inference run on ``scan``: a file, a DICOM series folder, or a volume already
        in memory (a channel-first MetaTensor with its affine; its meta `filename_or_obj` names it in the output).

        With ``maps_dir`` (a network with the patch path), each volume's label image NIfTI
        (sdmad.handlers.InferenceWriter) is kept there; its entry names it ("labels") with its "label_names". The
        maps NIfTI, which neither server reads, is not written."""
        with self._lock, tempfile.TemporaryDirectory() as out:
            self.refresh_weights()
            # a tuple is a leaf to the config parser (a dict or list would be parsed as config)
            self.parser["input"] = (
                ({"image": scan, "id": scan.meta["filename_or_obj"]},) if isinstance(scan, MetaTensor) else str(scan)
            )
            self.parser["output_dir"] = out
            self.parser["save_maps"], self.parser["max_overlays"] = maps_dir is not None, 0
            self.parser.get_parsed_content("evaluator", lazy=False).run()
            predictions = json.loads((Path(out) / "predictions.json").read_text())
            if maps_dir is not None:
                Path(maps_dir).mkdir(parents=True, exist_ok=True)
                for volume in predictions["volumes"]:
                    if "labels" in volume:  # none for a 2-D image
                        kept = Path(maps_dir) / Path(volume["labels"]).name
                        shutil.move(volume["labels"], kept)
                        volume["labels"] = str(kept)
            return predictions
