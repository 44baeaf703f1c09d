"""The parameters of one clip: its RNG and label from (seed, split, index), the object's shape, colour and
trajectory, the background and the distractor."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgefuse.lab.synth.config import CLASSES, ROTATABLE, SHAPES, SPLIT_ID

# ---------------------------------------------------------------- parameters of one clip


@dataclass(frozen=True)
class Distractor:
    """A static second shape, drawn into the background."""

    shape: str
    digit: int
    color: tuple[float, float, float]
    cx: float
    cy: float
    diameter: float
    angle: float


@dataclass(frozen=True)
class ClipParams:
    """Everything that fixes one rendered clip (before the reversal of odd classes).

    Per-frame tuples: centre (cx, cy) in pixels, diameter of the object's bounding circle in
    pixels, angle in degrees (positive = clockwise on screen), alpha = opacity in [0, 1].
    """

    kind: str
    size: int
    shape: str
    digit: int
    color: tuple[float, float, float]
    bg_color: tuple[float, float, float]
    bg_gradient: tuple[float, float]  # direction (radians), peak-to-peak amplitude
    bg_blobs: float  # amplitude of the low-frequency texture
    bg_grain: float  # std of the static pixel noise
    bg_seed: int
    cx: tuple[float, ...]
    cy: tuple[float, ...]
    diameter: tuple[float, ...]
    angle: tuple[float, ...]
    alpha: tuple[float, ...]
    distractor: Distractor | None
    noise: float  # std of the per-frame sensor noise
    noise_seed: int


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The RNG of clip ``index`` of ``split``: independent of the split sizes."""
    return np.random.default_rng([seed, SPLIT_ID[split], index, 0])


def clip_label(seed: int, split: str, index: int) -> int:
    """Class of clip ``index``: each block of ten consecutive clips is a random permutation of
    the ten classes, so any prefix of a split is balanced to within one clip per class."""
    block, pos = divmod(index, len(CLASSES))
    perm = np.random.default_rng([seed, SPLIT_ID[split], block, 1]).permutation(len(CLASSES))
    return int(perm[pos])


