"""The phantom head and its findings: one drawing function per fastMRI+ category, in one table.

Each volume is an axial head: a bright skull ring, grey brain tissue with texture, two dark ventricles. The six
fastMRI+ categories are visually distinct synthetic findings:

| category | finding |
|---|---|
| Craniotomy | a gap in the skull ring |
| Posttreatment change | a dark cavity with an irregular bright rim near the cortex |
| Nonspecific lesion | one to three small bright focal lesions |
| Dural thickening | a thick bright rim just inside the skull |
| Enlarged ventricles | ventricles about twice as large |
| Global label: Small vessel ... | bright dots around the ventricles (a study-level label, as in fastMRI+) |

Findings span every slice of a volume. Volumes are `volume[x, y, slice]` in RAS index order. Deterministic for a
random generator: every draw comes from it, in a fixed order (changing the order changes every data set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from sdmad.data.fastmri_plus import DEFAULT_CATEGORIES

CATEGORIES = DEFAULT_CATEGORIES  # the phantom mimics fastMRI+ brain
INTENSITY_SCALE = 1000.0  # phantom values in [0, ~1.2] are stored as integers 0..~1200 (exact in every format)


@dataclass
class PhantomVolume:
    name: str
    labels: tuple[str, ...]
    volume: np.ndarray  # float32 [x, y, slice], integer-valued
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # category -> bool [x, y, slice]


def _ellipse(
    shape: tuple[int, int], center: tuple[float, float], radii: tuple[float, float], angle: float = 0.0
) -> np.ndarray:
    """Normalised elliptic radius r (r <= 1 inside) on a 2-D grid."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    dx, dy = x - center[0], y - center[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    return np.sqrt((u / radii[0]) ** 2 + (v / radii[1]) ** 2)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: int) -> np.ndarray:
    coarse = rng.standard_normal((shape[0] // scale + 2, shape[1] // scale + 2))
    image = np.asarray(
        Image.fromarray(coarse.astype(np.float32)).resize((shape[1] + 2 * scale, shape[0] + 2 * scale), Image.BICUBIC)
    )
    return image[scale : scale + shape[0], scale : scale + shape[1]]


@dataclass
class Head:
    """One volume's head geometry and its findings' random placements (drawn once per volume)."""

    size: int
    center: np.ndarray
    radii: np.ndarray
    angle: float
    gap_angle: float
    cavity_angle: float
    lesions: list[tuple[np.ndarray, float]]
    dots: list[np.ndarray]
    ventricle_scale: float

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int, enlarged_ventricles: bool) -> Head:
        center = size / 2 + rng.uniform(-2, 2, size=2)
        radii = np.array([0.36, 0.43]) * size * rng.uniform(0.92, 1.05, size=2)
        angle = rng.uniform(-0.15, 0.15)
        gap_angle, cavity_angle = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
        lesions = [(rng.uniform(-0.45, 0.45, size=2), rng.uniform(2.5, 4.0)) for _ in range(rng.integers(1, 4))]
        dots = [rng.uniform(-1, 1, size=2) for _ in range(rng.integers(10, 16))]
        ventricle_scale = 2.0 if enlarged_ventricles else rng.uniform(0.9, 1.1)
        return cls(size, center, radii, angle, gap_angle, cavity_angle, lesions, dots, ventricle_scale)


@dataclass
class SlicePlane:
    """One axial slice being drawn: the intensities and the anatomy a finding is placed against."""

    plane: np.ndarray  # float [x, y]
    r: np.ndarray  # normalised elliptic radius of the head outline (skull at 0.9..1)
    theta: np.ndarray  # angle around the head's centre
    brain: np.ndarray
    skull: np.ndarray
    ventricles: np.ndarray
    rng: np.random.Generator


def _craniotomy(head: Head, s: SlicePlane) -> np.ndarray:
    gap = s.skull & (np.abs(np.angle(np.exp(1j * (s.theta - head.gap_angle)))) < 0.4)
    s.plane[gap] = 0.05
    return gap


def _dural_thickening(head: Head, s: SlicePlane) -> np.ndarray:
    rim = (s.r >= 0.78) & (s.r < 0.9)
    s.plane[rim] = 0.8
    return rim


def _posttreatment_change(head: Head, s: SlicePlane) -> np.ndarray:
    c, radii, size = head.center, head.radii, head.size
    center = (c[0] + 0.55 * radii[0] * np.cos(head.cavity_angle), c[1] + 0.55 * radii[1] * np.sin(head.cavity_angle))
    wobble = 1.0 + 0.25 * _smooth_noise(s.rng, s.plane.shape, 6)
    cavity_r = _ellipse(s.plane.shape, center, (0.11 * size, 0.08 * size), head.cavity_angle) * wobble
    cavity = (cavity_r < 1.0) & s.brain
    rim = (cavity_r >= 1.0) & (cavity_r < 1.35) & s.brain
    s.plane[cavity], s.plane[rim] = 0.08, 0.85
    return cavity | rim


def _nonspecific_lesion(head: Head, s: SlicePlane) -> np.ndarray:
    mask = np.zeros(s.plane.shape, dtype=bool)
    for offset, radius in head.lesions:
        spot = (
            _ellipse(
                s.plane.shape,
                (head.center[0] + offset[0] * head.radii[0], head.center[1] + offset[1] * head.radii[1]),
                (radius, radius),
            )
            < 1
        )
        spot &= s.brain  # drawn over anything, so the finding is on every slice
        s.plane[spot] = 1.0
        mask |= spot
    return mask


def _enlarged_ventricles(head: Head, s: SlicePlane) -> np.ndarray:
    return s.ventricles  # drawn with the anatomy, at twice the size (Head.ventricle_scale)


def _small_vessel_dots(head: Head, s: SlicePlane) -> np.ndarray:
    mask = np.zeros(s.plane.shape, dtype=bool)
    for offset in head.dots:
        around = (head.center[0] + offset[0] * 0.22 * head.size, head.center[1] + offset[1] * 0.2 * head.size)
        dot = (_ellipse(s.plane.shape, around, (1.6, 1.6)) < 1) & s.brain
        s.plane[dot] = 0.9
        mask |= dot
    return mask


# Drawn in this order (later findings paint over earlier ones); each returns the finding's mask on the slice.
FINDINGS: dict[str, Callable[[Head, SlicePlane], np.ndarray]] = {
    "Enlarged ventricles": _enlarged_ventricles,
    "Craniotomy": _craniotomy,
    "Dural thickening": _dural_thickening,
    "Posttreatment change": _posttreatment_change,
    "Nonspecific lesion": _nonspecific_lesion,
    CATEGORIES[5]: _small_vessel_dots,
}
assert set(FINDINGS) == set(CATEGORIES), "every phantom category needs a drawing"


def _anatomy(head: Head, k: int, num_slices: int, rng: np.random.Generator) -> SlicePlane:
    """Skull, textured brain and ventricles of slice ``k`` (the head tapers towards both ends)."""
    shape = (head.size, head.size)
    c, size = head.center, head.size
    x, y = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    taper = 1.0 - 0.25 * ((k - (num_slices - 1) / 2) / num_slices) ** 2
    r = _ellipse(shape, c, head.radii * taper, head.angle)
    theta = np.arctan2(y - c[1], x - c[0])
    brain, skull = r < 0.9, (r >= 0.9) & (r < 1.0)
    plane = np.where(brain, 0.5 + 0.05 * _smooth_noise(rng, shape, 8), 0.0)
    plane[skull] = 0.95
    ventricles = np.zeros(shape, dtype=bool)
    scale = head.ventricle_scale
    for side in (-1, 1):
        ventricles |= (
            _ellipse(
                shape,
                (c[0] + side * 0.08 * size * scale, c[1] + 0.02 * size),
                (0.04 * size * scale, 0.11 * size * scale),
                side * 0.3,
            )
            < 1
        )
    plane[ventricles] = 0.12
    return SlicePlane(plane, r, theta, brain, skull, ventricles, rng)


def make_volume(
    name: str, labels: Sequence[str], rng: np.random.Generator, size: int = 96, num_slices: int = 12
) -> PhantomVolume:
    """One phantom head with the given findings; every random choice comes from ``rng``."""
    unknown = set(labels) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown phantom categories {sorted(unknown)}")
    head = Head.draw(rng, size, enlarged_ventricles="Enlarged ventricles" in labels)
    volume = np.zeros((size, size, num_slices), dtype=np.float32)
    masks = {label: np.zeros((size, size, num_slices), dtype=bool) for label in labels}
    for k in range(num_slices):
        plane = _anatomy(head, k, num_slices, rng)
        for category, draw in FINDINGS.items():
            if category in labels:
                masks[category][..., k] = draw(head, plane)
        plane.plane += 0.015 * rng.standard_normal(plane.plane.shape)
        volume[..., k] = np.clip(plane.plane, 0, None)
    volume = np.round(volume * INTENSITY_SCALE).astype(np.float32)
    return PhantomVolume(name=name, labels=tuple(labels), volume=volume, masks=masks)


def phantom_label_sets(
    volumes_per_category: int, normal_volumes: int, multi_label_volumes: int, rng: np.random.Generator
) -> list[tuple[str, ...]]:
    """Normal volumes, single-category volumes for each category, and volumes with two categories."""
    label_sets: list[tuple[str, ...]] = [() for _ in range(normal_volumes)]
    for category in CATEGORIES:
        label_sets += [(category,)] * volumes_per_category
    for _ in range(multi_label_volumes):
        first, second = sorted(rng.choice(len(CATEGORIES), size=2, replace=False))
        label_sets.append((CATEGORIES[first], CATEGORIES[second]))
    order = rng.permutation(len(label_sets))
    return [label_sets[i] for i in order]
