"""``edgefuse synth``: the synthetic time-reversed benchmark, its layout, reproducibility and safety."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from edgefuse.cli import EdgefuseGroup
from edgefuse.cli.synth import synth_cmd
from edgefuse.clips.sources import parse_list_file
from edgefuse.errors import EdgefuseError
from edgefuse.lab import synth
from edgefuse.lab.synth import CLASSES, PAIRS, SynthConfig, clip_label, generate, render_clip
from edgefuse.lab.synth import write as synth_write

SMALL = {"train": 20, "val": 10, "calib": 10, "frames": 8, "size": 64}
SPLITS = {"train": 20, "val": 10, "calib": 10}
EXPECTED_TOP = ["calib.txt", "calib_videos.txt", "classes.txt", "frames", "synth.json", "train.txt",
                "train_videos.txt", "val.txt", "val_videos.txt", "videos"]


def read_list(path: Path) -> list[tuple[str, int | None, int | None]]:
    """(relative path, frames, label) of each line, as the one TSN list-file parser reads them."""
    return [(e.id, e.num_frames, e.label) for e in parse_list_file(path)]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def read_jpegs(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.jpg"))])


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate(SynthConfig(tmp_path_factory.mktemp("synth") / "ds", workers=2, **SMALL))


# ---------------------------------------------------------------- layout


def test_layout_lists_and_counts(small: Path) -> None:
    assert sorted(p.name for p in small.iterdir()) == EXPECTED_TOP
    assert [p.name for p in small.parent.iterdir()] == ["ds"]  # no temporary folder left beside it
    assert small.joinpath("classes.txt").read_text().splitlines() == list(CLASSES)
    meta = json.loads(small.joinpath("synth.json").read_text())
    assert meta["classes"] == list(CLASSES) and meta["pairs"] == [list(p) for p in PAIRS]
    assert meta["config"]["frames"] == 8 and meta["config"]["codec"] == "libx264"
    for split, n in SPLITS.items():
        frames, videos = read_list(small / f"{split}.txt"), read_list(small / f"{split}_videos.txt")
        assert [r[0] for r in frames] == [f"frames/{split}_{i:05d}" for i in range(n)]
        assert [r[0] for r in videos] == [f"videos/{split}_{i:05d}.mp4" for i in range(n)]
        assert [r[1:] for r in frames] == [r[1:] for r in videos]
        assert {r[1] for r in frames} == {8}
        per_class = np.bincount([r[2] for r in frames], minlength=len(CLASSES))
        assert per_class.max() - per_class.min() <= 1  # balanced (train 20: exactly 2 of each)
        assert meta["counts"][split]["clips"] == n
        assert list(meta["counts"][split]["per_class"].values()) == per_class.tolist()
        for rel, _, _ in frames:
            assert sorted(p.name for p in (small / rel).iterdir()) == [f"{t:05d}.jpg" for t in range(1, 9)]
    assert np.bincount([r[2] for r in read_list(small / "train.txt")]).tolist() == [2] * 10
    assert len(list((small / "frames").iterdir())) == len(list((small / "videos").iterdir())) == 40


def test_jpegs_and_videos_decode_and_agree(small: Path) -> None:
    diffs, reversed_diffs = [], []
    for split in SPLITS:
        for rel, n, label in read_list(small / f"{split}_videos.txt"):
            video = decode(small / rel).astype(np.int16)
            jpegs = read_jpegs(small / "frames" / Path(rel).stem)
            assert video.shape == jpegs.shape == (n, 64, 64, 3)
            diffs.append(np.abs(video - jpegs).mean())
            reversed_diffs.append(np.abs(video - jpegs[::-1]).mean())
    # measured mean 2.5, max 3.3 (x264 crf 12, yuv420p: mostly chroma subsampling of the noise, and
    # swscale's yuv->rgb rounding, which darkens by ~1.3 levels)
    assert np.mean(diffs) < 3.5 and max(diffs) < 5.0
    # frame order survives the encoder's B-frame reordering
    assert np.mean(diffs) < 0.5 * np.mean(reversed_diffs)


def test_frames_are_the_rendered_clips(small: Path) -> None:
    for rel, _, label in read_list(small / "val.txt")[:3]:
        index = int(rel.rsplit("_", 1)[1])
        clip = render_clip(label, synth.clip_rng(0, "val", index), 8, 64)
        # JPEG quality 95, 4:2:0 (measured 3.2 on average, at most 5.1, at 64 px with sensor noise)
        assert np.abs(read_jpegs(small / rel).astype(np.int16) - clip).mean() < 6.0


# ---------------------------------------------------------------- reproducibility


def test_same_seed_same_bytes_other_seed_differs(small: Path, tmp_path) -> None:
    again = generate(SynthConfig(tmp_path / "again", workers=1, **SMALL))  # other worker count: same bytes
    assert tree_digest(again) == tree_digest(small)  # JPEGs, videos, lists and synth.json
    # a clip depends on (seed, split, index) only: other split sizes keep it
    fewer = generate(SynthConfig(tmp_path / "fewer", train=5, val=3, calib=0, frames=8, size=64,
                                 formats=("frames",), workers=1))
    ref = tree_digest(small)
    for name, digest in tree_digest(fewer).items():
        if name.startswith("frames/"):
            assert ref[name] == digest
    assert read_list(fewer / "train.txt") == read_list(small / "train.txt")[:5]
    other = generate(SynthConfig(tmp_path / "other", train=5, val=3, calib=0, frames=8, size=64,
                                 formats=("frames",), workers=1, seed=1))
    theirs = tree_digest(other)
    assert not any(theirs[k] == ref[k] for k in theirs if k.endswith(".jpg"))


def test_labels_are_balanced_for_any_count() -> None:
    for n in range(0, 61, 7):
        labels = [clip_label(3, "calib", i) for i in range(n)]
        counts = np.bincount(labels, minlength=10)
        assert counts.max() - counts.min() <= (1 if n % 10 else 0)
    assert [clip_label(3, "calib", i) for i in range(10)] != [clip_label(4, "calib", i) for i in range(10)]


# ---------------------------------------------------------------- the time-reversal property


def test_second_class_is_the_first_reversed() -> None:
    for a, b in PAIRS:
        for seed in range(3):
            first = render_clip(a, np.random.default_rng(seed), 6, 40)
            second = render_clip(b, np.random.default_rng(seed), 6, 40)
            assert first.dtype == np.uint8 and first.shape == (6, 40, 40, 3)
            assert np.array_equal(second, first[::-1])
            assert not np.array_equal(second, first)
            assert np.array_equal(first, render_clip(a, np.random.default_rng(seed), 6, 40))  # pure


def test_tsn_cannot_tell_a_pair_apart_tsm_can() -> None:
    from edgefuse.models import create_model

    torch.manual_seed(0)
    clip = render_clip(0, np.random.default_rng(5), 8, 48)
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float().div(255)[None]  # (1, T, 3, H, W)
    both = torch.cat([x, x.flip(1)])  # "moving left" and the "moving right" clip of the same draw
    with torch.no_grad():
        tsn = create_model("tsn_resnet18", num_classes=10, num_segments=8, width=0.25).eval()(both)
        tsm = create_model("tsm_resnet18", num_classes=10, num_segments=8, width=0.25).eval()(both)
    assert torch.allclose(tsn[0], tsn[1], atol=1e-6)  # mean of per-frame logits: blind to order
    assert (tsm[0] - tsm[1]).abs().max() > 1e-4 * tsm.abs().max()


def _gray(clip: np.ndarray) -> np.ndarray:
    return clip.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _affine_flow(clip: np.ndarray) -> dict[str, float]:
    """Least-squares affine optical flow (brightness constancy) around the moving region's centre."""
    g = _gray(clip)
    it = np.diff(g, axis=0)
    iy, ix = np.gradient(0.5 * (g[1:] + g[:-1]), axis=(1, 2))
    w = np.abs(it).sum(0)
    yy, xx = np.mgrid[0:w.shape[0], 0:w.shape[1]] + 0.5
    x, y = xx - (w * xx).sum() / w.sum(), yy - (w * yy).sum() / w.sum()
    a = np.stack([ix, ix * x, ix * y, iy, iy * x, iy * y], -1).reshape(-1, 6)
    p = np.linalg.lstsq(a, -it.reshape(-1), rcond=None)[0]
    # y points down: rot > 0 is clockwise on screen
    return {"u": p[0], "v": p[3], "rot": (p[4] - p[2]) / 2, "div": (p[1] + p[5]) / 2}


