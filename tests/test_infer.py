"""``edgefuse infer`` (edgefuse/backends/infer.py, edgefuse/cli/infer.py): device_runner.py's run for any engine
edgefuse loads, on real ONNX Runtime engines and graphs (nothing mocked): its logits against the engine's own run,
its --stream lines read back with device_io.parse_stream_line, its output read by device_io.read_runner_logits and
compared by 'edgefuse validate'. The stream format itself, under Python 3.6 and 3.8, is tested in
tests/test_device_runner.py; parse_stream_line's refusals in tests/test_device_io.py."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgefuse import backends
from edgefuse.backends import device_io
from edgefuse.backends.device_io import StreamBatch, parse_stream_line
from edgefuse.backends.infer import InferConfig, InferResult, infer
from edgefuse.cli import cli
from edgefuse.errors import EdgefuseError

REPO = Path(__file__).resolve().parent.parent
IDS = [f"clip_{i}" for i in range(6)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, np.ndarray]:
    """(ONNX Runtime engine, its FP32 graph, a clip folder of 6 random clips in files of 4, the clips): the shipped
    synthetic TSM exported and built here for the CPU, as tests/test_remote_bench.py's engine."""
    from edgefuse.backends import BuildConfig, build_engine
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config

    tmp = tmp_path_factory.mktemp("infer")
    fp32 = export(make_config(None, tmp / "tsm.onnx", model="synth_tsm_r18w025")).path
    engine = build_engine(BuildConfig(fp32, tmp / "tsm.engine", device="cpu", backend="onnxruntime")).path
    clips = np.random.default_rng(0).standard_normal((len(IDS), 8, 3, 112, 112)).astype(np.float32)
    folder = device_io.write_clip_folder(clips, IDS, "clips", tmp / "clips", chunk=4)
    return engine, fp32, folder, clips


@pytest.fixture(scope="module")
def inferred(built: tuple[Path, Path, Path, np.ndarray]) -> tuple[Path, str]:
    """'edgefuse infer' run once in-process: (its output folder, what it printed)."""
    engine, _, folder, _ = built
    out = folder.parent / "out"
    res = CliRunner().invoke(cli, ["infer", str(engine), str(folder), "-o", str(out), "--warmup", "1"])
    assert res.exit_code == 0, res.output
    return out, res.stdout


def test_infer_writes_the_engines_own_logits(built: tuple[Path, Path, Path, np.ndarray],
                                             inferred: tuple[Path, str]) -> None:
    engine, _, _, clips = built
    out, printed = inferred
    assert "ran tsm.engine (onnxruntime" in printed and "6 clips, 1 per run: 6 runs" in printed
    back = device_io.read_runner_logits(out, expect_ids=IDS)
    expected = backends.load(engine).run(clips)  # a static batch of 1: the same runs
    assert back.logits.dtype == np.float32 and np.array_equal(back.logits, expected)
    run = back.timings
    sidecar = backends.load(engine).info
    assert (run.backend, run.backend_version, run.tensorrt) == ("onnxruntime", sidecar["backend_version"], "")
    assert (run.batch, run.warmup, run.engine, run.input_name, run.output_name) == (1, 1, "tsm.engine", "clips",
                                                                                     "logits")
    assert run.device_name == sidecar["hardware"]["name"] and run.api == run.cuda == "" and run.gpu == {}
    assert [t.id for t in run.per_clip] == IDS and all(t.clips_in_batch == 1 for t in run.per_clip)
    assert len(run.batch_compute_ms()) == 6 and all(ms > 0 for ms in run.batch_compute_ms())
    assert all(t.h2d_ms == t.d2h_ms == 0.0 for t in run.per_clip)


