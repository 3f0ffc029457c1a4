"""The MONAI Label app in process (FastAPI TestClient) and as a real server on loopback.

Runs in the label environment (`make label-env`; `make test` runs it); skipped where monailabel is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("monailabel")

from conftest import REPO_ROOT, bundle_inference  # noqa: E402

APP_DIR = REPO_ROOT / "scripts" / "monailabel_app"
CATEGORIES_FILE = REPO_ROOT / "configs" / "signs" / "fastmri_brain.yaml"


@pytest.fixture(scope="module")
def setup(phantom_dir, tmp_path_factory):
    """Studies covering every category plus a normal one (NIfTI), a DICOM series, a corrupt study, a copy of the
    app folder, a temporary HOME."""
    root = tmp_path_factory.mktemp("label")
    studies = root / "studies"
    studies.mkdir()
    volumes = json.loads((phantom_dir / "manifest.json").read_text())["volumes"]
    labels = {v["name"]: v["labels"] for v in volumes}
    from sdmad.signs import load_sign_file

    chosen = [next(v["name"] for v in volumes if not v["labels"])]
    for category in load_sign_file(CATEGORIES_FILE).category_names:
        chosen.append(next(v["name"] for v in volumes if category in v["labels"] and v["name"] not in chosen))
    for name in chosen:
        shutil.copy(phantom_dir / "nifti" / f"{name}.nii.gz", studies / f"{name}.nii.gz")
    dicom = next(v["name"] for v in volumes if v["name"] not in chosen)
    shutil.copytree(phantom_dir / "dicom" / dicom, studies / f"{dicom}.dicom")
    (studies / "corrupt_study.nii.gz").write_bytes(b"\x1f\x8b not a volume")
    app = root / "app"
    shutil.copytree(APP_DIR, app, ignore=shutil.ignore_patterns("__pycache__"))
    from sdmad.networks import load_clip

    torch.manual_seed(0)
    backbone = root / "backbone.pt"  # a fixed backbone, so the app and the bundle run share every weight
    torch.save(load_clip("sdmad-tiny")[0].state_dict(), backbone)
    conf = {"bundle_root": str(REPO_ROOT), "model": str(root / "model.pt"), "model_name": "sdmad-tiny",
            "pretrained": str(backbone), "max_epochs": "3", "slices": "[5]"}
    return {"root": root, "studies": studies, "app": app, "conf": conf, "labelled": chosen, "dicom": dicom,
            "labels": labels}


@pytest.fixture(scope="module")
def client(setup):
    os.environ.update(MONAI_LABEL_APP_DIR=str(setup["app"]), MONAI_LABEL_STUDIES=str(setup["studies"]),
                      MONAI_LABEL_APP_CONF=json.dumps(setup["conf"]), HOME=str(setup["root"]))
    from fastapi.testclient import TestClient
    from monailabel.app import app

    with TestClient(app) as test_client:
        yield test_client


def test_info_lists_the_model_and_its_categories(client):
    info = client.get("/info/").json()
    from sdmad.signs import load_sign_file

    assert info["models"]["sdmad"]["labels"] == load_sign_file(CATEGORIES_FILE).category_names
    assert info["models"]["sdmad"]["type"] == "classification"
    assert "sdmad_uncertainty" in info["strategies"] and "sdmad" in info["trainers"]


@pytest.mark.parametrize("which", ["nifti", "dicom"])
def test_infer_equals_the_bundle_inference(client, setup, which, tmp_path):
    name = setup["labelled"][0] if which == "nifti" else setup["dicom"]
    response = client.post(f"/infer/sdmad?image={name}&output=json")
    assert response.status_code == 200, response.text
    result = response.json()
    scan = setup["studies"] / (f"{name}.nii.gz" if which == "nifti" else f"{name}.dicom")
    expected = bundle_inference(scan, setup["conf"]["pretrained"], "none", tmp_path)["volumes"][0]  # untrained
    assert [p["label"] for p in result["prediction"]] == list(expected["scores"])
    for entry in result["prediction"]:
        assert entry["score"] == pytest.approx(expected["scores"][entry["label"]], abs=1e-6)
        assert entry["decision"] == expected["decisions"][entry["label"]]
    assert len(result["slices"]) == 12 and "not for diagnosis" in result["note"]


def test_bad_requests_get_clear_json_errors_and_the_server_keeps_serving(client, setup):
    for image in ("no_such_study", "../../../etc/passwd", "/etc/passwd"):
        response = client.post(f"/infer/sdmad?image={image}&output=json")
        assert response.status_code == 404 and "unknown image id" in response.json()["detail"], response.text
    response = client.post("/infer/no_such_model?image=x&output=json")
    assert response.status_code == 404 and "unknown model" in response.json()["detail"]
    response = client.post("/infer/sdmad?image=corrupt_study&output=json")
    assert response.status_code == 422 and "corrupt_study.nii.gz" in response.json()["detail"], response.text
    assert client.post(f"/infer/sdmad?image={setup['labelled'][1]}&output=json").status_code == 200


def test_active_learning_proposes_an_unlabelled_study(client, setup):
    response = client.post("/activelearning/sdmad_uncertainty", json={})
    assert response.status_code == 200, response.text
    assert response.json()["id"] in [*setup["labelled"], setup["dicom"]]  # never the unreadable study


def test_training_on_labelled_studies_swaps_in_a_new_model(client, setup):
    for name in setup["labelled"]:
        label = setup["root"] / f"{name}.label.json"
        label.write_text(json.dumps({"categories": setup["labels"][name]}))
        with open(label, "rb") as handle:
            response = client.put(f"/datastore/label?image={name}&tag=final",
                                  files={"label": (f"{name}.label.json", handle, "application/json")})
        assert response.status_code == 200, response.text
    from monailabel.interfaces.utils.app import app_instance

    model = Path(setup["conf"]["model"])
    before = client.post(f"/infer/sdmad?image={setup['dicom']}&output=json").json()["prediction"]
    assert not model.exists()  # zero-shot until the first training
    result = app_instance().train({"model": "sdmad", "max_epochs": 50})  # bounded by the conf's max_epochs (3)
    assert result["epochs"] == 3 and result["studies"] == len(setup["labelled"])
    state = torch.load(model, weights_only=True)
    assert set(state) == {"network", "sdmad"}
    after = client.post(f"/infer/sdmad?image={setup['dicom']}&output=json").json()["prediction"]
    assert [a["score"] for a in after] != [b["score"] for b in before]  # the new model is served


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_real_server_on_loopback(setup, tmp_path):
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(setup["app"]), "--studies",
               str(setup["studies"]), "--host", "127.0.0.1", "--port", str(port)]
    for key, value in setup["conf"].items():
        command += ["--conf", key, value]
    started = time.monotonic()
    server = subprocess.Popen(command, env={**os.environ, "HOME": str(tmp_path)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{url}/info/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, "the server exited"
            assert time.monotonic() - started < 60, "no /info/ within 60 s"
            time.sleep(0.5)
        response = httpx.post(f"{url}/infer/sdmad?image={setup['labelled'][2]}&output=json", timeout=120)
        assert response.status_code == 200 and len(response.json()["prediction"]) == 6
    finally:
        server.terminate()
        server.wait(timeout=30)
