"""The workstation side of the device runner (edgefuse/backends/device_io.py): clip folders written for
device_runner.py and its logits read back. The runner itself, under Python 3.6, 3.8 and the project's Python, is
tested in tests/test_device_runner.py (which also reads back, here, what each interpreter's runner wrote)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefuse.backends import device_io
from edgefuse.backends import device_runner as dr
from edgefuse.errors import EdgefuseError


def clips_and_ids(n: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 2, 3, 4, 4)).astype(np.float32), [f"video_{i:02d}" for i in range(n)]


def test_runner_path_is_the_installed_runner() -> None:
    path = device_io.runner_path()
    assert path.name == "device_runner.py" and path.parent == Path(device_io.__file__).resolve().parent
    assert "def main(" in path.read_text()


@pytest.mark.parametrize("fmt, dtype", [("npy", np.float32), ("npz", np.float16), ("npy", np.float64)])
def test_clip_folder_round_trip(tmp_path: Path, fmt: str, dtype: Any) -> None:
    clips, ids = clips_and_ids(5)
    out = device_io.write_clip_folder(clips.astype(dtype), ids, "x", tmp_path / "c", chunk=2, fmt=fmt,
                                      metadata={"segments": 2})
    back, back_ids, manifest = device_io.read_clip_folder(out)
    assert back_ids == ids and back.dtype == (np.float16 if dtype == np.float16 else np.float32)
    np.testing.assert_allclose(back, clips.astype(dtype).astype(back.dtype))
    assert len(manifest["files"]) == 3 and manifest["edgefuse"] == {"segments": 2}
    assert sorted(p.name for p in out.iterdir()) == [f"clips-0000{i}.{fmt}" for i in range(3)] + ["manifest.json"]
    device_io.write_clip_folder(clips[:1], ids[:1], "x", out)  # rewritten smaller: the old chunks go
    assert sorted(p.name for p in out.iterdir()) == ["clips-00000.npy", "manifest.json"]


def test_write_clip_folder_refusals(tmp_path: Path) -> None:
    clips, ids = clips_and_ids(3)
    for bad_clips, bad_ids, message in [(clips, ids[:2], "3 clips but 2 ids"), (clips, ["a", "a", "b"], "not unique"),
                                        (clips.astype(np.int32), ids, "dtype int32"), (clips[0, 0, 0, 0], ids[:1],
                                                                                       "expected \\(N, T, 3, H, W\\)")]:
        with pytest.raises(EdgefuseError, match=message):
            device_io.write_clip_folder(bad_clips, bad_ids, "x", tmp_path / "c")
    with pytest.raises(EdgefuseError, match="no manifest.json"):
        device_io.read_clip_folder(tmp_path)


def test_read_runner_logits_refusals(tmp_path: Path) -> None:
    ids = ["a", "b"]
    with pytest.raises(EdgefuseError, match="no logits.json; run 'python3 device_runner.py"):
        device_io.read_runner_logits(tmp_path)
    timings = dr.per_clip_timings([(ids, {"h2d_ms": 1.0, "compute_ms": 2.0, "d2h_ms": 0.5})])
    record = {"tensorrt": "8.5.2.2", "api": "tensor", "cuda": "cuda-python", "gpu": {}, "batch": 2, "warmup": 0,
              "engine": "m.engine", "input_name": "clips", "output_name": "logits", "timings": timings}
    dr.write_outputs(str(tmp_path), ids, np.ones((2, 4)), record)
    assert device_io.read_runner_logits(tmp_path).timings.per_clip[1] == device_io.ClipTiming("b", 0, 2, 1.0, 2.0, 0.5)
    with pytest.raises(EdgefuseError, match="clip ids differ from the clip folder's"):
        device_io.read_runner_logits(tmp_path, expect_ids=["b", "a"])
    np.save(tmp_path / "logits.npy", np.ones((3, 4), np.float32))
    with pytest.raises(EdgefuseError, match=r"logits.npy has shape \[3, 4\] but logits.json lists 2 clips"):
        device_io.read_runner_logits(tmp_path)
    (tmp_path / "logits.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(EdgefuseError, match="not the output of this edgefuse's device_runner.py"):
        device_io.read_runner_logits(tmp_path)


def test_read_runner_logits_of_each_backend(tmp_path: Path) -> None:
    """Records without "backend" (device_runner.py before it) are TensorRT's; ``edgefuse infer`` records name theirs
    and need no TensorRT keys; a record that names neither version is incomplete."""
    ids = ["a", "b"]
    timings = dr.per_clip_timings([(ids, {"h2d_ms": 0.0, "compute_ms": 3.0, "d2h_ms": 0.0})])
    common = {"batch": 2, "warmup": 1, "engine": "m.engine", "input_name": "clips", "output_name": "logits",
              "timings": timings}
    old = {"tensorrt": "8.2.1.8", "api": "binding", "cuda": "pycuda", "gpu": {"name": "Xavier"}, **common}
    dr.write_outputs(str(tmp_path / "old"), ids, np.ones((2, 3)), old)
    run = device_io.read_runner_logits(tmp_path / "old").timings
    assert (run.backend, run.backend_version, run.tensorrt, run.device_name) == ("tensorrt", "8.2.1.8", "8.2.1.8",
                                                                                 "Xavier")
    cpu = {"backend": "onnxruntime", "backend_version": "1.32.0", "hardware": {"name": "EPYC"}, **common}
    dr.write_outputs(str(tmp_path / "cpu"), ids, np.ones((2, 3)), cpu)
    run = device_io.read_runner_logits(tmp_path / "cpu").timings
    assert (run.backend, run.backend_version, run.tensorrt, run.api, run.cuda, run.gpu) == (
        "onnxruntime", "1.32.0", "", "", "", {})
    assert run.device_name == "EPYC" and run.batch_compute_ms() == [3.0]
    dr.write_outputs(str(tmp_path / "bad"), ids, np.ones((2, 3)), {"backend": "openvino", **common})
    with pytest.raises(EdgefuseError, match="incomplete runner record .*backend_version"):
        device_io.read_runner_logits(tmp_path / "bad")


SPECIAL = np.array([[0.1, -0.0, 1e-45, -3.4028235e38, np.inf], [-np.inf, 1.0, 2.5e-39, 123456.789, -7.25]],
                   np.float32)  # a subnormal, the extremes, values float64 cannot hold as written


def test_stream_line_round_trip_is_exact_to_float32_bits() -> None:
    rng = np.random.default_rng(3)
    logits = np.concatenate([SPECIAL, (rng.standard_normal((3, 5)) * 10.0 ** rng.integers(-8, 8, (3, 5)))
                             .astype(np.float32)])
    ids = [f"v{i}" for i in range(len(logits))]
    line = dr.stream_line(4, ids, logits, {"h2d_ms": 0.5, "compute_ms": 2.25, "d2h_ms": 0.125})
    assert line.startswith(dr.STREAM_MARK + " {") and "\n" not in line
    batch = device_io.parse_stream_line(line + "\n")
    assert batch is not None and batch.batch_index == 4 and batch.ids == tuple(ids)
    assert batch.logits.dtype == np.float32 and np.array_equal(batch.logits.view(np.uint32), logits.view(np.uint32))
    assert (batch.h2d_ms, batch.compute_ms, batch.d2h_ms) == (0.5, 2.25, 0.125)
    assert batch.line() == line  # a StreamBatch writes the line it was read from


def test_parse_stream_line_ignores_other_lines() -> None:
    line = dr.stream_line(0, ["a"], np.ones((1, 2), np.float32), {})
    for other in ["", "\n", "progress 3/6", '{"batch_index": 0}', " " + line, "edgefuse-batch {}", "@@other {}"]:
        assert device_io.parse_stream_line(other) is None
    parsed = device_io.parse_stream_line(line)
    assert parsed is not None and parsed.compute_ms == 0.0 and parsed.logits.shape == (1, 2)


@pytest.mark.parametrize("body, message", [
    ("", "no space and JSON after @@edgefuse-batch"), ("x", "no space and JSON"),
    (' {"batch_index": 0, "ids": ["a"], "logits": [[1.0, 2', "not JSON"), (" [1, 2]", "not a JSON object"),
    (' {"batch_index": 0, "ids": ["a"], "logits": [[1.0]]}', "no h2d_ms, compute_ms, d2h_ms"),
    (' {"batch_index": -1, "ids": ["a"], "logits": [[1.0]], "h2d_ms": 0, "compute_ms": 0, "d2h_ms": 0}',
     "batch_index -1 is not a count"),
    (' {"batch_index": 0, "ids": [], "logits": [], "h2d_ms": 0, "compute_ms": 0, "d2h_ms": 0}', "ids is not"),
    (' {"batch_index": 0, "ids": ["a", "b"], "logits": [[1.0]], "h2d_ms": 0, "compute_ms": 0, "d2h_ms": 0}',
     "logits is not 2 rows of one length"),
    (' {"batch_index": 0, "ids": ["a"], "logits": [["x"]], "h2d_ms": 0, "compute_ms": 0, "d2h_ms": 0}',
     "a logit is not a number"),
    (' {"batch_index": 0, "ids": ["a"], "logits": [[1.0]], "h2d_ms": "fast", "compute_ms": 0, "d2h_ms": 0}',
     "a value is not a number")])
def test_malformed_stream_line_is_one_line_error(body: str, message: str) -> None:
    with pytest.raises(EdgefuseError) as e:
        device_io.parse_stream_line(dr.STREAM_MARK + body + "\n")
    text = str(e.value)
    assert text.startswith("stream line '@@edgefuse-batch") and message in text and "\n" not in text, text
    assert "device_runner.py" in text  # what to do
