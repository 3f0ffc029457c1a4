"""Report plots (matplotlib, written atomically as PNG): ROC curves, AUROC bars, the sign map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from sdmad.atomic import atomic_path  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=120, bbox_inches="tight", format="png")
    plt.close(figure)


def _short(name: str, width: int = 28) -> str:
    name = name.replace("Global label: ", "")
    return name if len(name) <= width else name[: width - 1] + "…"


def roc_curves(
    scores: np.ndarray,
    labels: np.ndarray,
    categories: Sequence[str],
    aurocs: dict,
    path: Path,
    thresholds: Sequence[float] | None = None,
) -> None:
    """One ROC curve per category (undefined categories listed in the legend without a curve); with the calibrated
    thresholds, a dot marks each category's operating point on the test split (its decisions)."""
    figure, axes = plt.subplots(figsize=(6, 5.5))
    for c, name in enumerate(categories):
        value = aurocs.get(name)
        if value is None:
            axes.plot([], [], " ", label=f"{_short(name)}: undefined")
            continue
        positive = labels[:, c] > 0
        fpr, tpr, _ = roc_curve(positive, scores[:, c])
        (line,) = axes.plot(fpr, tpr, label=f"{_short(name)}: {value:.3f}")
        if thresholds is not None:
            decided = scores[:, c] > thresholds[c]
            axes.plot(decided[~positive].mean(), decided[positive].mean(), "o", color=line.get_color(), markersize=6)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    title = "Category-wise ROC (s_c, one vs rest)" + ("; dots: calibrated decisions" if thresholds is not None else "")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(fontsize=8, loc="lower right")
    _save(figure, path)


def auroc_bars(categories: Sequence[str], aurocs: dict, mean: float | None, path: Path) -> None:
    """Per-category AUROC bars; an undefined category is a hatched grey bar marked 'undefined'."""
    figure, axes = plt.subplots(figsize=(7, 0.5 * len(categories) + 1.5))
    positions = np.arange(len(categories))
    for y, name in zip(positions, categories, strict=True):
        value = aurocs.get(name)
        if value is None:
            axes.barh(y, 1.0, color="none", edgecolor="grey", hatch="//")
            axes.text(0.5, y, "undefined (no positive or no negative)", va="center", ha="center", fontsize=8)
        else:
            axes.barh(y, value, color="tab:blue")
            axes.text(value + 0.01, y, f"{value:.3f}", va="center", fontsize=8)
    axes.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    if mean is not None:
        axes.axvline(mean, color="tab:red", linewidth=1, label=f"mean over defined: {mean:.3f}")
        axes.legend(fontsize=8, loc="lower right")
    axes.set_yticks(positions, [_short(name, 40) for name in categories], fontsize=8)
    axes.invert_yaxis()
    axes.set(xlim=(0, 1.12), xlabel="AUROC", title="Category-wise AUROC")
    _save(figure, path)


def sign_map(
    sign_features: np.ndarray,
    sign_category: np.ndarray,
    kept: np.ndarray,
    anchor: np.ndarray,
    categories: Sequence[str],
    path: Path,
) -> None:
    """Sign and anchor features projected to 2-D (PCA): kept signs filled, dropped signs as crosses."""
    points = PCA(n_components=2).fit_transform(np.vstack([sign_features, anchor[None]]))
    figure, axes = plt.subplots(figsize=(6.5, 5.5))
    colours = plt.get_cmap("tab10")
    for c, name in enumerate(categories):
        mine = sign_category == c
        axes.scatter(*points[:-1][mine & kept].T, color=colours(c % 10), marker="o", label=_short(name))
        axes.scatter(*points[:-1][mine & ~kept].T, color=colours(c % 10), marker="x", s=60)
    axes.scatter(*points[-1], color="black", marker="*", s=200, label="anchor (normal)")
    axes.scatter([], [], color="grey", marker="x", label="dropped sign (Eq. 6)")
    axes.set(title="Sign features after training (PCA)", xticks=[], yticks=[])
    axes.legend(fontsize=7, loc="best")
    _save(figure, path)
