"""Read the sampled frames of one clip: frame folders with PIL, videos with PyAV.

Runs in the worker processes (no torch here: workers return uint8 views, the parent
normalises them).

Videos: the container is first demuxed without decoding (:func:`probe_video`): the packets the
decoder will show (those not marked discard: a stream-copied trim's edit list hides the frames
before its start) give the frame count and every frame's presentation timestamp. The header's
frame count (``stream.frames``) is not used: it counts the hidden frames too. Frame ``i`` is the
``i``-th shown frame, the one with the ``i``-th smallest timestamp; decoding seeks to the keyframe
at or before the first needed frame and stops at the last needed one, naming frames by their
timestamps. When timestamps cannot be trusted (missing, repeated, a seek that lands after the
wanted frame, a frame whose timestamp the demuxer did not list) the video is decoded again from
the start counting frames, and a video without usable timestamps is counted by decoding. A list
file's frame count, when given, is the count the index sampling uses (as the official loaders do).

Orientation: a video's display matrix (phones record upright footage sideways and store the
rotation beside it; FFmpeg's ``-display_rotation``, the MP4 ``rotate`` tag) is applied to every
decoded frame before it is resized and cropped, as players and ``ffmpeg`` frame extraction do:
rotations by multiples of 90 degrees and mirroring, exactly (other angles snap to the nearest
right angle). The matrix comes from each frame's side data, else from the stream's ``rotate`` tag
(older FFmpeg builds).

Frame ``i`` (0-based, see :mod:`edgefuse.clips.sampling`) of a frame folder is the file
``template.format(i + frame_start)``; ``frame_start`` is 1 for the official layouts.

Every source follows one rule for short clips: a clip with fewer than ``min_frames`` frames (3 by
default, the official list loaders' rule) is skipped with that reason (:class:`TooShort`); a clip
with fewer frames than the sampling needs repeats frames as :mod:`~edgefuse.clips.sampling` says
(:attr:`ClipInfo.repeats`); :func:`edgefuse.clips.open` warns once about each, with a count.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from edgefuse.clips.preprocess import Preprocess, process_image
from edgefuse.clips.sampling import Sampling, multi_clip_indices, time_indices
from edgefuse.clips.sources import MIN_FRAMES, VIDEO_EXTS, Entry, frame_pattern, sniff

__all__ = ["ClipInfo", "ClipReadError", "Job", "Result", "TooShort", "VideoIndex", "assemble_views", "attach_output",
           "decode_video", "probe_video", "read_entry", "run_job"]


class ClipReadError(Exception):
    """One clip cannot be read; the message is the reason shown in the summary."""


class TooShort(ClipReadError):
    """A clip with fewer frames than ``min_frames``."""


# What a corrupt or missing file raises (PIL: OSError / SyntaxError / struct.error on broken
# images; PyAV: FFmpegError subclasses). Anything else is a bug and propagates.
READ_ERRORS = (ClipReadError, OSError, ValueError, EOFError, SyntaxError, struct.error, av.error.FFmpegError,
               Image.DecompressionBombError)

Convert = Callable[[Image.Image], np.ndarray]
Orientation = tuple[int, int, int, int]  # signs of the display matrix's a, b, c, d (see _upright)
IDENTITY: Orientation = (1, 0, 0, 1)


@dataclass(frozen=True)
class ClipInfo:
    """What reading one clip found: its frame count (the one sampled on), and for videos the
    duration in seconds, the average frame rate, whether the frame rate varies, the display
    rotation applied (degrees counter-clockwise) and mirroring, the upright size and the
    container. ``repeats``: the sampled clip shows some frame twice (fewer frames than needed)."""

    frames: int
    kind: str = "frames"  # frames | video
    duration: float | None = None
    fps: float | None = None
    vfr: bool = False
    rotation: int = 0
    mirrored: bool = False
    width: int | None = None
    height: int | None = None
    container: str | None = None
    repeats: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClipInfo:
        return cls(**d)


@dataclass(frozen=True)
class Job:
    index: int  # position in the clip set: seeds training offsets, so results do not depend on workers
    entry: Entry
    pre: Preprocess
    sampling: Sampling
    min_frames: int = MIN_FRAMES


@dataclass(frozen=True)
class Result:
    index: int
    pixels: np.ndarray | None  # (V, T, S, S, 3) uint8 RGB, V = crops * clips crop-major
    reason: str | None
    num_frames: int | None = None
    shared: bool = False  # the pixels were written to the shared output at ``index`` instead
    info: ClipInfo | None = None
    too_short: bool = False


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
        pixels, info = read_entry(job.entry, job.pre, job.sampling, job.index, job.min_frames)
    except READ_ERRORS as e:
        reason = str(e) if isinstance(e, ClipReadError) else f"{type(e).__name__}: {e}"
        return Result(job.index, None, reason, too_short=isinstance(e, TooShort))
    if _OUTPUT is not None:
        _OUTPUT[job.index] = pixels  # (V, T, S, S, 3) into its slot
        return Result(job.index, None, None, info.frames, shared=True, info=info)
    return Result(job.index, pixels, None, info.frames, info=info)


def resolve(entry: Entry) -> Entry:
    """Decide "auto" entries: a folder holds frames, a file is a video, else ``<path><ext>`` is the video."""
    path = Path(entry.path)
    if entry.kind == "frames" and not path.is_dir():
        raise ClipReadError(f"{path}: frame folder missing")
    if entry.kind == "video" and not path.is_file():
        raise ClipReadError(f"{path}: video missing")
    if entry.kind != "auto":
        return entry
    if path.is_dir():
        return dataclasses.replace(entry, kind="frames")
    if path.is_file():
        return dataclasses.replace(entry, kind="video")
    for ext in VIDEO_EXTS:
        video = path.with_name(path.name + ext)
        if video.is_file():
            return dataclasses.replace(entry, kind="video", path=str(video))
    raise ClipReadError(f"{path}: missing (neither a frame folder nor a video {path.name}.mp4, .webm, .mov, ...)")


def _check_length(n: int, min_frames: int, path: str, counted: str) -> None:
    if n < min_frames:
        raise TooShort(f"{path}: {n} frame(s) {counted}; clips need at least {min_frames} (min_frames, --min-frames)")


def _repeats(indices: np.ndarray) -> bool:
    return any(len(set(row.tolist())) < len(row) for row in indices)


def read_entry(entry: Entry, pre: Preprocess, sampling: Sampling, index: int = 0,
               min_frames: int = MIN_FRAMES) -> tuple[np.ndarray, ClipInfo]:
    """Views (V, T, S, S, 3) uint8 of one entry and what was found out about it."""
    if entry.num_frames is not None:  # a list's count: as the official loaders, before touching the file
        _check_length(entry.num_frames, min_frames, entry.path, "listed")
    entry = resolve(entry)
    rng = np.random.default_rng([sampling.seed, index]) if sampling.train else None
    convert: Convert = functools.partial(process_image, pre=pre, sampling=sampling)
    if entry.kind == "frames":
        n = entry.num_frames or count_frames(entry.path, entry.template, entry.frame_start)
        _check_length(n, min_frames, entry.path, "listed" if entry.num_frames else "in the folder")
        indices = multi_clip_indices(n, sampling, rng)  # (K, T)
        views = {int(i): load_frame(entry.path, entry.template, int(i) + entry.frame_start, convert)
                 for i in np.unique(indices)}
        return assemble_views(views, indices), ClipInfo(frames=n, repeats=_repeats(indices))
    video = probe_video(entry.path)
    by_list = bool(entry.num_frames) and sampling.clock == "index"
    n = entry.num_frames if by_list and entry.num_frames else video.count or _count_decoded(entry.path)
    _check_length(n, min_frames, entry.path, "listed" if by_list else "in the video")
    times = video.times()
    if sampling.clock == "time" and times is not None and not by_list:
        indices = time_indices(times[0], times[1], sampling, rng)  # (K, T)
    else:
        indices = multi_clip_indices(n, sampling, rng)  # (K, T)
    frames, _, orientation = _decode(entry.path, np.unique(indices).tolist(), convert, n, video)
    rotation, mirrored = describe_orientation(orientation)
    size = (video.width, video.height) if rotation % 180 == 0 else (video.height, video.width)
    info = ClipInfo(frames=n, kind="video", duration=video.duration, fps=video.fps, vfr=video.vfr, rotation=rotation,
                    mirrored=mirrored, width=size[0], height=size[1], container=video.container,
                    repeats=_repeats(indices))
    return assemble_views(frames, indices), info


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
        seen = f"; it holds e.g. {example!r}: set frame_template= (--frame-template)" if example else \
            " (the folder is empty)"
        raise ClipReadError(f"{folder}: no frames named like {template.format(frame_start)!r}{seen}")
    return n


def load_frame(folder: str, template: str, number: int, convert: Convert) -> np.ndarray:
    path = os.path.join(folder, template.format(number))
    if not os.path.isfile(path):
        count_frames(folder, template, number)  # names the template when no frame matches it
        raise ClipReadError(f"{path}: frame missing")
    try:
        with Image.open(path) as image:
            image.load()
            return convert(image)
    except (OSError, SyntaxError, struct.error, ValueError, Image.DecompressionBombError) as e:
        raise ClipReadError(f"{path}: unreadable frame ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------------
# Videos

@dataclass(frozen=True)
class VideoIndex:
    """A video's shown frames as its container lists them (demuxed, not decoded)."""

    count: int | None  # None: timestamps unusable, count by decoding
    pts: tuple[int, ...] | None  # presentation timestamps of the shown frames, ascending
    end: int | None  # when the last frame stops being shown (its timestamp + its duration)
    time_base: Fraction | None
    width: int
    height: int
    container: str
    average_rate: Fraction | None

    @property
    def duration(self) -> float | None:
        if self.pts is None or self.end is None or self.time_base is None:
            return None
        return float((self.end - self.pts[0]) * self.time_base)

    @property
    def fps(self) -> float | None:
        duration = self.duration
        if duration and self.count:
            return self.count / duration
        return float(self.average_rate) if self.average_rate else None

    @property
    def vfr(self) -> bool:
        """More than a tenth of the frame intervals differ from the typical one by more than a
        timestamp tick and 10% (one gap, e.g. at a trim's end, is not a variable rate)."""
        if self.pts is None or len(self.pts) < 3:
            return False
        steps = np.diff(np.asarray(self.pts, dtype=np.int64))
        typical = float(np.median(steps))
        off = np.abs(steps.astype(np.float64) - typical) > max(1.0, 0.1 * typical)
        return bool(off.sum() > 0.1 * len(steps))

    def times(self) -> tuple[list[Fraction], Fraction] | None:
        """(each frame's time from the first, in seconds; when the last one ends), or None."""
        if self.pts is None or self.end is None or self.time_base is None:
            return None
        first = self.pts[0]
        return [(p - first) * self.time_base for p in self.pts], (self.end - first) * self.time_base


