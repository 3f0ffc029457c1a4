"""The SD-MAD MONAI Deploy application: `python app.py -i <study folder> -o <output folder> -m <model folder>`.

A folder of DICOM files (one or more studies) is read by the SDK, its MR image series are selected and each is
scored; the output folder gets a findings JSON per series and a DICOM SR per study. A folder of NIfTI files (no
DICOM) is scored file by file, JSON only (research use). See docs/deploy.md.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from monai.deploy.conditions import CountCondition
from monai.deploy.core import Application, init_app_context
from monai.deploy.operators import DICOMDataLoaderOperator, DICOMSeriesSelectorOperator

import sdmad
from sdmad.deploy.operators import (
    MR_IMAGE_SERIES_RULES,
    FindingsWriterOperator,
    NiftiScansOperator,
    SDMADInferenceOperator,
    SeriesVolumesOperator,
)
from sdmad.deploy.scans import input_kind

logger = logging.getLogger(__name__)


class SDMADApp(Application):
    """DICOM study or NIfTI scans -> SD-MAD findings (JSON per series, DICOM SR per study)."""

    name = "sdmad"
    description = f"Sign-driven few-shot multi-anomaly detection (SD-MAD); {sdmad.RESEARCH_USE_ONLY}"
    version = sdmad.__version__

    def compose(self):
        context = init_app_context(self.argv)
        input_path, output_path = Path(context.input_path), Path(context.output_path)
        model_path = Path(context.model_path)
        kind = input_kind(input_path)  # before anything runs: a folder with nothing to read is a clear error
        logger.info("input %s (%s), model %s, output %s", input_path, kind, model_path, output_path)

        inference = SDMADInferenceOperator(self, model_folder=model_path, name="sdmad_inference")
        writer = FindingsWriterOperator(
            self, output_folder=output_path, model_folder=model_path, name="findings_writer"
        )
        if kind == "dicom":
            loader = DICOMDataLoaderOperator(
                self, CountCondition(self, 1), input_folder=input_path, name="dicom_loader"
            )
            selector = DICOMSeriesSelectorOperator(
                self, rules=MR_IMAGE_SERIES_RULES, all_matched=True, name="series_selector"
            )
            volumes = SeriesVolumesOperator(self, input_folder=input_path, name="series_volumes")
            self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
            self.add_flow(selector, volumes, {("study_selected_series_list", "study_selected_series_list")})
            self.add_flow(volumes, inference, {("scans", "scans")})
        else:
            scans = NiftiScansOperator(self, CountCondition(self, 1), input_folder=input_path, name="nifti_scans")
            self.add_flow(scans, inference, {("scans", "scans")})
        self.add_flow(inference, writer, {("findings", "findings")})


def main(argv: list[str] | None = None) -> None:
    """Run the app with the arguments ``argv`` (default: the command line's), e.g. ``["-i", IN, "-o", OUT]``."""
    # holoscan's Application takes the whole command line, interpreter and script included, as `argv`
    app = SDMADApp() if argv is None else SDMADApp([sys.executable, "app.py", *argv])
    app.run()