def clip_name(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


def _contrasting_color(rng: np.random.Generator, against: np.ndarray, min_dist: float) -> tuple[float, float, float]:
    best, best_d = None, -1.0
    for _ in range(32):
        c = rng.uniform(0, 255, 3)
        d = float(np.linalg.norm(c - against))
        if d >= min_dist:
            return tuple(float(x) for x in c)  # type: ignore[return-value]
        if d > best_d:
            best, best_d = c, d
    return tuple(float(x) for x in best)  # type: ignore[return-value,union-attr]


def _pick_shape(rng: np.random.Generator, shapes: Sequence[str]) -> tuple[str, int]:
    shape = shapes[int(rng.integers(len(shapes)))]
    digit = int(rng.integers(10))  # always drawn, so the draws do not depend on the shape
    return shape, digit


def _ease(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Normalised time 0..1 over the clip with a random speed profile (tau ** gamma)."""
    gamma = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    return np.linspace(0.0, 1.0, frames) ** gamma


def _inside(rng: np.random.Generator, radius: float, size: int) -> float:
    return float(rng.uniform(radius, size - radius))


def _trajectory(kind: str, rng: np.random.Generator, frames: int, size: int) -> dict[str, np.ndarray]:
    s = float(size)
    tau = _ease(rng, frames)
    ones = np.ones(frames)
    if kind in ("move_left", "move_up"):
        d = rng.uniform(0.25, 0.42) * s
        travel = min(rng.uniform(0.3, 0.55) * s, s - d - 1)
        along0 = rng.uniform(d / 2 + travel, s - d / 2)
        across0 = _inside(rng, d / 2, size)
        drift = rng.uniform(-0.06, 0.06) * s
        across1 = float(np.clip(across0 + drift, d / 2, s - d / 2))
        along = along0 - travel * tau
        across = across0 + (across1 - across0) * tau
        cx, cy = (along, across) if kind == "move_left" else (across, along)
        return {"cx": cx, "cy": cy, "diameter": d * ones, "angle": rng.uniform(0, 360) * ones, "alpha": ones}
    if kind == "rotate_cw":
        d = rng.uniform(0.3, 0.5) * s
        hi = min(180.0, 36.0 / float(np.diff(tau).max()))  # <= 36 degrees a frame: a square never aliases
        turn = rng.uniform(min(90.0, hi / 2), hi)
        angle = rng.uniform(0, 360) + turn * tau
        centre = _drifting_centre(rng, d / 2 + 0.04 * s, 0.04 * s, size, tau)
        return {**centre, "diameter": d * ones, "angle": angle, "alpha": ones}
    if kind == "grow":
        d0 = rng.uniform(0.1, 0.18) * s
        d1 = min(d0 * rng.uniform(2.2, 3.5), 0.6 * s)
        centre = _drifting_centre(rng, d1 / 2 + 0.03 * s, 0.03 * s, size, tau)
        return {**centre, "diameter": d0 + (d1 - d0) * tau, "angle": rng.uniform(0, 360) * ones, "alpha": ones}
    if kind == "appear":
        d = rng.uniform(0.25, 0.45) * s
        t0, t1 = rng.uniform(0.0, 0.3), rng.uniform(0.65, 1.0)
        lin = np.linspace(0.0, 1.0, frames)
        centre = _drifting_centre(rng, d / 2 + 0.03 * s, 0.03 * s, size, tau)
        return {**centre, "diameter": d * ones, "angle": rng.uniform(0, 360) * ones,
                "alpha": np.clip((lin - t0) / (t1 - t0), 0.0, 1.0)}
    raise ValueError(f"unknown motion kind {kind!r}")


def _drifting_centre(rng: np.random.Generator, margin: float, drift: float, size: int,
                     tau: np.ndarray) -> dict[str, np.ndarray]:
    x0, y0 = _inside(rng, margin, size), _inside(rng, margin, size)
    dx, dy = rng.uniform(-drift, drift, 2)
    return {"cx": x0 + dx * tau, "cy": y0 + dy * tau}


def sample_params(kind: str, rng: np.random.Generator, frames: int, size: int) -> ClipParams:
    """Draw a clip of motion ``kind`` (one of ``KINDS``): shape, colours, background, trajectory."""
    bg_color = rng.uniform(50, 205, 3)
    bg_gradient = (float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 40)))
    bg_blobs, bg_grain = float(rng.uniform(0, 25)), float(rng.uniform(0, 6))
    bg_seed = int(rng.integers(2**63))
    shape, digit = _pick_shape(rng, ROTATABLE if kind == "rotate_cw" else SHAPES)
    color = _contrasting_color(rng, bg_color, 90.0)
    traj = _trajectory(kind, rng, frames, size)
    distractor = None
    if rng.random() < 0.5:
        dshape, ddigit = _pick_shape(rng, SHAPES)
        dd = rng.uniform(0.12, 0.25) * size
        distractor = Distractor(dshape, ddigit, _contrasting_color(rng, bg_color, 60.0),
                                _inside(rng, dd / 2, size), _inside(rng, dd / 2, size), float(dd),
                                float(rng.uniform(0, 360)))
    return ClipParams(
        kind=kind, size=size, shape=shape, digit=digit, color=color,
        bg_color=tuple(float(x) for x in bg_color),  # type: ignore[arg-type]
        bg_gradient=bg_gradient, bg_blobs=bg_blobs, bg_grain=bg_grain, bg_seed=bg_seed,
        **{k: tuple(float(x) for x in v) for k, v in traj.items()},
        distractor=distractor, noise=float(rng.uniform(0, 3)), noise_seed=int(rng.integers(2**63)),
    )


