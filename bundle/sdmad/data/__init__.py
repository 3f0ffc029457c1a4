"""Scans (NIfTI, DICOM, fastMRI .h5, PNG) -> 2-D slice items; fastMRI+, BMAD and CSV data sets; few-shot
sampling; splits. (The generated phantom data set is tooling: sdmad.tools.phantom.)"""

from sdmad.data.bmad import bmad_items, bmad_protocol_split
from sdmad.data.clip_input import CLIP_MEAN, CLIP_STD, CLIPInput, PrepareSlices, stack_slices
from sdmad.data.csv_dataset import csv_items
from sdmad.data.errors import DataError
from sdmad.data.fastmri_h5 import FastMRIH5Reader
from sdmad.data.fastmri_plus import fastmri_plus_dataset_items, fastmri_plus_items, fastmri_plus_slice_labels
from sdmad.data.few_shot import few_shot_split, load_split, sample_few_shot
from sdmad.data.inputs import inference_items
from sdmad.data.loading import LoadScand
from sdmad.data.orientation import DisplayOrientationd
from sdmad.data.preprocessing import per_slice_reference, scan_to_slices, scan_transforms
from sdmad.data.slices import AsRGBd, CategoryMaskd, CheckFinited, ExtractSlicesd, SliceTensord
from sdmad.data.splits import split_by_group
from sdmad.data.unreadable import RecordUnreadable, collate_slices, error_policy
from sdmad.data.workers import LoaderWorkerInit

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "AsRGBd",
    "CLIPInput",
    "CategoryMaskd",
    "CheckFinited",
    "DataError",
    "DisplayOrientationd",
    "ExtractSlicesd",
    "RecordUnreadable",
    "FastMRIH5Reader",
    "LoadScand",
    "LoaderWorkerInit",
    "PrepareSlices",
    "SliceTensord",
    "bmad_items",
    "bmad_protocol_split",
    "collate_slices",
    "error_policy",
    "csv_items",
    "fastmri_plus_dataset_items",
    "fastmri_plus_items",
    "fastmri_plus_slice_labels",
    "few_shot_split",
    "inference_items",
    "load_split",
    "per_slice_reference",
    "sample_few_shot",
    "scan_to_slices",
    "scan_transforms",
    "split_by_group",
    "stack_slices",
]
