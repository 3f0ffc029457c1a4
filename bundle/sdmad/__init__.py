"""SD-MAD: sign-driven few-shot multi-anomaly detection in medical images, as a MONAI Bundle."""

__version__ = "0.1.0"
