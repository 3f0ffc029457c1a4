"""A series' findings as a DICOM Segmentation (highdicom), for PACS viewers that overlay SEG (OHIF, 3D Slicer,
Weasis, most vendor viewers): one segment per category decided present, its pixels those of the bundle's label
image (`maps/<scan>_labels.nii.gz`, sdmad.maps.label_slice), in the source series' geometry.

The label image is placed by geometry, not by index: it becomes a highdicom `Volume` in patient coordinates, which
`match_geometry` permutes and flips onto the source series' volume (a mismatch raises instead of resampling), and
highdicom then links each SEG frame to the source image at its position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from matplotlib import colormaps
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import sdmad
from sdmad.deploy.structured_report import NOT_FOR_DIAGNOSIS, category_code

# NIfTI affines map voxels to RAS, DICOM's to LPS
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
ALGORITHM = hd.AlgorithmIdentificationSequence(
    name="SD-MAD", family=codes.cid7162.ArtificialIntelligence, version=sdmad.__version__
)
# The label images' colours in the bundle's own pictures (sdmad.overlays.label_overlay_png: tab10 by label value)
PALETTE = colormaps["tab10"]


def segment_descriptions(positive: Sequence[tuple[str, int]]) -> list[hd.seg.SegmentDescription]:
    """One segment per (category, label value), numbered 1..S in that order, coloured as in the bundle's pictures."""
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=category[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=category_code(category),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=ALGORITHM,
            display_color=hd.color.CIELabColor.from_rgb(
                *(round(255 * channel) for channel in PALETTE((value - 1) % 10)[:3])
            ),
        )
        for number, (category, value) in enumerate(positive, start=1)
    ]


def labels_on_source_geometry(labels: nib.Nifti1Image, instances: Sequence[pydicom.Dataset]) -> hd.Volume:
    """The label image (NIfTI, RAS) as a highdicom Volume in the source series' geometry (axis 0: its slices)."""
    source = hd.get_volume_from_series(instances)
    volume = hd.Volume(
        np.asarray(labels.dataobj, dtype=np.uint8),
        RAS_TO_LPS @ labels.affine,
        coordinate_system="PATIENT",
        frame_of_reference_uid=source.frame_of_reference_uid,
    )
    return volume.match_geometry(source)


def series_segmentation(
    instances: Sequence[pydicom.Dataset],
    labels_file: str | Path,
    decisions: Mapping[str, bool],
    label_names: Mapping[str, int],
    series_number: int = 9902,
) -> hd.seg.Segmentation | None:
    """A binary SEG of one series: a segment per category decided present on the volume (label value ->
    segment number in category order), frames only where a segment has pixels. None when no category is present."""
    positive = [(category, label_names[category]) for category, present in decisions.items() if present]
    if not positive:
        return None
    volume = labels_on_source_geometry(nib.load(str(labels_file)), instances)
    segment_of_value = np.zeros(max(label_names.values()) + 1, dtype=np.uint8)
    for number, (_, value) in enumerate(positive, start=1):
        segment_of_value[value] = number
    segmentation = hd.seg.Segmentation(
        source_images=instances,
        pixel_array=volume.with_array(segment_of_value[volume.array]),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(positive),
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="SD-MAD (open source)",
        manufacturer_model_name="SD-MAD MONAI Deploy app",
        software_versions=sdmad.__version__,
        device_serial_number="none",
        content_label="SDMAD_FINDINGS",
        content_description=f"SD-MAD findings, {sdmad.RESEARCH_USE_ONLY}"[:64],
        series_description=f"SD-MAD findings (SEG), {sdmad.RESEARCH_USE_ONLY}"[:64],
    )
    segmentation.ImageComments = NOT_FOR_DIAGNOSIS
    return segmentation
