"""A label image answered by the MONAI Label app (`/infer/sdmad_maps?...&output=image`) drawn over its study, as a
viewer shows it: the slice with the most labelled voxels, in the bundle's display orientation.

    python scripts/monailabel_app/show_label.py LABEL.nii.gz --study data/label_studies/<id>.nii.gz --out label.png

`--names` takes the `label_names` of the JSON answer (a file); default: the categories of the sign file, 1..C.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sdmad.data import DisplayOrientationd, LoadScand
from sdmad.maps import label_values
from sdmad.overlays import label_overlay_png
from sdmad.signs import load_sign_file

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("label", type=Path, help="the label image (NIfTI or NRRD)")
    parser.add_argument("--study", type=Path, required=True, help="the study it was made for")
    parser.add_argument("--names", type=Path, help="a JSON file of label_names {category: value}")
    parser.add_argument("--sign-file", type=Path, default=ROOT / "configs" / "signs" / "fastmri_brain.yaml")
    parser.add_argument("--out", type=Path, default=Path("label.png"))
    args = parser.parse_args()
    if args.names:
        names = json.loads(args.names.read_text())
    else:
        names = label_values(load_sign_file(args.sign_file).category_names)
    load, orient = LoadScand(keys=("image", "label")), DisplayOrientationd(keys=("image", "label"))
    item = orient(load({"image": str(args.study), "label": str(args.label)}))
    image, labels = np.asarray(item["image"][0]), np.asarray(item["label"][0]).astype(np.int64)
    if labels.shape != image.shape:
        raise SystemExit(f"{args.label}: shape {labels.shape} is not the study's {image.shape}")
    index = int(np.argmax((labels > 0).reshape(-1, labels.shape[-1]).sum(axis=0)))
    title = f"{args.study.name}, slice {index}: {int((labels[..., index] > 0).sum())} labelled pixels"
    path = label_overlay_png(image[..., index], labels[..., index], names, title, args.out)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