def _video_stream(container: Any, path: str) -> Any:
    if not container.streams.video:
        kind = sniff(path)
        what = f" (the file holds {'an image' if kind == 'image' else 'no video'})" if kind in ("image", None) else ""
        raise ClipReadError(f"{path}: no video stream{what}")
    return container.streams.video[0]


def probe_video(path: str) -> VideoIndex:
    """Demux ``path`` (no decoding): the shown frames' count and timestamps."""
    if not os.path.isfile(path):
        raise ClipReadError(f"{path}: video missing")
    with av.open(path) as container:
        stream = _video_stream(container, path)
        time_base = Fraction(stream.time_base) if stream.time_base else None
        rate = stream.average_rate or stream.guessed_rate
        pts: list[int] = []
        durations: dict[int, int] = {}
        usable = time_base is not None
        for packet in container.demux(stream):
            if packet.size == 0 or getattr(packet, "is_discard", False):
                continue  # the flush packet; frames an edit list hides
            if packet.pts is None:
                usable = False
                continue
            pts.append(int(packet.pts))
            durations[int(packet.pts)] = int(packet.duration or 0)
        info = {"width": int(stream.width or 0), "height": int(stream.height or 0),
                "container": container.format.name, "average_rate": Fraction(rate) if rate else None}
    pts.sort()
    if not usable or not pts or len(set(pts)) != len(pts):
        return VideoIndex(None, None, None, time_base, **info)
    last = durations.get(pts[-1], 0)
    if last <= 0 and len(pts) > 1:
        last = int(np.median(np.diff(np.asarray(pts, dtype=np.int64))))
    if last <= 0 and info["average_rate"] and time_base:
        last = max(1, round(1 / (info["average_rate"] * time_base)))
    return VideoIndex(len(pts), tuple(pts), pts[-1] + max(last, 1), time_base, **info)


