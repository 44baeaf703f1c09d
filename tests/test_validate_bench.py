"""``edgefuse validate``, ``edgefuse bench`` and ``edgefuse demo`` on the shipped zoo: a damaged
engine is caught and its layer named, the budget gates the exit code, bench's figures come from
its raw timings, and the demo runs the whole pipeline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from edgefuse.backends import BuildConfig, build_engine
from edgefuse.bench import BenchConfig, BenchReport, EstimateReport, bench
from edgefuse.cli import cli
from edgefuse.demo import DemoReport
from edgefuse.errors import EdgefuseError
from edgefuse.validate import ValidateConfig, validate

VICTIM = "/backbone/layer2.1/conv1/Conv"


@pytest.fixture(scope="module")
def tsm(tmp_path_factory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config

    tmp = tmp_path_factory.mktemp("validate")
    fp32 = export(make_config(None, tmp / "tsm.onnx", model="synth_tsm_r18w025")).path
    engine = build_engine(BuildConfig(fp32, tmp / "tsm.engine", device="cpu", backend="onnxruntime")).path
    # a deliberately damaged copy: one convolution's weights perturbed
    model = onnx.load(str(fp32))
    node = next(n for n in model.graph.node if n.name == VICTIM)
    init = next(i for i in model.graph.initializer if i.name == node.input[1])
    w = numpy_helper.to_array(init)
    noise = np.random.default_rng(0).standard_normal(w.shape).astype(np.float32) * w.std()
    init.CopyFrom(numpy_helper.from_array(w + noise, init.name))
    damaged_onnx = tmp / "damaged.onnx"
    onnx.save(model, str(damaged_onnx))
    damaged = build_engine(BuildConfig(damaged_onnx, tmp / "damaged.engine", device="cpu", backend="onnxruntime")).path
    return {"fp32": fp32, "engine": engine, "damaged": damaged, "tmp": tmp}


def test_validate_passes_a_good_engine_with_every_figure(tsm, synth_default, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rep = validate(ValidateConfig(engine=tsm["engine"], reference=tsm["fp32"], clips=synth_default / "val.txt",
                                  num_clips=40, report=tmp_path / "r.json", html=tmp_path / "r.html", progress=False))
    r = rep.result
    assert rep.verdict == "pass" and r.top1_agreement == 1.0 and r.max_abs_error < 1e-3
    assert r.top1_reference is not None and r.top1_engine is not None and r.top5_engine is not None
    assert r.top1_reference == r.top1_engine > 0.9 and r.top5_engine >= r.top1_engine
    assert r.per_class is not None and len(r.per_class) == 10 and r.kl_mean < 1e-6
    saved = json.loads((tmp_path / "r.json").read_text())
    assert len(saved["result"]["per_clip"]["max_abs_error"]) == 40  # raw per-clip figures kept
    page = (tmp_path / "r.html").read_text()
    assert "<table>" in page and page.count("data:image/png;base64,") == 2


def test_validate_catches_a_damaged_engine_and_names_the_layer(tsm, synth_default) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    res = runner.invoke(cli, ["validate", str(tsm["damaged"]), "--reference", str(tsm["fp32"]), "--clips",
                              str(synth_default / "val.txt"), "--num-clips", "40", "--per-layer", "--max-drop", "0.5"])
    assert res.exit_code == 1, res.output  # over the budget: exit 1, so CI can gate on it
    assert "verdict: FAIL" in res.output
    assert f"departing layer: {VICTIM}" in res.output, res.output
    rep = validate(ValidateConfig(engine=tsm["damaged"], reference=tsm["fp32"], clips=synth_default / "val.txt",
                                  num_clips=8, per_layer=True, progress=False, max_drop=100.0))
    pl = rep.per_layer
    assert pl is not None and pl.relative_error is not None
    assert pl.layer == VICTIM and pl.relative_error > 0.05
    assert all(b.relative_error <= 0.05 for b in pl.before)  # everything before it still matches


def test_validate_against_a_checkpoint_runs_pytorch_eager(tsm, synth_default) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.models import get_pretrained

    rep = validate(ValidateConfig(engine=tsm["engine"], reference=get_pretrained("synth_tsm_r18w025").path,
                                  clips=synth_default / "val.txt", num_clips=16, progress=False))
    assert rep.result.top1_agreement == 1.0 and rep.result.max_abs_error < 1e-3


def test_bench_figures_come_from_the_raw_timings(tsm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.models import get_pretrained

    rep = bench(BenchConfig(engines=(tsm["engine"], tsm["fp32"]), device="cpu", iterations=6, warmup=1,
                            eager=get_pretrained("synth_tsm_r18w025").path, json_out=tmp_path / "b.json",
                            png_out=tmp_path / "b.png", progress=False))
    rows = rep.rows
    assert [r.name for r in rows] == ["PyTorch eager FP32", "tsm.engine", "tsm.onnx"]
    saved = json.loads((tmp_path / "b.json").read_text())
    for row in saved["rows"]:
        raw = np.array(row["raw_ms"])
        assert len(raw) == 6
        assert row["median_ms"] == pytest.approx(np.median(raw), rel=1e-3, abs=1e-3)
        assert row["p99_ms"] == pytest.approx(np.percentile(raw, 99), rel=1e-3, abs=1e-3)
        assert row["cov"] == pytest.approx(raw.std() / raw.mean(), rel=1e-2)
        assert row["clips_per_s"] == pytest.approx(1000 / raw.mean(), rel=1e-2)
        assert row["frames_per_s"] == pytest.approx(8 * row["clips_per_s"], rel=1e-6)
        assert row["rss_mb"] > 0
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_on_a_jetson_profile_here_is_one_clear_error(tsm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EdgefuseError, match="not a Jetson"):
        bench(BenchConfig(engines=(tsm["engine"],), device="jetson", iterations=1, progress=False))
    with pytest.raises(EdgefuseError, match="this machine is not Jetson Orin Nano"):
        bench(BenchConfig(engines=(tsm["engine"],), device="jetson_orin_nano", iterations=1, progress=False))  # no --estimate


def test_demo_runs_the_whole_pipeline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(cli, ["demo", "--work", str(tmp_path / "demo"), "--num-val", "20", "--num-calib", "16",
                                   "--iterations", "2", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output[res.output.index("{"):])
    assert DemoReport.from_dict(rep).to_dict() == rep
    rows = rep["rows"]
    assert len(rows) == 9 and {r["model"] for r in rows} == {"TSM", "AdaFuse-TSM", "AdaFuse-TSM folded"}
    for r in rows:
        if r["agreement"] is not None:
            assert r["agreement"] >= 0.9 and r["top1"] > 0.8


def test_bench_estimates_beside_measurements_and_alone_for_other_devices(tsm) -> None:  # type: ignore[no-untyped-def]
    rep = bench(BenchConfig(engines=(tsm["engine"],), device="cpu", iterations=3, warmup=1, estimate=True,
                            progress=False))
    row = rep.rows[0]
    assert row.estimate_ms is not None and row.estimate_ms > 0 and row.estimate_error_pct is not None
    with pytest.raises(EdgefuseError, match="add --estimate"):
        bench(BenchConfig(engines=(tsm["engine"],), device="rtx4090", iterations=1, progress=False))
    alone = bench(BenchConfig(engines=(tsm["engine"],), device="rtx4090", estimate=True, progress=False))
    assert isinstance(alone, EstimateReport)
    assert alone.estimate_only and alone.rows[0].estimate_ms > 0 and "roofline" in alone.rows[0].label


def test_validate_reports_adafuse_flips_and_realized_macs(synth_default, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.models import get_pretrained

    name = "synth_adafuse_tsm_r18w025"
    fp32 = export(make_config(None, tmp_path / "ada.onnx", model=name)).path
    engine = build_engine(BuildConfig(fp32, tmp_path / "ada.engine", device="cpu", backend="onnxruntime")).path
    rep = validate(ValidateConfig(engine=engine, reference=fp32, clips=synth_default / "val.txt", num_clips=30,
                                  progress=False))
    assert rep.policy is not None and rep.realized is not None
    assert len(rep.policy) == 8 and all(p.flip_rate < 0.01 for p in rep.policy)
    assert all(abs((p.engine_skip or 0) + (p.engine_reuse or 0) + (p.engine_keep or 0) - 1) < 1e-6 for p in rep.policy)
    eng, ref = np.array(rep.realized.engine), np.array(rep.realized.reference)
    assert len(eng) == 30 and np.abs(eng - ref).max() < 0.01 * rep.realized.dense
    recorded = get_pretrained(name).gmacs_clip_given_decisions  # measured at training on all 250 val clips
    assert abs(eng.mean() - recorded) < 0.05 * recorded and eng.mean() < 0.7 * rep.realized.dense


def test_bench_keeps_engines_of_the_same_file_name_apart(tsm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two engines called m.onnx in different folders are two rows, each with its own timings (they were
    merged into one row holding both engines' runs)."""
    import shutil

    paths = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        paths.append(Path(shutil.copy(tsm["fp32"], tmp_path / folder / "m.onnx")))
    rep = bench(BenchConfig(engines=tuple(paths), device="cpu", iterations=3, warmup=0, progress=False))
    assert isinstance(rep, BenchReport)
    assert [r.name for r in rep.rows] == [str(p) for p in paths]
    assert all(r.latency.iterations == 3 and len(r.raw_ms) == 3 for r in rep.rows)
    assert rep.rows[0].raw_ms != rep.rows[1].raw_ms


