"""``edgefuse synth``: a synthetic temporal benchmark, written like a real one.

Ten classes in five time-reversed pairs: class ``2k + 1`` is a clip of class ``2k`` played
backwards ("moving right" is a "moving left" clip reversed, "shrinking" a reversed "growing",
...). Both classes of a pair therefore show the same frames with the same distribution, only
in the opposite order: a model that averages per-frame predictions (TSN) cannot tell them
apart, a temporal model (TSM, GSF, AdaFuse) can.

``render_clip`` draws one clip in memory; ``generate`` writes a dataset in the
Something-Something V1 / Jester layout (JPEG frame folders and TSN list files) plus video
files, with train / val / calib splits. Every clip's content comes from its own RNG, seeded
by (seed, split, index), and its label from a balanced permutation of its block of ten, so
a clip does not change when the split sizes do.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edgefuse import __version__
from edgefuse.errors import EdgefuseError
from edgefuse.progress import progress

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = (
    "moving left", "moving right", "moving up", "moving down",
    "rotating clockwise", "rotating anticlockwise", "growing", "shrinking",
    "appearing", "disappearing",
)
PAIRS: tuple[tuple[int, int], ...] = tuple((k, k + 1) for k in range(0, len(CLASSES), 2))
CLASS_DESCRIPTIONS: dict[str, str] = {
    "moving left": "the object translates from right to left (slight vertical drift)",
    "moving right": "a 'moving left' clip played backwards",
    "moving up": "the object translates from bottom to top (slight horizontal drift)",
    "moving down": "a 'moving up' clip played backwards",
    "rotating clockwise": "the object turns clockwise by 90-180 degrees about its centre (never a circle)",
    "rotating anticlockwise": "a 'rotating clockwise' clip played backwards",
    "growing": "the object's size grows 2.2-3.5 times",
    "shrinking": "a 'growing' clip played backwards",
    "appearing": "the object fades in from fully transparent",
    "disappearing": "an 'appearing' clip played backwards",
}
SPLITS: tuple[str, ...] = ("train", "val", "calib")
FORMATS: tuple[str, ...] = ("frames", "videos")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "digit", "bar", "cross")
# the motion each pair's first class is rendered with; the second class is its reverse
KINDS: tuple[str, ...] = ("move_left", "move_up", "rotate_cw", "grow", "appear")
DEFAULT_CODEC_OPTIONS: dict[str, dict[str, str]] = {
    # mbtree off: with it, x264 (core 165, AVX-512 on) gave different bytes from run to run for one input
    "libx264": {"crf": "12", "preset": "medium", "x264-params": "mbtree=0"},
    "mpeg4": {"b": "4M"},
    "libvpx": {"crf": "10", "b": "4M"},
    "libvpx-vp9": {"crf": "15", "b": "0"},
}
DEFAULT_EXT: dict[str, str] = {"libvpx": "webm", "libvpx-vp9": "webm"}
PROGRESS_DESC = "synth: rendering clips"
MARKER = "synth.json"
_SPLIT_ID = {s: i for i, s in enumerate(SPLITS)}
_ROTATABLE = tuple(s for s in SHAPES if s != "circle")  # a turning circle looks still
_SUPERSAMPLE = 2  # the object is placed on a 2x canvas, then box-filtered down: smooth edges
_MAX_CLIPS = 100_000  # five-digit clip names
_MAX_FRAMES = 10_000


@dataclass(frozen=True)
class SynthConfig:
    """What ``generate`` writes. ``codec_options`` override ``DEFAULT_CODEC_OPTIONS[codec]``;
    ``ext`` defaults to mp4 (webm for libvpx). ``workers`` and ``force`` do not change the content."""

    out: Path
    frames: int = 16
    size: int = 128
    train: int = 1000
    val: int = 250
    calib: int = 256
    seed: int = 0
    formats: tuple[str, ...] = FORMATS
    codec: str = "libx264"
    ext: str | None = None
    pix_fmt: str = "yuv420p"
    codec_options: tuple[tuple[str, str], ...] = ()
    fps: int = 12
    jpeg_quality: int = 95
    workers: int = 2
    force: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        formats = self.formats.split(",") if isinstance(self.formats, str) else self.formats
        object.__setattr__(self, "formats", tuple(formats))
        object.__setattr__(self, "codec_options", tuple((str(k), str(v)) for k, v in self.codec_options))

    def counts(self) -> dict[str, int]:
        return {"train": self.train, "val": self.val, "calib": self.calib}

    def video_ext(self) -> str:
        return self.ext or DEFAULT_EXT.get(self.codec, "mp4")

    def video_options(self) -> dict[str, str]:
        return {**DEFAULT_CODEC_OPTIONS.get(self.codec, {}), **dict(self.codec_options)}

    def content(self) -> dict:
        """The settings the dataset's bytes depend on (what synth.json records)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("out", "workers", "force", "codec_options")}
        d["formats"] = list(self.formats)
        d["ext"] = self.video_ext()
        d["codec_options"] = self.video_options()
        return d


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
    return np.random.default_rng([seed, _SPLIT_ID[split], index, 0])


