"""Run the bundle's workflows in sequence (demo, multi-seed benchmark) and summarise their reports."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdmad.atomic import write_json_atomic, write_text_atomic
from sdmad.tools.phantom import ensure_phantom_dataset
from sdmad.tools.pretraining import DEMO_BACKBONE, demo_image_size, ensure_tiny_backbone
from sdmad.workflows import run_workflow

logger = logging.getLogger(__name__)

DEMO_PHANTOM = Path("data") / "phantom"  # under the bundle root: configs/demo.yaml's `phantom_dir`

HEADLINE_METRICS = ("mean_category_auroc", "hamming_score", "subset_accuracy", "image_auroc", "pixel_auroc")
DECISION_METRICS = ("hamming_score", "subset_accuracy")
VARIANT_NAMES = {
    "zero_shot": "zero-shot CLIP (adapters off), Eq. 8",
    "zero_shot_calibrated": "zero-shot CLIP, calibrated",
    "trained": "SD-MAD (trained adapters), Eq. 8",
    "trained_calibrated": "SD-MAD, calibrated",
    "all_absent": "all-absent predictor (trivial)",
}
# method mvfa's rows: its "adapters" are the patch heads, its zero-shot model CLIP's two-state maps
MVFA_VARIANT_NAMES = {
    "zero_shot": "zero-shot CLIP, two states (heads off), text peak > 0.5",
    "zero_shot_calibrated": "zero-shot CLIP, two states, calibrated",
    "trained": "MVFA baseline (trained heads), text peak > 0.5",
    "trained_calibrated": "MVFA baseline, calibrated",
}


def ensure_demo_inputs(root: str | Path = ".", *, phantom: bool = True, backbone: bool = True) -> dict[str, float]:
    """Make what `configs/demo.yaml` reads unless it is there and current: with ``phantom``, the phantom data set
    (``DEMO_PHANTOM``); with ``backbone``, the tiny CLIP of the current recipe (``DEMO_BACKBONE``). Returns the
    seconds spent on each part that was made (the demo prints them)."""
    root = Path(root)
    made = {}
    start = time.perf_counter()
    if phantom and ensure_phantom_dataset(root / DEMO_PHANTOM, progress=True):
        made["phantom data"] = time.perf_counter() - start
    start = time.perf_counter()
    if backbone and ensure_tiny_backbone(root / DEMO_BACKBONE, demo_image_size(root)):  # once per recipe
        made["tiny CLIP pretraining"] = time.perf_counter() - start
    return made


def variant_name(variant: str, method: str = "sdmad") -> str:
    """A summary row's name: the variant under the run's method."""
    if method == "mvfa" and variant in MVFA_VARIANT_NAMES:
        return MVFA_VARIANT_NAMES[variant]
    return VARIANT_NAMES.get(variant, variant)


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) else None


def report_variants(report_file: str | Path, name: str) -> dict[str, dict[str, float | None]]:
    """The headline figures of a report.json under each decision rule: ``{name: ..., name_calibrated: ...}``
    (AUROCs do not depend on the rule), plus the all-absent predictor's protocol-2 figures."""
    protocols = json.loads(Path(report_file).read_text())["protocols"]
    multi = protocols["multi_label"]
    aurocs = {
        "mean_category_auroc": _number(protocols["category_auroc"]["mean"]),
        "image_auroc": _number(protocols["general_ad"]["image_auroc"]),
        "pixel_auroc": _number(protocols["general_ad"]["pixel_auroc"]),
    }
    variants = {name: {**aurocs, **{m: _number(multi["rules"]["paper"][m]) for m in DECISION_METRICS}}}
    calibrated = multi["rules"]["calibrated"]
    if isinstance(calibrated, dict):
        variants[f"{name}_calibrated"] = {**aurocs, **{m: _number(calibrated[m]) for m in DECISION_METRICS}}
    variants["all_absent"] = {
        "mean_category_auroc": None,
        "image_auroc": None,
        "pixel_auroc": None,
        **{m: _number(multi[f"{m}_all_absent"]) for m in DECISION_METRICS},
    }
    return variants


def category_aurocs(report_file: str | Path) -> dict[str, float | None]:
    """Each category's AUROC in a report.json (None where undefined)."""
    per_category = json.loads(Path(report_file).read_text())["protocols"]["category_auroc"]["per_category"]
    return {name: _number(value) for name, value in per_category.items()}


