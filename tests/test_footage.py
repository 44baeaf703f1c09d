"""Real footage, as phones, dataset tools and FFmpeg write it: rotation metadata, stream-copied trims
(MP4 edit lists), containers recognised by content (.mov, .m4v, .3gp, .ts, misnamed files), variable
frame rate with time sampling, 1-frame clips in every source, the Kinetics / UCF class-folder layout,
and ``edgefuse clips`` writing the .npz the other commands read.

Every video is made here (64x48, a few dozen frames) with PyAV and FFmpeg's command line, and
compared with an independent PyAV decode put through the official evaluation pipeline written out
in tests/test_clips.py.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from test_clips import PRE, make_frames, official_eval_pipeline, official_test, write_frames, write_video

from edgefuse import clips
from edgefuse.clips.decode import probe_video
from edgefuse.errors import EdgefuseError

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="FFmpeg's command line is not installed (.ci/run installs it)")
SAMPLING = clips.Sampling(num_segments=8)


def ffmpeg(*args: str) -> None:
    assert FFMPEG is not None
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True, capture_output=True)


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame as stored (no display matrix applied): the independent reference decode."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def expected(frames: list[np.ndarray], indices: list[int]) -> torch.Tensor:
    return official_eval_pipeline([Image.fromarray(frames[i]) for i in indices], 40, 32, PRE.mean, PRE.std)


def read(src: Path | str, sampling: clips.Sampling = SAMPLING, **kw) -> clips.ClipSet:
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return clips.open(src, PRE, sampling, **kw)


def frame_numbers(data: torch.Tensor) -> list[int]:
    """Frame numbers the clips (..., T, 3, H, W) show: blue = 20 + 5 t (make_frames)."""
    blue = (data[..., 2, :, :].mean(dim=(-1, -2)) * PRE.std[2] + PRE.mean[2]) * 255
    return torch.round((blue - 20) / 5).int().flatten().tolist()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """base.mp4: 24 frames, lossless x264 (yuv444p), a keyframe every 6."""
    root = tmp_path_factory.mktemp("footage")
    write_video(root / "base.mp4", make_frames(24, phase=5), gop=6)
    return root


# ---------------------------------------------------------------------------------------------
# Rotation metadata

def rotated_copy(src: Path, dst: Path, degrees: int) -> None:
    """A stream copy with rotation metadata: FFmpeg 6+ ``-display_rotation``, else the MP4 ``rotate`` tag."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        ffmpeg("-display_rotation", str(degrees), "-i", str(src), "-c", "copy", str(dst))
    except subprocess.CalledProcessError:
        ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(dst))


@needs_ffmpeg
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata_is_applied_like_ffmpeg(base: Path, degrees: int) -> None:
    video = base / f"rot{degrees}.mp4"
    rotated_copy(base / "base.mp4", video, degrees)
    raw = decode_all(video)  # as stored: landscape
    extracted = base / f"extracted{degrees}"
    extracted.mkdir()
    ffmpeg("-i", str(video), str(extracted / "%05d.png"))  # FFmpeg's frame extraction rotates them upright
    first = np.asarray(Image.open(extracted / "00001.png").convert("RGB"))
    # which quarter turn FFmpeg applied, found independently of edgefuse
    turns = [k for k in range(4) if np.array_equal(np.rot90(raw[0], k), first)]  # (shapes must match too)
    assert len(turns) == 1 and turns[0] != 0
    got = read(video)
    indices = official_test(24, 8)
    want = expected([np.ascontiguousarray(np.rot90(f, turns[0])) for f in raw], indices)
    assert torch.equal(got.stack()[0][0], want)  # bit-exact: the rotation is a lossless transpose
    info = got.infos[0]
    assert info is not None and info.rotation == 90 * turns[0] and not info.mirrored
    assert (info.width, info.height) == ((48, 64) if degrees != 180 else (64, 48))
    # the same clip as video and as FFmpeg-extracted PNG frames: identical (lossless x264, no chroma subsampling)
    frames = read(extracted, frame_template="{:05d}.png").stack()[0]
    assert torch.equal(frames, got.stack()[0])
    unrotated = expected(raw, indices)
    if unrotated.shape == want.shape:
        assert (unrotated - want).abs().mean() > 0.2  # what ignoring the metadata would have given