def clip_label(seed: int, split: str, index: int) -> int:
    """Class of clip ``index``: each block of ten consecutive clips is a random permutation of
    the ten classes, so any prefix of a split is balanced to within one clip per class."""
    block, pos = divmod(index, len(CLASSES))
    perm = np.random.default_rng([seed, _SPLIT_ID[split], block, 1]).permutation(len(CLASSES))
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
    shape, digit = _pick_shape(rng, _ROTATABLE if kind == "rotate_cw" else SHAPES)
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


# ---------------------------------------------------------------- drawing


@lru_cache(maxsize=None)
def _digit_font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=px)  # Pillow >= 10.1 with FreeType
    except (TypeError, ImportError, OSError, AttributeError):
        return ImageFont.load_default()  # bitmap font: scaled up below


def _digit_mask(digit: int, big: int) -> Image.Image:
    font = _digit_font(big)
    tmp = Image.new("L", (2 * big, 2 * big), 0)
    ImageDraw.Draw(tmp).text((big // 2, big // 2), str(digit), fill=255, font=font)
    glyph = tmp.crop(tmp.getbbox())
    w, h = glyph.size
    scale = 0.92 * big / math.hypot(w, h)  # the glyph's box fits in the bounding circle
    glyph = glyph.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    out = Image.new("L", (big, big), 0)
    out.paste(glyph, ((big - glyph.size[0]) // 2, (big - glyph.size[1]) // 2))
    return out


@lru_cache(maxsize=None)
def shape_mask(shape: str, digit: int, res: int) -> Image.Image:
    """The shape as an antialiased ``res`` x ``res`` "L" mask, inside the circle of diameter ``res``
    (so it never clips when rotated). Drawn at 4x and box-filtered down."""
    big = 4 * res
    c, r = big / 2, 0.46 * big
    if shape == "digit":
        return _digit_mask(digit, big).reduce(4)
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    if shape == "circle":
        draw.ellipse((c - r, c - r, c + r, c + r), fill=255)
    elif shape == "square":
        h = r / math.sqrt(2)
        draw.rectangle((c - h, c - h, c + h, c + h), fill=255)
    elif shape == "triangle":
        pts = [(c + r * math.cos(a), c + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        draw.polygon(pts, fill=255)
    elif shape == "bar":
        draw.rectangle((c - 0.44 * big, c - 0.11 * big, c + 0.44 * big, c + 0.11 * big), fill=255)
    elif shape == "cross":
        draw.rectangle((c - 0.42 * big, c - 0.1 * big, c + 0.42 * big, c + 0.1 * big), fill=255)
        draw.rectangle((c - 0.1 * big, c - 0.42 * big, c + 0.1 * big, c + 0.42 * big), fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return img.reduce(4)


def _mask_for(shape: str, digit: int, diameter_ss: float) -> Image.Image:
    """The cached mask level with diameter_ss <= res < 2 * diameter_ss (bilinear then shrinks by < 2)."""
    res = 16
    while res < diameter_ss and res < 1024:
        res *= 2
    return shape_mask(shape, digit, res)


def place(mask: Image.Image, size: int, cx: float, cy: float, diameter: float, angle: float) -> np.ndarray:
    """Coverage (size, size) float32 in [0, 1] of ``mask`` scaled to ``diameter`` pixels, turned
    ``angle`` degrees clockwise on screen and centred at (cx, cy) (pixel i spans [i, i + 1))."""
    ss = _SUPERSAMPLE
    res = mask.size[0]
    k = res / (max(diameter, 1e-3) * ss)  # mask pixels per supersampled canvas pixel
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # canvas point X (supersampled) -> offset v = X / ss - centre -> mask point res / 2 + k * ss * R^T v
    a, b = k * c, k * s
    d, e = -k * s, k * c
    cxs, cys = cx * ss, cy * ss
    data = (a, b, res / 2 - a * cxs - b * cys, d, e, res / 2 - d * cxs - e * cys)
    big = mask.transform((size * ss, size * ss), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)
    return np.asarray(big.reduce(ss), dtype=np.float32) / 255.0


def background(p: ClipParams) -> np.ndarray:
    """The static background (H, W, 3) float32: colour + gradient + smooth blobs + grain."""
    n = p.size
    rng = np.random.default_rng(p.bg_seed)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n - 0.5
    direction, amp = p.bg_gradient
    grad = (np.cos(direction) * xx + np.sin(direction) * yy) * amp
    coarse = rng.uniform(-1, 1, (6, 6, 3)).astype(np.float32)
    blobs = np.stack([np.asarray(Image.fromarray(coarse[..., i]).resize((n, n), Image.Resampling.BICUBIC))
                      for i in range(3)], axis=-1) * p.bg_blobs
    grain = rng.standard_normal((n, n, 3), dtype=np.float32) * p.bg_grain
    bg = np.asarray(p.bg_color, np.float32) + grad[..., None] + blobs + grain
    if p.distractor is not None:
        q = p.distractor
        cov = place(_mask_for(q.shape, q.digit, q.diameter * _SUPERSAMPLE), n, q.cx, q.cy, q.diameter, q.angle)
        bg = bg + cov[..., None] * (np.asarray(q.color, np.float32) - bg)
    return bg.astype(np.float32)


def render_params(p: ClipParams) -> np.ndarray:
    """The clip (T, H, W, 3) uint8 of ``p``, in the order of its motion kind."""
    bg = background(p)
    color = np.asarray(p.color, np.float32)
    frames = len(p.cx)
    noise = np.random.default_rng(p.noise_seed).standard_normal((frames, p.size, p.size, 3), dtype=np.float32)
    out = np.empty((frames, p.size, p.size, 3), np.uint8)
    for t in range(frames):
        mask = _mask_for(p.shape, p.digit, p.diameter[t] * _SUPERSAMPLE)
        cov = place(mask, p.size, p.cx[t], p.cy[t], p.diameter[t], p.angle[t]) * np.float32(p.alpha[t])
        img = bg + cov[..., None] * (color - bg) + noise[t] * np.float32(p.noise)
        out[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def render_clip(class_index: int, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """One clip of ``CLASSES[class_index]``: uint8 (frames, size, size, 3), RGB.

    Both classes of a pair make the same draws from ``rng``; the second one returns the
    first one's frames reversed: ``render_clip(2k + 1, r, ...) == render_clip(2k, r, ...)[::-1]``
    for equal generator states.
    """
    if not 0 <= class_index < len(CLASSES):
        raise EdgefuseError(f"synth: class index {class_index} out of range: there are {len(CLASSES)} classes (0-9)")
    if frames < 2 or size < 16:
        raise EdgefuseError(f"synth: clips need at least 2 frames and 16 pixels (got {frames} frames, {size} px)")
    clip = render_params(sample_params(KINDS[class_index // 2], rng, frames, size))
    return np.ascontiguousarray(clip[::-1]) if class_index % 2 else clip


# ---------------------------------------------------------------- reading


def read_list(path: str | Path) -> list[tuple[str, int, int]]:
    """A TSN list file: one ``relative_path num_frames label`` per line (the path may contain spaces)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise EdgefuseError(f"{path}: cannot read the list file ({e.strerror}); check the path") from None
    rows = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=2)
        try:
            if len(parts) != 3:
                raise ValueError
            rows.append((parts[0], int(parts[1]), int(parts[2])))
        except ValueError:
            raise EdgefuseError(f"{path}:{no}: expected 'relative_path num_frames label', got {line.strip()!r}; "
                                "fix or regenerate the list file") from None
    return rows


# ---------------------------------------------------------------- writing


def check_config(cfg: SynthConfig) -> None:
    """Raise ``EdgefuseError`` for a config that cannot be generated (before anything is written)."""
    def bad(what: str) -> EdgefuseError:
        return EdgefuseError(f"synth: {what}")

    if not 2 <= cfg.frames <= _MAX_FRAMES:
        raise bad(f"--frames {cfg.frames}: a clip needs 2 to {_MAX_FRAMES} frames")
    if not 32 <= cfg.size <= 4096:
        raise bad(f"--size {cfg.size}: use 32 to 4096 pixels")
    for split, n in cfg.counts().items():
        if not 0 <= n < _MAX_CLIPS:
            raise bad(f"--{split} {n}: use 0 to {_MAX_CLIPS - 1} clips")
    if sum(cfg.counts().values()) == 0:
        raise bad("all splits are empty: pass --train/--val/--calib counts above 0")
    if cfg.seed < 0:
        raise bad(f"--seed {cfg.seed}: use a seed >= 0")
    if not cfg.formats or len(set(cfg.formats)) != len(cfg.formats) or not set(cfg.formats) <= set(FORMATS):
        raise bad(f"--formats {','.join(cfg.formats)}: use frames, videos or frames,videos")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise bad(f"JPEG quality {cfg.jpeg_quality}: use 1 to 100")
    if cfg.workers < 1:
        raise bad(f"--workers {cfg.workers}: use 1 or more worker processes")
    if "videos" in cfg.formats:
        _check_video(cfg)


def _check_video(cfg: SynthConfig) -> None:
    try:
        import av
    except ImportError:
        raise EdgefuseError("synth: writing videos needs PyAV: pip install av, or pass --formats frames") from None
    try:
        codec = av.codec.Codec(cfg.codec, "w")
    except Exception:  # noqa: BLE001 - PyAV raises its own UnknownCodecError
        raise EdgefuseError(f"synth: this FFmpeg has no {cfg.codec!r} encoder; use --codec libx264, mpeg4 or libvpx")
    formats = [f.name for f in (codec.video_formats or [])]
    if formats and cfg.pix_fmt not in formats:
        raise EdgefuseError(f"synth: {cfg.codec} cannot encode {cfg.pix_fmt}; use --pix-fmt {' or '.join(formats[:4])}")
    if cfg.pix_fmt.startswith(("yuv420", "yuv422", "nv")) and cfg.size % 2:
        raise EdgefuseError(f"synth: --size {cfg.size} is odd but {cfg.pix_fmt} needs even sizes; "
                            f"use --size {cfg.size + 1}")
    if cfg.fps < 1:
        raise EdgefuseError(f"synth: --fps {cfg.fps}: use 1 or more")
    if not cfg.video_ext().isalnum():
        raise EdgefuseError(f"synth: video extension {cfg.video_ext()!r}: give it without the dot, e.g. mp4")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise EdgefuseError(f"synth: {out} is a file; pass a folder to --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise EdgefuseError(f"synth: {out} is not empty; pass --force to replace it or choose another --out")
    if not (out / MARKER).is_file():
        raise EdgefuseError(f"synth: {out} is not an edgefuse synth dataset (no {MARKER}); refusing to delete it "
                            "even with --force: remove it yourself or choose another --out")


@dataclass(frozen=True)
class _WriteSpec:
    """What a worker needs to render and write one clip."""

    root: str
    frames: int
    size: int
    seed: int
    formats: tuple[str, ...]
    jpeg_quality: int
    codec: str
    ext: str
    pix_fmt: str
    codec_options: tuple[tuple[str, str], ...]
    fps: int


def write_jpegs(clip: np.ndarray, folder: Path, quality: int) -> None:
    """Frames as ``folder/00001.jpg ...`` (1-based, five digits)."""
    folder.mkdir(parents=True)
    for t, img in enumerate(clip, 1):
        path = folder / f"{t:05d}.jpg"
        try:
            Image.fromarray(img).save(path, format="JPEG", quality=quality)
        except OSError as e:
            raise EdgefuseError(f"synth: cannot write {path}: {e}; free some disk space or choose another --out"
                                ) from None


def write_video(clip: np.ndarray, path: Path, codec: str, pix_fmt: str, options: dict[str, str], fps: int) -> None:
    """Encode ``clip``: RGB -> ``pix_fmt`` with the BT.601 matrix, tagged as such (tv range), pts 0, 1, ...

    One encoder thread: x264's output depends on its thread count, so a fixed count keeps the bytes
    the same on every machine with the same FFmpeg/x264 build and CPU features.
    """
    import av
    from av.video.reformatter import Colorspace

    tags = {"color_range": 1, "colorspace": 6, "color_primaries": 6, "color_trc": 6}  # tv range, SMPTE 170M
    try:
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=fps, options=dict(options))
            stream.width, stream.height = clip.shape[2], clip.shape[1]
            stream.pix_fmt = pix_fmt
            cc = stream.codec_context
            cc.thread_count = 1
            for key, value in tags.items():
                setattr(cc, key, value)
            for t, img in enumerate(clip):
                frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(
                    format=pix_fmt, dst_colorspace=Colorspace.ITU601)
                for key, value in tags.items():
                    setattr(frame, key, value)
                frame.pts = t
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    except (av.error.FFmpegError, OSError) as e:
        raise EdgefuseError(f"synth: cannot encode {path.name} with {codec} {options} ({pix_fmt}): {e}; "
                            "check --codec, --codec-option and --pix-fmt") from None


def write_clip(spec: _WriteSpec, split: str, index: int, label: int) -> int:
    """Render clip ``index`` of ``split`` and write it in every format; returns its frame count."""
    clip = render_clip(label, clip_rng(spec.seed, split, index), spec.frames, spec.size)
    name = clip_name(split, index)
    root = Path(spec.root)
    if "frames" in spec.formats:
        write_jpegs(clip, root / "frames" / name, spec.jpeg_quality)
    if "videos" in spec.formats:
        write_video(clip, root / "videos" / f"{name}.{spec.ext}", spec.codec, spec.pix_fmt,
                    dict(spec.codec_options), spec.fps)
    return len(clip)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it cancels and cleans up


def _run(jobs: list[tuple[str, int, int]], spec: _WriteSpec, workers: int) -> None:
    if workers == 1 or len(jobs) < 2:
        for job in progress(jobs, PROGRESS_DESC):
            write_clip(spec, *job)
        return
    ctx = multiprocessing.get_context("spawn")  # no inherited threads or state; same on every OS
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_ignore_sigint) as ex:
        futures = [ex.submit(write_clip, spec, *job) for job in jobs]
        try:
            for fut in progress(as_completed(futures), PROGRESS_DESC, total=len(futures)):
                fut.result()
        except BrokenProcessPool:
            ex.shutdown(wait=True, cancel_futures=True)
            raise EdgefuseError("synth: a worker process died (killed, out of memory, or it could not import the "
                                "calling script: guard a script's code with if __name__ == '__main__'); "
                                "retry, or use --workers 1") from None
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)  # nothing may still write when the folder goes
            raise


def plan(cfg: SynthConfig) -> list[tuple[str, int, int]]:
    """(split, index, label) of every clip, in list-file order."""
    return [(split, i, clip_label(cfg.seed, split, i)) for split, n in cfg.counts().items() for i in range(n)]


def _versions() -> dict[str, str]:
    import PIL

    v = {"edgefuse": __version__, "numpy": np.__version__, "Pillow": PIL.__version__}
    try:
        import av

        v["av"] = av.__version__
        v["libavcodec"] = ".".join(map(str, av.library_versions["libavcodec"]))
    except ImportError:
        pass
    return v


def _write_metadata(root: Path, cfg: SynthConfig, jobs: list[tuple[str, int, int]]) -> None:
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    lists: dict[str, dict[str, str]] = {}
    for split in SPLITS:
        mine = [(i, label) for s, i, label in jobs if s == split]
        if "frames" in cfg.formats:
            lines = [f"frames/{clip_name(split, i)} {cfg.frames} {label}\n" for i, label in mine]
            (root / f"{split}.txt").write_text("".join(lines))
            lists.setdefault("frames", {})[split] = f"{split}.txt"
        if "videos" in cfg.formats:
            lines = [f"videos/{clip_name(split, i)}.{cfg.video_ext()} {cfg.frames} {label}\n" for i, label in mine]
            (root / f"{split}_videos.txt").write_text("".join(lines))
            lists.setdefault("videos", {})[split] = f"{split}_videos.txt"
    counts = {split: {"clips": n, "per_class": dict.fromkeys(CLASSES, 0)} for split, n in cfg.counts().items()}
    for split, _, label in jobs:
        counts[split]["per_class"][CLASSES[label]] += 1
    meta = {
        "dataset": "edgefuse synth",
        "edgefuse_version": __version__,
        "config": cfg.content(),
        "classes": list(CLASSES),
        "pairs": [list(p) for p in PAIRS],
        "description": "10 classes in 5 time-reversed pairs: class 2k+1 is a clip of class 2k played "
                       "backwards, so both show the same frames in opposite order. One moving shape (circle, "
                       "square, triangle, digit, bar or cross) of random colour on a textured background, "
                       "sometimes with a static distractor shape.",
        "class_descriptions": CLASS_DESCRIPTIONS,
        "counts": counts,
        "lists": lists,
        "layout": {"frames": "frames/<split>_<index:05d>/<frame:05d>.jpg (1-based)",
                   "videos": f"videos/<split>_<index:05d>.{cfg.video_ext()}",
                   "list_line": "relative_path num_frames label"},
        "seeding": "clip content: numpy default_rng([seed, split_id, index, 0]); label: the permutation "
                   "default_rng([seed, split_id, index // 10, 1]).permutation(10)[index % 10]; "
                   "split_id train 0, val 1, calib 2",
        "libraries": _versions(),
    }
    (root / MARKER).write_text(json.dumps(meta, indent=2) + "\n")


def _set_permissions(root: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(root, 0o777 & ~umask)  # mkdtemp makes 0700


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old)  # out is an empty folder or (with --force) an earlier synth dataset
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def generate(cfg: SynthConfig) -> Path:
    """Write the dataset to ``cfg.out`` and return it.

    Everything is written into a hidden temporary folder next to ``cfg.out`` and renamed into
    place at the end: an error or Ctrl-C leaves no half-written dataset (and no temporary folder).
    """
    check_config(cfg)
    out = Path(os.path.abspath(cfg.out))
    _check_out(out, cfg.force)
    jobs = plan(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for fmt in cfg.formats:
            (tmp / fmt).mkdir()
        spec = _WriteSpec(str(tmp), cfg.frames, cfg.size, cfg.seed, cfg.formats, cfg.jpeg_quality, cfg.codec,
                          cfg.video_ext(), cfg.pix_fmt, tuple(cfg.video_options().items()), cfg.fps)
        log.info("synth: %d clips of %d frames at %dx%d into %s (%d workers)",
                 len(jobs), cfg.frames, cfg.size, cfg.size, out, cfg.workers)
        _run(jobs, spec, cfg.workers)
        _write_metadata(tmp, cfg, jobs)
        _set_permissions(tmp)
        _check_out(out, cfg.force)  # again: something may have appeared there meanwhile
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("synth: wrote %s", out)
    return cfg.out


def parse_formats(text: str) -> tuple[str, ...]:
    """``"frames,videos"`` -> ("frames", "videos")."""
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    if not formats or not set(formats) <= set(FORMATS):
        raise EdgefuseError(f"synth: --formats {text!r}: use frames, videos or frames,videos")
    return tuple(dict.fromkeys(formats))


def parse_codec_options(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``["crf=18", "preset=slow"]`` -> (("crf", "18"), ("preset", "slow"))."""
    out = []
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise EdgefuseError(f"synth: --codec-option {v!r}: write it as key=value, e.g. crf=18")
        out.append((key.strip(), val.strip()))
    return tuple(out)


__all__ = [
    "CLASSES", "CLASS_DESCRIPTIONS", "PAIRS", "SPLITS", "ClipParams", "SynthConfig", "clip_label", "clip_name",
    "clip_rng", "generate", "parse_codec_options", "parse_formats", "read_list", "render_clip", "render_params",
    "sample_params",
]
