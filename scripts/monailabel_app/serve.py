"""Start the SD-MAD MONAI Label server on 127.0.0.1 (loopback only) and print its URL.

    .venv-label/bin/python scripts/monailabel_app/serve.py --studies data/label_studies [--port 8000]

The backbone and model default to the demo's (models/sdmad-tiny-phantom.pt, runs/demo/training/model.pt) when
they exist, deciding with the rule the model was trained to use; pass `--conf KEY VALUE` pairs to override
(docs/monailabel.md). The server is MONAI Label's, serving
the guarded web app sdmad.label.server (docs/monailabel.md, "Security"). It has no authentication.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sdmad.label import SERVER_APP
from sdmad.label.folder import StudyFolderError, check_folder
from sdmad.tools.pretraining import demo_image_size

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def served_decision_rule(model: Path) -> str:
    """The rule the served model file was trained to decide with (docs/method.md); Eq. 8 without a model."""
    from sdmad.checkpoints import intended_decision_rule, read_checkpoint

    return intended_decision_rule(read_checkpoint(model)) if model.is_file() else "paper"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", default="data/label_studies")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1", help="keep the loopback default unless you know why")
    parser.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    args = parser.parse_args()
    try:
        check_folder(Path(args.studies))  # the server would refuse it too, after a longer start
    except StudyFolderError as err:
        sys.exit(f"sdmad: error: {err}")
    conf = {"bundle_root": str(ROOT)}
    backbone, model = ROOT / "models" / "sdmad-tiny-phantom.pt", ROOT / "runs" / "demo" / "training" / "model.pt"
    if backbone.is_file():
        conf.update(model_name="sdmad-tiny", pretrained=str(backbone), model=str(ROOT / "models" / "label_model.pt"))
        if model.is_file() and not (ROOT / "models" / "label_model.pt").exists():
            (ROOT / "models" / "label_model.pt").write_bytes(model.read_bytes())
        conf["decision_rule"] = served_decision_rule(ROOT / "models" / "label_model.pt")
        if not (ROOT / "models" / "label_model.pt").exists():  # zero-shot: the size the backbone was pretrained at
            conf["image_size"] = str(demo_image_size(ROOT))  # (a served model brings its own)
    conf.update(dict(args.conf))
    if args.host not in LOOPBACK:
        print(
            f"warning: serving on {args.host}: the server has no authentication; put it behind a reverse proxy "
            f"that authenticates, and list the proxy's host name with --conf allowed_hosts",
            file=sys.stderr,
        )
    app = ROOT / "scripts" / "monailabel_app"
    command = [
        sys.executable,
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        str(app),
        "--studies",
        str(Path(args.studies).resolve()),
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--uvicorn_app",
        SERVER_APP,
    ]
    for key, value in conf.items():
        command += ["--conf", key, value]
    print(f"SD-MAD MONAI Label server: http://{args.host}:{args.port}/ (API docs: /docs); Ctrl-C stops it")
    env = {**os.environ, "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "true"}
    env.setdefault("HOME", tempfile.gettempdir())
    subprocess.run(command, env=env, check=False)


if __name__ == "__main__":
    main()
