"""Drawing a clip from its parameters: shape masks, placement with supersampling, background, frames."""
from __future__ import annotations

import math
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edgefuse.errors import EdgefuseError
from edgefuse.lab.synth.config import CLASSES, KINDS, SUPERSAMPLE
from edgefuse.lab.synth.params import ClipParams, sample_params

# ---------------------------------------------------------------- drawing


@cache
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


@cache
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
    ss = SUPERSAMPLE
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
        cov = place(_mask_for(q.shape, q.digit, q.diameter * SUPERSAMPLE), n, q.cx, q.cy, q.diameter, q.angle)
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
        mask = _mask_for(p.shape, p.digit, p.diameter[t] * SUPERSAMPLE)
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


