"""Training data: frames resized, sampled, cropped and normalised (training and evaluation forms)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from edgefuse.clips.preprocess import Preprocess
from edgefuse.clips.preprocess import normalise as clip_normalise
from edgefuse.clips.sampling import tsn_indices
from edgefuse.errors import EdgefuseError
from edgefuse.lab.train.config import Data, TrainConfig
from edgefuse.models import ModelConfig


def is_raw(frames: torch.Tensor) -> bool:
    """uint8 frames (N, F, H, W, 3) as decoded, rather than preprocessed clips (N, T, 3, H, W)."""
    return frames.dtype == torch.uint8 and frames.dim() == 5 and frames.shape[-1] == 3


def check_data(data: Data, what: str, cfg: TrainConfig) -> None:
    frames, labels = data
    if frames.dim() != 5 or labels.dim() != 1 or len(frames) != len(labels) or len(frames) == 0:
        raise EdgefuseError(f"train: {what} data must be frames (N, F, H, W, 3) uint8 or clips (N, T, 3, H, W) "
                            f"float with labels (N,), got {tuple(frames.shape)} and {tuple(labels.shape)}")
    if not is_raw(frames) and (frames.shape[1:] != (cfg.segments, 3, cfg.size, cfg.size) or
                               not frames.is_floating_point()):
        raise EdgefuseError(f"train: {what} clips {tuple(frames.shape)} {frames.dtype} are not float (N, "
                            f"{cfg.segments}, 3, {cfg.size}, {cfg.size}); pass uint8 frames (N, F, H, W, 3) to have "
                            "them sampled and cropped")
    if int(labels.min()) < 0 or int(labels.max()) >= cfg.num_classes:
        raise EdgefuseError(f"train: {what} labels range {int(labels.min())}..{int(labels.max())}, outside 0.."
                            f"{cfg.num_classes - 1}; set num_classes to the number of classes")


def scaled_short_side(frames: torch.Tensor, scale: int, chunk: int = 64) -> torch.Tensor:
    """uint8 frames (N, F, H, W, 3) with the short side resized to ``scale`` (bilinear, antialiased)."""
    _, f, h, w, _ = frames.shape  # (N, F, H, W, 3)
    if min(h, w) == scale:
        return frames
    size = (scale, int(scale * w / h)) if h <= w else (int(scale * h / w), scale)  # long side truncated, as GroupScale
    out = []
    for part in frames.split(chunk):
        x = part.flatten(0, 1).permute(0, 3, 1, 2).float()  # (n*F, 3, H, W)
        y = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        out.append(y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(len(part), f, *size, 3))
    return torch.cat(out)  # (N, F, H', W', 3)


def segment_indices(num_frames: int, segments: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Frame indices (segments,): a random frame in each segment with ``generator`` (TSN training),
    else the segment centres ``int(tick / 2 + tick * t)`` (evaluation; also training when there
    are fewer frames than segments)."""
    average = num_frames // segments
    if generator is not None and average > 0:
        return torch.arange(segments) * average + torch.randint(average, (segments,), generator=generator)
    return torch.from_numpy(tsn_indices(num_frames, segments))  # the evaluation formula of edgefuse.clips


def crop_offsets(height: int, width: int, size: int, generator: torch.Generator | None) -> tuple[int, int]:
    """(top, left) of a ``size`` square: random with ``generator``, else torchvision's centre."""
    if size > height or size > width:
        raise EdgefuseError(f"train: a {size}x{size} crop does not fit {height}x{width} frames; use a smaller size")
    if generator is None:
        return round((height - size) / 2.0), round((width - size) / 2.0)
    top = int(torch.randint(height - size + 1, (1,), generator=generator))
    left = int(torch.randint(width - size + 1, (1,), generator=generator))
    return top, left


def normalise(frames: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """uint8 RGB (..., H, W, 3) -> float32 (..., 3, H, W), exactly as edgefuse.clips preprocesses."""
    return clip_normalise(frames.numpy(), Preprocess.from_model_config(config))


def sample_clip(frames: torch.Tensor, segments: int, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """One video's uint8 frames (F, H, W, 3) -> its clip's uint8 frames (T, size, size, 3)."""
    f, h, w, _ = frames.shape
    idx = segment_indices(f, segments, generator)
    top, left = crop_offsets(h, w, size, generator)
    return frames[idx, top:top + size, left:left + size]  # (T, size, size, 3)


def prepare_clips(frames: torch.Tensor, segments: int, size: int, config: ModelConfig,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Model input (N, T, 3, size, size): uint8 frames (N, F, S, S', 3) already at the scale size
    are sampled, cropped (random with ``generator``, else centre) and normalised; float clips pass."""
    if not is_raw(frames):
        return frames
    clips = torch.stack([sample_clip(v, segments, size, generator) for v in frames])  # (N, T, size, size, 3)
    return normalise(clips, config)  # (N, T, 3, size, size)


