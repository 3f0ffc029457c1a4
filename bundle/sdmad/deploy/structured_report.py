"""The findings of a study as a DICOM Comprehensive SR (highdicom), for PACS.

Content tree (concepts from DCM, SCT and LOINC where they exist; the model's own in the private scheme 99SDMAD):

    CONTAINER  Diagnostic imaging report (LN 18748-4)
      TEXT       Comment (DCM 121106): research use only, not for diagnosis; model and sign file
      CONTAINER  Findings (DCM 121070), one per scored series
        UIDREF     Series Instance UID (DCM 112002)
        NUM        Anomaly score (99SDMAD)
        CODE       Finding (DCM 121071) = <category> (99SDMAD)
          CODE       Decision (99SDMAD) = Present (SCT 52101004) | Absent (SCT 2667000)
          NUM        Category score (99SDMAD), unitless
          TEXT       Positive slices (99SDMAD), RAS slice indices (only when present)
          IMAGE      Referenced Segment (DCM 121191): the finding's segment in the series' SEG (when there is one)

Every image of the scored series, and each SEG, is listed as evidence (Current Requested Procedure Evidence
Sequence).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import highdicom as hd
import pydicom
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import sdmad
from sdmad.data.loading import PIXEL_TAGS

SCHEME = "99SDMAD"
# declared in every object that uses it (Coding Scheme Identification Sequence)
SCHEME_IDENTIFICATION = CodingSchemeIdentificationItem(SCHEME, name="SD-MAD private codes: categories and measures")
NOT_FOR_DIAGNOSIS = (
    f"{sdmad.RESEARCH_USE_ONLY.capitalize()}. Automated SD-MAD findings (few-shot CLIP with sign "
    "prompts); every finding needs a radiologist's review."
)
REPORT_TITLE = hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report")
FINDINGS = hd.sr.CodedConcept("121070", "DCM", "Findings")
FINDING = hd.sr.CodedConcept("121071", "DCM", "Finding")
COMMENT = hd.sr.CodedConcept("121106", "DCM", "Comment")
SERIES_UID = hd.sr.CodedConcept("112002", "DCM", "Series Instance UID")
PRESENT = hd.sr.CodedConcept("52101004", "SCT", "Present")
ABSENT = hd.sr.CodedConcept("2667000", "SCT", "Absent")
DECISION = hd.sr.CodedConcept("decision", SCHEME, "Decision")
CATEGORY_SCORE = hd.sr.CodedConcept("category-score", SCHEME, "Category score")
ANOMALY_SCORE = hd.sr.CodedConcept("anomaly-score", SCHEME, "Anomaly score")
POSITIVE_SLICES = hd.sr.CodedConcept("positive-slices", SCHEME, "Positive slices")
REFERENCED_SEGMENT = codes.DCM.ReferencedSegment
UNITLESS = codes.UCUM.NoUnits
# Type 2 attributes of the patient and study that highdicom copies from the first evidence file into the SR.
STUDY_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def new_object(series_number: int) -> dict[str, Any]:
    """The attributes every object the app writes (SR, SEG) shares: a new series and instance, this software as
    its maker, the private coding scheme declared (highdicom constructor arguments)."""
    return {
        "series_instance_uid": generate_uid(),
        "series_number": series_number,
        "sop_instance_uid": generate_uid(),
        "instance_number": 1,
        "manufacturer": "SD-MAD (open source)",
        "manufacturer_model_name": "SD-MAD MONAI Deploy app",
        "software_versions": sdmad.__version__,
        "coding_schemes": [SCHEME_IDENTIFICATION],
    }


@dataclass
class SeriesFindings:
    """One scored series: its SOP instances (pydicom datasets), its volume entry of `predictions.json`, its SEG
    (sdmad.deploy.segmentation; None when it has none) and the SEG's segment number of each category in it."""

    instances: Sequence[pydicom.Dataset]
    volume: dict[str, Any]
    segmentation: pydicom.Dataset | None = None
    segments: dict[str, int] = field(default_factory=dict)


