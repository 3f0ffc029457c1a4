"""The web server of the SD-MAD MONAI Label app: MONAI Label's API with the guards a server left running needs.

    monailabel start_server --app scripts/monailabel_app --studies <folder> --uvicorn_app sdmad.label.server:app

(scripts/monailabel_app/serve.py does this; `--uvicorn_app` is MONAI Label's way to serve another web app.)
MONAI Label's own web app (monailabel.app) fixes CORS to every origin with credentials when it is imported, and
its endpoints trust the app with paths, files and errors. This one, built from MONAI Label's routers:

- adds no CORS headers unless `--conf cors_origins` lists origins, and refuses other hosts and web pages
  (sdmad.label.origins);
- answers every failure as JSON ``{"detail": <one line>}`` with its status, never a traceback;
- replaces the endpoints listed in sdmad.label.routes, and does not serve those the app has no use for: sessions
  (uploads kept on disk under any name), batch and whole-slide inference, scoring, the DICOMweb proxy, logs;
- at start-up builds the app (whose datastore refuses a folder with colliding ids), the uncertainty cache's
  thread and the training runner; at shutdown stops a running training and removes its scratch folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from monailabel.config import settings
from monailabel.endpoints import activelearning, datastore, info, login, model, ohif
from monailabel.interfaces.exception import ImageNotFoundException, LabelNotFoundException, MONAILabelException
from monailabel.interfaces.utils.app import app_instance

import sdmad
from sdmad.errors import one_line
from sdmad.label import routes
from sdmad.label.app import SDMADLabelApp, conf_value
from sdmad.label.errors import NotFound, RequestError
from sdmad.label.origins import LOOPBACK_HOSTS, RequestOriginGuard, names
from sdmad.label.training import TrainingRunner, child_environment

logger = logging.getLogger(__name__)
CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE"]


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    instance = app_instance()
    if not isinstance(instance, SDMADLabelApp):
        raise RuntimeError(f"{__name__} serves the SD-MAD app only, not {type(instance).__name__}")
    api.state.scratch = Path(tempfile.mkdtemp(prefix="sdmad-label-"))
    api.state.training = TrainingRunner(child_environment(instance.app_dir, instance.studies, instance.conf))
    instance.server_mode(True)
    instance.start_serving()
    try:
        yield
    finally:
        with suppress(NotFound):
            api.state.training.stop()
        instance.stop_serving()
        shutil.rmtree(api.state.scratch, ignore_errors=True)


def _answer(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _request_error(request: Request, error: RequestError) -> JSONResponse:
    return _answer(error.status_code, one_line(error), error.headers)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()]
    return _answer(422, "; ".join(problems))


async def _monailabel_error(request: Request, error: MONAILabelException) -> JSONResponse:
    not_found = isinstance(error, (ImageNotFoundException, LabelNotFoundException))
    return _answer(404 if not_found else 400, one_line(Exception(error.msg)))  # its own str() is empty


async def _malformed_json(request: Request, error: json.JSONDecodeError) -> JSONResponse:
    return _answer(400, f"a form field is not valid JSON: {error}")


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return _answer(500, f"internal error ({type(error).__name__}): {one_line(error)}")


def without(router: APIRouter, dropped: set[tuple[str, str]]) -> APIRouter:
    """``router`` without its routes whose (path, method) is in ``dropped``."""
    kept = APIRouter()
    kept.routes = [r for r in router.routes if not {(r.path, m) for m in r.methods} & dropped]
    return kept


def create_app(conf: dict[str, Any]) -> FastAPI:
    """The web app; ``conf`` is the server's `--conf` (`cors_origins`, `allowed_hosts`: lists or comma-separated)."""
    api = FastAPI(
        title="SD-MAD MONAI Label", version=sdmad.__version__, lifespan=lifespan, docs_url="/", redoc_url="/docs"
    )
    origins = names(conf_value(conf.get("cors_origins")))
    if origins:
        api.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=CORS_METHODS, allow_headers=["*"])
    hosts = names(conf_value(conf.get("allowed_hosts"))) or list(LOOPBACK_HOSTS)
    api.add_middleware(RequestOriginGuard, allowed_hosts=hosts, allowed_origins=origins)  # outermost
    api.add_exception_handler(RequestError, _request_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(MONAILabelException, _monailabel_error)
    api.add_exception_handler(json.JSONDecodeError, _malformed_json)
    api.add_exception_handler(Exception, _unexpected)
    dropped = {(route.path, method) for route in routes.router.routes for method in route.methods}  # replaced
    dropped |= {("/datastore/updatelabelinfo", "PUT")}  # MONAI Label's deprecated alias of PUT /datastore/label/info
    if settings.MONAI_LABEL_AUTH_ENABLE:
        api.include_router(login.router)
    api.include_router(routes.router)
    for router in (info.router, model.router, activelearning.router, datastore.router, ohif.router):
        api.include_router(without(router, dropped))
    return api


app = create_app(settings.MONAI_LABEL_APP_CONF)
