"""A phantom DICOM study for the Deploy app: an MR image series plus an MR spectroscopy series without pixels.

    python scripts/deploy_app/make_study.py --out data/deploy_study [--phantom data/phantom]
        [--splits runs/demo/training/splits.json]

With a training run's splits file, the volume is one of its test split (never a training shot), with the most
findings; else the phantom volume with the most findings.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from sdmad.data import load_split
from sdmad.tools.phantom import ensure_phantom_dataset, make_dicom_study


def choose_volume(phantom: Path, splits: Path | None) -> tuple[str, list[str]]:
    volumes = json.loads((phantom / "manifest.json").read_text())["volumes"]
    if splits is not None and splits.is_file():
        test = {item["group"] for item in load_split(splits, "test")}
        volumes = [v for v in volumes if v["name"] in test]
    chosen = max(volumes, key=lambda v: (len(v["labels"]), v["name"]))
    return chosen["name"], chosen["labels"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/deploy_study")
    parser.add_argument("--phantom", default="data/phantom")
    parser.add_argument("--splits", default="runs/demo/training/splits.json")
    args = parser.parse_args()
    phantom, out = Path(args.phantom), Path(args.out)
    ensure_phantom_dataset(phantom)
    name, labels = choose_volume(phantom, Path(args.splits))
    if out.exists():
        shutil.rmtree(out)
    make_dicom_study(phantom, name, out)
    print(f"DICOM study {out}: {name} (true findings: {', '.join(labels) or 'none'}) + a spectroscopy series")


if __name__ == "__main__":
    main()
