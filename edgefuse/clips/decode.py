"""Read the sampled frames of one clip: frame folders with PIL, videos with PyAV.

Runs in the worker processes (no torch here: workers return uint8 views, the parent
normalises them). Videos are decoded partially: PyAV seeks to the keyframe at or before the
first needed frame and decoding stops at the last needed one. A frame's index is
``round((pts - start_time) * time_base * average_rate)``; when that cannot be trusted (no
timestamps, a seek that lands after the wanted frame, variable frame rate leaving a needed
index unseen) the video is decoded again from the start counting frames, the definition the
frame count uses too. The frame count is the list file's, else the stream header's
(``stream.frames``), else counted by decoding.

Frame ``i`` (0-based, see :mod:`edgefuse.clips.sampling`) of a frame folder is the file
``template.format(i + frame_start)``; ``frame_start`` is 1 for the official layouts.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from edgefuse.clips.preprocess import Preprocess, process_image
from edgefuse.clips.sampling import Sampling, multi_clip_indices
from edgefuse.clips.sources import VIDEO_EXTS, Entry, frame_pattern

__all__ = ["ClipReadError", "Job", "Result", "assemble_views", "attach_output", "decode_video", "read_entry", "run_job"]


class ClipReadError(Exception):
    """One clip cannot be read; the message is the reason shown in the summary."""


# What a corrupt or missing file raises (PIL: OSError / SyntaxError / struct.error on broken
# images; PyAV: FFmpegError subclasses). Anything else is a bug and propagates.
READ_ERRORS = (ClipReadError, OSError, ValueError, EOFError, SyntaxError, struct.error, av.error.FFmpegError,
               Image.DecompressionBombError)

Convert = Callable[[Image.Image], np.ndarray]


@dataclass(frozen=True)
class Job:
    index: int  # position in the clip set: seeds training offsets, so results do not depend on workers
    entry: Entry
    pre: Preprocess
    sampling: Sampling


@dataclass(frozen=True)
class Result:
    index: int
    pixels: np.ndarray | None  # (V, T, S, S, 3) uint8 RGB, V = crops * clips crop-major
    reason: str | None
    num_frames: int | None = None
    shared: bool = False  # the pixels were written to the shared output at ``index`` instead


# A forked worker's view of the parent's shared output buffer (N, V, T, S, S, 3), set by
# attach_output: results are written there instead of being pickled back through a pipe.
_OUTPUT: np.ndarray | None = None


def attach_output(output: np.ndarray | None) -> None:
    """Pool initializer: write results into ``output`` (anonymous shared memory, inherited by fork)."""
    global _OUTPUT
    _OUTPUT = output


def run_job(job: Job) -> Result:
    """Worker entry point: read one clip, or say why it cannot be read."""
    if job.entry.problem:
        return Result(job.index, None, job.entry.problem)
    try:
        pixels, n = read_entry(job.entry, job.pre, job.sampling, job.index)
    except READ_ERRORS as e:
        reason = str(e) if isinstance(e, ClipReadError) else f"{type(e).__name__}: {e}"
        return Result(job.index, None, reason)
    if _OUTPUT is not None:
        _OUTPUT[job.index] = pixels  # (V, T, S, S, 3) into its slot
        return Result(job.index, None, None, n, shared=True)
    return Result(job.index, pixels, None, n)


def resolve(entry: Entry) -> Entry:
    """Decide "auto" entries: a folder holds frames, else ``<path><ext>`` is the video."""
    path = Path(entry.path)
    if entry.kind == "frames" and not path.is_dir():
        raise ClipReadError(f"{path}: frame folder missing")
    if entry.kind == "video" and not path.is_file():
        raise ClipReadError(f"{path}: video missing")
    if entry.kind != "auto":
        return entry
    if path.is_dir():
        return dataclasses.replace(entry, kind="frames")
    for ext in VIDEO_EXTS:
        video = path.with_name(path.name + ext)
        if video.is_file():
            return dataclasses.replace(entry, kind="video", path=str(video))
    raise ClipReadError(f"{path}: missing (neither a frame folder nor a video {path.name}{'/'.join(VIDEO_EXTS)})")


def read_entry(entry: Entry, pre: Preprocess, sampling: Sampling, index: int = 0) -> tuple[np.ndarray, int]:
    """Views (V, T, S, S, 3) uint8 of one entry and its frame count."""
    entry = resolve(entry)
    rng = np.random.default_rng([sampling.seed, index]) if sampling.train else None
    convert: Convert = functools.partial(process_image, pre=pre, sampling=sampling)
    if entry.kind == "frames":
        n = entry.num_frames or count_frames(entry.path, entry.template, entry.frame_start)
        indices = multi_clip_indices(n, sampling, rng)  # (K, T)
        views = {int(i): load_frame(entry.path, entry.template, int(i) + entry.frame_start, convert)
                 for i in np.unique(indices)}
    else:
        n = entry.num_frames or video_frame_count(entry.path)
        indices = multi_clip_indices(n, sampling, rng)  # (K, T)
        views, _ = decode_video(entry.path, np.unique(indices).tolist(), convert, n)
    return assemble_views(views, indices), n


def assemble_views(views: dict[int, np.ndarray], indices: np.ndarray) -> np.ndarray:
    """Per-frame views {index: (C, S, S, 3)} + indices (K, T) -> (C * K, T, S, S, 3), crop-major
    as the official test stacks them (all clips of crop 0, then crop 1, ...)."""
    needed = sorted(views)
    stacked = np.stack([views[i] for i in needed])  # (U, C, S, S, 3)
    pos = np.searchsorted(needed, indices)  # (K, T) rows of stacked
    out = stacked[pos].transpose(2, 0, 1, 3, 4, 5)  # (K, T, C, S, S, 3) -> (C, K, T, S, S, 3)
    return np.ascontiguousarray(out.reshape(-1, *out.shape[2:]))  # (C * K, T, S, S, 3)


# ---------------------------------------------------------------------------------------------
# Frame folders

def count_frames(folder: str, template: str, frame_start: int) -> int:
    """Frames in ``folder`` named by ``template`` (what TSM's tools write as num_frames)."""
    pattern = frame_pattern(template)
    names = os.listdir(folder)
    n = sum(1 for name in names if pattern.fullmatch(name))
    if n == 0:
        example = next((name for name in sorted(names) if not name.startswith(".")), None)
        seen = f"; it holds e.g. {example!r}: set frame_template=" if example else " (the folder is empty)"
        raise ClipReadError(f"{folder}: no frames named like {template.format(frame_start)!r}{seen}")
    return n


def load_frame(folder: str, template: str, number: int, convert: Convert) -> np.ndarray:
    path = os.path.join(folder, template.format(number))
    if not os.path.isfile(path):
        raise ClipReadError(f"{path}: frame missing")
    try:
        with Image.open(path) as image:
            image.load()
            return convert(image)
    except (OSError, SyntaxError, struct.error, ValueError, Image.DecompressionBombError) as e:
        raise ClipReadError(f"{path}: unreadable frame ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------------
# Videos

def _video_stream(container: av.container.InputContainer, path: str) -> av.VideoStream:
    if not container.streams.video:
        raise ClipReadError(f"{path}: no video stream")
    return container.streams.video[0]


def video_frame_count(path: str) -> int:
    """The stream header's frame count, else the number of frames decoded."""
    with av.open(path) as container:
        stream = _video_stream(container, path)
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        n = sum(1 for _ in container.decode(stream))
    if n == 0:
        raise ClipReadError(f"{path}: no decodable frames")
    return n


def _decode_seeking(path: str, needed: Sequence[int], convert: Convert) -> tuple[dict[int, np.ndarray], int] | None:
    """Seek to the keyframe before needed[0], decode through needed[-1]; None if indices are unsure."""
    with av.open(path) as container:
        stream = _video_stream(container, path)
        rate, time_base = stream.average_rate or stream.guessed_rate, stream.time_base
        if not rate or not time_base:
            return None
        rate, time_base = Fraction(rate), Fraction(time_base)
        start = stream.start_time or 0
        first, last, want = needed[0], needed[-1], set(needed)
        if first > 0:
            container.seek(start + int(first / rate / time_base), stream=stream, backward=True, any_frame=False)
        out: dict[int, np.ndarray] = {}
        decoded = 0
        for frame in container.decode(stream):
            decoded += 1
            if frame.pts is None:
                return None
            index = round((frame.pts - start) * time_base * rate)
            if decoded == 1 and index > first:
                return None
            if index in want and index not in out:
                out[index] = convert(frame.to_image())
            if index >= last:
                break
    return (out, decoded) if len(out) == len(want) else None


def _decode_sequential(path: str, needed: Sequence[int], convert: Convert) -> tuple[dict[int, np.ndarray], int]:
    with av.open(path) as container:
        stream = _video_stream(container, path)
        want, last = set(needed), needed[-1]
        out: dict[int, np.ndarray] = {}
        decoded = 0
        for index, frame in enumerate(container.decode(stream)):
            decoded += 1
            if index in want:
                out[index] = convert(frame.to_image())
            if index >= last:
                break
    return out, decoded


def decode_video(path: str, needed: Sequence[int], convert: Convert,
                 num_frames: int | None = None) -> tuple[dict[int, np.ndarray], int]:
    """{index: convert(frame)} for the sorted 0-based ``needed`` indices, and how many frames were
    decoded to get them. A frame that does not exist (truncated or shorter than its frame
    count says) raises :class:`ClipReadError`."""
    if not os.path.isfile(path):
        raise ClipReadError(f"{path}: video missing")
    seeking = _decode_seeking(path, needed, convert)
    if seeking is not None:
        return seeking
    out, decoded = _decode_sequential(path, needed, convert)
    lost = [i for i in needed if i not in out]
    if lost:
        count = f" (its frame count says {num_frames})" if num_frames else ""
        raise ClipReadError(f"{path}: video ended after {decoded} frames but frame {lost[0]} is needed{count}; "
                            "truncated or corrupt")
    return out, decoded
