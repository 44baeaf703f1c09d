"""edgefuse.clips: sampling and preprocessing against the official formulas, every source format,
frames vs video, corrupt input, parallel decoding, .npz round trip.

All data is generated here: small 64x48 clips with a moving smooth pattern whose blue channel
encodes the frame number, written as JPEG/PNG frame folders and as libx264 (lossless, yuv444p)
or VP8 videos with PyAV.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from edgefuse import clips
from edgefuse.clips import decode, preprocess
from edgefuse.errors import EdgefuseError
from edgefuse.models.config import ModelConfig

W, H = 64, 48
PRE = clips.Preprocess(input_size=32, scale_size=40)  # 64x48 -> 53x40, centre crop 32 at (10, 4)
LABELS = [0, 1, 2, 0, 1, 2]
NUM_FRAMES = [30, 32, 34, 36, 38, 40]
BGR_PRE = clips.Preprocess(input_size=32, scale_size=40, mean=(104, 117, 128), std=(1, 1, 1), channel_order="BGR",
                           pixel_range=255)


# ---------------------------------------------------------------------------------------------
# Data generation

def make_frames(n: int, phase: int = 0, w: int = W, h: int = H) -> list[np.ndarray]:
    """n frames (h, w, 3) uint8: smooth waves moving with t; blue = 20 + 5 t marks the frame."""
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        r = 128 + 60 * np.sin((x + 2 * t + phase) / 9.0)
        g = 128 + 60 * np.cos((y - t + phase) / 7.0)
        b = np.full_like(r, 20 + 5 * t)
        out.append(np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8))
    return out


def write_frames(folder: Path, frames: list[np.ndarray], template: str = "{:05d}.jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(frames):
        Image.fromarray(arr).save(folder / template.format(i + 1), quality=95)


def write_video(path: Path, frames: list[np.ndarray], codec: str = "libx264", gop: int = 10) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height = w, h
        if codec == "libx264":
            stream.pix_fmt, stream.options = "yuv444p", {"crf": "0"}  # lossless up to RGB <-> YUV rounding
        else:
            stream.pix_fmt, stream.options = "yuv420p", {"crf": "4", "b": "2M"}
        stream.codec_context.gop_size = gop
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """frames/clipK/00001.jpg..., videos/clipK.mp4, list files, a Something-V2 set (webm)."""
    root = tmp_path_factory.mktemp("clips")
    frame_lines, video_lines = [], []
    for k, (n, label) in enumerate(zip(NUM_FRAMES, LABELS)):
        arrs = make_frames(n, phase=7 * k)
        write_frames(root / "frames" / f"clip{k}", arrs)
        write_video(root / "videos" / f"clip{k}.mp4", arrs)
        frame_lines.append(f"clip{k} {n} {label}")
        video_lines.append(f"videos/clip{k}.mp4 {n} {label}")
    (root / "frames" / "list.txt").write_text("\n".join(frame_lines) + "\n")
    (root / "videos.txt").write_text("\n".join(video_lines) + "\n")
    (root / "classes.txt").write_text("pushing\npulling\nwaving\n")
    ssv2 = root / "ssv2"
    templates = ["Pushing [something] from left to right", "Pulling [something] from right to left"]
    (ssv2 / "labels.json").parent.mkdir()
    (ssv2 / "labels.json").write_text(json.dumps({t.replace("[", "").replace("]", ""): str(i)
                                                  for i, t in enumerate(templates)}))
    items = []
    for k, vid in enumerate(["1001", "1002", "1003"]):
        write_video(ssv2 / f"{vid}.webm", make_frames(24, phase=3 * k), codec="libvpx")
        items.append({"id": vid, "label": "pushing a pen", "template": templates[k % 2], "placeholders": ["pen"]})
    (ssv2 / "validation.json").write_text(json.dumps(items))
    return root


def stacked(src, pre=PRE, sampling=None, **kw) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return clips.open(src, pre, sampling or clips.Sampling(num_segments=8), **kw).stack()


# ---------------------------------------------------------------------------------------------
# Sampling against the official formulas (TSM ops/dataset.py, AdaFuse and GSF copies), written out

def official_test(n: int, s: int) -> list[int]:  # TSM _get_test_indices (test_models.py), GSF _get_val_indices
    tick = n / float(s)
    return [int(tick / 2.0 + tick * x) for x in range(s)]


def official_val(n: int, s: int) -> list[int]:  # TSM _get_val_indices (main.py validation)
    if n > s:
        tick = n / float(s)
        return [int(tick / 2.0 + tick * x) for x in range(s)]
    return [0] * s


def adafuse_val(n: int, s: int) -> list[int]:  # AdaFuse _get_val_indices
    if n > s:
        tick = n / float(s)
        return [int(tick / 2.0 + tick * x) for x in range(s)]
    return list(range(n)) + [n - 1] * (s - n)


def official_twice(n: int, s: int) -> list[list[int]]:  # TSM _get_test_indices with twice_sample
    tick = n / float(s)
    return [[int(tick / 2.0 + tick * x) for x in range(s)], [int(tick * x) for x in range(s)]]


def official_dense_test(n: int, s: int) -> list[list[int]]:  # TSM _get_test_indices with dense_sample
    sample_pos = max(1, 1 + n - 64)
    t_stride = 64 // s
    starts = np.linspace(0, sample_pos - 1, num=10, dtype=int)
    return [[(i * t_stride + int(start)) % n for i in range(s)] for start in starts]


CASES = [(1, 8), (3, 8), (5, 8), (7, 8), (8, 8), (9, 8), (20, 8), (37, 8), (300, 8), (16, 16), (100, 16), (5, 3),
         (31, 3), (200, 1)]


@pytest.mark.parametrize("n,s", CASES)
def test_tsn_eval_indices_match_official(n: int, s: int) -> None:
    assert clips.tsn_indices(n, s).tolist() == official_test(n, s)
    assert clips.tsn_indices(n, s, short="first").tolist() == official_val(n, s)
    assert clips.tsn_indices(n, s, short="pad").tolist() == adafuse_val(n, s)
    twice = clips.multi_clip_indices(n, clips.Sampling(num_segments=s, clips=2))
    assert twice.tolist() == official_twice(n, s)
    one = clips.multi_clip_indices(n, clips.Sampling(num_segments=s))
    assert one.shape == (1, s) and one[0].tolist() == official_test(n, s)


@pytest.mark.parametrize("n,s", [(20, 8), (63, 8), (64, 8), (65, 8), (300, 8), (300, 16), (100, 4)])
def test_dense_indices_match_official(n: int, s: int) -> None:
    ten = clips.multi_clip_indices(n, clips.Sampling(num_segments=s, mode="dense", clips=10))
    assert ten.tolist() == official_dense_test(n, s)
    one = clips.multi_clip_indices(n, clips.Sampling(num_segments=s, mode="dense"))
    assert one.tolist() == official_dense_test(n, s)[:1]  # one clip = the first official test clip
    assert clips.dense_indices(300, 8, start=5, stride=4).tolist() == [5 + 4 * i for i in range(8)]


@pytest.mark.parametrize("n,s", [(8, 8), (9, 8), (37, 8), (300, 8), (100, 16)])
def test_train_indices_in_segment_and_seeded(n: int, s: int) -> None:
    avg = n // s
    draws = [clips.tsn_indices(n, s, train=True, rng=np.random.default_rng(seed)) for seed in range(20)]
    for idx in draws:  # TSM _sample_indices: t * avg + randint(avg)
        assert all(t * avg <= i < (t + 1) * avg for t, i in enumerate(idx.tolist()))
    again = clips.tsn_indices(n, s, train=True, rng=np.random.default_rng(3))
    assert np.array_equal(again, draws[3])
    if avg > 1:
        assert len({tuple(d.tolist()) for d in draws}) > 1
    sampling = clips.Sampling(num_segments=s, train=True, seed=5, clips=3)
    assert np.array_equal(clips.multi_clip_indices(n, sampling), clips.multi_clip_indices(n, sampling))


def test_train_short_videos_and_dense_bounds() -> None:
    rng = np.random.default_rng(0)
    assert clips.tsn_indices(5, 8, train=True, rng=rng, short="first").tolist() == [0] * 8  # TSM training
    assert clips.tsn_indices(5, 8, train=True, rng=rng, short="pad").tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert clips.tsn_indices(5, 8, train=True, rng=rng).tolist() == official_test(5, 8)  # GSF training
    starts = clips.dense_starts(100, 8, clips=200, train=True, rng=np.random.default_rng(1))
    assert starts.min() >= 0 and starts.max() <= 100 - 64 - 1  # randint(0, sample_pos - 1), upper bound excluded
    assert clips.dense_starts(64, 8, clips=5, train=True, rng=rng).tolist() == [0] * 5
    with pytest.raises(EdgefuseError, match="crops"):
        clips.Sampling(crops=4)


# ---------------------------------------------------------------------------------------------
# Preprocessing

def official_eval_pipeline(images: list[Image.Image], scale: int, crop: int, mean, std) -> torch.Tensor:
    """GroupScale -> GroupCenterCrop -> Stack -> ToTorchFormatTensor -> GroupNormalize, written out."""
    out = []
    for im in images:
        w, h = im.size
        ow, oh = (scale, int(scale * h / w)) if w <= h else (int(scale * w / h), scale)
        im = im.resize((ow, oh), Image.BILINEAR)
        top, left = int(round((oh - crop) / 2.0)), int(round((ow - crop) / 2.0))
        out.append(im.crop((left, top, left + crop, top + crop)))
    stack = np.concatenate([np.asarray(im) for im in out], axis=2)  # (crop, crop, 3 T)
    x = torch.from_numpy(stack).permute(2, 0, 1).contiguous().float().div(255)  # (3 T, crop, crop)
    for c, channel in enumerate(x):
        channel.sub_(mean[c % 3]).div_(std[c % 3])
    return x.view(len(images), 3, crop, crop)  # (T, 3, crop, crop)


def test_preprocessing_equals_official_pipeline_exactly(tmp_path: Path) -> None:
    arrs = make_frames(20, phase=11)
    write_frames(tmp_path / "clip", arrs, template="{:05d}.png")
    data, _, ids = stacked(tmp_path / "clip", frame_template="{:05d}.png")
    idx = official_test(20, 8)
    want = official_eval_pipeline([Image.fromarray(arrs[i]) for i in idx], 40, 32, PRE.mean, PRE.std)
    assert ids == ["clip"] and data.shape == (1, 8, 3, 32, 32)
    assert torch.equal(data[0], want)


def test_constant_colour_gives_exact_normalised_value(tmp_path: Path) -> None:
    colour = (200, 13, 77)
    write_frames(tmp_path / "const", [np.full((H, W, 3), colour, np.uint8)] * 10, template="{:05d}.png")
    data, _, _ = stacked(tmp_path / "const", frame_template="{:05d}.png")
    for c in range(3):
        want = (torch.tensor(colour[c], dtype=torch.float32) / 255 - PRE.mean[c]) / PRE.std[c]
        assert torch.all(data[0, :, c] == want), c
    bgr, _, _ = stacked(tmp_path / "const", pre=BGR_PRE, frame_template="{:05d}.png")
    assert torch.all(bgr[0, :, 0] == 77 - 104)  # B first, 0-255 kept, BN-Inception mean / std 1
    assert torch.all(bgr[0, :, 1] == 13 - 117)
    assert torch.all(bgr[0, :, 2] == 200 - 128)


def test_crop_geometry_on_known_pattern() -> None:
    assert preprocess.scaled_size(64, 48, 40) == (53, 40)  # int(40 * 64 / 48) = int(53.33)
    assert preprocess.scaled_size(48, 64, 40) == (40, 53)
    assert preprocess.scaled_size(340, 256, 256) == (340, 256)
    assert preprocess.scaled_size(100, 60, 40) == (66, 40)  # truncated, not rounded (66.67)
    assert preprocess.center_offset(53, 32) == 10  # round(10.5) = 10, half to even as Python's round
    assert preprocess.center_offset(55, 32) == 12  # round(11.5) = 12
    assert preprocess.center_offset(40, 32) == 4
    # a pattern surviving bilinear resize exactly: constant columns 0-15 red, 16-63 blue, and a
    # vertical ramp; after 64x48 -> 53x40 the red/blue edge sits at x = 13.25, and the crop starts at x = 10
    arr = np.zeros((H, W, 3), np.uint8)
    arr[:, :16, 0] = 255
    arr[:, 16:, 2] = 255
    arr[:, :, 1] = (np.arange(H) * 5)[:, None]
    views = preprocess.process_image(Image.fromarray(arr), PRE, clips.Sampling())
    assert views.shape == (1, 32, 32, 3)
    resized = np.asarray(Image.fromarray(arr).resize((53, 40), Image.BILINEAR))
    assert np.array_equal(views[0], resized[4:36, 10:42])
    red = views[0, 0, :, 0]
    assert red[0] == 255 and red[2] > 128 > red[4] and red[-1] == 0  # edge between crop columns 2 and 4
    assert views[0, 0, 0, 1] < views[0, -1, 0, 1]  # top of the crop above its bottom: not flipped


def test_multi_crop_boxes_follow_official_offsets() -> None:
    # 3 crops, full resolution (crop = scale_size = 40 on 53x40): steps (53-40)//4 = 3, 0 -> left, right, centre
    assert preprocess.view_boxes(53, 40, 40, 3) == [(0, 0, False), (12, 0, False), (6, 0, False)]
    # 10 crops of 32: steps 5, 2 -> corners, centre (2 steps, not the rounded centre), each then mirrored
    boxes = preprocess.view_boxes(53, 40, 32, 10)
    assert boxes[::2] == [(0, 0, False), (20, 0, False), (0, 8, False), (20, 8, False), (10, 4, False)]
    assert all(b[2] for b in boxes[1::2]) and [b[:2] for b in boxes[1::2]] == [b[:2] for b in boxes[::2]]


def test_view_shapes_1x3_and_10x3(data: Path) -> None:
    one_by_three = clips.Sampling(num_segments=8, crops=3)
    d13, _, _ = stacked(data / "frames" / "list.txt", sampling=one_by_three)
    assert d13.shape == (6, 3, 8, 3, 40, 40)  # full resolution: scale_size crops
    d13s, _, _ = stacked(data / "frames" / "list.txt", sampling=clips.Sampling(num_segments=8, crops=3,
                                                                                full_res=False))
    assert d13s.shape == (6, 3, 8, 3, 32, 32)  # GSF's 3-crop test: input_size crops
    ten_by_three = clips.Sampling(num_segments=8, mode="dense", clips=10, crops=3)
    clip = next(iter(clips.open(data / "videos", PRE, ten_by_three, workers=1, progress=False)))
    assert clip.data.shape == (30, 8, 3, 40, 40)
    # crop-major: view c * 10 + k is crop c of clip k; crops 0 and 1 of a clip differ by a shift, frames agree
    assert torch.equal(clip.data[0, :, :, :, 12:], clip.data[10, :, :, :, :28])
    ten_crops = clips.Sampling(num_segments=8, crops=10)
    d10, _, _ = stacked(data / "frames" / "list.txt", sampling=ten_crops)
    assert d10.shape == (6, 10, 8, 3, 32, 32)
    assert torch.equal(d10[:, 1], d10[:, 0].flip(-1))  # each crop is followed by its mirror image


def test_preprocess_from_model_config_and_metadata() -> None:
    cfg = ModelConfig(name="m", arch="tsn", backbone="resnet18", input_size=112, scale_size=128)
    pre = clips.Preprocess.from_model_config(cfg)
    assert (pre.input_size, pre.scale_size, pre.mean, pre.channel_order) == (112, 128, cfg.mean, "RGB")
    meta = {"input_size": 224, "scale_size": 256, "mean": [104, 117, 128], "std": [1], "channel_order": "BGR",
            "pixel_range": 255.0}
    assert clips.Preprocess.from_metadata(meta) == clips.Preprocess(224, 256, (104, 117, 128), (1, 1, 1), "BGR", 255)
    with pytest.raises(EdgefuseError, match="m.onnx: metadata lacks pixel_range"):
        clips.Preprocess.from_metadata({k: v for k, v in meta.items() if k != "pixel_range"}, source="m.onnx")
    with pytest.raises(EdgefuseError, match="channel_order"):
        clips.Preprocess.from_metadata({**meta, "channel_order": "GBR"})


# ---------------------------------------------------------------------------------------------
# Sources

def test_every_source_format_reads(data: Path, tmp_path: Path) -> None:
    frames, labels, ids = stacked(data / "frames" / "list.txt", classes=data / "classes.txt")
    assert frames.shape == (6, 8, 3, 32, 32) and labels.tolist() == LABELS and ids == [f"clip{k}" for k in range(6)]
    set_ = clips.open(data / "frames" / "list.txt", PRE, classes=data / "classes.txt", workers=1, progress=False)
    assert set_.class_names == ("pushing", "pulling", "waving") and len(set_) == 6

    videos, vlabels, vids = stacked(data / "videos.txt")  # list of videos, root = the list's folder
    assert videos.shape == frames.shape and vlabels.tolist() == LABELS and vids[0] == "videos/clip0.mp4"

    folder, flabels, fids = stacked(data / "frames")  # folder of frame folders
    assert fids == [f"clip{k}" for k in range(6)] and flabels is None and torch.equal(folder, frames)
    _, given, _ = stacked(data / "frames", labels={f"clip{k}": LABELS[k] for k in range(6)})
    assert given.tolist() == LABELS

    vfolder, _, vfids = stacked(data / "videos")  # folder of videos
    assert vfids == [f"clip{k}" for k in range(6)] and torch.equal(vfolder, videos)
    single, _, sid = stacked(data / "videos" / "clip2.mp4")  # one video
    assert sid == ["clip2"] and torch.equal(single[0], videos[2])
    one_folder, _, _ = stacked(data / "frames" / "clip3")  # one frame folder
    assert torch.equal(one_folder[0], frames[3])

    ssv2 = clips.open(data / "ssv2" / "validation.json", PRE, classes=data / "ssv2" / "labels.json", workers=1,
                      progress=False)  # webm: no frame count in the header, counted by decoding
    s_data, s_labels, s_ids = ssv2.stack()
    assert s_ids == ["1001", "1002", "1003"] and s_labels.tolist() == [0, 1, 0] and s_data.shape[1:] == (8, 3, 32, 32)
    assert ssv2.class_names == ("Pushing something from left to right", "Pulling something from right to left")
    ideal = official_eval_pipeline([Image.fromarray(make_frames(24, 3)[i]) for i in official_test(24, 8)], 40, 32,
                                   PRE.mean, PRE.std)
    assert (s_data[1] - ideal).abs().mean() < 0.05  # VP8 yuv420p: the right frames, up to codec error

    (tmp_path / "kinetics" / "abseiling" / "x1").mkdir(parents=True)
    write_frames(tmp_path / "kinetics" / "abseiling" / "x1", make_frames(12), template="img_{:05d}.jpg")
    (tmp_path / "k.txt").write_text("abseiling/x1 12 4\n")
    kin, klabels, kids = stacked(tmp_path / "k.txt", root=tmp_path / "kinetics", frame_template="img_{:05d}.jpg")
    assert kids == ["abseiling/x1"] and klabels.tolist() == [4] and kin.shape == (1, 8, 3, 32, 32)

    with pytest.raises(EdgefuseError, match="k.txt:1: expected 'relative_path num_frames label'"):
        (tmp_path / "k.txt").write_text("abseiling/x1 twelve 4\n")
        stacked(tmp_path / "k.txt")
    with pytest.raises(EdgefuseError, match="pass --classes FILE"):
        stacked(data / "ssv2" / "validation.json")


def test_frames_and_video_give_the_same_clip(data: Path) -> None:
    frames, _, _ = stacked(data / "frames" / "list.txt")
    videos, _, _ = stacked(data / "videos.txt")
    sampled = [[Image.fromarray(make_frames(n, 7 * k)[i]) for i in official_test(n, 8)]
               for k, n in enumerate(NUM_FRAMES)]
    ideal = torch.stack([official_eval_pipeline(im, 40, 32, PRE.mean, PRE.std) for im in sampled])  # (N, T, 3, 32, 32)
    # measured (normalised units; x 0.226 x 255 for pixel levels): JPEG q95 vs ideal max 0.070 / mean 0.012
    # (4.1 / 0.7 levels), lossless x264 yuv444p vs ideal max 0.035 / mean 0.0054 (2.0 / 0.3 levels), frames vs
    # video max 0.087 / mean 0.014 (5.1 / 0.8 levels)
    for got in (frames, videos):
        assert (got - ideal).abs().max() < 0.2 and (got - ideal).abs().mean() < 0.02
    assert (frames - videos).abs().max() < 0.2 and (frames - videos).abs().mean() < 0.025
    # the right frames: blue = 20 + 5 t encodes the frame number t, recovered from the video clips
    blue = (videos[:, :, 2].mean(dim=(-1, -2)) * PRE.std[2] + PRE.mean[2]) * 255  # (N, T) levels
    assert torch.round((blue - 20) / 5).int().tolist() == [official_test(n, 8) for n in NUM_FRAMES]


def test_video_seeks_and_stops_early(data: Path) -> None:
    path = str(data / "videos" / "clip5.mp4")  # 40 frames, a keyframe every 10
    keep = lambda image: np.asarray(image)  # noqa: E731
    out, decoded = decode.decode_video(path, [25, 30], keep)
    assert sorted(out) == [25, 30] and decoded <= 12  # from the keyframe before 25 up to 30, not 31 frames
    seq, all_decoded, _ = decode._decode_sequential(path, [25, 30], keep)
    assert all_decoded == 31 and all(np.array_equal(out[i], seq[i]) for i in out)


# ---------------------------------------------------------------------------------------------
# Subsets, corrupt input, workers, .npz

def test_balanced_subset_is_balanced_and_seeded() -> None:
    labels = [0] * 10 + [1] * 10 + [2] * 10 + [3] * 3
    expected = {4: [1, 1, 1], 12: [3, 3, 3], 14: [3, 4, 4], 20: [5, 6, 6]}  # the three big classes, sorted
    for n, big in expected.items():
        pick = clips.balanced_subset(labels, n, seed=0)
        counts = np.bincount([labels[i] for i in pick], minlength=4)
        assert len(pick) == len(set(pick)) == n and pick == sorted(pick)
        assert sorted(counts[:3].tolist()) == big and counts[3] == min(3, big[0])  # the short class gives all it has
    assert clips.balanced_subset(labels, 12, seed=1) == clips.balanced_subset(labels, 12, seed=1)
    assert len({tuple(clips.balanced_subset(labels, 12, seed=s)) for s in range(5)}) > 1
    unlabelled = clips.balanced_subset([None] * 50, 10, seed=2)
    assert len(set(unlabelled)) == 10 and unlabelled == clips.balanced_subset([None] * 50, 10, seed=2)
    assert clips.balanced_subset(labels, 100, seed=0) == list(range(len(labels)))


def test_open_with_num_clips_takes_balanced_subset(data: Path) -> None:
    s = clips.open(data / "frames" / "list.txt", PRE, num_clips=3, seed=0, workers=1, progress=False)
    assert len(s) == 3 and sorted(s.labels) == [0, 1, 2]


@pytest.fixture
def corrupt(data: Path, tmp_path: Path) -> Path:
    """A list mixing good clips and every kind of damage."""
    good = make_frames(30)
    write_frames(tmp_path / "good", good)
    write_frames(tmp_path / "holey", good)
    (tmp_path / "holey" / "00010.jpg").unlink()  # 0-based frame 9 = int(1.875 + 3.75 * 2) is sampled
    write_frames(tmp_path / "badjpeg", good)
    jpeg = tmp_path / "badjpeg" / "00006.jpg"  # 0-based frame 5, sampled
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    write_video(tmp_path / "cut.mkv", make_frames(40))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 3])
    (tmp_path / "list.txt").write_text("good 30 0\nholey 30 1\nnowhere 30 2\nbadjpeg 30 0\ncut.mkv 40 1\ntiny 2 0\n")
    (tmp_path / "vids").mkdir()
    (tmp_path / "vids" / "ok.mp4").write_bytes((data / "videos" / "clip0.mp4").read_bytes())
    trunc = (data / "videos" / "clip1.mp4").read_bytes()
    (tmp_path / "vids" / "trunc.mp4").write_bytes(trunc[: len(trunc) // 2])
    return tmp_path


def test_corrupt_and_missing_clips_are_skipped_and_reported(corrupt: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgefuse.clips"):
        s = clips.open(corrupt / "list.txt", PRE, workers=2, progress=False)
    assert s.ids == ["good"] and s.planned == 6
    reasons = dict(s.skipped)
    assert list(reasons) == ["holey", "nowhere", "badjpeg", "cut.mkv", "tiny"]
    assert "00010.jpg: frame missing" in reasons["holey"]
    assert "nowhere: missing" in reasons["nowhere"]
    assert "00006.jpg: unreadable frame" in reasons["badjpeg"]
    assert "cut.mkv: video ended after" in reasons["cut.mkv"] and "frame count says 40" in reasons["cut.mkv"]
    assert "2 frame(s) listed; clips need at least 3" in reasons["tiny"]
    summary = s.summary()
    assert "read 1 of 6 clips" in summary and "skipped 5" in summary
    assert all(f"  {clip_id}: " in summary for clip_id in reasons)
    assert sum("skipped clip" in r.getMessage() for r in caplog.records) == 4  # too short: one line with a count
    assert sum("skipped 1 of 6 clips with fewer than 3 frames (tiny)" in r.getMessage() for r in caplog.records) == 1

    v = clips.open(corrupt / "vids", PRE, workers=1, progress=False)
    assert v.ids == ["ok"] and [i for i, _ in v.skipped] == ["trunc"] and "trunc" in v.summary()

    (corrupt / "bad.txt").write_text("nowhere 30 2\nholey 30 1\n")
    with pytest.raises(EdgefuseError, match=r"bad.txt: none of the 2 clips could be read \(nowhere: .*missing"):
        clips.open(corrupt / "bad.txt", PRE, workers=1, progress=False)
    with pytest.raises(EdgefuseError, match="no frames named like '00001.jpg'; it holds e.g. 'img_00001.jpg'"):
        write_frames(corrupt / "kin" / "a", make_frames(5), template="img_{:05d}.jpg")
        clips.open(corrupt / "kin", PRE, workers=1, progress=False)


def test_two_workers_give_the_same_tensors(data: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFUSE_PROGRESS", "1")
    for src in (data / "frames" / "list.txt", data / "videos.txt"):
        one = clips.open(src, PRE, workers=1, progress=False).stack()
        two = clips.open(src, PRE, workers=2, progress=True).stack()
        assert "decoding clips: 6/6" in capsys.readouterr().err
        assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1]) and one[2] == two[2]
    train = clips.Sampling(num_segments=8, train=True, seed=4)
    a = clips.open(data / "frames" / "list.txt", PRE, train, workers=1, progress=False).stack()[0]
    b = clips.open(data / "frames" / "list.txt", PRE, train, workers=2, progress=False).stack()[0]
    assert torch.equal(a, b)


def test_spawn_workers_fallback(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where fork is unavailable (macOS, Windows) results come back through the pool's pipes."""
    want = clips.open(data / "videos", PRE, workers=1, progress=False).stack()[0]
    monkeypatch.setattr("multiprocessing.get_all_start_methods", lambda: ["spawn"])
    got = clips.open(data / "videos", PRE, workers=2, progress=False).stack()[0]
    assert torch.equal(got, want)


def test_npz_round_trip(data: Path, tmp_path: Path) -> None:
    s = clips.open(data / "frames" / "list.txt", PRE, classes=data / "classes.txt", workers=1, progress=False)
    out = s.to_npz(tmp_path / "clips.npz")
    back = clips.open(out, PRE, clips.Sampling(num_segments=8))
    assert torch.equal(back.stack()[0], s.stack()[0]) and back.ids == s.ids and back.labels == s.labels
    assert back.class_names == s.class_names and len(back) == 6 and not back.skipped
    assert next(iter(back)).data.shape == (8, 3, 32, 32)
    multi = clips.open(data / "frames" / "list.txt", PRE, clips.Sampling(num_segments=8, crops=3), workers=1,
                       progress=False)
    multi.to_npz(tmp_path / "multi.npz")
    assert torch.equal(clips.open(tmp_path / "multi.npz").stack()[0], multi.stack()[0])
    with pytest.raises(EdgefuseError, match="clips.npz: clips have 8 frames but 16 segments"):
        clips.open(tmp_path / "clips.npz", PRE, clips.Sampling(num_segments=16))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(EdgefuseError, match="junk.npz: not a readable .npz"):
        clips.open(tmp_path / "junk.npz")
