"""MONAI Label integration: SD-MAD findings in the annotation loop (needs the label environment, `make label-env`).

The app is sdmad.label.app; it is served by the guarded web app named here (docs/monailabel.md, "Security").
"""

SERVER_APP = "sdmad.label.server:app"  # `monailabel start_server ... --uvicorn_app <this>`
