"""Ignite/MONAI handlers of the SD-MAD workflows."""

from sdmad.handlers.checkpoints import (
    BestModelSaver,
    EpochCheckpointSaver,
    FinalModelSaver,
    ResumeFromCheckpoint,
    latest_checkpoint,
)
from sdmad.handlers.extra import ExtraHandlers, for_this_rank
from sdmad.handlers.inference_writer import InferenceWriter, aggregate_volumes, exit_if_skipped
from sdmad.handlers.predictions import PredictionCollector
from sdmad.handlers.progress import EpochProgressBar
from sdmad.handlers.report import EvaluationReport
from sdmad.handlers.unreadable import UnreadableScans

__all__ = [
    "BestModelSaver",
    "EpochProgressBar",
    "EpochCheckpointSaver",
    "EvaluationReport",
    "ExtraHandlers",
    "FinalModelSaver",
    "InferenceWriter",
    "PredictionCollector",
    "ResumeFromCheckpoint",
    "UnreadableScans",
    "aggregate_volumes",
    "for_this_rank",
    "exit_if_skipped",
    "latest_checkpoint",
]
