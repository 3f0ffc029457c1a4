"""SD-MAD: sign-driven few-shot multi-anomaly detection in medical images, as a MONAI Bundle."""

import importlib

from sdmad.errors import install_readable_errors

__version__ = "0.1.0"
# every output people read says so (reports, predictions, the SR, MONAI Label answers)
RESEARCH_USE_ONLY = "research use only, not for diagnosis"

# `python -m monai.bundle run ...` shows a project error as its last line, not inside a chained traceback
install_readable_errors()


def __getattr__(name: str):
    """Submodules on first use (`import sdmad; sdmad.data.split_by_group(...)`), as bundle config expressions
    need: MONAI binds `$import sdmad.data` to the name "sdmad.data", not to `sdmad`."""
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        raise AttributeError(f"module 'sdmad' has no attribute '{name}'") from err
