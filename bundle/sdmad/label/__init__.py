"""MONAI Label integration: SD-MAD findings in the annotation loop (needs the label environment, `make label-env`)."""