@needs_ffmpeg
def test_rotate_tag_fallback_matches_the_display_matrix(base: Path) -> None:
    """PyAV before 18 (FFmpeg <= 4) gives no display-matrix side data on frames; its demuxer exports the matrix as
    the stream's ``rotate`` tag instead, in degrees clockwise (``-av_display_rotation_get``, wrapped to 0..359).
    That PyAV cannot be installed beside this one, so the old frame is a stand-in with no side data and the old
    stream a stand-in with the tag FFmpeg 4 writes for the same file; the orientation must equal the one read from
    the real side data of the real file."""
    import av

    from edgefuse.clips.decode import IDENTITY, _orientation

    class OldFrame:  # what PyAV < 18 frames give for side data: nothing to read
        side_data: dict[str, object] = {}

    class OldStream:
        def __init__(self, tag: str | None) -> None:
            self.metadata = {} if tag is None else {"rotate": tag}

    for degrees in (90, 180, 270):  # counter-clockwise, as -display_rotation takes them
        video = base / f"tag{degrees}.mp4"
        rotated_copy(base / "base.mp4", video, degrees)
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            real = _orientation(next(container.decode(stream)), stream)
        assert real != IDENTITY
        assert _orientation(OldFrame(), OldStream(str((360 - degrees) % 360))) == real, degrees
    assert _orientation(OldFrame(), OldStream(None)) == IDENTITY
    assert _orientation(OldFrame(), OldStream("sideways")) == IDENTITY  # an unreadable tag: as stored


# ---------------------------------------------------------------------------------------------
# Stream-copied trims: MP4 edit lists

@pytest.fixture(scope="module")
def trimmed(base: Path) -> Path:
    if FFMPEG is None:
        pytest.skip("FFmpeg's command line is not installed")
    long = base / "long.mp4"
    write_video(long, make_frames(40, phase=1), gop=12)
    out = base / "trim.mp4"
    ffmpeg("-ss", "0.5", "-i", str(long), "-t", "0.9", "-c", "copy", str(out))  # cuts inside a GOP: an edit list
    return out


def test_edit_list_trim_counts_frames_by_decoding(trimmed: Path) -> None:
    shown = decode_all(trimmed)
    with av.open(str(trimmed)) as container:
        header = container.streams.video[0].frames
    assert header > len(shown)  # the header counts the frames the edit list hides: the old rejection
    video = probe_video(str(trimmed))
    assert video.count == len(shown)
    got = read(trimmed)
    assert got.ids == ["trim"] and not got.skipped and got.infos[0].frames == len(shown)
    assert torch.equal(got.stack()[0][0], expected(shown, official_test(len(shown), 8)))
    (trimmed.parent / "trims.txt").write_text("trim.mp4\n")  # a list without frame counts: the same
    assert torch.equal(read(trimmed.parent / "trims.txt").stack()[0], got.stack()[0])
    timed = read(trimmed, clips.Sampling(num_segments=8, clock="time")).stack()[0]  # constant rate: the same frames
    assert frame_numbers(timed) == frame_numbers(got.stack()[0])


# ---------------------------------------------------------------------------------------------
# Containers by content

@needs_ffmpeg
@pytest.mark.slow  # suite time; runs with -m slow
def test_containers_recognised_by_content(base: Path, tmp_path: Path) -> None:
    want = read(base / "base.mp4").stack()[0][0]
    folder = tmp_path / "videos"
    folder.mkdir()
    made = {}
    for name, fmt in [("a.mov", "mov"), ("b.m4v", "ipod"), ("c.3gp", "3gp"), ("d.ts", "mpegts"),
                      ("e.mp4", "mpegts"), ("f.avi", "mov"), ("g.dat", "matroska"), ("h", "mp4")]:
        ffmpeg("-i", str(base / "base.mp4"), "-c", "copy", "-f", fmt, str(folder / name))  # same frames, remuxed
        made[Path(name).stem] = folder / name
    (folder / "notes.txt").write_text("not a video\n")
    assert clips.sniff(folder / "e.mp4") == "mpegts" and clips.sniff(folder / "g.dat") == "matroska"
    assert clips.sniff(folder / "h") == "mp4" and clips.sniff(folder / "notes.txt") is None
    every = read(folder)
    assert every.kind == "videos" and every.ids == sorted(made) and not every.skipped and every.ignored == ["notes.txt"]
    for clip in every.stack()[0]:
        assert torch.equal(clip, want)
    for path in made.values():  # one file as the source
        assert torch.equal(read(path).stack()[0][0], want), path
    (tmp_path / "list.txt").write_text("".join(f"videos/{p.name}\n" for p in made.values()))
    assert torch.equal(read(tmp_path / "list.txt").stack()[0], every.stack()[0])


# ---------------------------------------------------------------------------------------------
# Variable frame rate

