"""Spatial preprocessing, step by step as the official TSN/TSM evaluation pipeline does it.

The official test transform (TSM ``test_models.py`` / ``main.py``, ``ops/transforms.py``) is
``GroupScale(scale_size) -> GroupCenterCrop(input_size) -> Stack(roll) ->
ToTorchFormatTensor(div) -> GroupNormalize(mean, std)``. edgefuse does the same:

1. :func:`scaled_size` + PIL ``resize(..., BILINEAR)``: ``GroupScale`` (torchvision
   ``Resize(int)`` on a PIL image): the short side becomes ``scale_size`` and the long side
   ``int(scale_size * long / short)`` (truncated, not rounded); PIL's bilinear filter (with its
   antialiasing when shrinking) is exactly what torchvision calls for PIL images.
2. :func:`view_boxes`: ``GroupCenterCrop`` (torchvision ``center_crop``) puts the crop at
   ``int(round((size - crop) / 2.0))``, Python's round half to even (a 1-pixel surplus gives
   offset 0, a 3-pixel one offset 2). The multi-crop tests use steps of ``(size - crop) // 4``
   instead: 3 crops = ``GroupFullResSample`` (left, right, centre at ``(0 | 4 | 2 step_w,
   2 step_h)``), 5 and 10 crops = ``GroupOverSample`` with ``fill_fix_offset(False, ...)``
   (upper left, upper right, lower left, lower right, centre; 10 adds each one's mirror image
   right after it).
3. :func:`normalise`: ``Stack(roll=True)`` reverses RGB to BGR for BN-Inception-style models;
   ``ToTorchFormatTensor`` moves channels first and, when ``div``, divides by 255 in float32;
   ``GroupNormalize`` subtracts the mean and divides by the std channel by channel, in place,
   with Python floats. The same float32 operations in the same order give the same bits.

``mean`` and ``std`` are in the order of the channels the model sees (B, G, R for BGR models:
BN-Inception's ``104, 117, 128`` with std 1 and ``pixel_range`` 255).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from edgefuse.clips.sampling import Sampling
from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:
    import torch

__all__ = ["Preprocess", "center_offset", "normalise", "process_image", "scaled_size", "view_boxes"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
METADATA_KEYS = ("input_size", "scale_size", "mean", "std", "channel_order", "pixel_range")


def _triple(value: Any, name: str, source: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in (value if isinstance(value, Sequence) else (value,)))
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise EdgefuseError(f"{source}: {name} has {len(values)} values, expected 3 (one per colour channel)")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class Preprocess:
    """How a frame becomes model input: resize the short side to ``scale_size``, crop
    ``input_size``, then ``(pixel / 255 - mean) / std`` (``pixel_range`` 1.0) or
    ``(pixel - mean) / std`` on 0-255 values (``pixel_range`` 255.0), channels in
    ``channel_order``."""

    input_size: int = 224
    scale_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"
    pixel_range: float = 1.0

    def __post_init__(self) -> None:
        source = "preprocessing"
        object.__setattr__(self, "mean", _triple(self.mean, "mean", source))
        object.__setattr__(self, "std", _triple(self.std, "std", source))
        object.__setattr__(self, "pixel_range", float(self.pixel_range))
        if not 0 < self.input_size <= self.scale_size:
            raise EdgefuseError(f"{source}: input_size {self.input_size} must be positive and at most scale_size "
                                f"{self.scale_size} (the crop is taken from the resized frame)")
        if self.channel_order not in ("RGB", "BGR"):
            raise EdgefuseError(f"{source}: channel_order {self.channel_order!r} is unknown: use 'RGB' or 'BGR'")
        if self.pixel_range not in (1.0, 255.0):
            raise EdgefuseError(f"{source}: pixel_range {self.pixel_range} is unknown: use 1.0 (pixels / 255) or "
                                "255.0 (0-255 values, BN-Inception style)")
        if any(s == 0 for s in self.std):
            raise EdgefuseError(f"{source}: std {self.std} has a zero; every channel needs a non-zero std")

    @classmethod
    def from_model_config(cls, cfg: Any) -> Preprocess:
        """From an :class:`edgefuse.models.config.ModelConfig` (or anything with its fields)."""
        return cls(input_size=int(cfg.input_size), scale_size=int(cfg.scale_size), mean=tuple(cfg.mean),
                   std=tuple(cfg.std), channel_order=str(cfg.channel_order), pixel_range=float(cfg.pixel_range))

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], source: str = "ONNX metadata") -> Preprocess:
        """From the dict :func:`edgefuse.graph.metadata.read_metadata` returns; ``source`` names
        the file in errors."""
        missing = [k for k in METADATA_KEYS if k not in meta]
        if missing:
            raise EdgefuseError(f"{source}: metadata lacks {', '.join(missing)}; re-export the model with this "
                                "edgefuse version, or give the preprocessing explicitly")
        try:
            return cls(input_size=int(meta["input_size"]), scale_size=int(meta["scale_size"]),
                       mean=_triple(meta["mean"], "mean", source), std=_triple(meta["std"], "std", source),
                       channel_order=str(meta["channel_order"]), pixel_range=float(meta["pixel_range"]))
        except EdgefuseError as e:
            raise EdgefuseError(f"{source}: {e}") from None
        except (TypeError, ValueError) as e:
            raise EdgefuseError(f"{source}: unreadable preprocessing metadata ({e}); re-export the model") from None

    def crop_size(self, sampling: Sampling) -> int:
        """Side of the square views: ``scale_size`` for full-resolution tests, else ``input_size``."""
        return self.scale_size if sampling.uses_full_res else self.input_size


def scaled_size(width: int, height: int, scale_size: int) -> tuple[int, int]:
    """(width, height) after ``GroupScale(scale_size)``: short side = scale_size, long side truncated."""
    if width <= height:
        return scale_size, int(scale_size * height / width)
    return int(scale_size * width / height), scale_size


def center_offset(size: int, crop: int) -> int:
    """torchvision ``center_crop``'s offset: ``int(round((size - crop) / 2.0))`` (half to even)."""
    return round((size - crop) / 2.0)


