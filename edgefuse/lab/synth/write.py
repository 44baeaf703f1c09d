"""Writing a dataset: every clip in every format (in worker processes), the TSN list files and synth.json,
into a temporary folder renamed into place at the end."""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgefuse import __version__
from edgefuse.errors import EdgefuseError
from edgefuse.lab.synth.config import (
    CLASS_DESCRIPTIONS,
    CLASSES,
    MARKER,
    PAIRS,
    PROGRESS_DESC,
    SPLITS,
    SynthConfig,
    check_config,
)
from edgefuse.lab.synth.draw import render_clip
from edgefuse.lab.synth.params import clip_label, clip_name, clip_rng
from edgefuse.progress import progress

log = logging.getLogger("edgefuse.lab.synth")


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
            assert isinstance(stream, av.video.stream.VideoStream)  # a video encoder (checked by check_config)
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
    counts: dict[str, dict[str, Any]] = {split: {"clips": n, "per_class": dict.fromkeys(CLASSES, 0)}
                                         for split, n in cfg.counts().items()}
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

