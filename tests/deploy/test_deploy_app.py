"""The MONAI Deploy app end to end: a phantom DICOM study (an MR image series and an MR spectroscopy series
without pixels) in; findings JSON, a DICOM SEG and a DICOM SR referencing it out, equal to the bundle's own
inference (a model with maps: method sdmad+mvfa).

Runs in the deploy environment (`make deploy-env`; `make test` runs it); skipped where the SDK is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("monai.deploy")
pytest.importorskip("highdicom")

import highdicom as hd  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from conftest import (  # noqa: E402
    REPO_ROOT,
    bundle_inference,
    four_d_series,
    inference_command,
    trained_tiny_model,
)
from sdmad.data.errors import DataError  # noqa: E402
from sdmad.deploy.app import main  # noqa: E402
from sdmad.deploy.model_folder import ModelFolderError, make_model_folder  # noqa: E402
from sdmad.deploy.structured_report import ABSENT, PRESENT  # noqa: E402
from sdmad.predictor import BundlePredictor  # noqa: E402
from sdmad.tools.phantom import make_dicom_study  # noqa: E402

APP = REPO_ROOT / "scripts" / "deploy_app" / "app.py"
METHOD = "sdmad+mvfa"  # a model that makes maps, hence label images and a SEG


@pytest.fixture(scope="module")
def setup(phantom_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("deploy")
    backbone, checkpoint = trained_tiny_model(root / "trained", method=METHOD)
    model = make_model_folder(root / "model", REPO_ROOT, checkpoint, "sdmad-tiny", str(backbone))
    manifest = json.loads((phantom_dir / "manifest.json").read_text())
    name = next(v["name"] for v in manifest["volumes"] if len(v["labels"]) >= 2)
    study = make_dicom_study(phantom_dir, name, root / "study")
    return {"root": root, "model": model, "study": study, "name": name, "backbone": backbone, "checkpoint": checkpoint}


@pytest.fixture(scope="module")
def app_run(setup) -> dict:
    """The app as a user runs it: `python app.py -i study -o out -m model` in a subprocess."""
    out = setup["root"] / "out"
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(APP), "-i", str(setup["study"]), "-o", str(out), "-m", str(setup["model"])],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"app run on a {len(list((setup['study'] / 'mr').iterdir()))}-slice phantom study: {seconds:.1f} s")
    return {"out": out, "seconds": seconds, "log": result.stdout + result.stderr}


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory) -> dict:
    """`monai.bundle run inference --save_maps true` on the MR series (ITK reads it): predictions and label image."""
    out = tmp_path_factory.mktemp("reference")
    return bundle_inference(
        setup["study"] / "mr", setup["backbone"], setup["checkpoint"], out, method=METHOD, save_maps=True
    )


def source_uids(folder: Path) -> tuple[str, str, list[str]]:
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(folder.iterdir())]
    return headers[0].StudyInstanceUID, headers[0].SeriesInstanceUID, sorted(h.SOPInstanceUID for h in headers)


def test_selects_the_mr_image_series_and_matches_the_bundle_inference(setup, app_run, reference):
    study_uid, series_uid, _ = source_uids(setup["study"] / "mr")
    spectroscopy_uid = source_uids(setup["study"] / "spectroscopy")[1]
    outputs = sorted(p.name for p in app_run["out"].iterdir())
    expected_outputs = [f"{series_uid}.sdmad.json", f"{series_uid}.sdmad-seg.dcm", f"{study_uid}.sdmad-sr.dcm"]
    assert outputs == sorted(expected_outputs)  # no spectroscopy JSON
    assert spectroscopy_uid not in " ".join(outputs)
    findings = json.loads((app_run["out"] / f"{series_uid}.sdmad.json").read_text())
    assert findings["study_instance_uid"] == study_uid and findings["series_instance_uid"] == series_uid
    assert findings["segmentation"] == f"{series_uid}.sdmad-seg.dcm"
    assert "not for diagnosis" in findings["note"]
    volume = reference["volumes"][0]
    assert findings["volume"]["scores"] == pytest.approx(volume["scores"], abs=1e-6)
    assert findings["volume"]["decisions"] == volume["decisions"]
    assert findings["volume"]["positive_slices"] == volume["positive_slices"]
    assert [s["scores"] for s in findings["slices"]] == [
        pytest.approx(s["scores"], abs=1e-6) for s in reference["slices"]
    ]
    assert findings["categories"] == reference["categories"]


def labels_under_frame(header: pydicom.Dataset, labels: nib.Nifti1Image) -> np.ndarray:
    """The label image's values at each pixel centre of a source image, placed by the DICOM geometry (LPS) and the
    NIfTI affine (RAS) alone: independent of the app's own placement."""
    rows, columns = np.meshgrid(np.arange(header.Rows), np.arange(header.Columns), indexing="ij")
    orientation = np.asarray(header.ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = map(float, header.PixelSpacing)
    lps = (
        np.asarray(header.ImagePositionPatient, dtype=float)
        + columns[..., None] * column_spacing * orientation[:3]
        + rows[..., None] * row_spacing * orientation[3:]
    )
    voxels = nib.affines.apply_affine(np.linalg.inv(labels.affine), lps * [-1, -1, 1])
    assert np.allclose(voxels, np.round(voxels), atol=1e-3)  # the label image lies on the source grid
    i, j, k = np.round(voxels).astype(int).transpose(2, 0, 1)
    return np.asarray(labels.dataobj)[i, j, k]


def expected_segments(study: Path, volume: dict) -> tuple[list[str], dict[str, np.ndarray]]:
    """The MR images' SOP instance UIDs and, per category decided present that the bundle's label image labels
    somewhere, its pixels under each image ``[images, rows, columns]``."""
    headers = {h.SOPInstanceUID: h for h in (pydicom.dcmread(f) for f in (study / "mr").iterdir())}
    uids = sorted(headers)
    labels = nib.load(volume["labels"])
    under = np.stack([labels_under_frame(headers[uid], labels) for uid in uids])
    masks = {c: under == volume["label_names"][c] for c, present in volume["decisions"].items() if present}
    return uids, {c: mask for c, mask in masks.items() if mask.any()}


def read_segments(path: Path, uids: list[str]) -> tuple[hd.seg.Segmentation, dict[str, np.ndarray]]:
    """A SEG read back with highdicom and, per segment label, its pixels under each of ``uids``."""
    seg = hd.seg.segread(path)
    labels = [str(s.SegmentLabel) for s in seg.SegmentSequence]
    pixels = seg.get_pixels_by_source_instance(
        uids, segment_numbers=list(range(1, len(labels) + 1)), assert_missing_frames_are_empty=True
    )
    return seg, {label: pixels[..., j] > 0 for j, label in enumerate(labels)}


def test_seg_holds_a_segment_per_present_category_where_the_bundles_label_image_has_it(setup, app_run, reference):
    study_uid, series_uid, _ = source_uids(setup["study"] / "mr")
    uids, expected = expected_segments(setup["study"], reference["volumes"][0])
    assert expected, "the test model labels no present category on this study: the SEG would not be tested"
    seg, segments = read_segments(app_run["out"] / f"{series_uid}.sdmad-seg.dcm", uids)
    assert seg.SegmentationType == "BINARY" and "not for diagnosis" in seg.ImageComments
    assert seg.StudyInstanceUID == study_uid and seg.SeriesInstanceUID != series_uid
    assert list(segments) == list(expected)
    for category, mask in expected.items():
        np.testing.assert_array_equal(segments[category], mask)
    # frames only where a segment has pixels (each referencing its image: the pixels above are read through them)
    assert seg.NumberOfFrames == sum(int(mask.any(axis=(1, 2)).sum()) for mask in expected.values())


def forced_decisions(monkeypatch, decide) -> None:
    """Inference as usual, then each volume's decisions replaced by ``decide(volume)`` ({category: bool})."""
    predict = BundlePredictor.predict

    def forced(self, scan, maps_dir=None):
        predictions = predict(self, scan, maps_dir)
        for volume in predictions["volumes"]:
            volume["decisions"] = decide(volume)
        return predictions

    monkeypatch.setattr(BundlePredictor, "predict", forced)


def test_a_present_category_without_labelled_pixels_gets_no_segment(setup, reference, tmp_path, monkeypatch):
    """Present: one category the label image has and one it has nowhere. The SEG has the first alone (one segment:
    highdicom shares its identification across frames), the SR points to it alone, show_findings reads and draws it."""
    uids, expected = expected_segments(setup["study"], reference["volumes"][0])
    labelled = next(iter(expected))
    values = np.asarray(nib.load(reference["volumes"][0]["labels"]).dataobj)
    names = reference["volumes"][0]["label_names"]
    unlabelled = next(c for c in reference["categories"] if not (values == names[c]).any())
    forced_decisions(monkeypatch, lambda volume: {c: c in (labelled, unlabelled) for c in volume["decisions"]})
    out = tmp_path / "out"
    main(["-i", str(setup["study"]), "-o", str(out), "-m", str(setup["model"])])
    study_uid, series_uid, _ = source_uids(setup["study"] / "mr")
    seg, segments = read_segments(out / f"{series_uid}.sdmad-seg.dcm", uids)
    assert list(segments) == [labelled]
    np.testing.assert_array_equal(segments[labelled], expected[labelled])
    sr = pydicom.dcmread(out / f"{study_uid}.sdmad-sr.dcm")
    pointed = [
        item.ConceptCodeSequence[0].CodeMeaning
        for item in _content(sr)["Findings"].ContentSequence
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Finding" and "Referenced Segment" in _content(item)
    ]
    assert pointed == [labelled]
    spec = importlib.util.spec_from_file_location("show_findings", APP.parent / "show_findings.py")
    show_findings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(show_findings)
    assert list(show_findings.seg_pixels(out / f"{series_uid}.sdmad-seg.dcm")[1]) == [labelled]
    assert show_findings.seg_picture(
        out / f"{series_uid}.sdmad-seg.dcm", setup["study"], names, tmp_path / "seg.png"
    ).is_file()


def test_a_series_whose_label_image_cannot_be_placed_gets_json_and_sr_without_seg(setup, tmp_path):
    """A slice missing from the series (irregular spacing): the label image is not on the images' grid, so no SEG;
    the JSON says why and the SR is written without segment references."""
    study = shutil.copytree(setup["study"], tmp_path / "study")
    sorted((study / "mr").iterdir())[5].unlink()
    main(["-i", str(study), "-o", str(tmp_path / "out"), "-m", str(setup["model"])])
    study_uid, series_uid, _ = source_uids(study / "mr")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{series_uid}.sdmad.json", f"{study_uid}.sdmad-sr.dcm"]
    )
    findings = json.loads((tmp_path / "out" / f"{series_uid}.sdmad.json").read_text())
    assert any(findings["volume"]["decisions"].values())  # a SEG was attempted
    assert findings["segmentation"] is None
    assert f"series {series_uid}: the label image cannot be placed" in findings["segmentation_note"]
    assert "Referenced Segment" not in str(pydicom.dcmread(tmp_path / "out" / f"{study_uid}.sdmad-sr.dcm"))