def video_frame_count(path: str) -> int:
    """The number of frames a video shows (demuxed; decoded when its timestamps are unusable)."""
    return probe_video(path).count or _count_decoded(path)


def _count_decoded(path: str) -> int:
    with av.open(path) as container:
        stream = _video_stream(container, path)
        n = sum(1 for _ in container.decode(stream))
    if n == 0:
        raise ClipReadError(f"{path}: no decodable frames")
    return n


# ---------------------------------------------------------------------------------------------
# Orientation

def _sign(v: int) -> int:
    return 1 if v > 0 else -1


def _orientation(frame: Any, stream: Any) -> Orientation:
    """The display matrix's right-angle part: signs of (a, b, c, d), FFmpeg's layout."""
    try:
        side = frame.side_data.get("DISPLAYMATRIX")
    except (AttributeError, KeyError, TypeError, ValueError):
        side = None
    if side is not None:
        m = np.frombuffer(bytes(side), dtype=np.int32)
        if m.size >= 5:
            a, b, c, d = (int(m[0]), int(m[1]), int(m[3]), int(m[4]))
            if abs(a) >= abs(b):
                return (_sign(a), 0, 0, _sign(d))
            return (0, _sign(b), _sign(c), 0)
    tag = (stream.metadata or {}).get("rotate")  # FFmpeg <= 4: degrees clockwise
    if tag is not None:
        try:
            ccw = (-round(float(tag) / 90) * 90) % 360
        except ValueError:
            return IDENTITY
        return {0: IDENTITY, 90: (0, -1, 1, 0), 180: (-1, 0, 0, -1), 270: (0, 1, -1, 0)}[ccw]
    return IDENTITY


