"""The app's own operators; DICOM loading and series selection are the SDK's.

    DICOMDataLoaderOperator -> DICOMSeriesSelectorOperator -> SeriesVolumesOperator -+
                                                               NiftiScansOperator ---+-> SDMADInferenceOperator
                                                                                          -> FindingsWriterOperator

Inference is `sdmad.predictor.BundlePredictor`: the model folder's `inference.yaml` evaluator, the code path of
`python -m monai.bundle run inference`, with the network built once.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from monai.deploy.core import ConditionType, Fragment, Operator, OperatorSpec
from monai.deploy.operators import DICOMSeriesToVolumeOperator

from sdmad.atomic import write_json_atomic
from sdmad.data.errors import DataError
from sdmad.deploy.model_folder import model_folder_configs
from sdmad.deploy.scans import ScanInput, check_series, image_to_metatensor, input_headers, nifti_files
from sdmad.deploy.segmentation import SeriesSegmentation, series_segmentation
from sdmad.deploy.structured_report import NOT_FOR_DIAGNOSIS, SeriesFindings, study_report
from sdmad.predictor import BundlePredictor

logger = logging.getLogger(__name__)

# SDK selection rules: every series of MR Image Storage (single-frame MR images); other SOP classes of the study
# (SR, spectroscopy, raw data, presentation states, ...) are skipped even when their Modality is MR.
MR_IMAGE_SERIES_RULES = """{"selections": [{"name": "MR image series", "conditions": {
    "Modality": "(?i)^MR$", "SOPClassUID": "^1\\\\.2\\\\.840\\\\.10008\\\\.5\\\\.1\\\\.4\\\\.1\\\\.1\\\\.4$"}}]}"""


class SeriesVolumesOperator(DICOMSeriesToVolumeOperator):
    """Every selected series of every study -> a volume in memory (the SDK's operator converts only the first).

    Named input: ``study_selected_series_list`` (the SDK selector's output). Named output: ``scans``, a list of
    ScanInput. Raises a DataError naming the file when a selected series breaks a rule of the bundle's loader
    (sdmad.data.dicom_series: no pixel data, a mosaic, a 4-D series), and when nothing was selected.
    """

    def __init__(self, fragment: Fragment, *args, input_folder: Path, **kwargs):
        self.input_folder = Path(input_folder)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.input_name_series)
        spec.output("scans")

    def compute(self, op_input, op_output, context):
        selections = op_input.receive(self.input_name_series) or []
        headers = input_headers(self.input_folder) if selections else []
        scans = [
            self.series_scan(selection.study, selected.series, headers)
            for selection in selections
            for selected in selection.selected_series
        ]
        if not scans:
            raise DataError("no MR image series (MR Image Storage) in the input study or studies; nothing to score")
        op_output.emit(scans, "scans")

    def series_scan(self, study, series, headers) -> ScanInput:
        # The SDK's per-series steps (convert_to_image runs them for the first selected series only), after the
        # bundle loader's own checks (pixels present, no mosaic, not 4-D), so that both read a series alike.
        check_series(series, headers)
        self.prepare_series(series)
        metadata = self.create_metadata(series)
        metadata["affine"] = series.nifti_affine_transform
        name = f"{study.StudyInstanceUID}/{series.SeriesInstanceUID}"
        image = self.create_volumetric_image(self.generate_voxel_data(series), metadata)
        logger.info(
            "series %s (%s): %s voxels", series.SeriesInstanceUID, series.SeriesDescription, image.asnumpy().shape
        )
        return ScanInput(name, image_to_metatensor(image, name), study, series)


class NiftiScansOperator(Operator):
    """The NIfTI files of the input folder (research use) -> ``scans``, read later by the bundle's own loader."""

    def __init__(self, fragment: Fragment, *args, input_folder: Path, **kwargs):
        self.input_folder = Path(input_folder)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.output("scans")

    def compute(self, op_input, op_output, context):
        files = nifti_files(self.input_folder)
        if not files:
            raise DataError(f"{self.input_folder}: no NIfTI files (.nii, .nii.gz)")
        op_output.emit([ScanInput(f.name.split(".nii")[0], f) for f in files], "scans")


class SDMADInferenceOperator(Operator):
    """``scans`` -> ``findings``: each scan's `predictions.json` content (per slice and per volume, scores and
    decisions per category; with a model that makes maps, its label image too), from the model folder's bundle
    config. The model loads when the app is composed, so a bad model folder fails before any input is read."""

    def __init__(self, fragment: Fragment, *args, model_folder: Path, **kwargs):
        self.model_folder = Path(model_folder)
        # Volumes arrive in memory: DataLoader workers would only copy them (and fork a multi-threaded process).
        self.predictor = BundlePredictor(
            self.model_folder, {"num_workers": 0}, config_files=model_folder_configs(self.model_folder)
        )
        self.predictor.refresh_weights()  # the checkpoint is read (and checked against the network) now
        # a model with maps: each volume's label image, read by the writer for the SEG (removed at exit)
        self.maps_folder = tempfile.TemporaryDirectory(prefix="sdmad-maps-") if self.predictor.has_maps else None
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("scans")
        spec.output("findings").condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        scans: list[ScanInput] = op_input.receive("scans")
        findings = []
        for scan in scans:
            # maps (label images) for DICOM series only: a NIfTI file gets no SEG
            maps = self.maps_folder.name if self.maps_folder is not None and scan.series is not None else None
            predictions = self.predictor.predict(scan.scan, maps_dir=maps)
            findings.append((scan, predictions))
            volume = predictions["volumes"][0]
            positive = [c for c, yes in volume["decisions"].items() if yes]
            logger.info("%s: %d slices, positive: %s", scan.name, volume["slices"], ", ".join(positive) or "none")
        op_output.emit(findings, "findings")


def findings_record(scan: ScanInput, predictions: dict, model_folder: Path, segmentation: dict) -> dict:
    """The findings JSON of one series (or NIfTI file); ``segmentation``: ``{"segmentation": <SEG file name>}``, or
    None and a ``segmentation_note`` saying why there is none (the maps' temporary paths are left out)."""
    record = {"note": NOT_FOR_DIAGNOSIS, "model_folder": str(model_folder), "source": scan.name}
    if scan.series is not None:
        record.update(
            study_instance_uid=str(scan.study.StudyInstanceUID),
            series_instance_uid=str(scan.series.SeriesInstanceUID),
            series_description=str(scan.series.SeriesDescription or ""),
            modality=str(scan.series.Modality or ""),
        )
    volume = {k: v for k, v in predictions["volumes"][0].items() if k not in ("labels", "overlays")}
    record.update(
        categories=predictions["categories"],
        backbone=predictions["backbone"],
        **segmentation,
        volume=volume,
        slices=predictions["slices"],
        sign_selection=predictions["sign_selection"],
    )
    return record


class FindingsWriterOperator(Operator):
    """``findings`` -> in the output folder, `<series UID or file name>.sdmad.json` per scan,
    `<series UID>.sdmad-seg.dcm` per DICOM series with a category decided present (a model that makes maps) and
    `<study UID>.sdmad-sr.dcm` per DICOM study, referencing the SEGs. All files are staged first and moved into
    place together, so a failure leaves none of this run's outputs behind."""

    def __init__(self, fragment: Fragment, *args, output_folder: Path, model_folder: Path, **kwargs):
        self.output_folder, self.model_folder = Path(output_folder), Path(model_folder)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("findings")

    def compute(self, op_input, op_output, context):
        write_findings(op_input.receive("findings"), self.output_folder, self.model_folder)


def _series_segmentation(instances: list, volume: dict) -> tuple[SeriesSegmentation | None, str]:
    """The series' SEG (sdmad.deploy.segmentation), or None and why there is none. A label image that cannot be
    placed on the series costs the SEG only (a warning): the JSON and SR are still written. The label image's
    temporary file is removed."""
    try:
        if "labels" not in volume:
            return None, "the model makes no maps (method sdmad)"
        segmentation = series_segmentation(instances, volume["labels"], volume["decisions"], volume["label_names"])
        return segmentation, "no category present with labelled pixels" if segmentation is None else ""
    except DataError as error:
        logger.warning("no SEG for %s", error)
        return None, str(error)
    finally:
        if "labels" in volume:
            Path(volume["labels"]).unlink(missing_ok=True)


def write_findings(findings: list[tuple[ScanInput, dict]], output_folder: Path, model_folder: Path) -> list[Path]:
    """The files of ``FindingsWriterOperator``, staged in ``output_folder`` and moved into place together."""
    output_folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_folder, prefix=".sdmad-staging-"))
    description = f"{findings[0][1]['backbone']}, {model_folder.name}"  # one model for every scan
    try:
        by_study: dict[str, list[SeriesFindings]] = {}
        for scan, predictions in findings:
            volume, stem = predictions["volumes"][0], scan.name
            segmentation = {"segmentation": None, "segmentation_note": "NIfTI input: no DICOM series for a SEG"}
            if scan.series is not None:
                stem = str(scan.series.SeriesInstanceUID)
                instances = [i.get_native_sop_instance() for i in scan.series.get_sop_instances()]
                entry = SeriesFindings(instances, volume)
                seg, why_none = _series_segmentation(instances, volume)
                segmentation = {"segmentation": None, "segmentation_note": why_none}
                if seg is not None:
                    segmentation = {"segmentation": f"{stem}.sdmad-seg.dcm"}
                    seg.dataset.save_as(staging / segmentation["segmentation"], enforce_file_format=True)
                    entry.segmentation, entry.segments = seg.dataset, seg.segments
                by_study.setdefault(str(scan.study.StudyInstanceUID), []).append(entry)
            record = findings_record(scan, predictions, model_folder, segmentation)
            write_json_atomic(record, staging / f"{stem}.sdmad.json")
        for study_uid, series_findings in by_study.items():
            study_report(series_findings, description).save_as(
                staging / f"{study_uid}.sdmad-sr.dcm", enforce_file_format=True
            )
        written = []
        for output in sorted(staging.iterdir()):
            os.replace(output, output_folder / output.name)
            written.append(output_folder / output.name)
            logger.info("wrote %s", written[-1])
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
