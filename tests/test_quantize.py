"""``edgefuse calibrate``: statistics, thresholds, Q/DQ placement, FP16, the TensorRT cache, the
statistics cache (reuse and resume), the budget and bad input. Small random-weight models on a
small generated benchmark; the trained-zoo accuracy figures are in test_zoo.py."""
from __future__ import annotations

import dataclasses
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from edgefuse.errors import EdgefuseError
from edgefuse.export.api import export
from edgefuse.export.config import ExportConfig
from edgefuse.graph import hygiene
from edgefuse.graph.runner import OrtRunner
from edgefuse.lab.synth import SynthConfig, generate
from edgefuse.quantize import CalibrateConfig, calibrate, qdq
from edgefuse.quantize.calibrate import collect_stats
from edgefuse.quantize.evaluate import decisions_of
from edgefuse.quantize.stats import (
    NUM_BINS,
    ActivationStats,
    Histogram,
    amax_entropy,
    amax_mse,
    amax_percentile,
    thresholds,
)
from edgefuse.quantize.trtcache import encode_version, read_cache, write_cache


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("synth") / "d"
    generate(SynthConfig(out=out, train=0, val=20, calib=40, frames=8, size=64, formats=("frames",), workers=1))
    return out


def _export(tmp: Path, model: str, **kw: object) -> Path:
    cfg = ExportConfig(model=model, output=tmp / f"{model}.onnx", num_classes=10, size=56,
                       options={"width": 0.25}, **kw)  # type: ignore[arg-type]
    return export(cfg).path


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("graphs")
    return {m: _export(tmp, m) for m in ("tsm_resnet18", "adafuse_tsm_resnet18")}


def _cfg(graphs: dict[str, Path], bench: Path, tmp: Path, model: str = "tsm_resnet18", **kw: object) -> CalibrateConfig:
    base: dict[str, object] = dict(model=graphs[model], clips=bench / "calib.txt", output=tmp / "out.onnx",
                                   num_clips=24, holdout=bench / "val.txt", num_holdout=12, cache_dir=tmp / "cache",
                                   progress=False, workers=1)
    base.update(kw)
    return CalibrateConfig(**base)  # type: ignore[arg-type]


# --- statistics ------------------------------------------------------------------------------

def test_histogram_grows_exactly_and_thresholds_are_ordered() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(50_000), 4 * rng.standard_normal(50_000)
    h = Histogram()
    h.add(a)
    h.add(b)  # range grows: bins merge pairwise
    both = np.abs(np.concatenate([a, b]))
    assert h.count == both.size
    assert h.amax == pytest.approx(both.max(), rel=1e-6)
    assert h.width * NUM_BINS > both.max()
    # the histogram equals a direct one at the final width
    direct = np.bincount(np.minimum((both / h.width).astype(np.int64), NUM_BINS - 1), minlength=NUM_BINS)
    assert np.abs(direct - h.counts).sum() <= 2  # float rounding at bin edges only
    p = amax_percentile(h, 99.9)
    assert abs(p - np.percentile(both, 99.9)) <= 2 * h.width
    for amax in (amax_entropy(h), amax_mse(h), p):
        assert 0 < amax <= h.amax
    # uniform data: clipping only hurts, so the least-MSE threshold is near the max
    u = Histogram()
    u.add(rng.uniform(-1, 1, 100_000))
    assert amax_mse(u) > 0.95
    with pytest.raises(EdgefuseError, match="NaN"):
        Histogram().add(np.array([1.0, np.nan]))


def test_stats_round_trip_and_unknown_method(tmp_path: Path) -> None:
    stats = ActivationStats.empty(["x", "y"])
    stats.histograms["x"].add(np.linspace(-2, 3, 1000))
    stats.histograms["y"].add_range(np.array([-7.0, 1.0]))
    stats.clips = 3
    back = ActivationStats.load(stats.save(tmp_path / "s.npz"))
    assert back.clips == 3 and np.array_equal(back.histograms["x"].counts, stats.histograms["x"].counts)
    assert back.histograms["y"].amax == 7.0
    assert thresholds(back, "minmax", ["x"]) == {"x": pytest.approx(3.0)}
    with pytest.raises(EdgefuseError, match="unknown calibration method"):
        thresholds(back, "kl")