def _contour_trend(clip: np.ndarray) -> float:
    """Trend of the edge strength on the contour of what differs between first and last frame."""
    c = clip.astype(np.float64)
    m = np.linalg.norm(c[-1] - c[0], axis=-1) > 40

    def grow(mask: np.ndarray) -> np.ndarray:
        return np.logical_or.reduce([np.roll(mask, (dy, dx), (0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])

    ring = grow(m) & grow(~m)
    gy, gx = np.gradient(_gray(clip), axis=(1, 2))
    e = np.hypot(gx, gy)[:, ring].mean(1)
    return float(((np.arange(len(e)) - (len(e) - 1) / 2) * e).sum())


# per pair: a temporal statistic that is positive for the pair's first class
TEMPORAL = [
    lambda c: -_affine_flow(c)["u"],  # moving left: flow to -x
    lambda c: -_affine_flow(c)["v"],  # moving up: flow to -y
    lambda c: _affine_flow(c)["rot"],  # clockwise
    lambda c: _affine_flow(c)["div"],  # growing: expanding flow
    _contour_trend,  # appearing: the object's contour gets stronger
]


def _per_frame_features(clip: np.ndarray) -> np.ndarray:
    """What a TSN sees: per-frame statistics averaged over the clip."""
    g = _gray(clip)
    gy, gx = np.gradient(g, axis=(1, 2))
    return np.array([g.std((1, 2)).mean(), np.hypot(gx, gy).mean(), clip.mean()])


def _welch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.mean(0) - b.mean(0)) / np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))


