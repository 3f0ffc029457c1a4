"""The guards of the MONAI Label app one by one: plain names, the start-up check of the studies folder, an unsafe
index, the CORS allow-list, the uncertainty cache's keys, the refusal to be served without the guards.

Runs in the label environment (`make label-env`; `make test` runs it); skipped where monailabel is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("monailabel")

from label_setup import in_process, make_label_setup  # noqa: E402
from sdmad.label.errors import BadRequest, Forbidden, StillComputing  # noqa: E402
from sdmad.label.names import confined, plain_name  # noqa: E402

SERVE = Path(__file__).resolve().parents[2] / "scripts" / "monailabel_app" / "serve.py"


@pytest.fixture(scope="module")
def setup(phantom_dir, tmp_path_factory):
    return make_label_setup(tmp_path_factory.mktemp("guards"), phantom_dir)


@pytest.mark.parametrize("name", ["study_01", "file_brain_AXFLAIR_200_6002447", "a.b-c", "x" * 128])
def test_plain_names_are_accepted(name):
    assert plain_name(name, "image id") == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a..b", ".hidden", "-x", "a/b", "a\\b", "/abs", "x" * 129, "a b", "a\x00b", "é", None, 3]
)
def test_other_names_are_refused(name):
    with pytest.raises(BadRequest, match="not a plain name"):
        plain_name(name, "image id")


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "outside.nii.gz").write_bytes(b"")
    (tmp_path / "studies" / "linked.nii.gz").symlink_to(tmp_path / "outside.nii.gz")
    with pytest.raises(Forbidden):
        confined(tmp_path / "studies", tmp_path / "studies" / "linked.nii.gz")
    assert confined(tmp_path, tmp_path / "studies" / "x.nii.gz") == tmp_path / "studies" / "x.nii.gz"


def test_a_folder_with_colliding_or_unusable_ids_is_refused_at_start_up(tmp_path):
    from sdmad.label.datastore import StudiesDatastore
    from sdmad.label.folder import StudyFolderError

    studies = tmp_path / "studies"
    studies.mkdir()
    for name in ("scan.png", "scan.h5", "patient 1.nii.gz", "ok.nii.gz", ".hidden.nii.gz", "notes.txt"):
        (studies / name).write_bytes(b"")
    (studies / "series.dicom").mkdir()
    (studies / "series.nii").write_bytes(b"")
    (tmp_path / "elsewhere.nii.gz").write_bytes(b"")
    (studies / "linked.nii.gz").symlink_to(tmp_path / "elsewhere.nii.gz")
    with pytest.raises(StudyFolderError) as refused:
        StudiesDatastore(studies, ["Craniotomy"], auto_reload=False)
    message = str(refused.value)
    for expected in (
        "id 'scan' is shared by ['scan.h5', 'scan.png']",
        "id 'series' is shared by",
        "patient 1.nii.gz: the id 'patient 1' is not a plain name",
        "linked.nii.gz: resolves outside",
    ):
        assert expected in message
    assert "ok.nii.gz" not in message and "hidden" not in message and "notes" not in message
    result = subprocess.run(
        [sys.executable, str(SERVE), "--studies", str(studies), "--port", "9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "sdmad: error:" in result.stderr and "id 'scan' is shared" in result.stderr


def test_unsafe_entries_of_an_old_index_are_dropped(tmp_path):
    from sdmad.label.datastore import StudiesDatastore

    studies = tmp_path / "studies"
    studies.mkdir()
    (tmp_path / "victim.nii.gz").write_bytes(b"")
    entry = {"image": {"ext": ".nii.gz", "info": {}}, "labels": {"../../x": {"ext": ".txt", "info": {}}}}
    index = {
        "name": "old",
        "description": "written by an unguarded server",
        "images_dir": ".",
        "labels_dir": "labels",
        "objects": {
            "../victim": entry,
            str(tmp_path / "victim"): entry,
            "text_list": {"image": {"ext": ".txt", "info": {}}},
        },
    }
    (studies / "datastore_v2.json").write_text(json.dumps(index))
    datastore = StudiesDatastore(studies, ["Craniotomy"], auto_reload=False)
    assert datastore.list_images() == []
    datastore.refresh()
    assert datastore.list_images() == [] and (tmp_path / "victim.nii.gz").exists()


def test_cors_only_for_listed_origins_and_never_with_credentials(setup):
    viewer = "http://viewer.example:3000"
    preflight = {"Origin": viewer, "Access-Control-Request-Method": "PUT"}
    with in_process(setup, {**setup["conf"], "cors_origins": f'["{viewer}"]'}) as client:
        response = client.options("/datastore/label", headers=preflight)
        assert response.status_code == 200 and response.headers["access-control-allow-origin"] == viewer
        assert "access-control-allow-credentials" not in response.headers
        response = client.get("/info/", headers={"Origin": "http://other.example"})
        assert response.status_code == 403 and "access-control-allow-origin" not in response.headers
        assert client.get("/info/", headers={"Origin": viewer}).headers["access-control-allow-origin"] == viewer


def test_uncertainty_is_keyed_by_the_model_and_the_study(setup):
    from monailabel.interfaces.utils.app import app_instance
    from sdmad.label.uncertainty import UncertaintyCache, UncertaintyStrategy

    with in_process(setup):
        app = app_instance()
        datastore, model = app.datastore(), Path(setup["conf"]["model"])
        cache = UncertaintyCache(app.predictor, datastore, model)  # not started: updated by hand below
        strategy = UncertaintyStrategy(cache)
        with pytest.raises(StillComputing, match="still being computed for 9 of 9"):
            strategy({}, datastore)
        cache.update()
        chosen = strategy({}, datastore)
        assert chosen["computed"] == 8 and chosen["pending"] == 0  # 6 categories, a normal, the DICOM; not the corrupt
        study = setup["studies"] / f"{setup['labelled'][0]}.nii.gz"
        os.utime(study, ns=(study.stat().st_atime_ns, study.stat().st_mtime_ns + 10**9))
        assert cache.lookup(datastore.get_unlabeled_images())[1] == [setup["labelled"][0]]
        cache.update()
        model.write_bytes(b"a new model")  # every entry belongs to the old one now
        try:
            values, pending = cache.lookup(datastore.get_unlabeled_images())
            assert values == {} and len(pending) == 9
        finally:
            model.unlink()
        assert cache.lookup(datastore.get_unlabeled_images())[1] == []


def test_the_app_refuses_monai_labels_own_unguarded_web_app(setup):
    from monailabel.interfaces.utils.app import app_instance

    with in_process(setup):
        with pytest.raises(RuntimeError, match="--uvicorn_app sdmad.label.server:app"):
            app_instance().on_init_complete()


def test_generated_files_go_and_staging_stays_empty(setup):
    with in_process(setup) as client:
        assert client.get(f"/datastore/image?image={setup['dicom']}").status_code == 200
        scratch = client.app.state.scratch
        assert scratch.is_dir() and not list(scratch.iterdir())
    assert not scratch.exists()  # removed at shutdown
    assert not list((setup["studies"] / ".sdmad" / "staging").iterdir())
    shutil.rmtree(setup["studies"] / ".sdmad")