def category_code(category: str) -> hd.sr.CodedConcept:
    """The category as a code of the private scheme: its name in lower case with dashes when that fits Code Value's
    16 characters, else its first 11 characters and 4 hex digits of its CRC-32 (stable, and no Long Code Value,
    which older readers ignore)."""
    value = category.lower().replace(" ", "-")
    if len(value) > 16:
        value = f"{value[:11]}-{zlib.crc32(value.encode()):08x}"[:16]
    return hd.sr.CodedConcept(value, SCHEME, category)


def _root_header(dataset: pydicom.Dataset) -> pydicom.Dataset:
    """The first evidence file's header with the study's Type 2 attributes present (empty where the file lacks
    them, as some exporters do); the source dataset is not changed."""
    header = pydicom.Dataset()
    for element in dataset:
        if element.keyword not in PIXEL_TAGS:
            header.add(element)
    for keyword in STUDY_TYPE2:
        if keyword not in header:
            setattr(header, keyword, "")
    return header


def _series_container(series: SeriesFindings) -> hd.sr.ContainerContentItem:
    volume, segments = series.volume, series.segments
    container = hd.sr.ContainerContentItem(FINDINGS, relationship_type="CONTAINS")
    items = [
        hd.sr.UIDRefContentItem(SERIES_UID, series.instances[0].SeriesInstanceUID, relationship_type="CONTAINS"),
        hd.sr.NumContentItem(ANOMALY_SCORE, float(volume["anomaly_score"]), UNITLESS, relationship_type="CONTAINS"),
    ]
    for category, score in volume["scores"].items():
        finding = hd.sr.CodeContentItem(FINDING, category_code(category), relationship_type="CONTAINS")
        present = bool(volume["decisions"][category])
        properties = [
            hd.sr.CodeContentItem(DECISION, PRESENT if present else ABSENT, relationship_type="HAS PROPERTIES"),
            hd.sr.NumContentItem(CATEGORY_SCORE, float(score), UNITLESS, relationship_type="HAS PROPERTIES"),
        ]
        slices = volume.get("positive_slices", {}).get(category) or []
        if slices:
            properties.append(
                hd.sr.TextContentItem(POSITIVE_SLICES, ", ".join(map(str, slices)), relationship_type="HAS PROPERTIES")
            )
        if category in segments:
            properties.append(
                hd.sr.ImageContentItem(
                    REFERENCED_SEGMENT,
                    series.segmentation.SOPClassUID,
                    series.segmentation.SOPInstanceUID,
                    referenced_segment_numbers=segments[category],
                    relationship_type="HAS PROPERTIES",
                )
            )
        finding.ContentSequence = hd.sr.ContentSequence(properties)
        items.append(finding)
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def study_report(
    findings: Sequence[SeriesFindings], model_description: str, series_number: int = 9901
) -> hd.sr.ComprehensiveSR:
    """A Comprehensive SR for one study: a not-for-diagnosis comment and the findings of each scored series, each
    present finding pointing to its segment where the series has a SEG."""
    if not findings:
        raise ValueError("a structured report needs at least one scored series")
    studies = {str(f.instances[0].StudyInstanceUID) for f in findings}
    if len(studies) != 1:
        raise ValueError(f"one report per study; got series of {len(studies)} studies")
    root = hd.sr.ContainerContentItem(REPORT_TITLE)
    comment = hd.sr.TextContentItem(
        COMMENT, f"{NOT_FOR_DIAGNOSIS} Model: {model_description}.", relationship_type="CONTAINS"
    )
    root.ContentSequence = hd.sr.ContentSequence([comment] + [_series_container(f) for f in findings])
    evidence = [instance for f in findings for instance in f.instances]
    evidence += [f.segmentation for f in findings if f.segmentation is not None]
    evidence[0] = _root_header(evidence[0])
    return hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=root,
        series_description=f"SD-MAD findings, {sdmad.RESEARCH_USE_ONLY}",
        is_complete=True,
        **new_object(series_number),
    )
