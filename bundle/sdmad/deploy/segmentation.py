"""A series' findings as a DICOM Segmentation (highdicom), for PACS viewers that overlay SEG (OHIF, 3D Slicer,
Weasis, most vendor viewers): one segment per category decided present that has labelled pixels, its pixels those
of the bundle's label image (`maps/<scan>_labels.nii.gz`, sdmad.maps.label_slice), in the source series' geometry.

The label image is placed by geometry, not by index: it becomes a highdicom `Volume` in patient coordinates, which
`match_geometry` permutes and flips onto the source series' volume (a mismatch raises instead of resampling), and
highdicom then links each SEG frame to the source image at its position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

import sdmad
from sdmad.data.errors import DataError
from sdmad.deploy.structured_report import NOT_FOR_DIAGNOSIS, category_code, new_object
from sdmad.overlays import label_colour

# NIfTI affines map voxels to RAS, DICOM's to LPS
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
ALGORITHM = hd.AlgorithmIdentificationSequence(
    name="SD-MAD", family=codes.cid7162.ArtificialIntelligence, version=sdmad.__version__
)


@dataclass
class SeriesSegmentation:
    """A series' SEG and the segment number of each category in it."""

    dataset: hd.seg.Segmentation
    segments: dict[str, int]


def segment_descriptions(segments: Sequence[tuple[str, int]]) -> list[hd.seg.SegmentDescription]:
    """One segment per (category, label value), numbered 1..S in that order, coloured as in the bundle's pictures."""
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=category[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=category_code(category),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=ALGORITHM,
            display_color=hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in label_colour(value))),
        )
        for number, (category, value) in enumerate(segments, start=1)
    ]


def labels_on_source_geometry(labels: nib.Nifti1Image, instances: Sequence[pydicom.Dataset]) -> hd.Volume:
    """The label image (NIfTI, RAS) as a highdicom Volume in the source series' geometry (axis 0: its slices); a
    DataError naming the series when the series is no regular volume or the label image does not lie on its grid
    voxel for voxel (``match_geometry`` only permutes and flips here: the shapes are checked first, so that it
    never pads or crops)."""
    uid = instances[0].SeriesInstanceUID
    try:
        source = hd.get_volume_from_series(instances)
        volume = hd.Volume(
            np.asarray(labels.dataobj, dtype=np.uint8),
            RAS_TO_LPS @ labels.affine,
            coordinate_system="PATIENT",
            frame_of_reference_uid=source.frame_of_reference_uid,
        )
        if sorted(volume.spatial_shape) != sorted(source.spatial_shape):
            raise RuntimeError(f"label image {volume.spatial_shape} against series {source.spatial_shape} voxels")
        return volume.match_geometry(source)
    except (ValueError, RuntimeError) as error:
        raise DataError(f"series {uid}: the label image cannot be placed on its images ({error})") from error


def series_segmentation(
    instances: Sequence[pydicom.Dataset],
    labels_file: str | Path,
    decisions: Mapping[str, bool],
    label_names: Mapping[str, int],
    series_number: int = 9902,
) -> SeriesSegmentation | None:
    """A binary SEG of one series: a segment per category decided present on the volume that has pixels in the label
    image (label value -> segment number, in category order), frames only where a segment has pixels. None when no
    category has a segment (none present, or none with a pixel: its map never reaches its threshold). A DataError
    when the label image cannot be placed on the series (``labels_on_source_geometry``)."""
    present = [(category, label_names[category]) for category, yes in decisions.items() if yes]
    if not present:
        return None
    volume = labels_on_source_geometry(nib.load(str(labels_file)), instances)
    shown = [(category, value) for category, value in present if (volume.array == value).any()]
    if not shown:
        return None
    segment_of_value = np.zeros(max(label_names.values()) + 1, dtype=np.uint8)
    for number, (_, value) in enumerate(shown, start=1):
        segment_of_value[value] = number
    segmentation = hd.seg.Segmentation(
        source_images=instances,
        pixel_array=volume.with_array(segment_of_value[volume.array]),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(shown),
        device_serial_number="n/a (software)",
        content_label="SDMAD_FINDINGS",
        content_description=f"SD-MAD findings, {sdmad.RESEARCH_USE_ONLY}"[:64],
        series_description=f"SD-MAD findings (SEG), {sdmad.RESEARCH_USE_ONLY}"[:64],
        **new_object(series_number),
    )
    segmentation.ImageComments = NOT_FOR_DIAGNOSIS
    return SeriesSegmentation(segmentation, {category: n for n, (category, _) in enumerate(shown, start=1)})