def view_boxes(width: int, height: int, crop: int, crops: int) -> list[tuple[int, int, bool]]:
    """(left, top, mirrored) of each view on the resized frame, in the official order."""
    if crop > width or crop > height:
        raise ValueError(f"a {crop}x{crop} crop does not fit a {width}x{height} frame")
    if crops == 1:
        return [(center_offset(width, crop), center_offset(height, crop), False)]
    sw, sh = (width - crop) // 4, (height - crop) // 4
    if crops == 3:
        return [(0, 2 * sh, False), (4 * sw, 2 * sh, False), (2 * sw, 2 * sh, False)]
    corners = [(0, 0), (4 * sw, 0), (0, 4 * sh), (4 * sw, 4 * sh), (2 * sw, 2 * sh)]
    if crops == 5:
        return [(x, y, False) for x, y in corners]
    if crops == 10:
        return [(x, y, m) for x, y in corners for m in (False, True)]
    raise ValueError(f"crops={crops} is not supported (1, 3, 5 or 10)")


def process_image(image: Image.Image, pre: Preprocess, sampling: Sampling) -> np.ndarray:
    """One decoded frame -> its views (crops, S, S, 3) uint8 RGB, resized and cropped."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = scaled_size(image.width, image.height, pre.scale_size)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    pixels = np.asarray(image)  # (h, w, 3) uint8
    crop = pre.crop_size(sampling)
    views = []
    for left, top, mirrored in view_boxes(image.width, image.height, crop, sampling.crops):
        view = pixels[top:top + crop, left:left + crop]  # (S, S, 3)
        views.append(view[:, ::-1] if mirrored else view)  # (S, S, 3), mirrored left-right
    return np.stack(views)  # (crops, S, S, 3)


def normalise(frames: np.ndarray, pre: Preprocess) -> torch.Tensor:
    """uint8 RGB frames (..., H, W, 3) -> float32 model input (..., 3, H, W)."""
    import torch  # here only: reading and sampling clips needs no torch

    x = torch.from_numpy(np.ascontiguousarray(frames))  # (..., H, W, 3) uint8
    if pre.channel_order == "BGR":
        x = x.flip(-1)  # (..., H, W, 3) channels reversed, Stack(roll=True)
    x = x.movedim(-1, -3).contiguous().float()  # (..., 3, H, W)
    if pre.pixel_range == 1.0:
        x = x.div(255)
    for c in range(3):
        x[..., c, :, :].sub_(pre.mean[c]).div_(pre.std[c])  # (..., H, W) slice of channel c, in place
    return x