def test_a_study_without_positive_findings_gets_no_seg(setup, tmp_path, monkeypatch):
    """The same study and model, its decisions turned to absent: JSON and SR only, nothing referencing a SEG."""
    forced_decisions(monkeypatch, lambda volume: dict.fromkeys(volume["decisions"], False))
    main(["-i", str(setup["study"]), "-o", str(tmp_path / "out"), "-m", str(setup["model"])])
    study_uid, series_uid, _ = source_uids(setup["study"] / "mr")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{series_uid}.sdmad.json", f"{study_uid}.sdmad-sr.dcm"]
    )
    assert json.loads((tmp_path / "out" / f"{series_uid}.sdmad.json").read_text())["segmentation"] is None
    sr = pydicom.dcmread(tmp_path / "out" / f"{study_uid}.sdmad-sr.dcm")
    assert "Referenced Segment" not in str(sr.ContentSequence)


def _content(item) -> dict:
    """{concept meaning: item} of an SR content item's children."""
    return {child.ConceptNameCodeSequence[0].CodeMeaning: child for child in item.ContentSequence}


def test_structured_report_reads_back_with_the_decisions_and_references_the_seg(setup, app_run):
    study_uid, series_uid, sop_uids = source_uids(setup["study"] / "mr")
    findings = json.loads((app_run["out"] / f"{series_uid}.sdmad.json").read_text())["volume"]
    seg = pydicom.dcmread(app_run["out"] / f"{series_uid}.sdmad-seg.dcm")
    sr = pydicom.dcmread(app_run["out"] / f"{study_uid}.sdmad-sr.dcm")
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.Modality == "SR" and sr.StudyInstanceUID == study_uid and sr.SeriesInstanceUID != series_uid
    assert sr.PatientID == setup["name"]
    evidence = {
        s.SeriesInstanceUID: sorted(r.ReferencedSOPInstanceUID for r in s.ReferencedSOPSequence)
        for e in sr.CurrentRequestedProcedureEvidenceSequence
        for s in e.ReferencedSeriesSequence
    }
    assert evidence == {series_uid: sop_uids, seg.SeriesInstanceUID: [seg.SOPInstanceUID]}
    root = _content(sr)
    assert "not for diagnosis" in root["Comment"].TextValue
    group = root["Findings"]
    assert _content(group)["Series Instance UID"].UID == series_uid
    decisions, scores, segments = {}, {}, {}
    for item in group.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Finding":
            category = item.ConceptCodeSequence[0].CodeMeaning
            properties = _content(item)
            code = properties["Decision"].ConceptCodeSequence[0].CodeValue
            assert code in (PRESENT.value, ABSENT.value)
            decisions[category] = code == PRESENT.value
            scores[category] = float(properties["Category score"].MeasuredValueSequence[0].NumericValue)
            if "Referenced Segment" in properties:
                segment = properties["Referenced Segment"].ReferencedSOPSequence[0]
                assert segment.ReferencedSOPInstanceUID == seg.SOPInstanceUID
                segments[category] = int(segment.ReferencedSegmentNumber)
    assert decisions == findings["decisions"]
    assert segments == {s.SegmentLabel: int(s.SegmentNumber) for s in seg.SegmentSequence}  # each present finding
    assert scores == pytest.approx(findings["scores"], abs=1e-4)  # DS keeps 16 characters


