"""Ignite/MONAI handlers of the SD-MAD workflows."""

from sdmad.handlers.checkpoints import (
    BestModelSaver,
    EpochCheckpointSaver,
    FinalModelSaver,
    ResumeFromCheckpoint,
    latest_checkpoint,
)
from sdmad.handlers.inference_writer import InferenceWriter, aggregate_volumes
from sdmad.handlers.predictions import PredictionCollector
from sdmad.handlers.progress import EpochProgressBar
from sdmad.handlers.report import EvaluationReport

__all__ = [
    "BestModelSaver",
    "EpochProgressBar",
    "EpochCheckpointSaver",
    "EvaluationReport",
    "FinalModelSaver",
    "InferenceWriter",
    "PredictionCollector",
    "ResumeFromCheckpoint",
    "aggregate_volumes",
    "latest_checkpoint",
]
