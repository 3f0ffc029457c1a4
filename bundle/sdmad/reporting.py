"""The evaluation report: `report.json` (schema: configs/report.schema.json), `report.md`, `predictions.csv`."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sdmad.atomic import write_json_atomic, write_text_atomic

UNDEFINED = "undefined"
SCHEMA_VERSION = 1


def undefined_if_none(value: Any) -> Any:
    return UNDEFINED if value is None else (round(float(value), 6) if isinstance(value, (float, np.floating)) else value)


def config_hash(config: Any) -> str:
    """sha256 of the resolved config (JSON, keys sorted): two runs with the same hash ran the same config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def versions() -> dict[str, str]:
    import monai
    import open_clip
    import sklearn
    import torch

    import sdmad

    return {"sdmad": sdmad.__version__, "monai": monai.__version__, "torch": torch.__version__,
            "open_clip": open_clip.__version__, "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def category_counts(labels: np.ndarray, categories: Sequence[str]) -> dict[str, dict[str, int]]:
    return {name: {"positive": int((labels[:, c] > 0).sum()), "negative": int((labels[:, c] == 0).sum())}
            for c, name in enumerate(categories)}


def build_report(metrics: dict[str, Any], categories: Sequence[str], labels: np.ndarray, selection: dict,
                 run: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
    """The report document; every metric is a number or "undefined"."""
    per_category = {name: undefined_if_none(metrics.get(f"auroc/{name}")) for name in categories}
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **run, "versions": versions()},
        "data": {"test_slices": int(len(labels)), "normal_slices": int((labels.sum(axis=1) == 0).sum()),
                 "categories": list(categories), "counts": category_counts(labels, categories)},
        "protocols": {
            "general_ad": {"image_auroc": undefined_if_none(metrics.get("image_auroc")),
                           "pixel_auroc": "not computed: this model produces no pixel anomaly maps"},
            "multi_label": {"hamming_score": undefined_if_none(metrics.get("hamming_score")),
                            "subset_accuracy": undefined_if_none(metrics.get("subset_accuracy")),
                            "jaccard": undefined_if_none(metrics.get("jaccard"))},
            "category_auroc": {"per_category": per_category,
                               "mean": undefined_if_none(metrics.get("mean_category_auroc")),
                               "defined": int(metrics.get("defined_categories") or 0), "total": len(categories)},
        },
        "sign_selection": selection,
        "files": files,
    }


def _figure(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)


def report_markdown(report: dict[str, Any]) -> str:
    protocols, run, data = report["protocols"], report["run"], report["data"]
    model = "zero-shot CLIP (adapters off)" if run["zero_shot"] else f"checkpoint `{run['checkpoint']}`"
    lines = [
        "# SD-MAD evaluation report", "",
        f"- model: {model}; backbone: {run['backbone']}",
        f"- test set: {data['test_slices']} slices ({data['normal_slices']} normal); seed {run['seed']}; "
        f"device {run['device']}; config sha256 `{run['config_hash'][:12]}`",
        "- research use only, not for diagnosis", "",
        "| protocol | metric | value |", "|---|---|---|",
        f"| 1 general AD | image AUROC | {_figure(protocols['general_ad']['image_auroc'])} |",
        f"| 1 general AD | pixel AUROC | {protocols['general_ad']['pixel_auroc']} |",
        f"| 2 multi-label | Hamming score | {_figure(protocols['multi_label']['hamming_score'])} |",
        f"| 2 multi-label | subset accuracy | {_figure(protocols['multi_label']['subset_accuracy'])} |",
        f"| 2 multi-label | Jaccard (example-based) | {_figure(protocols['multi_label']['jaccard'])} |",
        f"| 3 category-wise | mean AUROC ({protocols['category_auroc']['defined']} of "
        f"{protocols['category_auroc']['total']} defined) | {_figure(protocols['category_auroc']['mean'])} |",
        "", "| category | positives | negatives | AUROC | signs kept / dropped |", "|---|---|---|---|---|",
    ]
    for name, value in protocols["category_auroc"]["per_category"].items():
        counts, chosen = data["counts"][name], report["sign_selection"][name]
        forced = " (forced keep)" if chosen["forced_keep"] else ""
        lines.append(f"| {name} | {counts['positive']} | {counts['negative']} | {_figure(value)} | "
                     f"{chosen['kept']} / {chosen['dropped']}{forced} |")
    lines += ["", "Plots: " + ", ".join(f"[{Path(p).name}]({Path(p).name})" for p in report["files"]["plots"]), ""]
    return "\n".join(lines)


def predictions_csv(rows: list[dict[str, Any]], categories: Sequence[str]) -> str:
    """One line per slice: file, slice, anomaly score, then score and decision (and label) per category."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    has_labels = bool(rows) and "label" in rows[0]
    header = ["source", "slice_index", "anomaly_score"]
    for name in categories:
        header += [f"score:{name}", f"decision:{name}"] + ([f"label:{name}"] if has_labels else [])
    writer.writerow(header)
    for row in rows:
        line = [row["source"], row["slice_index"], f"{row['anomaly']:.6f}"]
        for c in range(len(categories)):
            line += [f"{row['scores'][c]:.6f}", int(row["decisions"][c])]
            if has_labels:
                line.append(int(row["label"][c]))
        writer.writerow(line)
    return buffer.getvalue()


def write_report(out_dir: str | Path, report: dict[str, Any], rows: list[dict], categories: Sequence[str]) -> None:
    out_dir = Path(out_dir)
    write_text_atomic(predictions_csv(rows, categories), out_dir / "predictions.csv")
    write_text_atomic(report_markdown(report), out_dir / "report.md")
    write_json_atomic(report, out_dir / "report.json")


def headline(report: dict[str, Any], where: str | Path) -> str:
    """The figures a user looks at first, and where the report is."""
    protocols = report["protocols"]
    category = protocols["category_auroc"]
    return (f"evaluation ({'zero-shot CLIP' if report['run']['zero_shot'] else 'trained adapters'}, "
            f"{report['data']['test_slices']} test slices): mean category AUROC {_figure(category['mean'])} "
            f"({category['defined']}/{category['total']} defined), Hamming score "
            f"{_figure(protocols['multi_label']['hamming_score'])}, subset accuracy "
            f"{_figure(protocols['multi_label']['subset_accuracy'])}, image AUROC "
            f"{_figure(protocols['general_ad']['image_auroc'])}\nreport: {Path(where) / 'report.md'}")
