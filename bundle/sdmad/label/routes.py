"""The endpoints SD-MAD's server answers itself instead of MONAI Label's, same paths and parameters.

MONAI Label's versions copy uploads to /tmp and remove them only after a successful response, parse `params`
unchecked (a malformed one was a 500), answer a DICOM folder study with 404 on download, write the data set ZIP
to /tmp and leave it there, accept uploaded files and `output=image` for inference (500 after running it), and
train inside the server with `run_sync`. Here:

- uploads stream into the datastore's staging folder and are removed on every path; the id is checked first;
- info updates must be JSON objects (MONAI Label's failed with a 500 on any other JSON);
- `GET /datastore/image` of a DICOM series answers it as NIfTI (the volume inference sees); generated files live
  in the server's scratch folder and are removed after the response (the whole folder at shutdown);
- inference takes study ids only; it answers JSON, and a label image for the segmentation model only;
- training: options checked up front, one at a time (409), never inside the server (`run_sync` refused);
- the served model is not uploaded or deleted over the API.

Sync functions: FastAPI runs them in its thread pool, so a long one never holds up the event loop.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Body, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse
from monailabel.config import settings
from monailabel.endpoints.infer import ResultType, send_response
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance
from monailabel.utils.others.generic import file_checksum, get_mime_type
from starlette.background import BackgroundTask

from sdmad.data.errors import DataError
from sdmad.errors import one_line
from sdmad.label.datastore import FINAL, StudiesDatastore, label_upload_suffix, study_upload_suffix
from sdmad.label.errors import BadRequest, Invalid, NotAllowed, NotFound
from sdmad.label.names import plain_name
from sdmad.label.scans import write_nifti
from sdmad.label.tasks import result_extension

router = APIRouter()
USER, ANNOTATOR, ADMIN = (
    settings.MONAI_LABEL_AUTH_ROLE_USER,
    settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR,
    settings.MONAI_LABEL_AUTH_ROLE_ADMIN,
)
CHECKSUMS = ("SHA256", "SHA512", "MD5")


def _datastore() -> StudiesDatastore:
    return app_instance().datastore()


def json_object(text: str | None, name: str) -> dict[str, Any]:
    """A form field holding a JSON object; BadRequest naming the field otherwise."""
    try:
        value = json.loads(text) if text else {}
    except ValueError as err:
        raise BadRequest(f"'{name}' is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise BadRequest(f"'{name}' must be a JSON object, not {type(value).__name__}")
    return value


def _receive(upload: UploadFile, target: Path) -> None:
    with open(target, "wb") as handle:
        shutil.copyfileobj(upload.file, handle)


def _generated_file(request: Request, name: str, make: Callable[[Path], Path], media_type: str) -> FileResponse:
    """Answer a file that ``make`` writes to the given path, in a new folder of the server's scratch folder,
    removed after the response (or at once if ``make`` fails; a response cut off leaves it to the shutdown)."""
    folder = Path(tempfile.mkdtemp(dir=request.app.state.scratch))
    try:
        path = make(folder / name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        path, media_type=media_type, filename=name, background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True)
    )


@router.post("/infer/{model}", tags=["Infer"], summary="Findings of a study (JSON), and its label image (sdmad_maps)")
def infer(
    request: Request,
    background_tasks: BackgroundTasks,
    model: str,
    image: str = "",
    output: ResultType | None = None,
    session_id: str = "",
    params: str = Form("{}"),
    file: UploadFile | None = File(None),
    label: UploadFile | None = File(None),
    user: User = Depends(RBAC(USER)),
) -> Any:
    """`sdmad`: JSON findings. `sdmad_maps` (a model with the patch path): the label image too, as MONAI Label's
    own endpoint answers it (output=image: the file; all or none: multipart `params` + `image`; json); the file
    (NIfTI, or NRRD with `result_extension` .nrrd as the Slicer and OHIF plugins ask) lives in the server's scratch
    folder and is removed once sent."""
    if file is not None or label is not None or session_id:
        raise BadRequest(
            "inference runs on studies of the studies folder only: upload the scan with PUT "
            "/datastore/image, then POST /infer/<model>?image=<id>"
        )
    if not image:
        raise BadRequest("missing 'image': the id of a study (GET /datastore/?output=all)")
    if output == ResultType.dicom_seg:
        raise BadRequest(f"study '{image}': no DICOM SEG here (the Deploy app writes one): use output=image or json")
    options = json_object(params, "params")
    options.pop("timeout", None)  # the server's own limit: an abandoned task would still write its file
    if model == "sdmad_maps":
        result_extension(options)  # a bad format is refused before anything runs
    elif output == ResultType.image and model == "sdmad":
        raise BadRequest(
            f"study '{image}': model '{model}' gives findings only (JSON): use output=json, or the "
            "segmentation model 'sdmad_maps' for a label image"
        )
    result = app_instance().infer(
        {**options, "model": model, "image": image, "result_dir": str(request.app.state.scratch)}
    )
    if not result.get("file"):
        return result["params"]
    return send_response(None, result, output.value if output else None, background_tasks)


@router.put("/datastore/image", tags=["Datastore"], summary="Upload a study (replace=true to replace one)")
@router.put("/datastore/", include_in_schema=False)  # the path MONAI Label's own client uploads to
def add_image(
    image: str | None = None,
    replace: bool = False,
    params: str = Form("{}"),
    file: UploadFile = File(...),
    user: User = Depends(RBAC(ANNOTATOR)),
) -> dict[str, str]:
    info = {**json_object(params, "params"), "user": user.username}
    suffix = study_upload_suffix(file.filename)
    image_id = plain_name(image or Path(file.filename).name[: -len(suffix)], "image id")
    datastore = _datastore()
    with datastore.staging_file(suffix) as staged:
        _receive(file, staged)
        return {"image": datastore.add_image(image_id, str(staged), info, replace=replace)}


@router.put("/datastore/label", tags=["Datastore"], summary="Save a study's label (final: a category label JSON)")
def save_label(
    image: str,
    tag: str = FINAL,
    params: str = Form("{}"),
    label: UploadFile = File(...),
    user: User = Depends(RBAC(ANNOTATOR)),
) -> dict[str, Any]:
    info = {**json_object(params, "params"), "user": user.username}
    datastore = _datastore()
    datastore.study_path(image)
    suffix = label_upload_suffix(label.filename)
    with datastore.staging_file(suffix) as staged:
        _receive(label, staged)
        label_id = datastore.save_label(image, str(staged), tag or FINAL, info)
    return {**(app_instance().on_save_label(image, label_id) or {}), "image": image, "label": label_id}


@router.put("/datastore/image/info", tags=["Datastore"], summary="Update a study's info (a JSON object)")
def update_image_info(image: str, info: str = Form("{}"), user: User = Depends(RBAC(ANNOTATOR))) -> dict:
    _datastore().update_image_info(image, {**json_object(info, "info"), "user": user.username})
    return {}


@router.put("/datastore/label/info", tags=["Datastore"], summary="Update a label's info (a JSON object)")
def update_label_info(label: str, tag: str, info: str = Form("{}"), user: User = Depends(RBAC(ANNOTATOR))) -> dict:
    _datastore().update_label_info(label, tag, {**json_object(info, "info"), "user": user.username})
    return {}


@router.head("/datastore/image", tags=["Datastore"], summary="Check that a study exists (and its checksum)")
def check_image(image: str, check_sum: str | None = None, user: User = Depends(RBAC(USER))) -> dict:
    path = _datastore().study_path(image)
    if check_sum:
        algorithm, _, digest = check_sum.rpartition(":")
        algorithm = algorithm.upper() or "SHA256"
        if algorithm not in CHECKSUMS:
            raise BadRequest(f"check_sum: unknown algorithm {algorithm!r}; use one of {list(CHECKSUMS)}")
        if path.is_dir() or file_checksum(str(path), algo=algorithm) != f"{algorithm}:{digest}":
            raise NotFound(f"study '{image}': checksum differs (a DICOM series is served as a new NIfTI file)")
    return {}


@router.get("/datastore/image", tags=["Datastore"], summary="Download a study (a DICOM series as NIfTI)")
def download_image(request: Request, image: str, user: User = Depends(RBAC(USER))) -> FileResponse:
    path = _datastore().study_path(image)
    if not path.is_dir():
        return FileResponse(path, media_type=get_mime_type(str(path)), filename=path.name)

    def convert(target: Path) -> Path:
        try:
            return write_nifti(path, target)
        except DataError as err:
            raise Invalid(f"study '{image}': {one_line(err)}") from err

    return _generated_file(request, f"{image}.nii.gz", convert, "application/gzip")


@router.get("/datastore/dataset", tags=["Datastore"], summary="Download the labelled studies as a ZIP")
def download_dataset(
    request: Request, limit_cases: int | None = None, user: User = Depends(RBAC(ANNOTATOR))
) -> FileResponse:
    return _generated_file(
        request, "dataset.zip", lambda target: _datastore().write_archive(target, limit_cases), "application/zip"
    )


@router.post("/train/{model}", tags=["Train"], summary="Start a training (one at a time)")
def train(
    request: Request,
    model: str,
    params: dict | None = Body(None),
    run_sync: bool = False,
    user: User = Depends(RBAC(ADMIN)),
) -> dict[str, Any]:
    if run_sync:
        raise BadRequest(
            "run_sync is refused: a training runs in a background process while the server keeps "
            "answering; follow it with GET /train/"
        )
    options = app_instance().training_options(model, params or {})
    return request.app.state.training.start({"model": model, **options})


@router.get("/train/", tags=["Train"], summary="The last training, every training (all) or the running one")
def train_status(
    request: Request, all: bool = False, check_if_running: bool = False, user: User = Depends(RBAC(USER))
) -> Any:
    return request.app.state.training.status(all, check_if_running)


@router.delete("/train/", tags=["Train"], summary="Stop the running training")
def stop_training(request: Request, user: User = Depends(RBAC(ADMIN))) -> dict[str, Any]:
    return request.app.state.training.stop()


@router.put("/model/{model}", tags=["Model"], summary="Refused: the served model changes by training")
@router.delete("/model/{model}", tags=["Model"], summary="Refused: the served model changes by training")
def change_model(model: str, user: User = Depends(RBAC(ADMIN))) -> None:
    raise NotAllowed(
        f"model {model!r}: the served model is not uploaded or deleted over the API; it changes by "
        f"training (POST /train/{model}) or on the server's disk (--conf model)"
    )
