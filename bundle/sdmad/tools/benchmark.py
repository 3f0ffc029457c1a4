"""The benchmark of record (scripts/benchmark.py, docs/benchmarks.md): every figure is measured in the run that
reports it, after warm-up, with CUDA synchronisation; none is hard-coded.

Measured, on the device found, with random weights of the chosen model:
- image path: the naive way (float32, one image at a time, the text side recomputed for every image, as research
  code does) against the project's way (batches, cached text features, inference mode, bfloat16 frozen encoder on
  CUDA), both giving the per-category scores of Eq. 7-8;
- decode: slices/s per CPU core of a loader worker's job, the per-slice path (decode, orient, cut, then
  percentile scaling, resize, pad, RGB, normalisation per slice) against the batched path (decode, orient, cut),
  from NIfTI volumes and from DICOM series;
- end to end: phantom NIfTI volumes through `configs/inference.yaml`'s evaluator (loader, transforms, DataLoader
  workers, writers), per-slice and batched paths side by side, each as a fraction of the model-only figure at the
  same batch size;
- sign selection + scoring (Eq. 6-8) as the number of signs grows, text features given;
- one adapter-training step (forward, SD-MAD loss, backward, AdamW) per batch size and variant: time, and peak
  GPU memory on CUDA.
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sdmad.allocator import reuse_freed_memory
from sdmad.inference import score_images, select_signs
from sdmad.losses import SDMADLoss
from sdmad.networks import SDMADNetwork
from sdmad.signs import SignSet, load_sign_file

# What is timed for decode and end to end: (path, data type the NIfTI volumes are stored in). The path: slice
# preprocessing in the loader workers ("per-slice") or batched on the model's device. float32 is how the
# phantom writes its volumes; int16 is how scanners and dcm2niix store MR (half the bytes to inflate).
E2E_RUNS = {
    "per-slice": ("per-slice", "float32"),
    "batched": ("batched", "float32"),
    "batched, int16 volumes": ("batched", "int16"),
}
# Decode also times DICOM series (one uint16 file per slice, as PACS exports arrive); end to end runs NIfTI only.
DECODE_RUNS = {**E2E_RUNS, "batched, DICOM series": ("batched", "dicom")}


@dataclass
class BenchmarkSettings:
    """What to measure. ``tiny()`` is the quick CPU mode the tests run."""

    model_name: str = "ViT-L-14-336"
    image_size: int = 240
    batch_sizes: Sequence[int] = (32, 64, 128, 256, 512)
    naive_images: int = 64
    min_seconds: float = 2.0
    e2e_volumes: int = 1024
    per_slice_volumes: int = 128
    e2e_slices: int = 16
    e2e_size: int = 320
    e2e_batch_volumes: int = 16
    num_workers: int = max(1, min(15, (os.cpu_count() or 2) - 1))
    sign_counts: Sequence[int] = (6, 24, 96, 384, 1536)
    training_batches: Sequence[int] = (1, 8, 32)
    training_variants: Sequence[str] = ("float32", "bfloat16", "bfloat16+checkpointing")
    device: str = "auto"
    bundle_root: str = "."  # the folder holding configs/ (a checkout of this repository)

    def bundle_file(self, relative: str) -> Path:
        """A file of the bundle (configs, sign files), with a clear error when ``bundle_root`` is not a bundle."""
        path = Path(self.bundle_root) / relative
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: run the benchmark from the repository's root or pass "
                "--bundle-root <the folder holding configs/>"
            )
        return path

    @classmethod
    def tiny(cls) -> BenchmarkSettings:
        return cls(
            model_name="sdmad-tiny",
            batch_sizes=(8, 32),
            naive_images=8,
            min_seconds=0.2,
            e2e_volumes=4,
            per_slice_volumes=4,
            e2e_slices=8,
            e2e_size=96,
            e2e_batch_volumes=2,
            num_workers=1,
            sign_counts=(6, 24, 96),
            training_batches=(1, 8),
            training_variants=("float32", "float32+checkpointing"),
        )


@dataclass
class BenchmarkResult:
    device: str
    device_type: str
    torch: str
    python: str
    date: str
    settings: dict
    gflop_per_image: float
    freed_memory_reused: bool = False  # sdmad.allocator, as the bundle's runs set it
    image_path: dict = field(default_factory=dict)
    decode: dict = field(default_factory=dict)
    end_to_end: dict = field(default_factory=dict)
    scoring: list = field(default_factory=list)
    training: list = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(
    fn: Callable[[], object], device: torch.device, min_seconds: float, warmup: int = 2, min_calls: int = 3
) -> float:
    """Mean wall time of ``fn`` after ``warmup`` calls, over at least ``min_calls`` calls and ``min_seconds``."""
    for _ in range(warmup):
        fn()
    _sync(device)
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        _sync(device)
        calls += 1
    return (time.perf_counter() - start) / calls


def benchmark_signs(settings: BenchmarkSettings) -> SignSet:
    return load_sign_file(settings.bundle_file("configs/signs/fastmri_brain.yaml"))


def text_tower(clip: torch.nn.Module) -> torch.nn.Module:
    """The module every text encoding of an open_clip model runs first (CLIP: token_embedding; CustomTextCLIP:
    text), where a hook counts text-encoder calls."""
    return clip.text if hasattr(clip, "text") else clip.token_embedding


def build_network(
    settings: BenchmarkSettings, device: torch.device, frozen_dtype: str = "float32", grad_checkpointing: bool = False
) -> SDMADNetwork:
    torch.manual_seed(0)
    network = SDMADNetwork(
        benchmark_signs(settings),
        model_name=settings.model_name,
        pretrained="none",
        image_size=settings.image_size,
        frozen_dtype=frozen_dtype,
        grad_checkpointing=grad_checkpointing,
    )
    return network.to(device).eval()


def image_encoder_gflop(network: SDMADNetwork, image_size: int, device: torch.device) -> float:
    """GFLOP of one image through the image encoder (adapters included), counted by torch's FlopCounterMode.

    Counted with nn.MultiheadAttention's inference fast path off: the counter sees no FLOPs inside its fused
    kernel, which would leave out the attention projections (a third of a ViT's work)."""
    image = torch.rand(1, 3, image_size, image_size, device=device)
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            network.encode_images(image)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    return counter.get_total_flops() / 1e9


def measure_image_path(
    settings: BenchmarkSettings, device: torch.device, plain: SDMADNetwork, fast: SDMADNetwork
) -> dict:
    """Naive loop vs the project's batched path, both to per-category scores."""
    size = settings.image_size
    images = torch.rand(max(settings.batch_sizes), 3, size, size, device=device)

    def naive() -> None:  # research-code style: per image, text side and sign selection recomputed, fp32
        with torch.no_grad():
            for index in range(settings.naive_images):
                plain.score(images[index % len(images)][None]).category_scores.cpu()

    naive_rate = settings.naive_images / seconds_per_call(naive, device, settings.min_seconds, warmup=1, min_calls=1)
    with torch.inference_mode():
        sign_features, anchor = fast.sign_features(), fast.anchor_feature()
        mask = select_signs(sign_features, fast.sign_category, fast.signs.category_names).category_mask()
    per_batch = {}
    for batch in settings.batch_sizes:

        def batched(batch: int = batch) -> None:
            with torch.inference_mode():
                score_images(fast.encode_images(images[:batch]), sign_features, anchor, mask).category_scores.cpu()

        per_batch[batch] = batch / seconds_per_call(batched, device, settings.min_seconds)
    best = max(per_batch, key=per_batch.get)
    return {
        "naive_images_per_s": naive_rate,
        "naive": "float32, batch 1, text and sign selection per image",
        "fast_images_per_s": per_batch[best],
        "fast_batch_size": best,
        "fast": f"{str(fast.image_dtype).removeprefix('torch.')} frozen encoder, batched, cached text, inference mode",
        "per_batch_size_images_per_s": per_batch,
        "speedup": per_batch[best] / naive_rate,
    }


def write_phantom_volumes(
    folder: Path, count: int, slices: int, size: int, dtype: str = "float32", distinct: int = 16
) -> list[Path]:
    """``count`` phantom NIfTI volumes (``slices`` slices of ``size``², stored as ``dtype``): ``distinct``
    generated ones, copied."""
    from sdmad.tools.phantom import CATEGORIES, make_volume, write_nifti

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(min(count, distinct)):
        labels = [CATEGORIES[index % len(CATEGORIES)]] if index % 2 else []
        phantom = make_volume(f"bench_{index:03d}", labels, np.random.default_rng(index), size, slices)
        phantom.volume = np.round(phantom.volume).astype(dtype) if dtype != "float32" else phantom.volume
        made.append(folder / f"bench_{index:03d}.nii.gz")
        write_nifti(phantom, made[-1])
    for index in range(len(made), count):
        shutil.copyfile(made[index % len(made)], folder / f"bench_{index:03d}.nii.gz")
    return sorted(folder.glob("*.nii.gz"))


def write_phantom_series(folder: Path, count: int, slices: int, size: int) -> list[Path]:
    """``count`` phantom DICOM series (``slices`` MR files of ``size``², uint16), a folder each."""
    from pydicom.uid import generate_uid

    from sdmad.tools.phantom import make_volume, write_dicom_series

    series = []
    for index in range(count):
        phantom = make_volume(f"bench_{index:03d}", [], np.random.default_rng(index), size, slices)
        series.append(folder / f"bench_{index:03d}")
        write_dicom_series(phantom, series[-1], generate_uid(), generate_uid())
    return series


def worker_transforms(path: str, image_size: int):
    """A loader worker's job in each path: "batched" only decodes, orients and cuts; "per-slice" also scales,
    resizes, pads and normalises every slice on the CPU (the chain CLIPInput replaced)."""
    from monai.transforms import Compose

    from sdmad.data import per_slice_reference, scan_to_slices, scan_transforms

    if path == "batched":
        return scan_transforms()
    return Compose([*scan_to_slices(), *per_slice_reference(image_size=image_size)])


def measure_decode(settings: BenchmarkSettings, volumes: dict[str, list[Path]]) -> dict:
    """Slices/s of one loader worker's job on one CPU thread, per run of DECODE_RUNS (``volumes`` per stored type)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates = {}
        for run, (path, dtype) in DECODE_RUNS.items():
            transform = worker_transforms(path, settings.image_size)
            transform({"image": str(volumes[dtype][0])})  # warm-up
            start, slices = time.perf_counter(), 0
            for volume in volumes[dtype][: max(2, min(len(volumes[dtype]), 8))]:
                slices += len(transform({"image": str(volume)}))
            rates[run] = slices / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return {
        "slices_per_s_per_core": rates,
        "slice_size": settings.e2e_size,
        "speedup": rates["batched"] / rates["per-slice"],
    }


def measure_device_preprocessing(settings: BenchmarkSettings, device: torch.device) -> dict:
    """Milliseconds of the batched CLIPInput for one end-to-end batch of grey slices on the device."""
    from sdmad.data import CLIPInput

    batch = settings.e2e_batch_volumes * settings.e2e_slices
    slices = torch.rand(batch, 1, settings.e2e_size, settings.e2e_size, device=device) * 1000
    clip_input = CLIPInput(settings.image_size)
    with torch.inference_mode():
        seconds = seconds_per_call(lambda: clip_input(slices), device, settings.min_seconds / 4)
    return {"ms_per_batch": seconds * 1e3, "batch_images": batch, "slice_size": settings.e2e_size}


def measure_end_to_end(
    settings: BenchmarkSettings,
    device: torch.device,
    frozen_dtype: str,
    volumes: dict[str, list[Path]],
    model_only_images_per_s: Callable[[int], float],
) -> dict:
    """`configs/inference.yaml`'s evaluator over phantom NIfTI volumes (``volumes`` per stored type), per run of
    E2E_RUNS: one timed run each, worker start included, as in real use (the network is warm from the model-only
    figure). The per-slice path, about ten times slower, runs over the first ``per_slice_volumes`` of them.
    "loader only" iterates a batched run's data loader without the model: the ceiling that the CPU side sets.
    The model-only figure is measured before every run and after the last; the fractions use their median (on a
    shared machine one measurement alone moves by 15 %)."""
    from monai.bundle import ConfigParser
    from monai.engines import default_prepare_batch

    batch = settings.e2e_batch_volumes * settings.e2e_slices
    model_only_each = [model_only_images_per_s(batch)]
    figures = {
        "slices_per_volume": settings.e2e_slices,
        "slice_size": settings.e2e_size,
        "batch_images": batch,
        "num_workers": settings.num_workers,
    }
    parser = ConfigParser()
    parser.read_config(str(settings.bundle_file("configs/inference.yaml")))
    parser.update(
        {
            "bundle_root": settings.bundle_root,
            "model_name": settings.model_name,
            "pretrained": "none",
            "image_size": settings.image_size,
            "frozen_dtype": frozen_dtype,
            "checkpoint": "none",
            "device": f"$torch.device('{device}')",
            "batch_size": settings.e2e_batch_volumes,
            "num_workers": settings.num_workers,
        }
    )
    network = parser.get_parsed_content("network")
    parser["network"] = network
    parser.get_parsed_content("load_weights")
    text_calls = []
    counter = text_tower(network.clip).register_forward_pre_hook(lambda module, args: text_calls.append(1))
    batched_prepare = parser.get_parsed_content("prepare_batch")
    with tempfile.TemporaryDirectory() as tmp:
        for index, (run, (path, dtype)) in enumerate(E2E_RUNS.items()):
            subset = volumes[dtype] if path == "batched" else volumes[dtype][: settings.per_slice_volumes]
            inputs = Path(tmp) / f"run{index}.txt"
            inputs.write_text("".join(f"{volume}\n" for volume in subset))
            parser["input"], parser["output_dir"] = str(inputs), str(Path(tmp) / f"run{index}")
            parser["preprocessing"] = worker_transforms(path, settings.image_size)
            # per-slice: the batches arrive CLIP-ready, only the copy to the device remains
            parser["prepare_batch"] = batched_prepare if path == "batched" else default_prepare_batch
            evaluator = parser.get_parsed_content("evaluator", lazy=False)
            marks = _mark_first_and_last_iteration(evaluator, device)
            _sync(device)
            start = time.perf_counter()
            evaluator.run()
            _sync(device)
            seconds = time.perf_counter() - start
            images = len(subset) * settings.e2e_slices
            figures[run] = {
                "images_per_s": images / seconds,
                "seconds": seconds,
                "volumes": len(subset),
                "stored_as": dtype,
                "first_batch_s": marks["first"] - start,
                "steady_images_per_s": images / (marks["last"] - marks["first"]),
                "writing_s": start + seconds - marks["last"],
            }
            if path == "batched":
                loader = parser.get_parsed_content("dataloader", lazy=False)
                start = time.perf_counter()
                slices = sum(len(batch["image"]) for batch in loader)
                figures[run]["loader_only_images_per_s"] = slices / (time.perf_counter() - start)
            model_only_each.append(model_only_images_per_s(batch))
    counter.remove()
    model_only = float(np.median(model_only_each))
    for run in E2E_RUNS:
        figures[run]["fraction_of_model_only"] = figures[run]["images_per_s"] / model_only
        figures[run]["steady_fraction_of_model_only"] = figures[run]["steady_images_per_s"] / model_only
    figures["model_only_images_per_s"] = model_only
    figures["model_only_images_per_s_each"] = model_only_each
    figures["text_encoder_calls"] = len(text_calls)
    return figures


def _mark_first_and_last_iteration(evaluator: Any, device: torch.device) -> dict[str, float]:
    """Times (filled during the run) when the first batch starts its iteration and when the last one is done:
    between them the steady state; before, the workers' start and first batch; after, the output files."""
    from ignite.engine import Events

    marks: dict[str, float] = {}

    def first(engine: Any) -> None:
        marks["first"] = time.perf_counter()

    def last(engine: Any) -> None:
        _sync(device)
        marks["last"] = time.perf_counter()

    evaluator.add_event_handler(Events.ITERATION_STARTED(once=1), first)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, last)
    return marks