def test_reports_round_trip_through_their_json(tsm, synth_default, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.validate import ValidateReport

    rep = validate(ValidateConfig(engine=tsm["damaged"], reference=tsm["fp32"], clips=synth_default / "val.txt",
                                  num_clips=8, per_layer=True, progress=False, max_drop=100.0,
                                  report=tmp_path / "v.json"))
    saved = json.loads((tmp_path / "v.json").read_text())
    assert ValidateReport.from_dict(saved) == rep and rep.to_dict() == json.loads(json.dumps(rep.to_dict()))
    assert saved["verdict"] == rep.verdict and saved["drop_points"] == rep.drop_points
    assert "per_clip" not in rep.to_dict(per_clip=False)["result"] and "policy" not in saved  # absent parts stay absent
    timing = bench(BenchConfig(engines=(tsm["engine"],), device="cpu", iterations=2, warmup=0, progress=False,
                               json_out=tmp_path / "b.json"))
    assert isinstance(timing, BenchReport)
    assert BenchReport.from_dict(json.loads((tmp_path / "b.json").read_text())) == timing
    assert "raw_ms" not in timing.to_dict(raw=False)["rows"][0]
    alone = bench(BenchConfig(engines=(tsm["engine"],), device="rtx4090", estimate=True, progress=False))
    assert isinstance(alone, EstimateReport) and EstimateReport.from_dict(alone.to_dict()) == alone


def test_validate_reads_the_device_runners_output(tsm, synth_default, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The device path: ``edgefuse device-clips`` writes preprocessed clips for device_runner.py; the runner's output
    folder is validated here against the FP32 graph on the same arrays. TensorRT cannot run here, so the "device"
    logits are those of an engine run here (the FP32 engine, then one with a damaged convolution), written by the
    runner's own output writer (the files the runner writes on a Jetson); the clean one must pass, the damage fail."""
    from edgefuse import backends
    from edgefuse.backends import device_runner as dr
    from edgefuse.backends.device_io import read_clip_folder
    from edgefuse.cli import cli

    folder = tmp_path / "clips"
    res = CliRunner().invoke(cli, ["device-clips", str(tsm["fp32"]), "--clips", str(synth_default / "val.txt"),
                                   "--num-clips", "12", "-o", str(folder)])
    assert res.exit_code == 0, res.output
    assert "device_runner.py" in res.output and "edgefuse validate logits/" in res.output
    clips, ids, manifest = read_clip_folder(folder)
    assert clips.shape == (12, 8, 3, 112, 112) and len(manifest["edgefuse"]["labels"]) == 12

    def device_output(graph: Path, out: Path) -> Path:
        logits = backends.load(graph).run(clips)
        dr.write_outputs(str(out), ids, logits, {"tensorrt": "8.2.1", "api": "binding", "cuda": "pycuda",
                                                  "gpu": {"name": "stand-in (no GPU here)"}, "batch": 1, "warmup": 0,
                                                  "engine": "m.plan", "input_name": "clips", "output_name": "logits",
                                                  "timings": dr.per_clip_timings([(ids, {"h2d_ms": 0.0, "compute_ms": 0.0,
                                                                                         "d2h_ms": 0.0})])})
        return out

    clean = validate(ValidateConfig(engine=device_output(tsm["engine"], tmp_path / "clean"), reference=tsm["fp32"],
                                    clips=folder, progress=False))
    assert clean.passed and clean.result.top1_agreement == 1.0 and clean.result.clips == 12
    assert clean.engine_info.backend_version == "8.2.1" and clean.result.top1_reference is not None
    res = CliRunner().invoke(cli, ["validate", str(device_output(tsm["damaged"], tmp_path / "bad")), "--reference",
                                   str(tsm["fp32"]), "--clips", str(folder)])
    assert res.exit_code == 1 and "fail" in res.output.lower()
