"""A generated brain-like phantom data set in the real formats (NIfTI, DICOM series, fastMRI `.h5`, BMAD PNG):
the findings table (findings.py), the format writers (writers.py) and the data set (dataset.py)."""

from sdmad.tools.phantom.dataset import PHANTOM_VERSION, ensure_phantom_dataset, make_dicom_study, make_phantom_dataset
from sdmad.tools.phantom.findings import CATEGORIES, FINDINGS, PhantomVolume, make_volume
from sdmad.tools.phantom.writers import (
    to_display,
    write_dicom_series,
    write_fastmri_h5,
    write_nifti,
    write_non_image_object,
)

__all__ = [
    "CATEGORIES",
    "FINDINGS",
    "PHANTOM_VERSION",
    "PhantomVolume",
    "ensure_phantom_dataset",
    "make_dicom_study",
    "make_phantom_dataset",
    "make_volume",
    "to_display",
    "write_dicom_series",
    "write_fastmri_h5",
    "write_nifti",
    "write_non_image_object",
]