# --- TensorRT calibration cache ----------------------------------------------------------------

def test_trt_cache_format_and_round_trip(tmp_path: Path) -> None:
    assert encode_version("8.6.1") == "8601" and encode_version("10.3.0") == "100300"
    amax = {"input": 2.64, "/backbone/conv1/Conv_output_0": 0.5}
    path = write_cache(tmp_path / "c.cache", amax, version="10.3.0")
    lines = path.read_text().splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"
    name, value = lines[1].split(": ")
    assert struct.unpack(">f", bytes.fromhex(value))[0] == pytest.approx(amax[name] / 127, rel=1e-7)
    back = read_cache(path)
    assert back == {k: pytest.approx(v, rel=1e-6) for k, v in amax.items()}
    (tmp_path / "bad.cache").write_text("hello\n")
    with pytest.raises(EdgefuseError, match="not a TensorRT calibration cache"):
        read_cache(tmp_path / "bad.cache")


# --- INT8 graph --------------------------------------------------------------------------------

def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def test_int8_graph_is_symmetric_qdq_placed_for_tensorrt(graphs, bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = calibrate(_cfg(graphs, bench, tmp_path, method="minmax", trt_cache=tmp_path / "m.cache"))
    q = onnx.load(str(result.path))
    inits = _inits(q)
    producer = {o: n for n in q.graph.node for o in n.output}
    quant = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert quant
    for n in quant:  # symmetric: int8 with zero point 0
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    convs = [n for n in q.graph.node if n.op_type in ("Conv", "Gemm")]
    for n in convs:
        src = producer.get(n.input[0])
        if n.name == "/fc/Gemm":  # the classifier stays FP32 by default
            assert src is None or src.op_type != "DequantizeLinear"
            continue
        assert src is not None and src.op_type == "DequantizeLinear", n.name  # activation input quantized
        w = producer[n.input[1]]
        assert w.op_type == "DequantizeLinear"  # per-channel weight Q/DQ pair on an FP32 weight
        assert inits[w.input[1]].shape == (inits[producer[w.input[0]].input[0]].shape[0],)
    assert not any(producer.get(i) is not None and producer[i].op_type == "QuantizeLinear"
                   for n in q.graph.node if n.op_type == "Conv" for i in n.output)  # no Q/DQ on conv outputs
    # residual adds: the identity input carries a Q/DQ, the conv input does not
    adds = [n for n in q.graph.node if n.op_type == "Add" and "/layer" in n.name and n.name.count("/") == 3]
    assert adds
    for add in adds:
        kinds = sorted(producer[i].op_type for i in add.input)
        assert kinds in (["Conv", "DequantizeLinear"], ["Conv", "Conv"]), (add.name, kinds)
    # activation scales are the calibrated amax / 127 and the TensorRT cache holds the same scales
    scales = qdq.activation_scales(q)
    cache = read_cache(tmp_path / "m.cache")
    for tensor, scale in scales.items():
        assert cache[tensor] == pytest.approx(scale * 127, rel=1e-6)
    # passes every TensorRT target's op and Q/DQ check (TensorRT 8.0 / 8.2 read opsets up to 13 only: an opset-17
    # export is for 8.4 and later, 'export --target jetpack4.6' writes 13), and ONNX Runtime runs it on its INT8 kernels
    report = hygiene.check(q)
    verdicts = {v.target: v for v in report.verdicts}
    assert report.ok and all(v.ok for k, v in verdicts.items() if k not in ("8.0", "8.2")), report.to_dict()
    assert all(verdicts[k].problems == ["opset 17 outside the parser's range 7-13"] for k in ("8.0", "8.2"))
    assert result.report.result.clips == 12
    assert result.report.macs.low > 0.9 * result.report.macs.total
    meta = json.loads(next(p.value for p in q.metadata_props if p.key == "edgefuse.calibration"))
    assert meta["method"] == "minmax" and meta["excluded_layers"] == ["/fc/Gemm"]


def test_trt_cache_reads_back_into_the_same_qdq_graph(graphs, bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = calibrate(_cfg(graphs, bench, tmp_path, method="percentile", trt_cache=tmp_path / "p.cache"))
    again = calibrate(_cfg(graphs, bench, tmp_path, output=tmp_path / "from_cache.onnx",
                           from_trt_cache=tmp_path / "p.cache"))
    a, b = onnx.load(str(first.path)), onnx.load(str(again.path))
    sa, sb = qdq.activation_scales(a), qdq.activation_scales(b)
    assert sa.keys() == sb.keys()
    assert all(sb[k] == pytest.approx(sa[k], rel=1e-6) for k in sa)


@pytest.mark.slow  # three calibrations (~13 s)
def test_statistics_cache_skips_decoding_and_same_seed_same_graph(graphs, bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "bench"
    shutil.copytree(bench, data)
    cfg = _cfg(graphs, data, tmp_path, method="entropy")
    first = calibrate(cfg)
    graph_a = onnx.load(str(first.path)).graph.SerializeToString()
    shutil.rmtree(data / "frames")  # the clips are gone: only the cache can serve the rerun
    second = calibrate(dataclasses.replace(cfg, method="mse", output=tmp_path / "mse.onnx"))
    assert "from the cache" in second.report.statistics
    third = calibrate(dataclasses.replace(cfg, output=tmp_path / "again.onnx"))
    assert onnx.load(str(third.path)).graph.SerializeToString() == graph_a
    assert qdq.activation_scales(onnx.load(str(second.path))) != qdq.activation_scales(onnx.load(str(third.path)))


def test_interrupted_statistics_resume_to_the_same_result(graphs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = onnx.load(str(graphs["tsm_resnet18"]))
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((20, 8, 3, 56, 56)).astype(np.float32)
    full = collect_stats(model, clips, tmp_path / "full", progress=False)
    broken = clips.copy()
    broken[18] = np.nan  # the run dies at clip 18, after the checkpoint at 16
    (tmp_path / "resume").mkdir()
    (tmp_path / "full").mkdir(exist_ok=True)
    with pytest.raises(EdgefuseError, match="NaN"):
        collect_stats(model, broken, tmp_path / "resume", progress=False)
    assert ActivationStats.load(tmp_path / "resume" / "stats.partial.npz").clips == 16
    resumed = collect_stats(model, clips, tmp_path / "resume", progress=False)
    assert resumed.clips == 20 and not (tmp_path / "resume" / "stats.partial.npz").exists()
    for name, h in full.histograms.items():
        assert np.array_equal(h.counts, resumed.histograms[name].counts) and h.width == resumed.histograms[name].width


@pytest.fixture(scope="module")
def zoo_graphs(tmp_path_factory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    from edgefuse.export.config import make_config

    tmp = tmp_path_factory.mktemp("zoo_graphs")
    from edgefuse.models import list_pretrained

    shipped = {p.name for p in list_pretrained()}
    names = {"tsm": "synth_tsm_r18w025", "adafuse": "synth_adafuse_tsm_r18w025"}
    return {k: export(make_config(None, tmp / f"{v}.onnx", model=v)).path for k, v in names.items() if v in shipped}


def _zoo_cfg(zoo_graphs, synth: Path, tmp: Path, arch: str = "tsm", **kw: object) -> CalibrateConfig:  # type: ignore[no-untyped-def]
    base: dict[str, object] = dict(model=zoo_graphs[arch], clips=synth / "calib.txt", output=tmp / f"{arch}.q.onnx",
                                   num_clips=64, holdout=synth / "val.txt", num_holdout=100, cache_dir=tmp / "cache",
                                   progress=False)
    base.update(kw)
    return CalibrateConfig(**base)  # type: ignore[arg-type]


# TSM's INT8 graph is calibrated and checked again by the engine tests; its full zoo run is with the slow cases
@pytest.mark.slow  # both archs: ~20 s each on two cores; flips per block: test_adafuse_int8_reports_flip_rate_per_policy_block
@pytest.mark.parametrize("arch", ["tsm", "adafuse"])
def test_zoo_int8_keeps_accuracy_and_policy(arch, zoo_graphs, synth_default, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The trained zoo in INT8 on ONNX Runtime's CPU kernels: >= 98 % top-1 agreement and within
    1 point of FP32 on 100 val clips; AdaFuse's decisions barely flip."""
    rep = calibrate(_zoo_cfg(zoo_graphs, synth_default, tmp_path, arch)).report.result
    assert rep.top1_agreement >= 0.98
    assert rep.top1_reference is not None and rep.top1_candidate is not None
    assert round(100 * (rep.top1_reference - rep.top1_candidate), 6) <= 1.0  # points
    if arch == "adafuse":
        assert len(rep.flip_rate) == 8 and rep.mean_flip_rate is not None and rep.mean_flip_rate < 0.05


@pytest.mark.slow  # FP16 of a graph is checked in the default suite by test_fp16_graph_keeps_fp32_io_and_agrees
@pytest.mark.parametrize("arch", ["tsm", "adafuse"])
def test_zoo_fp16_agrees(arch, zoo_graphs, synth_default, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rep = calibrate(_zoo_cfg(zoo_graphs, synth_default, tmp_path, arch, precision="fp16")).report.result
    assert rep.top1_agreement >= 0.995
    if arch == "tsm":
        assert rep.max_abs_logit_error < 0.05
    else:  # FP16 features move a few near-tie decisions, which moves those clips' logits
        assert rep.mean_flip_rate is not None and rep.mean_flip_rate < 0.01


@pytest.mark.slow  # ~30 s on two cores (a sensitivity sweep of every layer)
def test_budget_returns_the_damaged_layer_to_fp32(zoo_graphs, synth_default, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A layer whose range is crushed (amax 1/1000 of the real one) is by far the most sensitive;
    the budget must find it first and put it back in FP32, and the drop then fits the budget."""
    import importlib

    mod = importlib.import_module("edgefuse.quantize.calibrate")
    real = mod.thresholds
    victim = "/backbone/layer2.0/conv2/Conv"  # its input is a Relu output (conv1 reads the shift, tied to its source)
    model = onnx.load(str(zoo_graphs["tsm"]))
    tensor = next(n.input[0] for n in model.graph.node if n.name == victim)

    def crushed(*args, **kw):  # type: ignore[no-untyped-def]
        out = real(*args, **kw)
        out[tensor] = out[tensor] / 1000
        return out

    monkeypatch.setattr(mod, "thresholds", crushed)  # damages edgefuse's own thresholds, not a library
    result = calibrate(_zoo_cfg(zoo_graphs, synth_default, tmp_path, max_drop=0.5, num_holdout=60))
    rep = result.report
    assert rep.first_try is not None and rep.first_try.top1_agreement < 0.9
    assert rep.budget_layers[0] == victim
    assert max(rep.sensitivity, key=rep.sensitivity.__getitem__) == victim
    assert rep.within_budget and rep.drop_points <= 0.5
    assert victim not in qdq.quantized_node_names(onnx.load(str(result.path)))
    assert rep.macs.budget_layers_macs > 0


# --- FP16 and AdaFuse ---------------------------------------------------------------------------

@pytest.mark.slow  # ~10 s; FP16 engines also build and run in test_inception_deploy and the demo
def test_fp16_graph_keeps_fp32_io_and_agrees(graphs, bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = calibrate(_cfg(graphs, bench, tmp_path, model="adafuse_tsm_resnet18", precision="fp16"))
    g = onnx.load(str(result.path))
    assert g.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert g.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    half = [i for i in g.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert half and any(i.name.startswith("onnx::Conv") or "Conv" in i.name for i in half)
    # AdaFuse's policy stays FP32 by default: its Gemm weights are not FP16
    assert all("adafuse" not in i.name for i in half)
    assert result.report.result.clips == 12  # it runs; accuracy is checked on the trained zoo below


def test_adafuse_int8_reports_flip_rate_per_policy_block(graphs, bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = onnx.load(str(graphs["adafuse_tsm_resnet18"]))
    assert len(decisions_of(model)) == 8 and len(decisions_of(model).masks) == 8  # keep / reuse masks per block
    result = calibrate(_cfg(graphs, bench, tmp_path, model="adafuse_tsm_resnet18", method="minmax"))
    flips = result.report.result.flip_rate
    assert len(flips) == 8 and all(0.0 <= v <= 1.0 for v in flips.values())
    q = onnx.load(str(result.path))
    quantized = set(qdq.quantized_node_names(q))
    assert not any("/adafuse/" in n for n in quantized)  # policy nets stay FP32 by default
    # with --no-default-excludes the policy nets are quantized too
    allq = calibrate(_cfg(graphs, bench, tmp_path, model="adafuse_tsm_resnet18", method="minmax",
                          default_excludes=False, output=tmp_path / "all.onnx"))
    assert any("/adafuse/" in n for n in qdq.quantized_node_names(onnx.load(str(allq.path))))
    # the runner exposes the decisions of the quantized graph too: one-hot per channel
    dec = decisions_of(model)
    runner = OrtRunner(q, extra_outputs=dec.names)
    out = runner.run_logits_and(np.zeros((1, 8, 3, 56, 56), np.float32), dec.names)
    onehots = dec.as_onehots(out.tensors)
    assert len(onehots) == 8
    for value in onehots.values():
        assert set(np.unique(value)) <= {0.0, 1.0}
        assert np.array_equal(value.reshape(-1, 3).sum(axis=1), np.ones(value.size // 3))  # one action each


@pytest.mark.parametrize("model", ["tsm_online_resnet18", "adafuse_tsn_resnet18"])
def test_stream_graph_calibrates_frame_by_frame(model: str, bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A stream graph (one frame in, states carried) calibrates like a clip graph: its statistics see every frame
    of every clip, fed from zero state; the INT8 graph keeps the state inputs and outputs and their layout, its
    frame logits follow the FP32 stream's, AdaFuse's decisions are compared per block over the frames, and the CPU
    engine built from it runs the stream (real ONNX Runtime; random weights, so no accuracy is judged)."""
    from edgefuse.backends import BuildConfig, build_engine, load
    from edgefuse.graph.metadata import read_metadata

    import torch

    torch.manual_seed(0)  # the export's random weights: the same whatever ran before
    fp32 = _export(tmp_path, model, policy="stream", segments=8)
    result = calibrate(CalibrateConfig(model=fp32, clips=bench / "calib.txt", output=tmp_path / "s8.onnx",
                                       num_clips=8, holdout=bench / "val.txt", num_holdout=4,
                                       cache_dir=tmp_path / "cache", progress=False, workers=1))
    q = onnx.load(str(result.path))
    assert sum(n.op_type == "QuantizeLinear" for n in q.graph.node) > 10
    spec = read_metadata(onnx.load(str(fp32)))["stream_states"]
    assert read_metadata(q)["stream_states"] == spec
    assert [i.name for i in q.graph.input] == ["frame", *(s["name"] for s in spec)]
    stats = ActivationStats.load(next((tmp_path / "cache").rglob("stats.npz")))
    assert stats.clips == 8 and stats.histograms["frame"].count == 8 * 8 * 3 * 56 * 56  # clips x frames x pixels
    report = result.report.result
    assert report.clips == 4 and report.cosine > 0.9
    assert len(report.flip_rate) == (8 if model.startswith("adafuse") else 0)
    clips = np.random.default_rng(0).standard_normal((2, 8, 3, 56, 56)).astype(np.float32)
    want = OrtRunner(fp32).run_frames(clips)  # (N, T, K)
    engine = build_engine(BuildConfig(result.path, tmp_path / "s8.engine", device="cpu", backend="onnxruntime"))
    for got in (OrtRunner(q).run_frames(clips), load(engine.path).run_frames(clips)):  # type: ignore[attr-defined]
        assert got.shape == want.shape
        cos = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)  # (N, T)
        assert cos.min() > 0.9, cos


# --- bad input ----------------------------------------------------------------------------------

def test_bad_input_gives_one_clear_error(graphs, bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.cli import cli

    ok = _cfg(graphs, bench, tmp_path, method="minmax")
    q = calibrate(ok).path
    with pytest.raises(EdgefuseError, match="already quantized"):
        calibrate(dataclasses.replace(ok, model=q))
    with pytest.raises(EdgefuseError, match="at least 8 clips"):
        dataclasses.replace(ok, num_clips=4)
    with pytest.raises(EdgefuseError, match="unknown calibration method"):
        dataclasses.replace(ok, method="kl")
    # clips of the wrong size for a static graph (112 px .npz for a 56 px graph)
    npz = tmp_path / "big.npz"
    np.savez(npz, clips=np.zeros((10, 8, 3, 112, 112), np.float32), labels=np.zeros(10, np.int64))
    with pytest.raises(EdgefuseError, match="112"):
        calibrate(dataclasses.replace(ok, clips=npz, holdout=npz, num_clips=8, cache_dir=tmp_path / "c2"))
    # an ONNX file that is not one, and a graph without edgefuse metadata
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    runner = CliRunner()
    res = runner.invoke(cli, ["calibrate", str(tmp_path / "junk.onnx"), "--clips", str(bench / "calib.txt"),
                              "-o", str(tmp_path / "x.onnx")])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "not a readable ONNX model" in res.output
    bare = onnx.load(str(graphs["tsm_resnet18"]))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    res = runner.invoke(cli, ["calibrate", str(tmp_path / "bare.onnx"), "--clips", str(bench / "calib.txt"),
                              "-o", str(tmp_path / "x.onnx")])
    assert res.exit_code == 1 and "edgefuse export" in res.output
    res = runner.invoke(cli, ["calibrate", str(graphs["tsm_resnet18"]), "--clips", str(bench / "calib.txt"),
                              "--method", "kl", "-o", str(tmp_path / "x.onnx")])
    assert res.exit_code == 2 and "kl" in res.output
    assert not (tmp_path / "x.onnx").exists()


# --- the report and the process's logging -------------------------------------------------------

def test_report_round_trips_through_its_json_file(graphs, bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.quantize import CalibrateReport, CalibrateResult

    result = calibrate(_cfg(graphs, bench, tmp_path, model="adafuse_tsm_resnet18", method="minmax"))
    saved = json.loads(result.report_path.read_text())
    assert saved == json.loads(json.dumps(result.report.to_dict()))  # the file is the report's to_dict
    assert CalibrateReport.from_dict(saved) == result.report
    assert CalibrateResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert saved["drop_points"] == result.report.drop_points and saved["macs"]["int8"] == result.report.macs.low
    assert set(saved["result"]["flip_rate"]) == set(result.report.result.flip_rate) and saved["result"]["mean_flip_rate"]


def test_calibrate_leaves_the_process_logging_as_it_was(graphs, bench, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """ONNX Runtime's quantizer is quietened on its own records only: a process-wide logging.disable set
    by the user survives a calibrate, other loggers keep their INFO, and the bias-copy chatter is dropped."""
    import logging

    logging.disable(logging.DEBUG)  # the user's own setting
    try:
        with caplog.at_level(logging.INFO):
            calibrate(_cfg(graphs, bench, tmp_path, method="minmax"))
            assert logging.root.manager.disable == logging.DEBUG
            logging.getLogger("edgefuse.test").info("still heard")
        assert "still heard" in caplog.text
        assert not any("onnxruntime" in r.pathname and r.levelno < logging.WARNING for r in caplog.records)
        assert not logging.getLogger().filters
    finally:
        logging.disable(logging.NOTSET)