def write_vfr(path: Path, times_ms: list[int]) -> None:
    """Lossless frames shown at ``times_ms`` (frame t shows blue = 20 + 5 t)."""
    frames = make_frames(len(times_ms), phase=3)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        stream.options = {"crf": "0", "bf": "0"}
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        for arr, t in zip(frames, times_ms):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.mark.slow  # suite time; runs with -m slow
def test_variable_frame_rate_time_sampling(tmp_path: Path) -> None:
    times = [250 * i for i in range(8)] + [2000 + 40 * i for i in range(24)]  # 4 fps for 2 s, then 25 fps
    write_vfr(tmp_path / "vfr.mp4", times)
    video = probe_video(str(tmp_path / "vfr.mp4"))
    assert video.count == 32 and video.vfr
    end = video.times()[1]
    # the frame on screen at each segment centre, from the timestamps written above
    centres = [(Fraction(2 * t + 1, 16)) * end * 1000 for t in range(8)]
    want = [max(i for i, ms in enumerate(times) if ms <= c) for c in centres]
    assert want == [0, 2, 3, 5, 6, 8, 18, 27]
    by_index = read(tmp_path / "vfr.mp4").stack()[0]
    assert frame_numbers(by_index) == official_test(32, 8)  # frame numbers: mostly the fast last second
    by_time = read(tmp_path / "vfr.mp4", clips.Sampling(num_segments=8, clock="time"))
    assert frame_numbers(by_time.stack()[0]) == want
    assert by_time.infos[0].vfr and abs(by_time.infos[0].duration - 2.96) < 1e-9
    source = clips.ClipSource.of(tmp_path / "vfr.mp4", clock="time")  # the option carried by the path
    assert torch.equal(read(source).stack()[0], by_time.stack()[0])
    two = read(tmp_path / "vfr.mp4", clips.Sampling(num_segments=4, clips=2, clock="time")).stack()[0]
    on_screen = [[max(i for i, ms in enumerate(times) if ms <= (phase + t) / 4 * end * 1000) for t in range(4)]
                 for phase in (Fraction(1, 2), 0)]  # twice_sample: segment centres, then segment starts
    assert on_screen == [[1, 4, 7, 22], [0, 2, 5, 13]]
    assert two.shape == (1, 2, 4, 3, 32, 32) and frame_numbers(two) == on_screen[0] + on_screen[1]


# ---------------------------------------------------------------------------------------------
# 1-frame clips: one rule for every source

def test_one_frame_clip_same_rule_in_every_source(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_frames(tmp_path / "ff" / "long", make_frames(12))
    write_frames(tmp_path / "ff" / "one", make_frames(1))
    write_video(tmp_path / "vids" / "long.mp4", make_frames(12))
    write_video(tmp_path / "vids" / "one.mp4", make_frames(1))
    write_video(tmp_path / "ds" / "a" / "long.mp4", make_frames(12))
    write_video(tmp_path / "ds" / "b" / "one.mp4", make_frames(1))
    (tmp_path / "ff" / "list.txt").write_text("long 12 0\none 1 1\n")
    (tmp_path / "vlist.txt").write_text("vids/long.mp4 0\nvids/one.mp4 1\n".replace(" 0\n", " 12 0\n").replace(
        " 1\n", " 1 1\n"))
    (tmp_path / "bare.txt").write_text("vids/long.mp4\nvids/one.mp4\n")  # counts from the videos
    sources = [tmp_path / "ff" / "list.txt", tmp_path / "ff", tmp_path / "vlist.txt", tmp_path / "bare.txt",
               tmp_path / "vids", tmp_path / "ds"]
    for src in sources:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edgefuse.clips"):
            s = read(src)
        assert len(s) == 1 and len(s.skipped) == 1 and s.too_short == 1, src
        assert "1 frame(s)" in s.skipped[0][1] and "clips need at least 3" in s.skipped[0][1], src
        lines = [r.getMessage() for r in caplog.records]
        assert sum("skipped 1 of 2 clips with fewer than 3 frames" in m for m in lines) == 1, (src, lines)
        assert not any("skipped clip" in m for m in lines), src  # one line with a count, not one per clip
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edgefuse.clips"):
            kept = read(src, min_frames=1)  # kept: its one frame repeated, warned once with a count
        assert len(kept) == 2 and not kept.skipped, src
        assert sum("1 of 2 clips have fewer frames than the sampling takes" in r.getMessage()
                   for r in caplog.records) == 1, src
        one = next(c for c in kept if "one" in c.id)
        assert all(torch.equal(frame, one.data[0]) for frame in one.data), src
    with pytest.raises(EdgefuseError, match="none of the 1 clips could be read .*1 frame"):
        read(tmp_path / "vids" / "one.mp4")  # one video as the source


# ---------------------------------------------------------------------------------------------
# Class-folder datasets (Kinetics / UCF101 layout)

def test_class_folder_dataset(base: Path, tmp_path: Path) -> None:
    ds = tmp_path / "kinetics"
    for cls, names in {"archery": ["x1", "x2"], "abseiling": ["y1"], "bowling": ["z1", "z2"]}.items():
        for k, name in enumerate(names):
            write_video(ds / cls / f"{name}.{'mov' if k else 'mp4'}", make_frames(10 + k, phase=k))
    (ds / "bowling" / "README").write_text("notes")
    s = read(ds)
    assert s.kind == "class_folders" and s.class_names == ("abseiling", "archery", "bowling")
    assert s.ids == ["abseiling/y1", "archery/x1", "archery/x2", "bowling/z1", "bowling/z2"]
    assert s.labels == [0, 1, 1, 2, 2] and s.ignored == ["bowling/README"]
    (tmp_path / "classes.txt").write_text("bowling\narchery\nabseiling\ncurling\n")
    mapped = read(ds, classes=tmp_path / "classes.txt")
    assert mapped.labels == [2, 1, 1, 0, 0] and mapped.class_names == ("bowling", "archery", "abseiling", "curling")
    (tmp_path / "few.txt").write_text("archery\nbowling\n")
    with pytest.raises(EdgefuseError, match="class folder 'abseiling' is not in the class list"):
        read(ds, classes=tmp_path / "few.txt")
    with pytest.raises(EdgefuseError, match="3 class folders but the model has 2 classes"):
        read(ds, num_classes=2)
    frames = tmp_path / "ucf"  # class folders of frame folders, Kinetics-style frame names
    for cls in ("jump", "run"):
        write_frames(frames / cls / f"{cls}_01", make_frames(9), template="img_{:05d}.jpg")
    f = read(frames, frame_template=clips.frame_template("img_%05d.jpg"))
    assert f.kind == "class_folders" and f.ids == ["jump/jump_01", "run/run_01"] and f.labels == [0, 1]


# ---------------------------------------------------------------------------------------------
# edgefuse clips: the summary, and the .npz the other commands read

def edgefuse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgefuse", *args], check=False, capture_output=True, text=True,
                          timeout=120)


