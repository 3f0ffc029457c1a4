"""The evaluation report: `report.json` (schema: configs/report.schema.json), `report.md`, `predictions.csv`."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sdmad import RESEARCH_USE_ONLY
from sdmad.atomic import write_csv_atomic, write_json_atomic, write_text_atomic

UNDEFINED = "undefined"
SCHEMA_VERSION = 2


def undefined_if_none(value: Any) -> Any:
    if value is None:
        return UNDEFINED
    return round(float(value), 6) if isinstance(value, (float, np.floating)) else value


def config_hash(config: Any) -> str:
    """sha256 of the resolved config (JSON, keys sorted): two runs with the same hash ran the same config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def versions() -> dict[str, str | int]:
    """Library versions and what else can change CPU figures between machines (the CPU kernels torch chose, its
    intra-op threads; tests/test_workflows.py shows that the thread count does not)."""
    import monai
    import open_clip
    import sklearn
    import torch

    import sdmad

    return {
        "sdmad": sdmad.__version__,
        "monai": monai.__version__,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def category_counts(labels: np.ndarray, categories: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per category: positives, negatives and prevalence (share of positives) of the test split."""
    return {
        name: {
            "positive": int((labels[:, c] > 0).sum()),
            "negative": int((labels[:, c] == 0).sum()),
            "prevalence": round(float((labels[:, c] > 0).mean()), 6),
        }
        for c, name in enumerate(categories)
    }


def decision_figures(decisions: np.ndarray, labels: np.ndarray, categories: Sequence[str]) -> dict[str, Any]:
    """Protocol 2 for one decision rule: Hamming score, subset accuracy, Jaccard, positive decisions per category."""
    from sdmad.metrics import example_jaccard, hamming_score, subset_accuracy

    decisions = np.asarray(decisions).astype(bool)
    return {
        "hamming_score": round(hamming_score(decisions, labels), 6),
        "subset_accuracy": round(subset_accuracy(decisions, labels), 6),
        "jaccard": round(example_jaccard(decisions, labels), 6),
        "positive_decisions": {name: int(decisions[:, c].sum()) for c, name in enumerate(categories)},
    }


PROTOCOL_2 = ("hamming_score", "subset_accuracy", "jaccard")


def multi_label_section(
    arrays: dict[str, np.ndarray], categories: Sequence[str], decision_rule: str, calibration: Any
) -> dict[str, Any]:
    """Protocol 2 under the run's rule, each figure beside the all-absent predictor's (``<metric>_all_absent``),
    and both rules in full (``rules``): Eq. 8 always, the calibrated thresholds when there are any."""
    labels = arrays["label"]
    rules: dict[str, Any] = {"paper": decision_figures(arrays["paper_margins"] > 0, labels, categories)}
    if calibration is None:
        rules["calibrated"] = "not available: no calibrated thresholds (no validation or training items)"
    else:
        rules["calibrated"] = {
            **decision_figures(arrays["scores"] > np.asarray(calibration.thresholds), labels, categories),
            "calibration": calibration.to_dict(),
        }
    all_absent = decision_figures(np.zeros_like(labels, dtype=bool), labels, categories)
    chosen = decision_figures(arrays["decisions"], labels, categories)
    section: dict[str, Any] = {"decision_rule": decision_rule}
    for name in PROTOCOL_2:
        section[name] = chosen[name]
        section[f"{name}_all_absent"] = all_absent[name]
    section["positive_decisions"] = chosen["positive_decisions"]
    section["rules"] = rules
    return section


def build_report(
    metrics: dict[str, Any],
    categories: Sequence[str],
    sign_prompts: Sequence[str],
    arrays: dict[str, np.ndarray],
    text: Any,
    run: dict[str, Any],
    files: dict[str, Any],
    resamples: int = 1000,
) -> dict[str, Any]:
    """The report document; every metric is a number or "undefined".

    Args:
        metrics: the evaluator's metrics (category AUROCs, image AUROC).
        sign_prompts: every sign prompt, in the network's order (for the sign selection table).
        arrays: the collected predictions (sdmad.handlers.PredictionCollector.arrays).
        text: the run's sdmad.engines.PreparedText (selection, decision rule, calibration).
        run: what ran (command, checkpoint, seed, ...); its seed also seeds the bootstrap.
        resamples: bootstrap resamples of the 95 % intervals.
    """
    from sdmad.bootstrap import bootstrap_intervals

    labels = arrays["label"]
    per_category = {name: undefined_if_none(metrics.get(f"auroc/{name}")) for name in categories}
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **run, "versions": versions()},
        "data": {
            "test_slices": int(len(labels)),
            "normal_slices": int((labels.sum(axis=1) == 0).sum()),
            "categories": list(categories),
            "counts": category_counts(labels, categories),
        },
        "protocols": {
            "general_ad": {
                "image_auroc": undefined_if_none(metrics.get("image_auroc")),
                "pixel_auroc": pixel_figure(metrics, "pixel_auroc"),
            },
            "multi_label": multi_label_section(arrays, categories, text.decision_rule, text.calibration),
            "category_auroc": {
                "per_category": per_category,
                "pixel_per_category": {name: pixel_figure(metrics, f"pixel_auroc/{name}") for name in categories},
                "mean": undefined_if_none(metrics.get("mean_category_auroc")),
                "defined": int(metrics.get("defined_categories") or 0),
                "total": len(categories),
            },
        },
        "confidence_intervals": bootstrap_intervals(
            arrays["scores"], arrays["decisions"], arrays["anomaly"], labels, resamples=resamples, seed=int(run["seed"])
        ),
        "sign_selection": {"mode": text.selection.mode, "categories": text.selection.to_dict(list(sign_prompts))},
        "files": files,
    }


NO_MAPS = "not computed: method sdmad makes no maps (sdmad+mvfa does)"
NO_MASKS = "not computed: no test slice has pixel labels"


def pixel_figure(metrics: dict[str, Any], name: str) -> Any:
    """A pixel AUROC of the evaluator's metrics, or why there is none."""
    if not metrics.get("pixel_mapped_slices"):
        return NO_MAPS
    if not metrics.get("pixel_labelled_slices"):
        return NO_MASKS
    return undefined_if_none(metrics.get(name))


def _figure(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)


def _interval(report: dict[str, Any], name: str) -> str:
    interval = report["confidence_intervals"].get(name)
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "undefined"


def _pixel_cell(value: Any) -> str:
    return _figure(value) if isinstance(value, (int, float)) or value == "undefined" else "-"


def rule_name(multi_label: dict[str, Any], rule: str) -> str:
    """How a report names a decision rule: Eq. 8, or calibrated thresholds and where they were chosen."""
    if rule == "paper":
        return "Eq. 8 (paper)"
    calibrated = multi_label["rules"]["calibrated"]
    source = calibrated["calibration"]["source"] if isinstance(calibrated, dict) else "none available"
    return f"calibrated thresholds ({source})"


METHOD_NOTES = {
    "sdmad": "SD-MAD, image level",
    "sdmad+mvfa": "SD-MAD with MVFA-style patch heads: the paper's pixel setting",
    "mvfa": "the MVFA baseline: one anomaly score for every category, the anomaly map's peak; its Eq. 8 decision: "
    "the text map's peak > 0.5; no sign is used",
}


def report_markdown(report: dict[str, Any]) -> str:
    protocols, run, data = report["protocols"], report["run"], report["data"]
    multi = protocols["multi_label"]
    model = "zero-shot CLIP (adapters off)" if run["zero_shot"] else f"checkpoint `{run['checkpoint']}`"
    ci = report["confidence_intervals"]
    method = run.get("method", "sdmad")  # reports made before the methods were named: sdmad
    lines = [
        "# SD-MAD evaluation report",
        "",
        f"- model: {model}; method {method} ({METHOD_NOTES[method]}); backbone: {run['backbone']}",
        f"- test set: {data['test_slices']} slices ({data['normal_slices']} normal); seed {run['seed']}; "
        f"device {run['device']}; config sha256 `{run['config_hash'][:12]}`",
        f"- decisions: **{rule_name(multi, multi['decision_rule'])}**; sign selection: "
        + ("not used (two text states)" if method == "mvfa" else report["sign_selection"]["mode"]),
        f"- 95 % intervals: {ci['method']}, {ci['resamples']} resamples, seed {ci['seed']}",
        f"- {RESEARCH_USE_ONLY}",
        "",
        "| protocol | metric | value | 95 % interval | all-absent predictor |",
        "|---|---|---|---|---|",
        f"| 1 general AD | image AUROC | {_figure(protocols['general_ad']['image_auroc'])} | "
        f"{_interval(report, 'image_auroc')} | 0.5 (constant) |",
        f"| 1 general AD | pixel AUROC | {_figure(protocols['general_ad']['pixel_auroc'])} | | 0.5 (constant) |",
        f"| 2 multi-label | Hamming score | {_figure(multi['hamming_score'])} | {_interval(report, 'hamming_score')} | "
        f"{_figure(multi['hamming_score_all_absent'])} |",
        f"| 2 multi-label | subset accuracy | {_figure(multi['subset_accuracy'])} | "
        f"{_interval(report, 'subset_accuracy')} | {_figure(multi['subset_accuracy_all_absent'])} |",
        f"| 2 multi-label | Jaccard (example-based) | {_figure(multi['jaccard'])} | | "
        f"{_figure(multi['jaccard_all_absent'])} |",
        f"| 3 category-wise | mean AUROC ({protocols['category_auroc']['defined']} of "
        f"{protocols['category_auroc']['total']} defined) | {_figure(protocols['category_auroc']['mean'])} | "
        f"{_interval(report, 'mean_category_auroc')} | 0.5 (constant) |",
        "",
        "Protocol 2 under each decision rule:",
        "",
        "| decision rule | Hamming score | subset accuracy | Jaccard | positive decisions |",
        "|---|---|---|---|---|",
    ]
    for rule, figures in multi["rules"].items():
        if isinstance(figures, str):
            lines.append(f"| {rule_name(multi, rule)} | {figures} | | | |")
        else:
            lines.append(
                f"| {rule_name(multi, rule)} | {_figure(figures['hamming_score'])} | "
                f"{_figure(figures['subset_accuracy'])} | {_figure(figures['jaccard'])} | "
                f"{sum(figures['positive_decisions'].values())} |"
            )
    lines.append(
        f"| all-absent predictor | {_figure(multi['hamming_score_all_absent'])} | "
        f"{_figure(multi['subset_accuracy_all_absent'])} | {_figure(multi['jaccard_all_absent'])} | 0 |"
    )
    calibrated = multi["rules"]["calibrated"]
    calibration = calibrated.get("calibration") if isinstance(calibrated, dict) else None
    lines += [
        "",
        "| category | positives | negatives | prevalence | AUROC | pixel AUROC | positive decisions "
        "| threshold on s_c | signs kept / dropped |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    pixel = protocols["category_auroc"].get("pixel_per_category", {})
    selection = report["sign_selection"]["categories"]
    for c, (name, value) in enumerate(protocols["category_auroc"]["per_category"].items()):
        counts, chosen = data["counts"][name], selection[name]
        forced = " (forced keep)" if chosen["forced_keep"] else ""
        kept = "— (two states)" if method == "mvfa" else f"{chosen['kept']} / {chosen['dropped']}{forced}"
        threshold = f"{calibration['thresholds'][c]:.4f}" if calibration else "none"
        lines.append(
            f"| {name} | {counts['positive']} | {counts['negative']} | {counts['prevalence']:.3f} | "
            f"{_figure(value)} | {_pixel_cell(pixel.get(name))} | {multi['positive_decisions'][name]} | {threshold} | "
            f"{kept} |"
        )
    if calibration:
        lines += [
            "",
            f"Thresholds: {calibration['source']}, {calibration['metric']}; "
            f"computed with sign selection '{calibration['sign_selection']}'.",
        ]
        lines += [f"- {name}: {how}" for name, how in zip(data["categories"], calibration["how"], strict=True)]
    lines += ["", "Plots: " + ", ".join(f"[{Path(p).name}]({Path(p).name})" for p in report["files"]["plots"]), ""]
    return "\n".join(lines)


def prediction_rows(rows: list[dict[str, Any]], categories: Sequence[str]) -> list[list[Any]]:
    """A header, then one line per slice: file, slice, anomaly score, then score and decision (and label) per
    category."""
    has_labels = bool(rows) and "label" in rows[0]
    header = ["source", "slice_index", "anomaly_score"]
    for name in categories:
        header += [f"score:{name}", f"decision:{name}"] + ([f"label:{name}"] if has_labels else [])
    lines = [header]
    for row in rows:
        line = [row["source"], row["slice_index"], f"{row['anomaly']:.6f}"]
        for c in range(len(categories)):
            line += [f"{row['scores'][c]:.6f}", int(row["decisions"][c])]
            if has_labels:
                line.append(int(row["label"][c]))
        lines.append(line)
    return lines


def write_report(out_dir: str | Path, report: dict[str, Any], rows: list[dict], categories: Sequence[str]) -> None:
    out_dir = Path(out_dir)
    write_csv_atomic(prediction_rows(rows, categories), out_dir / "predictions.csv")
    write_text_atomic(report_markdown(report), out_dir / "report.md")
    write_json_atomic(report, out_dir / "report.json")


def headline(report: dict[str, Any], where: str | Path) -> str:
    """The figures a user looks at first, beside the all-absent predictor's, and where the report is."""
    protocols = report["protocols"]
    category, multi = protocols["category_auroc"], protocols["multi_label"]
    return (
        f"evaluation ({'zero-shot CLIP' if report['run']['zero_shot'] else 'trained model'}, "
        f"method {report['run'].get('method', 'sdmad')}, "
        f"{report['data']['test_slices']} test slices, decisions: {rule_name(multi, multi['decision_rule'])}): "
        f"mean category AUROC {_figure(category['mean'])} ({category['defined']}/{category['total']} defined), "
        f"Hamming score {_figure(multi['hamming_score'])} (all-absent {_figure(multi['hamming_score_all_absent'])}"
        f"), subset accuracy {_figure(multi['subset_accuracy'])} (all-absent "
        f"{_figure(multi['subset_accuracy_all_absent'])}), image AUROC "
        f"{_figure(protocols['general_ad']['image_auroc'])}, pixel AUROC "
        f"{_figure(protocols['general_ad']['pixel_auroc']).split(':')[0]}"
        f"\nreport: {Path(where) / 'report.md'}"
    )
