"""Pictures of anomaly maps (matplotlib, written atomically as PNG): a slice in grey with its anomaly map and its
strongest category map as heat overlays, the category table in the title; optionally the ground-truth outline.
Used by inference (`save_maps`, scripts/predict.py) and the evaluation report's montage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sdmad.plots import _save, _short  # noqa: E402

HEAT_ALPHA = 0.45


@dataclass
class MappedSlice:
    """One slice with its maps at native size and what the model said about it."""

    image: np.ndarray  # [rows, columns] (grey; the first channel of RGB)
    maps: np.ndarray  # [1 + C, rows, columns]: anomaly, then one per category, in [0, 1]
    scores: Sequence[float]  # s_c per category
    decisions: Sequence[bool]
    title: str = ""
    mask: np.ndarray | None = None  # [rows, columns] ground-truth union, for the outline


def display_window(image: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """The slice scaled to [0, 1] between its percentiles (the window the model saw)."""
    low, high = np.percentile(image, [lower, upper])
    return np.clip((image - low) / (high - low if high > low else 1.0), 0, 1)


def _heat_panel(
    ax: plt.Axes, grey: np.ndarray, heat: np.ndarray | None, mask: np.ndarray | None, title: str, size: int
) -> None:
    """The slice in grey, a heat map over it (absolute scale 0..1), the ground truth outlined in white."""
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if heat is not None:
        ax.imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=HEAT_ALPHA, interpolation="bilinear")
    if mask is not None and mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.8)
    ax.set_title(title, fontsize=size)
    ax.axis("off")


def _panels(axes: Sequence[plt.Axes], item: MappedSlice, categories: Sequence[str]) -> None:
    grey = display_window(np.asarray(item.image, dtype=np.float32))
    strongest = int(np.argmax(item.scores))
    panels = [
        ("slice", None),
        ("anomaly map", item.maps[0]),
        (f"map: {_short(categories[strongest], 24)}", item.maps[1 + strongest]),
    ]
    for ax, (name, heat) in zip(axes, panels, strict=True):
        _heat_panel(ax, grey, heat, item.mask, name, 8)


def category_lines(categories: Sequence[str], scores: Sequence[float], decisions: Sequence[bool]) -> str:
    """The categories by score, positive ones marked."""
    order = np.argsort(scores)[::-1]
    return "\n".join(f"{'[+]' if decisions[c] else '[ ]'} {_short(categories[c], 34)}: {scores[c]:.3f}" for c in order)


def overlay_png(item: MappedSlice, categories: Sequence[str], path: str | Path) -> Path:
    """One slice: grey, anomaly map, strongest category's map; the category table beside them."""
    figure, axes = plt.subplots(1, 4, figsize=(13, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.1]})
    _panels(axes[:3], item, categories)
    axes[3].axis("off")
    axes[3].text(
        0, 0.95, category_lines(categories, item.scores, item.decisions), va="top", family="monospace", fontsize=7
    )
    figure.suptitle(item.title + "  ([+]: positive decision; research use only)", fontsize=9)
    path = Path(path)
    _save(figure, path)
    return path


@dataclass
class MontageRow:
    """One slice of a montage: the slice, its ground-truth union mask (outlined in white on every panel), and the
    heat maps to show beside it."""

    image: np.ndarray
    title: str
    panels: list[tuple[str, np.ndarray]]
    mask: np.ndarray | None = None


def montage_png(rows: Sequence[MontageRow], path: str | Path, title: str) -> Path:
    """Several slices, one row each: the slice, then each of its heat maps (the ground truth outlined in white)."""
    columns = 1 + max(len(row.panels) for row in rows)
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(2.6 * columns, 2.8 * len(rows)), squeeze=False, layout="constrained"
    )
    for ax_row, row in zip(axes, rows, strict=True):
        grey = display_window(np.asarray(row.image, dtype=np.float32))
        for ax in ax_row:
            ax.axis("off")  # rows with fewer panels leave theirs empty
        for ax, (name, heat) in zip(ax_row, [(row.title, None), *row.panels], strict=False):
            _heat_panel(ax, grey, heat, row.mask, name, 7)
    figure.suptitle(title, fontsize=10)
    path = Path(path)
    _save(figure, path)
    return path


def label_colour(value: int) -> tuple[float, float, float]:
    """The colour (RGB in [0, 1]) of a label value in the pictures, the same in the Deploy app's SEG."""
    return tuple(plt.get_cmap("tab10")((value - 1) % 10)[:3])


def label_overlay_png(
    image: np.ndarray,
    labels: np.ndarray,
    label_names: dict[str, int],
    title: str,
    path: str | Path,
    overlay_title: str = "label image",
) -> Path:
    """A slice in grey beside the same slice with a label image over it (one colour per label value, as a viewer
    draws a segmentation), the legend naming each value shown."""
    figure, axes = plt.subplots(1, 2, figsize=(9, 4.6), layout="constrained")
    grey = display_window(np.asarray(image, dtype=np.float32))
    for ax in axes:
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.axis("off")
    shown = [(name, value) for name, value in label_names.items() if (labels == value).any()]
    overlay = np.zeros((*labels.shape, 4))
    for _, value in shown:
        overlay[labels == value] = (*label_colour(value), 0.55)
    axes[1].imshow(overlay, interpolation="nearest")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=label_colour(value), label=f"{value}: {_short(name, 30)}")
        for name, value in shown
    ]
    axes[1].legend(handles=handles or [plt.Rectangle((0, 0), 1, 1, color="none", label="no label")], fontsize=7)
    axes[0].set_title("slice", fontsize=9)
    axes[1].set_title(overlay_title, fontsize=9)
    figure.suptitle(title + "  (research use only)", fontsize=9)
    path = Path(path)
    _save(figure, path)
    return path
