"""Shared set-up of the MONAI Label tests (imported by them): a studies folder from the phantom set, a copy of the
app folder, a fixed backbone; the web app in process, and a real server on a free loopback port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from conftest import REPO_ROOT

APP_DIR = REPO_ROOT / "scripts" / "monailabel_app"
CATEGORIES_FILE = REPO_ROOT / "configs" / "signs" / "fastmri_brain.yaml"
LOOPBACK = "http://127.0.0.1:8000"


def make_label_setup(root: Path, phantom_dir: Path) -> dict:
    """Studies covering every category plus a normal one (NIfTI), a DICOM series, a corrupt study, a copy of the
    app folder, a fixed random backbone and the server conf; the ids, labels and paths in a dict."""
    from sdmad.networks import load_clip
    from sdmad.signs import load_sign_file

    studies = root / "studies"
    studies.mkdir(parents=True)
    volumes = json.loads((phantom_dir / "manifest.json").read_text())["volumes"]
    labels = {v["name"]: v["labels"] for v in volumes}
    chosen = [next(v["name"] for v in volumes if not v["labels"])]
    for category in load_sign_file(CATEGORIES_FILE).category_names:
        chosen.append(next(v["name"] for v in volumes if category in v["labels"] and v["name"] not in chosen))
    for name in chosen:
        shutil.copy(phantom_dir / "nifti" / f"{name}.nii.gz", studies / f"{name}.nii.gz")
    dicom = next(v["name"] for v in volumes if v["name"] not in chosen)
    shutil.copytree(phantom_dir / "dicom" / dicom, studies / f"{dicom}.dicom")
    (studies / "corrupt_study.nii.gz").write_bytes(b"\x1f\x8b not a volume")
    app = root / "app"
    shutil.copytree(
        APP_DIR, app, ignore=shutil.ignore_patterns("__pycache__", "train_runs", "logs", "model", "lib", "bin")
    )
    torch.manual_seed(0)
    backbone = root / "backbone.pt"  # a fixed backbone, so the app and the bundle run share every weight
    torch.save(load_clip("sdmad-tiny")[0].state_dict(), backbone)
    conf = {
        "bundle_root": str(REPO_ROOT),
        "model": str(root / "model.pt"),
        "model_name": "sdmad-tiny",
        "pretrained": str(backbone),
        "max_epochs": "3",
        "slices": "[5]",
    }
    return {
        "root": root,
        "studies": studies,
        "app": app,
        "conf": conf,
        "labelled": chosen,
        "dicom": dicom,
        "labels": labels,
        "phantom": phantom_dir,
    }


def label_file(folder: Path, name: str, categories: list[str]) -> Path:
    path = folder / f"{name}.label.json"
    path.write_text(json.dumps({"categories": categories}))
    return path


@contextmanager
def in_process(setup: dict, conf: dict | None = None) -> Iterator:
    """The SD-MAD web app in this process (FastAPI TestClient addressed as 127.0.0.1), built from ``conf``
    (default: the set-up's), serving the set-up's studies."""
    os.environ["HOME"] = str(setup["root"])
    from fastapi.testclient import TestClient
    from monailabel.config import settings
    from monailabel.interfaces.utils.app import clear_cache
    from sdmad.label.server import create_app

    settings.MONAI_LABEL_APP_DIR, settings.MONAI_LABEL_STUDIES = str(setup["app"]), str(setup["studies"])
    settings.MONAI_LABEL_APP_CONF = conf or setup["conf"]  # the app's own conf (served model, backbone, ...)
    clear_cache()
    try:
        with TestClient(create_app(conf or setup["conf"]), base_url=LOOPBACK) as client:
            yield client
    finally:  # a later app of the set-up's conf (an open module-scoped client rebuilds it) is the set-up's again
        settings.MONAI_LABEL_APP_CONF = setup["conf"]
        clear_cache()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(setup: dict, env: dict[str, str], timeout: float = 60) -> Iterator[str]:
    """`monailabel start_server` with the guarded web app on a free loopback port; yields its URL."""
    import httpx
    from sdmad.label import SERVER_APP

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        str(setup["app"]),
        "--studies",
        str(setup["studies"]),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--uvicorn_app",
        SERVER_APP,
    ]
    for key, value in setup["conf"].items():
        command += ["--conf", key, value]
    log = open(setup["root"] / "server.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url, started = f"http://127.0.0.1:{port}", time.monotonic()
    try:
        while True:
            try:
                if httpx.get(f"{url}/info/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, f"the server exited: {(setup['root'] / 'server.log').read_text()[-2000:]}"
            assert time.monotonic() - started < timeout, f"no /info/ within {timeout} s"
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
