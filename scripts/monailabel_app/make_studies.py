"""A MONAI Label studies folder from the phantom data set: NIfTI studies and DICOM series (`<id>.dicom/`).

python scripts/monailabel_app/make_studies.py --out data/label_studies [--phantom data/phantom] [--count 12]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from sdmad.tools.phantom import ensure_phantom_dataset


def make_studies(out: Path, phantom: Path, count: int) -> list[str]:
    ensure_phantom_dataset(phantom)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name[: -len(".nii.gz")] for p in (phantom / "nifti").glob("*.nii.gz"))[:count]
    for index, name in enumerate(names):
        if index % 3 == 2:  # every third study as a DICOM series folder
            target = out / f"{name}.dicom"
            if not target.exists():
                shutil.copytree(phantom / "dicom" / name, target)
        elif not (out / f"{name}.nii.gz").exists():
            shutil.copy(phantom / "nifti" / f"{name}.nii.gz", out / f"{name}.nii.gz")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/label_studies")
    parser.add_argument("--phantom", default="data/phantom")
    parser.add_argument("--count", type=int, default=12)
    args = parser.parse_args()
    names = make_studies(Path(args.out), Path(args.phantom), args.count)
    print(f"{len(names)} phantom studies in {args.out}")


if __name__ == "__main__":
    main()
