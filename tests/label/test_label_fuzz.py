"""Attacks on a real server, bounded and on loopback only (issue 19): `monailabel start_server` with the guarded
web app on a free port, hit as a hostile but legitimate API client would.

A sentinel folder beside the studies folder must keep its files' hashes and get nothing added; every answer is
JSON (file downloads aside) with a 4xx status where refused and never a 500; the server answers `/info/` after each
group; concurrent training requests give exactly one run; no temporary file is left behind. The tests run in
file order and share one server.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("monailabel")

import httpx  # noqa: E402
from label_setup import label_file, live_server, make_label_setup  # noqa: E402

VALID_CATEGORIES = ["Craniotomy"]


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (folders as empty entries)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
    }


class Fuzzer:
    """An HTTP client that checks every answer and counts requests and attack groups."""

    def __init__(self, url: str, sentinel: Path):
        self.client, self.sentinel = httpx.Client(base_url=url, timeout=60), sentinel
        self.before = snapshot(sentinel)
        self.requests, self.groups, self.statuses = 0, 0, {}

    def send(self, method: str, path: str, file: bool = False, **kwargs) -> httpx.Response:
        """One request; unless it is a successful file download, its answer must be JSON without a traceback."""
        response = self.client.request(method, path, **kwargs)
        self.requests += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (method, path, response.status_code, response.text[:300])
        if not (file and response.status_code == 200):
            assert response.headers.get("content-type", "").startswith("application/json"), (method, path, response)
            assert "Traceback" not in response.text
            if method != "HEAD":
                detail = response.json().get("detail", "") if isinstance(response.json(), dict) else ""
                assert "\n" not in str(detail), detail
        return response

    def expect(self, status: int, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.send(method, path, **kwargs)
        assert response.status_code == status, (method, path, response.status_code, response.text[:300])
        return response

    def end_group(self) -> None:
        """After each attack group: the server still answers and the sentinel is untouched."""
        self.groups += 1
        assert self.send("GET", "/info/").status_code == 200
        assert snapshot(self.sentinel) == self.before


@pytest.fixture(scope="module")
def fuzz(phantom_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    setup = make_label_setup(root, phantom_dir)
    final = setup["studies"] / "labels" / "final"
    final.mkdir(parents=True)
    for name in setup["labelled"]:  # every category labelled, so that a training can start
        label_file(final, name, setup["labels"][name])
    sentinel = root / "sentinel"
    sentinel.mkdir()
    (sentinel / "victim.txt").write_text("must stay\n")
    (sentinel / "victim.nii.gz").write_bytes((setup["studies"] / f"{setup['labelled'][0]}.nii.gz").read_bytes())
    (sentinel / "labels").mkdir()
    (sentinel / "labels" / "t.label.json").write_text("{}")
    scratch = root / "tmp"
    scratch.mkdir()
    env = {**os.environ, "HOME": str(root), "TMPDIR": str(scratch)}
    started = time.monotonic()
    with live_server(setup, env) as url:
        fuzzer = Fuzzer(url, sentinel)
        fuzzer.setup, fuzzer.scratch, fuzzer.started = setup, scratch, started
        fuzzer.top_level = sorted(p.name for p in root.iterdir())
        fuzzer.temporary = {p for p in scratch.iterdir() if p.suffix == ".json" or p.name.startswith("sdmad-label-")}
        yield fuzzer
    print(
        f"\nfuzz: {fuzzer.requests} requests in {fuzzer.groups} attack groups, {time.monotonic() - started:.1f} s "
        f"(server start included); statuses {dict(sorted(fuzzer.statuses.items()))}"
    )


def scan(fuzz) -> bytes:
    return (fuzz.setup["studies"] / f"{fuzz.setup['labelled'][0]}.nii.gz").read_bytes()


def test_uploads_stay_inside_the_studies_folder(fuzz):
    sentinel, nifti = fuzz.sentinel, scan(fuzz)
    fuzz.expect(415, "PUT", f"/datastore/image?image={sentinel}/victim", files={"file": ("x.txt", b"overwritten")})
    for image in (
        f"{sentinel}/victim",
        "../sentinel/victim",
        "..%2Fsentinel%2Fvictim",
        ".",
        "..",
        "a/b",
        "a\\b",
        ".hidden",
        " x",
        "x" * 200,
        "%00x",
        "~",
    ):
        fuzz.expect(400, "PUT", f"/datastore/image?image={image}", files={"file": ("x.nii.gz", nifti)})
    for name in ("x.txt", "x.nii.txt", "x.zip", "x.dcm", "x.dicom", "x" * 300, "nosuffix"):
        fuzz.expect(415, "PUT", "/datastore/image", files={"file": (name, nifti)})
    fuzz.expect(400, "PUT", "/datastore/image", files={"file": ("y" * 300 + ".nii.gz", nifti)})
    fuzz.expect(400, "PUT", "/datastore/?image=../sentinel/x", files={"file": ("x.nii.gz", nifti)})  # client's path
    for name in ("../sentinel/from_name.nii.gz", f"{sentinel}/from_abs_name.nii.gz"):  # the base name is the id
        assert fuzz.expect(200, "PUT", "/datastore/image", files={"file": (name, nifti)}).json()["image"] in (
            "from_name",
            "from_abs_name",
        )
    assert (fuzz.setup["studies"] / "from_name.nii.gz").is_file()
    fuzz.end_group()


def test_uploads_must_be_readable_scans(fuzz):
    listing = f"{fuzz.sentinel}/victim.nii.gz\n{fuzz.sentinel}/victim.txt\n".encode()
    fuzz.expect(415, "PUT", "/datastore/image?image=a_list", files={"file": ("list.txt", listing)})
    for name, content in (
        ("list.nii.gz", listing),
        ("bad.h5", b"garbage"),
        ("bad.png", b"\x89PNG garbage"),
        ("cut.nii.gz", scan(fuzz)[:2000]),
        ("empty.nii", b""),
    ):
        detail = fuzz.expect(422, "PUT", "/datastore/image", files={"file": (name, content)}).json()["detail"]
        assert str(fuzz.sentinel) not in detail and str(fuzz.setup["studies"]) not in detail  # nothing echoed
    ids = fuzz.send("GET", "/datastore/?output=all").json()["objects"]
    assert not {"a_list", "list", "bad", "cut", "empty"} & set(ids)
    fuzz.end_group()


def test_labels_are_validated_and_stay_inside(fuzz, tmp_path):
    import nibabel as nib
    import numpy as np

    study, good = fuzz.setup["labelled"][0], json.dumps({"categories": VALID_CATEGORIES}).encode()
    for tag in ("../../sentinel/t", f"{fuzz.sentinel}/labels", "..", "a/b", "x" * 200, ".hidden"):
        fuzz.expect(400, "PUT", f"/datastore/label?image={study}&tag={tag}", files={"label": ("l.json", good)})
    for image in ("no_such_study", "../sentinel/victim", f"{fuzz.sentinel}/victim"):
        fuzz.expect(404, "PUT", f"/datastore/label?image={image}&tag=final", files={"label": ("l.json", good)})
    for content in (
        b"not json",
        b'{"labels": []}',
        b'{"categories": ["Bogus"]}',
        b'{"categories": "Craniotomy"}',
        b"\xff\xfe\x00garbage",
        b"[]",
    ):
        fuzz.expect(422, "PUT", f"/datastore/label?image={study}&tag=final", files={"label": ("l.json", content)})
    fuzz.expect(415, "PUT", f"/datastore/label?image={study}&tag=final", files={"label": ("l.txt", good)})
    fuzz.expect(422, "PUT", f"/datastore/label?image={study}&tag=final", files={"label": ("v.nii.gz", scan(fuzz))})
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), tmp_path / "small.nii.gz")
    fuzz.expect(
        422,
        "PUT",
        f"/datastore/label?image={study}&tag=seg",
        files={"label": ("small.nii.gz", (tmp_path / "small.nii.gz").read_bytes())},
    )
    fuzz.expect(200, "PUT", f"/datastore/label?image={study}&tag=seg", files={"label": ("v.nii.gz", scan(fuzz))})
    fuzz.end_group()


def test_deletes_stay_inside_and_keep_a_backup(fuzz):
    sentinel = fuzz.sentinel
    for image in (f"{sentinel}/victim", "../sentinel/victim", "no_such_study", "labels", ".sdmad"):
        fuzz.expect(404, "DELETE", f"/datastore/image?id={image}")
        fuzz.expect(404, "DELETE", f"/datastore/label?id={image}&tag=final")
    study = fuzz.setup["labelled"][0]
    for tag in ("../../sentinel/labels", f"{sentinel}/labels", "..", "nope"):
        fuzz.expect(404, "DELETE", f"/datastore/label?id={study}&tag={tag}")
    fuzz.expect(404, "DELETE", "/datastore/?id=../sentinel/victim")  # MONAI Label's old alias
    fuzz.expect(200, "DELETE", "/datastore/image?id=from_abs_name")
    assert not (fuzz.setup["studies"] / "from_abs_name.nii.gz").exists()
    assert list((fuzz.setup["studies"] / ".sdmad" / "backup").glob("*_from_abs_name/from_abs_name.nii.gz"))
    fuzz.end_group()


def test_reads_and_inference_take_study_ids_only(fuzz):
    sentinel, study = fuzz.sentinel, fuzz.setup["labelled"][1]
    for image in (f"{sentinel}/victim.txt", "../sentinel/victim", f"{sentinel}/victim.nii.gz", "/etc/passwd"):
        fuzz.expect(404, "GET", f"/datastore/image?image={image}")
        fuzz.expect(404, "HEAD", f"/datastore/image?image={image}")
        fuzz.expect(404, "GET", f"/datastore/image/info?image={image}")
        fuzz.expect(404, "GET", f"/datastore/label?label={image}&tag=final")
        fuzz.expect(404, "POST", f"/infer/sdmad?image={image}&output=json")
    listing = f"{sentinel}/victim.nii.gz\n".encode()
    fuzz.expect(400, "POST", f"/infer/sdmad?image={study}", files={"file": ("list.txt", listing)})
    fuzz.expect(400, "POST", f"/infer/sdmad?image={study}", files={"label": ("l.nii.gz", scan(fuzz))})
    fuzz.expect(400, "POST", f"/infer/sdmad?session_id=x&image={study}")
    fuzz.expect(400, "POST", "/infer/sdmad")
    fuzz.expect(400, "POST", f"/infer/sdmad?image={study}&output=image")
    fuzz.expect(400, "POST", f"/infer/sdmad?image={study}&output=dicom_seg")
    fuzz.expect(422, "POST", f"/infer/sdmad?image={study}&output=bogus")
    fuzz.expect(400, "POST", f"/infer/sdmad?image={study}", data={"params": "{bad"})
    fuzz.expect(400, "POST", f"/infer/sdmad?image={study}", data={"params": "[1]"})
    fuzz.expect(422, "POST", "/infer/sdmad?image=corrupt_study")
    params = json.dumps({"image": f"{sentinel}/victim.nii.gz", "model": "other"})  # cannot redirect the request
    result = fuzz.expect(200, "POST", f"/infer/sdmad?image={fuzz.setup['dicom']}", data={"params": params}).json()
    assert len(result["prediction"]) == 6
    fuzz.end_group()


def test_malformed_requests_and_other_endpoints_answer_json(fuzz):
    study = fuzz.setup["labelled"][1]
    fuzz.expect(400, "PUT", f"/datastore/image/info?image={study}", data={"info": "{bad"})
    fuzz.expect(400, "PUT", f"/datastore/image/info?image={study}", data={"info": "[1]"})
    fuzz.expect(404, "PUT", "/datastore/image/info?image=../x", data={"info": "{}"})
    fuzz.expect(404, "PUT", "/datastore/label/info?label=x&tag=y", data={"info": "{}"})
    fuzz.expect(
        400, "PUT", f"/datastore/image?image={study}", data={"params": "{bad"}, files={"file": ("x.nii.gz", scan(fuzz))}
    )
    fuzz.expect(404, "POST", "/activelearning/no_such_strategy", json={})
    fuzz.expect(422, "POST", "/activelearning/sdmad_uncertainty", json=[1])
    fuzz.expect(404, "GET", "/model/sdmad")  # zero-shot: no model file yet
    fuzz.expect(404, "GET", "/model/info/sdmad")
    fuzz.expect(405, "PUT", "/model/sdmad", files={"file": ("m.pt", b"pickle")})
    fuzz.expect(405, "DELETE", "/model/sdmad")
    for path in ("/no/such/path", "/session/", "/logs/", "/batch/infer/sdmad", "/proxy/dicom/x", "/scoring/x"):
        fuzz.expect(404, "GET", path)
    fuzz.expect(405, "POST", "/info/")
    fuzz.expect(400, "HEAD", f"/datastore/image?image={study}&check_sum=CRC32:00")
    fuzz.expect(404, "HEAD", f"/datastore/image?image={study}&check_sum=SHA256:00")
    assert fuzz.send("GET", f"/datastore/image?image={study}", file=True).status_code == 200
    archive = fuzz.send("GET", "/datastore/dataset", file=True)
    assert archive.status_code == 200 and archive.content[:2] == b"PK"
    fuzz.end_group()


def test_an_existing_study_is_replaced_only_when_asked(fuzz):
    studies, nifti = fuzz.setup["studies"], scan(fuzz)
    other = (studies / f"{fuzz.setup['labelled'][2]}.nii.gz").read_bytes()
    fuzz.expect(200, "PUT", "/datastore/image?image=replaced_study", files={"file": ("x.nii.gz", nifti)})
    fuzz.expect(
        200,
        "PUT",
        "/datastore/label?image=replaced_study&tag=final",
        files={"label": ("l.json", b'{"categories": []}')},
    )
    fuzz.expect(409, "PUT", "/datastore/image?image=replaced_study", files={"file": ("x.nii.gz", other)})
    fuzz.expect(409, "PUT", "/datastore/image?image=replaced_study", files={"file": ("x.png", b"other format")})
    assert (studies / "replaced_study.nii.gz").read_bytes() == nifti
    fuzz.expect(200, "PUT", "/datastore/image?image=replaced_study&replace=true", files={"file": ("x.nii.gz", other)})
    assert (studies / "replaced_study.nii.gz").read_bytes() == other
    backup = next((studies / ".sdmad" / "backup").glob("*_replaced_study"))
    assert (backup / "replaced_study.nii.gz").read_bytes() == nifti
    assert (backup / "labels" / "final" / "replaced_study.label.json").is_file()
    fuzz.expect(404, "GET", "/datastore/label?label=replaced_study&tag=final")  # the old label went with it
    fuzz.end_group()


def test_web_pages_of_other_sites_are_refused(fuzz):
    evil = {"Origin": "http://evil.example"}
    response = fuzz.expect(403, "GET", "/info/", headers=evil)
    assert "access-control-allow-origin" not in response.headers
    preflight = {**evil, "Access-Control-Request-Method": "POST"}
    response = fuzz.expect(403, "OPTIONS", "/train/sdmad", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    fuzz.expect(403, "POST", "/train/sdmad", headers={**evil, "Content-Type": "text/plain"}, content=b"{}")
    fuzz.expect(403, "GET", "/info/", headers={"Host": "evil.example"})  # DNS rebinding
    fuzz.expect(403, "GET", "/info/", headers={"Origin": "null"})
    fuzz.expect(404, "GET", "/train/")  # none of these started a training
    host = str(fuzz.client.base_url).removeprefix("http://")
    assert (
        "access-control-allow-origin"
        not in fuzz.expect(200, "GET", "/info/", headers={"Origin": f"http://{host}"}).headers
    )
    fuzz.end_group()


def test_one_training_at_a_time_and_options_checked_first(fuzz):
    for params in (
        {"shots": 0},
        {"shots": -1},
        {"shots": "x"},
        {"shots": True},
        {"max_epochs": 0},
        {"max_epochs": 4},
        {"max_epochs": 10**9},
        {"learning_rate": 0},
        {"learning_rate": "abc"},
        {"shots": 9},
        {"unknown_option": 1},
    ):
        fuzz.expect(422, "POST", "/train/sdmad", json=params)
    fuzz.expect(422, "POST", "/train/sdmad", json=[1])
    fuzz.expect(400, "POST", "/train/sdmad?run_sync=true", json={"max_epochs": 1})
    fuzz.expect(404, "POST", "/train/no_such_trainer", json={})
    answers, barrier = [], threading.Barrier(6)

    def request_training() -> None:
        barrier.wait()
        answers.append(fuzz.send("POST", "/train/sdmad", json={"max_epochs": 1}))

    threads = [threading.Thread(target=request_training) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] + [409] * 5
    started = time.monotonic()
    assert fuzz.expect(200, "GET", "/train/?check_if_running=true").json()["status"] == "RUNNING"
    assert time.monotonic() - started < 1.0  # the server answers while it trains
    assert fuzz.expect(200, "DELETE", "/train/").json()["status"] == "STOPPED"
    deadline = time.monotonic() + 10
    while fuzz.send("GET", "/train/?check_if_running=true").status_code == 200:  # until the child has exited
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert len(fuzz.expect(200, "GET", "/train/?all=true").json()) == 1  # exactly one run
    fuzz.expect(200, "POST", "/train/sdmad", json={"max_epochs": 1})  # the lock was released
    fuzz.expect(200, "DELETE", "/train/")
    fuzz.expect(404, "DELETE", "/train/") if fuzz.send(
        "GET", "/train/?check_if_running=true"
    ).status_code == 404 else None
    fuzz.end_group()


def test_monai_labels_own_client_still_works(fuzz, tmp_path):
    """The legitimate path after the attacks: MONAI Label's client (as 3D Slicer's plugin uses it)."""
    from monailabel.client import MONAILabelClient

    client = MONAILabelClient(str(fuzz.client.base_url), tmpdir=str(tmp_path))
    assert client.info()["name"] == "SD-MAD"
    (tmp_path / "client_study.nii.gz").write_bytes(scan(fuzz))
    assert client.upload_image(str(tmp_path / "client_study.nii.gz"), "client_study")["image"] == "client_study"
    (tmp_path / "label.json").write_text(json.dumps({"categories": VALID_CATEGORIES}))
    assert client.save_label("client_study", str(tmp_path / "label.json"), tag="final")["label"] == "client_study"
    image, findings = client.infer("sdmad", "client_study", {})  # a JSON-only answer comes back as bytes
    assert image is None and json.loads(findings)["prediction"][0]["label"] == "Craniotomy"
    assert client.train_start("sdmad", {"max_epochs": 1})["status"] == "RUNNING"
    assert client.train_status(check_if_running=True)
    assert client.train_stop()["status"] == "STOPPED"
    fuzz.end_group()


def test_active_learning_never_blocks(fuzz):
    for _ in range(10):
        started = time.monotonic()
        response = fuzz.send("POST", "/activelearning/sdmad_uncertainty", json={})
        assert time.monotonic() - started < 1.0 and response.status_code in (200, 503)
    fuzz.end_group()


def test_nothing_escaped_and_nothing_was_left_behind(fuzz):
    assert snapshot(fuzz.sentinel) == fuzz.before
    assert sorted(p.name for p in fuzz.setup["root"].iterdir()) == fuzz.top_level
    assert not list((fuzz.setup["studies"] / ".sdmad" / "staging").iterdir())
    deadline = time.monotonic() + 5  # an inference of the uncertainty thread may hold its folder for a moment
    while set(fuzz.scratch.iterdir()) - fuzz.temporary and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(fuzz.scratch.iterdir()) == fuzz.temporary  # no request left a temporary file (the start-up's log
    scratch = [p for p in fuzz.temporary if p.name.startswith("sdmad-label-")]  # config is MONAI Label's own)
    assert len(scratch) == 1 and not list(scratch[0].iterdir())  # ...nor a download in the server's scratch folder
    assert time.monotonic() - fuzz.started < 60