@pytest.mark.parametrize("pair", range(len(PAIRS)))
def test_frame_statistics_match_temporal_statistics_separate(pair: int) -> None:
    a, b = PAIRS[pair]
    n = 32  # independent draws per class
    first = [render_clip(a, np.random.default_rng(s), 16, 48) for s in range(n)]
    second = [render_clip(b, np.random.default_rng(1000 + s), 16, 48) for s in range(n)]
    t_frames = _welch(np.stack([_per_frame_features(c) for c in first]),
                      np.stack([_per_frame_features(c) for c in second]))
    assert np.abs(t_frames).max() < 3.0, t_frames  # measured |t| <= 1.7 for every pair
    stat = TEMPORAL[pair]
    sa, sb = np.array([stat(c) for c in first]), np.array([stat(c) for c in second])
    assert (sa > 0).mean() >= 0.9 and (sb < 0).mean() >= 0.9  # measured >= 0.96
    assert abs(_welch(sa[:, None], sb[:, None])[0]) > 5.0  # measured 6.7 to 11.9


def test_rotation_never_aliases() -> None:
    # a square looks the same every 90 degrees: more than 45 degrees a frame would look like turning back
    for frames in (2, 4, 8, 16):
        for seed in range(50):
            p = synth.sample_params("rotate_cw", np.random.default_rng(seed), frames, 64)
            steps = np.diff(p.angle)
            assert p.shape != "circle" and steps.min() > 0 and steps.max() <= 36.0 + 1e-9


def test_clockwise_means_clockwise_on_screen() -> None:
    dot = Image.new("L", (64, 64), 0)
    dot.paste(255, (44, 28, 60, 36))  # a blob right of the centre
    cov = synth.place(dot, 64, 32.0, 32.0, 40.0, 90.0)
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    assert (cov * yy).sum() / cov.sum() > 40  # a quarter turn clockwise moves it below the centre
    assert abs((cov * xx).sum() / cov.sum() - 32) < 1.5


# ---------------------------------------------------------------- refused and interrupted writes


def _tiny(out: Path, **kw) -> SynthConfig:
    base = {"train": 4, "val": 2, "calib": 0, "frames": 4, "size": 32, "formats": ("frames",), "workers": 1}
    return SynthConfig(out, **{**base, **kw})


