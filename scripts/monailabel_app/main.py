"""MONAI Label app folder of the SD-MAD bundle: everything lives in `sdmad.label` (docs/monailabel.md)."""

from sdmad.label.app import SDMADLabelApp


class SDMADApp(SDMADLabelApp):
    """Served by `python -m monailabel.main start_server --app scripts/monailabel_app --studies <folder>
    --uvicorn_app sdmad.label.server:app` (scripts/monailabel_app/serve.py)."""
