"""The offline demo (`make demo`): phantom data -> pretrained tiny CLIP -> training -> evaluating -> inference.

Everything runs on generated data with the tiny model, on CPU in a few minutes; what is missing is made first
(data/phantom/, models/sdmad-tiny-phantom.pt) and reused afterwards.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from sdmad.data.phantom import make_phantom_dataset
from sdmad.experiments import headline_metrics, run_workflow
from sdmad.pretraining import pretrain_tiny_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle-root", default=".")
    parser.add_argument("--epochs", type=int, default=None, help="override demo.yaml's epochs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(args.bundle_root)
    start = time.perf_counter()
    timings: dict[str, float] = {}

    phantom = root / "data" / "phantom"
    if not (phantom / "manifest.json").is_file():
        t = time.perf_counter()
        make_phantom_dataset(phantom, progress=True)
        timings["phantom data"] = time.perf_counter() - t
    backbone = root / "models" / "sdmad-tiny-phantom.pt"
    if not backbone.is_file():
        t = time.perf_counter()
        print(f"pretraining the tiny CLIP on phantom image-caption pairs -> {backbone} (once)")
        pretrain_tiny_clip(backbone)
        timings["tiny CLIP pretraining"] = time.perf_counter() - t

    demo = ["configs/demo.yaml"]
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    run_dir = root / "runs" / "demo"
    for stale in (run_dir / "training" / "checkpoints").glob("*.pt"):
        stale.unlink()  # the demo trains afresh each time (a real run resumes instead)
    timings["training"] = run_workflow("training", root, demo, **overrides)
    timings["evaluating"] = run_workflow("evaluating", root, demo, **overrides)
    timings["evaluating zero-shot"] = run_workflow("evaluating", root, demo, checkpoint="none", **overrides)
    listing = run_dir / "inference_inputs.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    volumes = sorted((phantom / "nifti").glob("*.nii.gz"))[:2] + sorted((phantom / "dicom").iterdir())[:1] + \
        sorted((phantom / "h5").glob("*.h5"))[:1]
    listing.write_text("".join(f"{path.resolve()}\n" for path in volumes))
    timings["inference"] = run_workflow("inference", root, demo, input=str(listing),
                                        output_dir=str(run_dir / "inference"),
                                        checkpoint=str(run_dir / "training" / "model.pt"))

    trained = headline_metrics(run_dir / "evaluating" / "report.json")
    zero_shot = headline_metrics(run_dir / "evaluating_zero_shot" / "report.json")
    print("\n" + "=" * 78 + "\nSD-MAD demo (phantom data, tiny CLIP, CPU)\n")
    print(f"{'':28}{'zero-shot CLIP':>18}{'trained adapters':>20}")
    for name in ("mean_category_auroc", "hamming_score", "subset_accuracy", "image_auroc"):
        cells = [f"{v:.3f}" if v is not None else "undefined" for v in (zero_shot[name], trained[name])]
        print(f"{name:28}{cells[0]:>18}{cells[1]:>20}")
    print(f"\nreport:    {run_dir / 'evaluating' / 'report.md'} (plots beside it)")
    print(f"baseline:  {run_dir / 'evaluating_zero_shot' / 'report.md'}")
    print(f"inference: {run_dir / 'inference' / 'volumes.csv'} ({len(volumes)} volumes: NIfTI, DICOM, .h5)")
    print("timings:   " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
          + f"; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