def test_nifti_input_gives_json_equal_to_the_bundle_inference(setup, phantom_dir, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(phantom_dir / "nifti" / f"{setup['name']}.nii.gz", scans)
    main(["-i", str(scans), "-o", str(tmp_path / "out"), "-m", str(setup["model"])])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{setup['name']}.sdmad.json"]
    findings = json.loads((tmp_path / "out" / f"{setup['name']}.sdmad.json").read_text())
    expected = bundle_inference(
        scans / f"{setup['name']}.nii.gz", setup["backbone"], setup["checkpoint"], tmp_path / "bundle", method=METHOD
    )["volumes"][0]
    assert findings["volume"]["scores"] == expected["scores"]
    assert findings["volume"]["decisions"] == expected["decisions"]


def test_folder_without_dicom_is_refused_and_nothing_is_written(setup, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not an image")
    with pytest.raises(DataError, match=f"{notes}: no DICOM files"):
        main(["-i", str(notes), "-o", str(tmp_path / "out"), "-m", str(setup["model"])])
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_series_without_pixel_data_names_the_file_and_writes_nothing(setup, tmp_path):
    study = shutil.copytree(setup["study"], tmp_path / "study")
    broken = sorted((study / "mr").iterdir())[4]
    dataset = pydicom.dcmread(broken)
    del dataset.PixelData
    dataset.save_as(broken, enforce_file_format=True)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(APP), "-i", str(study), "-o", str(out), "-m", str(setup["model"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert f"{broken}: DICOM image file (MR Image Storage) has no pixel data" in result.stderr.splitlines()[-1]
    assert not out.exists() or not list(out.iterdir())


def test_an_incomplete_model_folder_is_refused_before_reading_input(setup, tmp_path):
    with pytest.raises(ModelFolderError, match="not an SD-MAD model folder"):
        main(["-i", str(setup["study"]), "-o", str(tmp_path / "out"), "-m", str(tmp_path)])


def test_the_bundle_and_the_app_refuse_the_same_4d_series_with_the_same_message(setup, tmp_path):
    study = tmp_path / "study"
    four_d_series(setup["study"] / "mr", study / "mr")
    shutil.copytree(setup["study"] / "spectroscopy", study / "spectroscopy")
    out = tmp_path / "out"
    app = subprocess.run(
        [sys.executable, str(APP), "-i", str(study), "-o", str(out), "-m", str(setup["model"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    command = inference_command(setup["backbone"], setup["checkpoint"], study / "mr", tmp_path / "bundle")
    bundle = subprocess.run(
        [*command, "--num_workers", "0", "--method", METHOD], capture_output=True, text=True, timeout=300
    )
    expected = f"sdmad: error: {study / 'mr'}: a 4-D series: 6 images at 3 slice positions (2 volumes"
    for result in (app, bundle):
        assert result.returncode != 0 and result.stderr.splitlines()[-1].startswith(expected), result.stderr[-2000:]
    assert app.stderr.splitlines()[-1] == bundle.stderr.splitlines()[-1]
    assert not out.exists() or not list(out.iterdir())
