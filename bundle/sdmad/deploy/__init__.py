"""SD-MAD as a MONAI Deploy application: DICOM study (or NIfTI scans) in, findings JSON and a DICOM SR out.

`model_folder` needs only the core environment; the other modules need the MONAI Deploy SDK and highdicom,
installed in their own environment (`make deploy-env`, see docs/deploy.md), so nothing is imported here.
"""