def test_stream_lines_as_a_subprocess(built: tuple[Path, Path, Path, np.ndarray], tmp_path: Path) -> None:
    """``python -m edgefuse infer --stream`` as a device runs it: stdout holds stream lines only, one per batch, and
    together they are logits.npy to the bit."""
    engine, _, folder, _ = built
    proc = subprocess.run([sys.executable, "-m", "edgefuse", "infer", str(engine), str(folder), "-o",
                           str(tmp_path / "out"), "--warmup", "0", "--stream"], check=False, capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    batches = [parse_stream_line(line) for line in lines]
    assert len(lines) == 6 and all(b is not None for b in batches), proc.stdout[:500]
    got = [b for b in batches if b is not None]
    assert [b.batch_index for b in got] == list(range(6)) and [i for b in got for i in b.ids] == IDS
    npy = np.load(tmp_path / "out" / "logits.npy")
    assert np.array_equal(np.concatenate([b.logits for b in got]).view(np.uint32), npy.view(np.uint32))
    assert all(b.compute_ms > 0 and b.h2d_ms == b.d2h_ms == 0.0 for b in got)
    assert "ran tsm.engine" in proc.stderr and "infer:" not in proc.stderr  # the summary on stderr, no progress


def test_validate_compares_infers_output(built: tuple[Path, Path, Path, np.ndarray], inferred: tuple[Path, str],
                                         tmp_path: Path) -> None:
    _, fp32, folder, _ = built
    out, _ = inferred
    res = CliRunner().invoke(cli, ["validate", str(out), "--reference", str(fp32), "--clips", str(folder),
                                   "--report", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "top-1 agreement" in res.stdout and "100.00%" in res.stdout and "verdict: pass" in res.stdout


def _dynamic_graph(path: Path) -> np.ndarray:
    """A small graph with a dynamic batch N: clips (N, 2, 3, 4, 4) -> logits (N, 5) by one MatMul; its weights."""
    w = np.random.default_rng(1).standard_normal((96, 5)).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["clips", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    graph = helper.make_graph(
        nodes, "dyn", [helper.make_tensor_value_info("clips", TensorProto.FLOAT, ["N", 2, 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(np.array([-1, 96], np.int64), "shape"), numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return w


def test_dynamic_batch_runs_batch_clips_per_run(tmp_path: Path) -> None:
    _dynamic_graph(tmp_path / "dyn.onnx")
    clips = np.random.default_rng(2).standard_normal((7, 2, 3, 4, 4)).astype(np.float32)
    ids = [f"v{i}" for i in range(7)]
    folder = device_io.write_clip_folder(clips, ids, "clips", tmp_path / "clips", chunk=2)
    seen: list[StreamBatch] = []
    result = infer(InferConfig(tmp_path / "dyn.onnx", folder, tmp_path / "out", batch=3, warmup=0, progress=False),
                   on_batch=seen.append)
    assert isinstance(result, InferResult) and (result.clips, result.batch, result.runs) == (7, 3, 3)
    assert InferResult.from_dict(result.to_dict()) == result and result.backend == "onnxruntime"
    assert [len(b.ids) for b in seen] == [3, 3, 1] and [i for b in seen for i in b.ids] == ids
    session = ort.InferenceSession(str(tmp_path / "dyn.onnx"), providers=["CPUExecutionProvider"])
    expected = np.concatenate([session.run(None, {"clips": clips[i:i + 3]})[0] for i in range(0, 7, 3)])
    back = device_io.read_runner_logits(tmp_path / "out", expect_ids=ids)
    assert np.array_equal(back.logits, expected) and np.array_equal(np.concatenate([b.logits for b in seen]), expected)
    assert back.timings.batch == 3 and back.timings.backend_version == ort.__version__
    assert [t.clips_in_batch for t in back.timings.per_clip] == [3] * 6 + [1]
    # a stream line made from a batch reads back as that batch
    again = parse_stream_line(seen[2].line())
    assert again is not None and again.ids == ("v6",) and np.array_equal(again.logits, seen[2].logits)
    default = infer(InferConfig(tmp_path / "dyn.onnx", folder, tmp_path / "out1", warmup=0, progress=False))
    assert (default.batch, default.runs) == (1, 7)


def test_bad_input_is_one_line_before_any_work(built: tuple[Path, Path, Path, np.ndarray], tmp_path: Path) -> None:
    engine, _, folder, _ = built
    _dynamic_graph(tmp_path / "dyn.onnx")
    small = device_io.write_clip_folder(np.zeros((2, 2, 3, 4, 5), np.float32), ["a", "b"], "clips", tmp_path / "s")
    cases = [([str(tmp_path / "none.engine"), str(folder)], "none.engine: no such engine file"),
             ([str(engine), str(tmp_path)], "no manifest.json"),
             ([str(engine), str(tmp_path / "nowhere")], "not a folder"),
             ([str(engine), str(small)], "takes (batch, 8, 3, 112, 112), the clips are [2, 3, 4, 5]"),
             ([str(tmp_path / "dyn.onnx"), str(small)], "takes (batch, 2, 3, 4, 4), the clips are [2, 3, 4, 5]"),
             ([str(engine), str(folder), "--batch", "2"], "the engine's batch is fixed at 1; drop --batch 2")]
    for args, message in cases:
        out = tmp_path / "out"
        res = CliRunner().invoke(cli, ["infer", *args, "-o", str(out)])
        assert res.exit_code == 1 and res.stdout == "", (args, res.output)
        assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
        assert not out.exists()
    with pytest.raises(EdgefuseError, match="warmup -1"):
        infer(InferConfig(engine, folder, tmp_path / "out", warmup=-1))