def test_refuses_non_empty_dir_without_force(tmp_path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(EdgefuseError, match="not empty.*--force"):
        generate(_tiny(out))
    with pytest.raises(EdgefuseError, match="not an edgefuse synth dataset"):
        generate(_tiny(out, force=True))  # --force only replaces an earlier synth dataset
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"] and (out / "mine.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgefuseError, match="is a file"):
        generate(_tiny(tmp_path / "file"))


def test_force_replaces_an_earlier_dataset_and_empty_dir_is_fine(tmp_path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    generate(_tiny(out))  # an empty folder is used
    first = tree_digest(out)
    with pytest.raises(EdgefuseError, match="not empty"):
        generate(_tiny(out, seed=1))
    assert tree_digest(out) == first
    generate(_tiny(out, seed=1, force=True))
    assert tree_digest(out).keys() == first.keys() and tree_digest(out) != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # the old copy is gone too


@pytest.mark.parametrize("change, needle", [
    ({"frames": 1}, "--frames 1"), ({"size": 31}, "--size 31"), ({"formats": ("gif",)}, "--formats"),
    ({"workers": 0}, "--workers 0"), ({"train": 0, "val": 0}, "all splits are empty"), ({"seed": -1}, "--seed"),
    ({"formats": ("videos",), "codec": "nosuch"}, "no 'nosuch' encoder"),
    ({"formats": ("videos",), "codec": "mpeg4", "pix_fmt": "yuv444p"}, "cannot encode yuv444p"),
    ({"formats": ("videos",), "size": 33}, "needs even sizes"),
])
def test_bad_config_is_refused_before_writing(tmp_path, change: dict, needle: str) -> None:
    with pytest.raises(EdgefuseError, match=needle):
        generate(_tiny(tmp_path / "ds", **change))
    assert list(tmp_path.iterdir()) == []


def test_failing_workers_leave_nothing(tmp_path) -> None:
    # an encoder option only x264 itself can reject: the worker processes fail while rendering
    cfg = _tiny(tmp_path / "ds", formats=("frames", "videos"), workers=2, train=12,
                codec_options=(("preset", "nosuch"),))
    with pytest.raises(EdgefuseError, match="cannot encode .*preset"):
        generate(cfg)
    assert list(tmp_path.iterdir()) == []


def test_interrupt_leaves_nothing(tmp_path, monkeypatch) -> None:
    real = synth_write.progress

    def interrupted(items, desc, total=None, enabled=None):
        for i, item in enumerate(real(items, desc, total, enabled)):
            if i == 3:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(synth_write, "progress", interrupted)
    for workers in (1, 2):  # in-process, and Ctrl-C while the pool is busy
        with pytest.raises(KeyboardInterrupt):
            generate(_tiny(tmp_path / "ds", train=16, workers=workers))
        assert list(tmp_path.iterdir()) == []


def test_read_list_errors(tmp_path) -> None:
    good = tmp_path / "a.txt"
    good.write_text("frames/my clip 16 3\n\nvideos/x.mp4 8 0\n")
    assert read_list(good) == [("frames/my clip", 16, 3), ("videos/x.mp4", 8, 0)]
    bad = tmp_path / "b.txt"
    bad.write_text("frames/a 16 3\nframes/b sixteen 3\n")
    with pytest.raises(EdgefuseError, match=r"b.txt:2: expected"):
        read_list(bad)
    with pytest.raises(EdgefuseError, match="cannot read"):
        read_list(tmp_path / "missing.txt")


# ---------------------------------------------------------------- command line


def test_cli_writes_and_reports(tmp_path) -> None:
    @click.group(cls=EdgefuseGroup)
    def cli() -> None:
        pass

    cli.add_command(synth_cmd)
    out = tmp_path / "ds"
    args = ["synth", "--out", str(out), "--train", "3", "--val", "2", "--calib", "1", "--frames", "4",
            "--size", "32", "--formats", "frames", "--workers", "1"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert f"synth: wrote {out}: train 3, val 2, calib 1 clips of 4 frames at 32x32 (frames)" in res.output
    assert len(read_list(out / "calib.txt")) == 1 and not (out / "videos").exists()
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and "error: synth:" in res.output and "--force" in res.output
    res = CliRunner().invoke(cli, [*args, "--force", "--formats", "frames,gif"])
    assert res.exit_code == 1 and "--formats" in res.output
