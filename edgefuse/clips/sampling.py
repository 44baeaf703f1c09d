"""Temporal sampling: which frames of a video make a clip, as the official TSN/TSM loaders pick them.

All indices here are **0-based** positions in the video (frame ``i`` is the ``i``-th decoded
frame, or the file ``template.format(i + 1)`` of a frame folder numbered from 1). The official
loaders (``ops/dataset.py`` of TSM, copied by AdaFuse and GSF) compute 0-based offsets and then
return ``offsets + 1`` because their frame files are numbered from 1 (``img_00001.jpg``,
``00001.jpg``); the ``+ 1`` is only that file numbering, so edgefuse keeps the offsets as they
are and adds the folder's first number (``frame_start``, default 1) when it names a file.

Rules, with ``n`` frames, ``T`` segments and ``tick = n / T`` (float):

- TSN evaluation (:func:`tsn_indices`, ``train=False``): ``int(tick / 2 + tick * t)``, the centre
  of each segment: TSM ``TSNDataSet._get_test_indices`` (used by ``test_models.py``), and
  ``_get_val_indices`` (used by ``main.py``) whenever ``n > T``.
- TSN training (``train=True``): ``t * (n // T) + randint(n // T)``, a random frame inside each
  segment: ``TSNDataSet._sample_indices``. (Its ``elif n > T`` branch, sorted random frames, is
  unreachable: ``n // T == 0`` means ``n < T``.)
- Videos with ``n <= T`` frames: the official repositories disagree, so ``short`` chooses:
  ``"spread"`` (default) keeps the centre formula, which then repeats frames evenly
  (TSM ``_get_test_indices``, GSF ``_get_val_indices``, GSF training); ``"first"`` takes frame 0
  for every segment (TSM ``_get_val_indices`` and TSM training); ``"pad"`` takes ``0..n-1`` then
  repeats the last frame (AdaFuse ``_get_val_indices`` / ``_sample_indices``). The three agree
  whenever ``n > T`` (and ``"spread"`` equals ``"pad"`` at ``n == T``).
- Several clips per video (:func:`multi_clip_indices`, TSN mode): clip ``k`` of ``K`` uses the
  phase ``(0.5 + k / K) mod 1`` inside each segment, ``int(tick * phase + tick * t)``. For
  ``K = 2`` this is exactly TSM's ``twice_sample`` (centres, then segment starts, in that
  order; GSF's ``num_clips=2`` lists the same two clips the other way round). ``K = 1`` is the
  evaluation rule above.
- Dense (I3D-style, TSM ``dense_sample``): a window of 64 frames, ``stride = 64 // T`` (8 at
  8 segments), ``(start + t * stride) % n`` (indices wrap round in videos shorter than the
  window). ``sample_pos = max(1, n - 64 + 1)``; evaluation with ``K`` clips takes the starts
  ``np.linspace(0, sample_pos - 1, K, dtype=int)`` (``_get_test_indices`` with its 10 clips;
  one clip starts at 0); training draws ``start = randint(0, sample_pos - 1)`` (exclusive upper
  bound, as the official; 0 when ``sample_pos == 1``). An explicit ``stride`` makes the window
  ``stride * T``. (The official ``_get_val_indices`` draws a random start even in validation;
  edgefuse's evaluation is deterministic.)

Training randomness comes from a ``numpy.random.Generator`` (``rng``), so it is seeded and
reproducible; it cannot reproduce the official global ``np.random`` stream, only its law.

Time sampling (``clock="time"``, :func:`time_indices`): the same rules placed on the video's
presentation timeline instead of its frame numbers, for variable-frame-rate video (phones drop to
a lower rate in the dark, screen recordings only store changed frames). Segment ``t`` of ``T``
covers ``[t / T, (t + 1) / T)`` of the duration (first frame's timestamp to the end of the last
frame); evaluation takes the frame on screen at ``(t + phase) / T`` of it, training a uniformly
random instant inside the segment; dense clips put index ``i`` of the frame-count rule at the
centre of its nominal slot, ``(i + 1/2) / n``. The frame on screen at instant ``s`` is the last one
whose timestamp is ``<= s``. On constant-rate video the evaluation and dense rules pick exactly the
frames the index rules pick (exact rational arithmetic on the timestamps); frame folders and
videos without usable timestamps are sampled by index.
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from edgefuse.errors import EdgefuseError

__all__ = ["Sampling", "dense_indices", "dense_starts", "multi_clip_indices", "time_indices", "tsn_indices"]

MODES = ("tsn", "dense")
CLOCKS = ("index", "time")
SHORT_RULES = ("spread", "first", "pad")
CROPS = (1, 3, 5, 10)
DENSE_WINDOW = 64  # frames covered by one dense clip in the official loaders


@dataclass(frozen=True)
class Sampling:
    """How clips are cut from a video, in time (segments, clips) and space (crops).

    ``train`` only changes the temporal offsets (random inside each segment, as training does);
    the spatial views are always the official test crops. ``crops``: 1 = centre crop
    (``GroupScale`` + ``GroupCenterCrop``), 3 = left/right/centre (``GroupFullResSample``,
    no flip), 5 = corners + centre (``GroupOverSample`` without flip), 10 = corners + centre and
    their mirror images (``GroupOverSample``). ``full_res`` crops ``scale_size`` squares instead
    of ``input_size`` ones (TSM ``test_models.py --full_res``); ``None`` means True for 3 crops,
    the protocol TSM's README pairs with ``--test_crops=3``, and False otherwise (GSF's 3-crop
    test crops ``input_size``: pass ``full_res=False``). ``stride``: dense sampling only, ``None``
    = the official ``64 // num_segments``. ``short``: the rule for videos with at most
    ``num_segments`` frames (see the module docstring). ``seed`` seeds training offsets.
    ``clock``: ``"index"`` places segments on frame numbers (the official loaders), ``"time"`` on
    presentation timestamps (variable-frame-rate video; see the module docstring).
    """

    num_segments: int = 8
    mode: str = "tsn"
    train: bool = False
    stride: int | None = None
    clips: int = 1
    crops: int = 1
    full_res: bool | None = None
    short: str = "spread"
    seed: int = 0
    clock: str = "index"

    def __post_init__(self) -> None:
        if self.num_segments < 1:
            raise EdgefuseError(f"num_segments must be >= 1, got {self.num_segments}")
        if self.mode not in MODES:
            raise EdgefuseError(f"sampling mode {self.mode!r} is unknown: use 'tsn' (segments) or 'dense' (I3D-style)")
        if self.stride is not None and self.stride < 1:
            raise EdgefuseError(f"dense stride must be >= 1, got {self.stride}")
        if self.clips < 1:
            raise EdgefuseError(f"clips per video must be >= 1, got {self.clips}")
        if self.crops not in CROPS:
            raise EdgefuseError(f"crops={self.crops} is not an official test protocol: use 1, 3, 5 or 10")
        if self.short not in SHORT_RULES:
            raise EdgefuseError(f"short={self.short!r} is unknown: use 'spread', 'first' or 'pad'")
        if self.clock not in CLOCKS:
            raise EdgefuseError(f"sampling clock {self.clock!r} is unknown: use 'index' (frame numbers) or 'time' "
                                "(presentation timestamps)")

    @property
    def views(self) -> int:
        """Views per video: ``crops * clips`` (crop-major, as the official test stacks them)."""
        return self.crops * self.clips

    @property
    def uses_full_res(self) -> bool:
        return self.crops == 3 if self.full_res is None else self.full_res


def _check(num_frames: int, num_segments: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame to sample from, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")


def _phase_indices(num_frames: int, num_segments: int, phase: float) -> np.ndarray:
    tick = num_frames / float(num_segments)
    # tick * 0.5 == tick / 2.0 exactly, so phase 0.5 is the official centre formula bit for bit
    return np.array([int(tick * phase + tick * t) for t in range(num_segments)], dtype=np.int64)


def _short_indices(num_frames: int, num_segments: int, short: str, phase: float) -> np.ndarray:
    if short == "first":
        return np.zeros(num_segments, dtype=np.int64)
    if short == "pad":
        return np.minimum(np.arange(num_segments), num_frames - 1).astype(np.int64)
    return _phase_indices(num_frames, num_segments, phase)


def tsn_indices(num_frames: int, num_segments: int, train: bool = False, rng: np.random.Generator | None = None,
                *, phase: float = 0.5, short: str = "spread") -> np.ndarray:
    """0-based frame indices (num_segments,) of one TSN clip: segment centres, or a random frame
    in each segment when ``train``. ``phase`` (evaluation only) is the position inside the
    segment, 0.5 = centre; ``short`` the rule for ``num_frames <= num_segments``."""
    _check(num_frames, num_segments)
    if train:
        average = num_frames // num_segments
        if average > 0:
            rng = np.random.default_rng() if rng is None else rng
            return np.arange(num_segments, dtype=np.int64) * average + rng.integers(average, size=num_segments)
        return _short_indices(num_frames, num_segments, short, 0.5)
    if num_frames <= num_segments and short != "spread":
        return _short_indices(num_frames, num_segments, short, phase)
    return _phase_indices(num_frames, num_segments, phase)


def _dense_geometry(num_frames: int, num_segments: int, stride: int | None) -> tuple[int, int]:
    step = DENSE_WINDOW // num_segments if stride is None else stride
    window = DENSE_WINDOW if stride is None else stride * num_segments
    if step < 1:
        raise ValueError(f"dense sampling takes at most {DENSE_WINDOW} segments, got {num_segments}")
    return step, max(1, 1 + num_frames - window)


def dense_starts(num_frames: int, num_segments: int, clips: int = 1, train: bool = False,
                 rng: np.random.Generator | None = None, stride: int | None = None) -> np.ndarray:
    """First frames (clips,) of dense clips: ``linspace`` over the valid starts, or random in training."""
    _check(num_frames, num_segments)
    _, sample_pos = _dense_geometry(num_frames, num_segments, stride)
    if train:
        if sample_pos == 1:
            return np.zeros(clips, dtype=np.int64)
        rng = np.random.default_rng() if rng is None else rng
        return rng.integers(0, sample_pos - 1, size=clips)  # upper bound excluded, as the official randint
    return np.linspace(0, sample_pos - 1, num=clips, dtype=int).astype(np.int64)


def dense_indices(num_frames: int, num_segments: int, start: int = 0, stride: int | None = None) -> np.ndarray:
    """0-based frame indices (num_segments,) of one dense clip starting at ``start``."""
    _check(num_frames, num_segments)
    step, _ = _dense_geometry(num_frames, num_segments, stride)
    return (np.arange(num_segments, dtype=np.int64) * step + start) % num_frames


def multi_clip_indices(num_frames: int, sampling: Sampling, rng: np.random.Generator | None = None) -> np.ndarray:
    """0-based frame indices (clips, num_segments) of every clip ``sampling`` takes from a video.

    In training the offsets are drawn from ``rng`` (default: seeded with ``sampling.seed``).
    """
    if sampling.train and rng is None:
        rng = np.random.default_rng(sampling.seed)
    segments, clips = sampling.num_segments, sampling.clips
    if sampling.mode == "dense":
        starts = dense_starts(num_frames, segments, clips, sampling.train, rng, sampling.stride)
        return np.stack([dense_indices(num_frames, segments, int(s), sampling.stride) for s in starts])  # (K, T)
    if sampling.train:
        return np.stack([tsn_indices(num_frames, segments, True, rng, short=sampling.short)
                         for _ in range(clips)])  # (K, T)
    phases = [(0.5 + k / clips) % 1.0 for k in range(clips)]
    return np.stack([tsn_indices(num_frames, segments, False, phase=p, short=sampling.short)
                     for p in phases])  # (K, T)


def time_indices(times: Sequence[Fraction], end: Fraction, sampling: Sampling,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """0-based frame indices (clips, num_segments) sampled on the presentation timeline.

    ``times``: each frame's timestamp in seconds from the first frame (sorted, ``times[0] == 0``);
    ``end``: when the last frame stops being shown. See the module docstring for the rules."""
    n = len(times)
    _check(n, sampling.num_segments)
    segments, clips = sampling.num_segments, sampling.clips
    if sampling.train and rng is None:
        rng = np.random.default_rng(sampling.seed)
    if end <= times[-1] or (n <= segments and sampling.short != "spread"):
        return multi_clip_indices(n, sampling, rng)  # no usable duration, or the short-video rules (by index)
    positions: list[list[Fraction]]
    if sampling.mode == "dense":
        index = multi_clip_indices(n, sampling, rng)  # (K, T)
        positions = [[Fraction(2 * int(i) + 1, 2 * n) for i in row] for row in index]
    elif sampling.train:
        assert rng is not None
        positions = [[(t + Fraction(float(rng.random()))) / segments for t in range(segments)] for _ in range(clips)]
    else:
        phases = [(Fraction(1, 2) + Fraction(k, clips)) % 1 for k in range(clips)]
        positions = [[(phase + t) / segments for t in range(segments)] for phase in phases]
    out = [[min(n - 1, max(0, bisect.bisect_right(times, u * end) - 1)) for u in row] for row in positions]
    return np.array(out, dtype=np.int64)  # (K, T)