def category_table(per_category: dict[int, dict[str, dict[str, float | None]]]) -> list[str]:
    """Markdown rows: every category's AUROC per seed, zero-shot → trained, and its lowest trained value."""
    seeds = list(per_category)
    categories = list(next(iter(per_category.values()))["trained"])
    lines = [
        "| category | " + " | ".join(f"seed {seed}: zero-shot → trained" for seed in seeds) + " | lowest trained |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for category in categories:
        cells, trained = [], []
        for seed in seeds:
            runs = per_category[seed]
            before = _cell(runs["zero_shot"][category]) if "zero_shot" in runs else "—"
            trained.append(runs["trained"][category])
            cells.append(f"{before} → {_cell(trained[-1])}")
        defined = [value for value in trained if value is not None]
        lines.append(f"| {category} | " + " | ".join(cells) + f" | {_cell(min(defined) if defined else None)} |")
    return lines


def headline_metrics(report_file: str | Path) -> dict[str, float | None]:
    """The headline figures of a report.json under its own decision rule (None where undefined)."""
    protocols = json.loads(Path(report_file).read_text())["protocols"]
    values = {
        "mean_category_auroc": protocols["category_auroc"]["mean"],
        "hamming_score": protocols["multi_label"]["hamming_score"],
        "subset_accuracy": protocols["multi_label"]["subset_accuracy"],
        "image_auroc": protocols["general_ad"]["image_auroc"],
        "pixel_auroc": protocols["general_ad"]["pixel_auroc"],
    }
    return {name: _number(value) for name, value in values.items()}


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; None with fewer than two values)."""
    return {
        "mean": float(np.mean(values)) if values else None,
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
        "seeds_defined": len(values),
    }


def summarise_seeds(per_seed: dict[int, dict[str, dict[str, float | None]]]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds, per model variant and metric.

    A metric undefined on some seed is summarised over the seeds where it is defined, and says how many.
    """
    variants = [v for v in VARIANT_NAMES if any(v in runs for runs in per_seed.values())]
    variants += sorted({v for runs in per_seed.values() for v in runs} - set(variants))
    summary: dict[str, Any] = {"seeds": sorted(per_seed), "per_seed": per_seed, "mean_std": {}}
    for variant in variants:
        summary["mean_std"][variant] = {
            metric: mean_std(
                [
                    runs[variant][metric]
                    for runs in per_seed.values()
                    if variant in runs and runs[variant][metric] is not None
                ]
            )
            for metric in HEADLINE_METRICS
        }
    if all({"trained", "zero_shot"} <= set(runs) for runs in per_seed.values()):
        for metric in ("mean_category_auroc", "pixel_auroc"):
            gains = [
                runs["trained"][metric] - runs["zero_shot"][metric]
                for runs in per_seed.values()
                if None not in (runs["trained"][metric], runs["zero_shot"][metric])
            ]
            if gains:
                summary[f"{metric}_gain"] = {"per_seed": gains, "min": min(gains)}
    return summary


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def summary_markdown(summary: dict[str, Any], command: str) -> str:
    """Mean ± sample std over seeds, then every seed's figures, for each variant (both decision rules, the
    all-absent predictor, zero-shot CLIP), named for the runs' method."""
    method = summary.get("method", "sdmad")

    def cell(entry: dict) -> str:
        if entry["mean"] is None:
            return "—"
        return f"{entry['mean']:.3f} ± {entry['std']:.3f}" if entry["std"] is not None else f"{entry['mean']:.3f}"

    header = "| model | mean category AUROC | Hamming score | subset accuracy | image AUROC | pixel AUROC |"
    lines = [
        f"Seeds {summary['seeds']}; method {method}; mean ± sample std (ddof 1) over seeds. Command: `{command}`",
        "",
        header,
        "|---|---|---|---|---|---|",
    ]
    for variant, metrics in summary["mean_std"].items():
        lines.append(
            f"| {variant_name(variant, method)} | " + " | ".join(cell(metrics[m]) for m in HEADLINE_METRICS) + " |"
        )
    lines += [
        "",
        "Per seed:",
        "",
        "| seed | model | mean category AUROC | Hamming score | subset accuracy | image AUROC | pixel AUROC |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed, runs in summary["per_seed"].items():
        for variant in summary["mean_std"]:
            if variant in runs:
                lines.append(
                    f"| {seed} | {variant_name(variant, method)} | "
                    + " | ".join(_cell(runs[variant][m]) for m in HEADLINE_METRICS)
                    + " |"
                )
    for metric, name in (("mean_category_auroc", "mean category AUROC"), ("pixel_auroc", "pixel AUROC")):
        if f"{metric}_gain" in summary:
            gains = ", ".join(f"{g:+.3f}" for g in summary[f"{metric}_gain"]["per_seed"])
            lines += ["", f"Gain in {name}, trained minus zero-shot, per seed: {gains}"]
    if summary.get("per_category_auroc"):
        lines += ["", "Per category AUROC:", "", *category_table(summary["per_category_auroc"])]
    return "\n".join(lines) + "\n"


def multi_seed(
    seeds: Sequence[int],
    run_name: str,
    bundle_root: str | Path = ".",
    extra_configs: Sequence[str] = (),
    zero_shot: bool = True,
    command: str = "",
    **overrides: Any,
) -> dict[str, Any]:
    """Sampling -> training (afresh) -> evaluation (and the zero-shot baseline on the same test split) for every
    seed, each under both decision rules beside the all-absent predictor; writes `<runs>/<run_name>/summary.json`
    and `summary.md`."""
    root = Path(bundle_root)
    per_seed: dict[int, dict[str, dict[str, float | None]]] = {}
    per_category: dict[int, dict[str, dict[str, float | None]]] = {}
    for seed in seeds:
        name = f"{run_name}/seed{seed}"
        common = dict(extra_configs=extra_configs, run_name=name, seed=seed, **overrides)
        run_workflow("training", root, resume=False, **common)  # each benchmark run starts afresh
        run_workflow("evaluating", root, **common)
        trained, untrained = (
            root / "runs" / name / folder / "report.json" for folder in ("evaluating", "evaluating_zero_shot")
        )
        method = json.loads(trained.read_text())["run"].get("method", "sdmad")  # the same for every seed
        per_seed[seed] = report_variants(trained, "trained")
        per_category[seed] = {"trained": category_aurocs(trained)}
        if zero_shot:
            run_workflow("evaluating", root, checkpoint="none", **common)
            per_seed[seed].update(report_variants(untrained, "zero_shot"))
            per_category[seed]["zero_shot"] = category_aurocs(untrained)
        logger.info("seed %d: %s", seed, per_seed[seed])
    summary = summarise_seeds(per_seed)
    summary["method"] = method
    summary["per_category_auroc"] = per_category
    summary["command"] = command
    out = root / "runs" / run_name
    write_json_atomic(summary, out / "summary.json")
    write_text_atomic(summary_markdown(summary, command), out / "summary.md")
    return summary
