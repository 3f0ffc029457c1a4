"""The benchmark of record: image-path throughput (naive loop vs the project's path), end-to-end inference from
NIfTI volumes, sign selection + scoring vs number of signs, adapter-training step time and peak GPU memory.

    python scripts/benchmark.py --out runs/benchmark/benchmark.json        # ViT-L-14-336 at 240 px, GPU if any
    python scripts/benchmark.py --tiny --out runs/benchmark/tiny.json      # the tiny model, seconds on a CPU

Random weights (the figures do not depend on them). Writes the JSON (device, torch version, every figure) and
prints the tables; docs/benchmarks.md holds the latest measured ones. See sdmad/tools/benchmark.py for the definitions.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path

from sdmad.atomic import write_json_atomic, write_text_atomic
from sdmad.tools.benchmark import BenchmarkSettings, format_table, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny model and short timings (CPU check)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda:0, ...")
    parser.add_argument("--model-name", default=None, help="override the model (default ViT-L-14-336)")
    parser.add_argument("--min-seconds", type=float, default=None, help="minimum timed seconds per figure")
    parser.add_argument("--num-workers", type=int, default=None, help="DataLoader workers end to end")
    parser.add_argument("--e2e-volumes", type=int, default=None, help="NIfTI volumes end to end (batched path)")
    parser.add_argument("--per-slice-volumes", type=int, default=None, help="of those, for the per-slice path")
    parser.add_argument("--e2e-slices", type=int, default=None, help="slices per volume end to end")
    parser.add_argument("--e2e-size", type=int, default=None, help="slice size of those volumes (pixels)")
    parser.add_argument("--bundle-root", default=".", help="the folder holding configs/ (default: here)")
    parser.add_argument("--out", default="runs/benchmark/benchmark.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = BenchmarkSettings.tiny() if args.tiny else BenchmarkSettings()
    settings.device, settings.bundle_root = args.device, args.bundle_root
    for name, value in (
        ("model_name", args.model_name),
        ("min_seconds", args.min_seconds),
        ("num_workers", args.num_workers),
        ("e2e_volumes", args.e2e_volumes),
        ("per_slice_volumes", args.per_slice_volumes),
        ("e2e_slices", args.e2e_slices),
        ("e2e_size", args.e2e_size),
    ):
        if value is not None:
            setattr(settings, name, value)
    result = run_benchmark(settings)
    table = format_table(result)
    out = Path(args.out)
    write_json_atomic(asdict(result), out)
    write_text_atomic(table + "\n", out.with_suffix(".md"))
    print("\n" + table + f"\n\nwritten: {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