def measure_scoring(settings: BenchmarkSettings, device: torch.device, embed_dim: int, batch: int = 256) -> list:
    """Eq. 6 selection + Eq. 7-8 scoring for growing sign counts (6 categories), text features given."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for count in settings.sign_counts:
        signs = torch.nn.functional.normalize(torch.randn(count, embed_dim, generator=generator), dim=-1).to(device)
        anchor = torch.nn.functional.normalize(torch.randn(embed_dim, generator=generator), dim=-1).to(device)
        images = torch.nn.functional.normalize(torch.randn(batch, embed_dim, generator=generator), dim=-1).to(device)
        category = (torch.arange(count) % 6).to(device)
        names = [f"category {c}" for c in range(6)]

        def select_and_score(signs=signs, category=category, names=names, images=images, anchor=anchor) -> None:
            with torch.inference_mode():
                mask = select_signs(signs, category, names).category_mask()
                score_images(images, signs, anchor, mask).category_scores.cpu()

        seconds = seconds_per_call(select_and_score, device, settings.min_seconds / 4)
        rows.append({"signs": count, "batch": batch, "us_per_image": seconds / batch * 1e6})
    return rows


def measure_training(settings: BenchmarkSettings, device: torch.device, variant: str) -> list:
    """One optimisation step of the adapters per batch size, for one variant: time and peak GPU memory.

    Variants: "float32", "bfloat16" (frozen encoder), each optionally "+checkpointing" (activation checkpointing).
    """
    dtype = "bfloat16" if variant.startswith("bfloat16") else "float32"
    gc.collect()  # the networks of earlier figures (reference cycles) must not count in this variant's peak
    network = build_network(settings, device, dtype, grad_checkpointing=variant.endswith("checkpointing"))
    network.train()
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=1e-4)
    loss_function = SDMADLoss()
    rows = []
    for batch in settings.training_batches:
        images = torch.rand(batch, 3, settings.image_size, settings.image_size, device=device)
        labels = (torch.rand(batch, len(network.signs.category_names), device=device) > 0.7).float()

        def step(images: torch.Tensor = images, labels: torch.Tensor = labels) -> None:
            image_features, sign_features, anchor = network(images, output="features")
            loss = loss_function(image_features, labels, sign_features, network.sign_category, anchor).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        seconds = seconds_per_call(step, device, settings.min_seconds, warmup=1)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        rows.append({"variant": variant, "batch": batch, "step_ms": seconds * 1e3, "peak_mib": peak})
    return rows


def measure_inference(settings: BenchmarkSettings, device: torch.device, result: BenchmarkResult) -> None:
    """Image path, end to end and scoring into ``result`` (the networks are freed on return)."""
    fast_dtype = "bfloat16" if device.type == "cuda" else "float32"  # CPUs gain nothing from bfloat16 matmuls
    plain = build_network(settings, device)
    fast = plain if fast_dtype == "float32" else build_network(settings, device, fast_dtype)
    result.gflop_per_image = image_encoder_gflop(plain, settings.image_size, device)
    result.image_path = measure_image_path(settings, device, plain, fast)

    def model_only(batch: int) -> float:
        """Images/s of the image encoder alone (no data loading) at ``batch``, for the end-to-end fraction."""
        images = torch.rand(batch, 3, settings.image_size, settings.image_size, device=device)
        with torch.inference_mode():
            return batch / seconds_per_call(lambda: fast.encode_images(images).cpu(), device, settings.min_seconds)

    with tempfile.TemporaryDirectory() as tmp:
        volumes = {
            dtype: write_phantom_volumes(
                Path(tmp) / dtype, settings.e2e_volumes, settings.e2e_slices, settings.e2e_size, dtype
            )
            for dtype in sorted({dtype for _, dtype in E2E_RUNS.values()})
        }
        volumes["dicom"] = write_phantom_series(Path(tmp) / "dicom", 8, settings.e2e_slices, settings.e2e_size)
        result.decode = measure_decode(settings, volumes)
        result.decode["device_preprocessing"] = measure_device_preprocessing(settings, device)
        result.end_to_end = measure_end_to_end(settings, device, fast_dtype, volumes, model_only)
    result.scoring = measure_scoring(settings, device, plain.sign_features().shape[-1])


def run_benchmark(settings: BenchmarkSettings, progress: Callable[[str], None] = print) -> BenchmarkResult:
    device = resolve_device(settings.device)
    progress(
        f"benchmark on {device_name(device)}: {settings.model_name} at {settings.image_size} px; image path, "
        "end to end through configs/inference.yaml, sign selection + scoring"
    )
    result = BenchmarkResult(
        device=device_name(device),
        device_type=device.type,
        torch=torch.__version__,
        python=platform.python_version(),
        date=datetime.date.today().isoformat(),
        settings=asdict(settings),
        gflop_per_image=0.0,
        freed_memory_reused=reuse_freed_memory(),  # what configs/inference.yaml's `initialize` does
    )
    measure_inference(settings, device, result)
    for variant in settings.training_variants:
        progress(f"adapter training steps: {variant}")
        result.training += measure_training(settings, device, variant)
    return result


def _mib(value: float | None) -> str:
    return "n/a (CPU)" if value is None else f"{value:.0f}"


def end_to_end_rows(result: BenchmarkResult) -> list[str]:
    """The decode and end-to-end rows, per path."""
    decode, e2e = result.decode, result.end_to_end
    rows = [
        f"| loader worker job, {decode['slice_size']}² slices, {run} | {rate:.0f} slices/s per core |"
        for run, rate in decode["slices_per_s_per_core"].items()
    ]
    prep = decode["device_preprocessing"]
    rows.append(
        f"| batched preprocessing on the device (CLIPInput), {prep['batch_images']} slices of "
        f"{prep['slice_size']}² | {prep['ms_per_batch']:.2f} ms per batch |"
    )
    rows += [
        f"| end to end, {e2e[run]['volumes']} NIfTI volumes x {e2e['slices_per_volume']} slices of "
        f"{e2e['slice_size']}², {e2e['num_workers']} workers, {run} | {e2e[run]['images_per_s']:.1f} images/s "
        f"= {100 * e2e[run]['fraction_of_model_only']:.0f} % of model-only "
        f"({e2e['model_only_images_per_s']:.1f} at batch {e2e['batch_images']}: the median of "
        f"{len(e2e.get('model_only_images_per_s_each', [1]))} measurements) |"
        for run in E2E_RUNS
    ]
    rows += [
        f"| of which steady state (first batch in to last batch out), {run} | "
        f"{e2e[run]['steady_images_per_s']:.1f} images/s = {100 * e2e[run]['steady_fraction_of_model_only']:.0f} % "
        f"of model-only; before it {e2e[run]['first_batch_s']:.1f} s (workers' start, first batch), after it "
        f"{e2e[run]['writing_s']:.1f} s (output files) |"
        for run in E2E_RUNS
    ]
    rows += [
        f"| data loader alone, {run} (no model) | {e2e[run]['loader_only_images_per_s']:.1f} images/s |"
        for run in E2E_RUNS
        if "loader_only_images_per_s" in e2e[run]
    ]
    return rows


def format_table(result: BenchmarkResult) -> str:
    """The figures as Markdown tables."""
    image, e2e = result.image_path, result.end_to_end
    lines = [
        f"Device: {result.device}; torch {result.torch}; {result.date}; model "
        f"{result.settings['model_name']} at {result.settings['image_size']} px "
        f"({result.gflop_per_image:.1f} GFLOP per image, image encoder); freed CPU memory reused: "
        f"{'yes' if result.freed_memory_reused else 'no'}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| naive image path ({image['naive']}) | {image['naive_images_per_s']:.1f} images/s |",
        f"| project image path ({image['fast']}, batch {image['fast_batch_size']}) | "
        f"{image['fast_images_per_s']:.1f} images/s |",
        f"| speed-up over the naive loop | {image['speedup']:.1f}x |",
        f"| achieved image-encoder throughput | "
        f"{image['fast_images_per_s'] * result.gflop_per_image / 1e3:.2f} TFLOP/s |",
        *end_to_end_rows(result),
        f"| text-encoder calls during end-to-end inference | {e2e['text_encoder_calls']} |",
        "",
        "| signs | selection + scoring, µs per image (batch 256) |",
        "|---|---|",
    ]
    lines += [f"| {row['signs']} | {row['us_per_image']:.2f} |" for row in result.scoring]
    lines += ["", "| training variant | batch | step (ms) | peak GPU memory (MiB) |", "|---|---|---|---|"]
    lines += [
        f"| {row['variant']} | {row['batch']} | {row['step_ms']:.1f} | {_mib(row['peak_mib'])} |"
        for row in result.training
    ]
    return "\n".join(lines)
