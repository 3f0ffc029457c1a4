"""Write the generated phantom data set (NIfTI, DICOM series, fastMRI .h5 + fastMRI+ CSVs, BMAD PNGs).

python scripts/make_phantom_data.py --out data/phantom [--seed 0] [--volumes-per-category 6] ...
"""

from __future__ import annotations

import argparse
import time

from sdmad.tools.phantom import make_phantom_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--volumes-per-category", type=int, default=20, help="single-category volumes per category")
    parser.add_argument("--normal-volumes", type=int, default=40)
    parser.add_argument("--multi-label-volumes", type=int, default=20, help="volumes with two categories")
    parser.add_argument("--size", type=int, default=96, help="in-plane size in voxels")
    parser.add_argument("--slices", type=int, default=12, help="slices per volume")
    parser.add_argument("--kspace-volumes", type=int, default=4, help="the first N .h5 files also hold k-space")
    args = parser.parse_args()
    start = time.perf_counter()
    manifest = make_phantom_dataset(
        args.out,
        args.volumes_per_category,
        args.normal_volumes,
        args.multi_label_volumes,
        args.size,
        args.slices,
        args.kspace_volumes,
        args.seed,
        progress=True,
    )
    print(
        f"wrote {len(manifest['volumes'])} phantom volumes to {args.out} in {time.perf_counter() - start:.1f} s "
        f"(nifti/, dicom/, h5/, fastmri_plus/, bmad/PhantomBrain_AD/, labels.csv, manifest.json)"
    )


if __name__ == "__main__":
    main()