def describe_orientation(o: Orientation) -> tuple[int, bool]:
    """(rotation in degrees counter-clockwise, mirrored) of an orientation."""
    a, b, c, d = o
    mirrored = a * d - b * c < 0
    if mirrored:
        a, c = -a, -c  # undo the horizontal mirror, leaving the rotation
    rotation = round(math.degrees(math.atan2(-b, a))) % 360
    return rotation, mirrored


def _upright(pixels: np.ndarray, o: Orientation) -> np.ndarray:
    """Apply the display matrix to (H, W, 3) pixels: the shown pixel at (x', y') = (a x + c y, b x + d y)."""
    a, b, c, d = o
    if a != 0:
        return pixels[::d, ::a]  # (H, W, 3) mirrored as the signs say
    return pixels.transpose(1, 0, 2)[::b, ::c]  # (W, H, 3)


def _image(frame: Any, orientation: Orientation) -> Image.Image:
    image = frame.to_image()
    if orientation == IDENTITY:
        return image
    return Image.fromarray(np.ascontiguousarray(_upright(np.asarray(image), orientation)))


# ---------------------------------------------------------------------------------------------
# Decoding

def _decode_seeking(path: str, needed: Sequence[int], convert: Convert, video: VideoIndex
                    ) -> tuple[dict[int, np.ndarray], int, Orientation] | None:
    """Seek to the keyframe before needed[0], decode through needed[-1], naming frames by timestamp;
    None when the timestamps are unsure."""
    if video.pts is None or needed[-1] >= len(video.pts):
        return None
    ordinal = {p: i for i, p in enumerate(video.pts)}
    first, last, want = video.pts[needed[0]], video.pts[needed[-1]], set(needed)
    with av.open(path) as container:
        stream = _video_stream(container, path)
        if needed[0] > 0:
            container.seek(first, stream=stream, backward=True, any_frame=False)
        out: dict[int, np.ndarray] = {}
        decoded = 0
        orientation = IDENTITY
        for frame in container.decode(stream):
            decoded += 1
            index = ordinal.get(frame.pts) if frame.pts is not None else None
            if index is None or (decoded == 1 and frame.pts > first):
                return None
            if decoded == 1:
                orientation = _orientation(frame, stream)
            if index in want and index not in out:
                out[index] = convert(_image(frame, orientation))
            if frame.pts >= last:
                break
    return (out, decoded, orientation) if len(out) == len(want) else None


def _decode_sequential(path: str, needed: Sequence[int], convert: Convert
                       ) -> tuple[dict[int, np.ndarray], int, Orientation]:
    with av.open(path) as container:
        stream = _video_stream(container, path)
        want, last = set(needed), needed[-1]
        out: dict[int, np.ndarray] = {}
        decoded = 0
        orientation = IDENTITY
        for index, frame in enumerate(container.decode(stream)):
            decoded += 1
            if index == 0:
                orientation = _orientation(frame, stream)
            if index in want:
                out[index] = convert(_image(frame, orientation))
            if index >= last:
                break
    return out, decoded, orientation


def _decode(path: str, needed: Sequence[int], convert: Convert, num_frames: int | None,
            video: VideoIndex | None) -> tuple[dict[int, np.ndarray], int, Orientation]:
    if not os.path.isfile(path):
        raise ClipReadError(f"{path}: video missing")
    video = video or probe_video(path)
    seeking = _decode_seeking(path, needed, convert, video)
    if seeking is not None:
        return seeking
    out, decoded, orientation = _decode_sequential(path, needed, convert)
    lost = [i for i in needed if i not in out]
    if lost:
        count = f" (its frame count says {num_frames})" if num_frames else ""
        raise ClipReadError(f"{path}: video ended after {decoded} frames but frame {lost[0]} is needed{count}; "
                            "truncated or corrupt")
    return out, decoded, orientation


def decode_video(path: str, needed: Sequence[int], convert: Convert, num_frames: int | None = None,
                 video: VideoIndex | None = None) -> tuple[dict[int, np.ndarray], int]:
    """{index: convert(frame)} for the sorted 0-based ``needed`` indices (frames shown upright), and
    how many frames were decoded to get them. A frame that does not exist (truncated or shorter
    than its frame count says) raises :class:`ClipReadError`."""
    out, decoded, _ = _decode(path, needed, convert, num_frames, video)
    return out, decoded
