"""The MONAI Label app in process (FastAPI TestClient on the guarded web app): findings, active learning, training,
downloads. Attacks on a real server: test_label_fuzz.py.

Runs in the label environment (`make label-env`; `make test` runs it); skipped where monailabel is absent.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("monailabel")

from conftest import bundle_inference  # noqa: E402
from label_setup import CATEGORIES_FILE, in_process, label_file, make_label_setup  # noqa: E402


@pytest.fixture(scope="module")
def setup(phantom_dir, tmp_path_factory):
    return make_label_setup(tmp_path_factory.mktemp("label"), phantom_dir)


@pytest.fixture(scope="module")
def client(setup):
    with in_process(setup) as test_client:
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
    detail = response.json()["detail"]
    assert response.status_code == 422 and detail.startswith("study 'corrupt_study': ") and "\n" not in detail
    assert client.post(f"/infer/sdmad?image={setup['labelled'][1]}&output=json").status_code == 200


def test_a_dicom_study_downloads_as_nifti_in_the_same_place(client, setup, tmp_path):
    import nibabel as nib
    import numpy as np

    response = client.get(f"/datastore/image?image={setup['dicom']}")
    assert response.status_code == 200, response.text
    assert f'filename="{setup["dicom"]}.nii.gz"' in response.headers["content-disposition"]
    (tmp_path / "served.nii.gz").write_bytes(response.content)
    served = nib.as_closest_canonical(nib.load(tmp_path / "served.nii.gz"))
    original = nib.as_closest_canonical(nib.load(setup["phantom"] / "nifti" / f"{setup['dicom']}.nii.gz"))
    np.testing.assert_array_equal(np.asarray(served.dataobj), np.asarray(original.dataobj))  # same voxels...
    np.testing.assert_allclose(served.affine[:3, :3], original.affine[:3, :3])  # ...same spacing and axes
    assert client.head(f"/datastore/image?image={setup['dicom']}").status_code == 200


def test_active_learning_answers_from_the_cache_at_once(client, setup):
    """503 while nothing is computed, then the best so far with what is pending, until every study is done."""
    deadline = time.monotonic() + 60
    while True:
        started = time.monotonic()
        response = client.post("/activelearning/sdmad_uncertainty", json={})
        assert time.monotonic() - started < 1.0  # never an inference inside the request
        if response.status_code == 503:
            assert "still being computed" in response.json()["detail"] and response.headers["retry-after"]
        else:
            assert response.status_code == 200, response.text
            result = response.json()
            assert result["id"] in [*setup["labelled"], setup["dicom"]]  # never the unreadable study
            if result["pending"] == 0:
                break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert result["computed"] == len(setup["labelled"]) + 1


def test_training_on_labelled_studies_swaps_in_a_new_model(client, setup, tmp_path):
    """Category labels and, for one study, a label volume as its final label (a corrected `sdmad_maps` result:
    its values are its categories, its pixels the pixel labels training reads)."""
    import nibabel as nib
    import numpy as np

    volume_study = next(n for n in setup["labelled"] if "Enlarged ventricles" in setup["labels"][n])
    mask = setup["phantom"] / "masks" / f"{volume_study}.nii.gz"
    for name in setup["labelled"]:
        label = mask if name == volume_study else label_file(setup["root"], name, setup["labels"][name])
        with open(label, "rb") as handle:
            response = client.put(f"/datastore/label?image={name}&tag=final", files={"label": (label.name, handle)})
        assert response.status_code == 200, response.text
    wrong = nib.load(mask)
    values = np.asarray(wrong.dataobj).copy()
    values[0, 0, 0] = 9  # no category 9
    nib.save(nib.Nifti1Image(values, wrong.affine), tmp_path / "wrong.nii.gz")
    with open(tmp_path / "wrong.nii.gz", "rb") as handle:
        response = client.put(
            f"/datastore/label?image={volume_study}&tag=final", files={"label": ("wrong.nii.gz", handle)}
        )
    assert response.status_code == 422 and "label values [9.0]" in response.json()["detail"], response.text
    from monailabel.interfaces.utils.app import app_instance

    model = Path(setup["conf"]["model"])
    before = client.post(f"/infer/sdmad?image={setup['dicom']}&output=json").json()["prediction"]
    assert not model.exists() and client.get("/model/sdmad").status_code == 404  # zero-shot until trained
    result = app_instance().train({"model": "sdmad", "max_epochs": 3})
    assert result["epochs"] == 3 and result["studies"] == len(setup["labelled"])
    table = Path(setup["app"]) / "train_runs" / result["run"] / "labelled_studies.csv"
    rows = {Path(r["path"]).name.split(".")[0]: r for r in csv.DictReader(table.open())}
    assert rows[volume_study]["labels"] == "|".join(setup["labels"][volume_study])  # read from the volume's values
    assert rows[volume_study]["mask"].endswith(".nii.gz")
    assert all(not row["mask"] for name, row in rows.items() if name != volume_study)
    state = torch.load(model, weights_only=True)
    assert {"network", "sdmad"} <= set(state)
    after = client.post(f"/infer/sdmad?image={setup['dicom']}&output=json").json()["prediction"]
    assert [a["score"] for a in after] != [b["score"] for b in before]  # the new model is served
    assert client.get("/model/sdmad").content == model.read_bytes()
    assert client.get("/model/info/sdmad").json()["checksum"].startswith("SHA256:")


def test_a_served_model_of_the_patch_path_gives_label_images_in_the_studys_geometry(setup, tmp_path, monkeypatch):
    """The demo's model is method sdmad+mvfa: the app builds that network from the served file's run config, lists
    the segmentation model `sdmad_maps` (categories as label values 1..C), and answers a label image in the study's
    voxel grid and affine, equal to the bundle inference's label volume; NRRD when the viewer asks for it. It never
    writes the 4-D maps NIfTI, which it would not read."""
    import itk
    import nibabel as nib
    import numpy as np
    import sdmad.maps
    from conftest import trained_tiny_model
    from monai.bundle import run
    from requests_toolbelt.multipart import decoder

    backbone, checkpoint = trained_tiny_model(tmp_path / "served", method="sdmad+mvfa")
    conf = {**setup["conf"], "model": str(checkpoint), "pretrained": str(backbone)}
    name = setup["labelled"][0]
    study = setup["studies"] / f"{name}.nii.gz"
    run(
        "inference",
        config_file=str(Path(setup["conf"]["bundle_root"]) / "configs" / "inference.yaml"),
        bundle_root=setup["conf"]["bundle_root"],
        model_name="sdmad-tiny",
        pretrained=str(backbone),
        checkpoint=str(checkpoint),
        method="sdmad+mvfa",
        save_maps=True,
        input=str(study),
        output_dir=str(tmp_path / "bundle"),
        num_workers=0,
    )
    expected = nib.load(tmp_path / "bundle" / "maps" / f"{name}_labels.nii.gz")
    map_volumes = []
    monkeypatch.setattr(sdmad.maps, "write_map_nifti", lambda *args: map_volumes.append(args))
    with in_process(setup, conf) as served:
        info = served.get("/info/").json()["models"]
        image = served.post(f"/infer/sdmad_maps?image={name}&output=image")
        both = served.post(f"/infer/sdmad_maps?image={name}", data={"params": '{"result_extension": ".nrrd"}'})
        findings = served.post(f"/infer/sdmad?image={name}&output=json")
        refused = served.post(f"/infer/sdmad?image={name}&output=image")
        bad_format = served.post(f"/infer/sdmad_maps?image={name}", data={"params": '{"result_extension": ".exe"}'})
        left = list(Path(served.app.state.scratch).iterdir())
    assert info["sdmad_maps"]["type"] == "segmentation" and info["sdmad"]["type"] == "classification"
    assert info["sdmad_maps"]["labels"] == {c: v for v, c in enumerate(info["sdmad"]["labels"], start=1)}
    assert image.status_code == 200, image.text
    (tmp_path / "served.nii.gz").write_bytes(image.content)
    served_label = nib.load(tmp_path / "served.nii.gz")
    scan = nib.load(study)
    assert served_label.shape == scan.shape and np.allclose(served_label.affine, scan.affine)
    assert np.array_equal(np.asarray(served_label.dataobj), np.asarray(expected.dataobj))
    assert findings.status_code == 200 and len(findings.json()["slices"]) == 12
    assert refused.status_code == 400 and "sdmad_maps" in refused.json()["detail"]
    assert bad_format.status_code == 422 and "result_extension '.exe'" in bad_format.json()["detail"]
    parts = {
        part.headers[b"Content-Disposition"].split(b'name="')[1].split(b'"')[0]: part
        for part in decoder.MultipartDecoder(both.content, both.headers["content-type"]).parts
    }
    assert json.loads(parts[b"params"].content)["label_names"] == info["sdmad_maps"]["labels"]
    (tmp_path / "served.nrrd").write_bytes(parts[b"image"].content)
    nrrd = itk.imread(str(tmp_path / "served.nrrd"))
    assert np.array_equal(itk.array_view_from_image(nrrd).T, np.asarray(expected.dataobj))  # ITK's order is z, y, x
    assert not left  # every result file removed once sent
    assert not map_volumes


def test_an_image_only_model_lists_no_segmentation_model(client):
    assert "sdmad_maps" not in client.get("/info/").json()["models"]
