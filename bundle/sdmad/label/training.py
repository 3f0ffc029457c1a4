"""One training at a time, in a child process, so that the server keeps answering while it runs.

MONAI Label's AsyncTask checks "already running" only once the child has started (two requests at once both
ran), queues any number of requests with `enqueue`, and with `run_sync` trains inside the server process. Here a
lock is taken when a request is accepted and released only when the child has exited, whatever the way (done,
failed, stopped); a request while it is held gets 409. The child is MONAI Label's own entry point
(`python -m monailabel.interfaces.utils.app -m train`), which builds the app and calls its `train`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections import deque
from datetime import datetime
from typing import Any

import psutil

from sdmad.label.errors import Conflict, NotFound

logger = logging.getLogger(__name__)
LOG_LINES = 20


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


class TrainingRunner:
    """Runs accepted training requests one at a time in a child process.

    Args:
        env: the child's environment (MONAI Label's settings naming the app folder, studies and conf).

    A task is reported as MONAI Label reports one (`id`, `status`: RUNNING, DONE, ERROR or STOPPED, `request`,
    `start_ts`, `end_ts`, `details`: the last lines of the child's output).
    """

    def __init__(self, env: dict[str, str]):
        self.env = env
        self._held = threading.Lock()  # held from acceptance until the child has exited
        self._tasks: list[dict[str, Any]] = []
        self._process: subprocess.Popen | None = None

    def start(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a training child for ``request``; Conflict while another one runs."""
        if not self._held.acquire(blocking=False):
            raise Conflict("a training is already running: wait for it (GET /train/) or stop it (DELETE /train/)")
        try:
            task = {
                "id": str(uuid.uuid4()),
                "status": "RUNNING",
                "request": request,
                "start_ts": _now(),
                "details": deque(maxlen=LOG_LINES),
            }
            command = [
                sys.executable,
                "-m",
                "monailabel.interfaces.utils.app",
                "-m",
                "train",
                "-r",
                json.dumps(request),
            ]
            self._process = subprocess.Popen(
                command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            self._tasks.append(task)
            threading.Thread(
                target=self._follow, args=(task, self._process), name="sdmad-training", daemon=True
            ).start()
        except BaseException:
            self._held.release()
            raise
        logger.info("training %s started: %s", task["id"], request)
        return self._report(task)

    def _follow(self, task: dict[str, Any], process: subprocess.Popen) -> None:
        try:
            for line in process.stdout:
                logger.info("training: %s", line.rstrip())
                task["details"].append(line.rstrip())
            process.wait()
            if task["status"] == "RUNNING":
                task["status"] = "DONE" if process.returncode == 0 else "ERROR"
            task["end_ts"] = _now()
            logger.info("training %s: %s (exit code %s)", task["id"], task["status"], process.returncode)
        finally:
            self._process = None
            self._held.release()

    def stop(self) -> dict[str, Any]:
        """Stop the running training (its child processes too); NotFound if none runs."""
        process, task = self._process, self._tasks[-1] if self._tasks else None
        if process is None or task is None or task["status"] != "RUNNING":
            raise NotFound("no training is running")
        task["status"] = "STOPPED"
        try:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
        except psutil.NoSuchProcess:  # it has just ended
            pass
        return self._report(task)

    def running(self) -> bool:
        return self._held.locked()

    def status(self, all: bool = False, check_if_running: bool = False) -> dict[str, Any] | list[dict[str, Any]]:
        """MONAI Label's answer: the last task, every task (`all`), or the running one (`check_if_running`);
        NotFound when there is none."""
        if check_if_running:
            if not self.running() or not self._tasks:
                raise NotFound("no training is running")
            return self._report(self._tasks[-1])
        if not self._tasks:
            raise NotFound("no training has run yet")
        return [self._report(t) for t in self._tasks] if all else self._report(self._tasks[-1])

    @staticmethod
    def _report(task: dict[str, Any]) -> dict[str, Any]:
        return {**task, "details": list(task["details"])}


def child_environment(app_dir: str, studies: str, conf: dict[str, Any]) -> dict[str, str]:
    """The environment in which MONAI Label's entry point builds the same app as the server's (its settings)."""
    return {
        **os.environ,
        "MONAI_LABEL_APP_DIR": app_dir,
        "MONAI_LABEL_STUDIES": studies,
        "MONAI_LABEL_APP_CONF": json.dumps(conf),
        "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false",
    }