def tiny_graph(path: Path, segments: int = 8, size: int = 32, num_classes: int = 3) -> Path:
    """A stand-in for an exported graph: what matters here is its edgefuse metadata."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("clips", TensorProto.FLOAT, [1, segments, 3, size, size])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, segments, 3, size, size])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["clips"], ["logits"])], "g", [x], [y]))
    meta = {"segments": segments, "input_size": size, "scale_size": 40, "mean": list(PRE.mean), "std": list(PRE.std),
            "channel_order": "RGB", "pixel_range": 1.0, "num_classes": num_classes, "shape": "static"}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"edgefuse.{key}", json.dumps(value)
    onnx.save(model, str(path))
    return path


@needs_ffmpeg
def test_clips_command_summarises_and_writes_npz(base: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    write_video(ds / "pull" / "a.mp4", make_frames(20, phase=2))
    rotated_copy(base / "base.mp4", ds / "push" / "b.mov", 90)
    write_video(ds / "push" / "c.mp4", make_frames(1))
    graph = tiny_graph(tmp_path / "model.onnx")
    out = tmp_path / "clips.npz"
    proc = edgefuse("clips", str(ds), "-o", str(out), "--model", str(graph))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "folder of class folders): read 2 of 3 clips; skipped 1, 1 with fewer than 3 frames" in text
    assert "classes   2: pull 1, push 1" in text and "frames    min 20 / median 22 / max 24" in text
    assert "1 rotated upright" in text and "push/c: " in text and "clips need at least 3" in text
    assert f"wrote     {out}" in text and "from graph " in text
    assert "warning: " in proc.stderr and "skipped 1 of 3 clips with fewer than 3 frames" in proc.stderr
    # exactly what the other commands read: --clips (the .npz reader) and export's --policy/--parity-clips
    from edgefuse.utils import load_npz_clips

    direct = read(ds)
    with np.load(out) as z:
        assert z["clips"].dtype == np.float32 and z["clips"].shape == (2, 8, 3, 32, 32)
        assert z["labels"].tolist() == [0, 1] and z["class_names"].tolist() == ["pull", "push"]
        assert z["ids"].tolist() == ["pull/a", "push/b"] and json.loads(str(z["meta"]))["sampling"]["num_segments"] == 8
    assert torch.equal(load_npz_clips(out, "policy clips"), direct.stack()[0])
    back = clips.open(out, PRE, SAMPLING)
    assert torch.equal(back.stack()[0], direct.stack()[0]) and back.labels == [0, 1]
    js = json.loads(edgefuse("clips", str(ds), "--json", "--segments", "4", "--size", "32").stdout)
    report = clips.ClipsReport.from_dict(js)
    assert report.read == 2 and report.shape == (2, 4, 3, 32, 32) and report.clips[1].info.rotation == 90
    assert report.to_dict() == js
    bad = edgefuse("clips", str(ds), "--model", str(graph), "--segments", "16", "-o", str(tmp_path / "x.npz"))
    assert bad.returncode == 1 and bad.stderr.startswith("error: --segments 16 conflicts with")
    assert not (tmp_path / "x.npz").exists()
