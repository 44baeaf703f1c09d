"""Gates and honest reports on real input: validate fails on top-1 agreement below its floor (with or without
labels) and on any non-finite logit; folding refuses a graph below its agreement floor unless --tau is given;
validate and calibrate list the clips they skipped and why; validate names the clips that disagree with the
clip source's class names; calibrate says which clips calibrated and which were held out, and keeps --num-clips.
Real ONNX Runtime runs on a small random-weight TSM (width 0.25, 56 px) and generated clips."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgefuse.errors import EdgefuseError
from edgefuse.export.api import export
from edgefuse.export.config import ExportConfig
from edgefuse.graph.runner import OrtRunner
from edgefuse.lab.synth import SynthConfig, generate
from edgefuse.validate import ValidateConfig, validate

NAMES = [f"user class {i}" for i in range(10)]  # the clip source's class names (not the graph's)


def _edgefuse(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgefuse", *map(str, args)], check=False, capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def _fc(model: onnx.ModelProto) -> tuple[onnx.TensorProto, onnx.TensorProto]:
    """The classifier's weight and bias initializers."""
    node = next(n for n in model.graph.node if n.op_type == "Gemm")
    inits = {i.name: i for i in model.graph.initializer}
    return inits[node.input[1]], inits[node.input[2]]


def _edit_fc(src: Path, dest: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    model = onnx.load(str(src))
    weight, bias = _fc(model)
    w, b = edit(numpy_helper.to_array(weight).copy(), numpy_helper.to_array(bias).copy())
    weight.CopyFrom(numpy_helper.from_array(w, weight.name))
    bias.CopyFrom(numpy_helper.from_array(b, bias.name))
    onnx.save(model, str(dest))
    return dest


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("gates")
    fp32 = export(ExportConfig(model="tsm_resnet18", output=tmp / "tsm.onnx", num_classes=10, size=56,
                               options={"width": 0.25})).path
    # an engine that disagrees: the classifier's rows rolled by one class (every top-1 moves to another class)
    rolled = _edit_fc(fp32, tmp / "rolled.onnx", lambda w, b: (np.roll(w, 1, axis=0), np.roll(b, 1)))
    # an engine whose logits are NaN: one class's bias
    nan = _edit_fc(fp32, tmp / "nan.onnx", lambda w, b: (w, np.where(np.arange(len(b)) == 3, np.nan, b)))
    clips = np.random.default_rng(0).standard_normal((12, 8, 3, 56, 56)).astype(np.float32)
    ref_top1 = OrtRunner(onnx.load(str(fp32))).logits(clips).argmax(1)
    eng_top1 = OrtRunner(onnx.load(str(rolled))).logits(clips).argmax(1)
    assert (ref_top1 != eng_top1).all()
    # labels on which both are equally right (drop 0 points) while they never agree: the label drop alone passes
    labels = np.where(np.arange(12) % 2 == 0, ref_top1, eng_top1).astype(np.int64)
    ids = np.array([f"clip{i:02d}" for i in range(12)])
    np.savez(tmp / "labelled.npz", clips=clips, labels=labels, ids=ids, class_names=np.array(NAMES))
    np.savez(tmp / "unlabelled.npz", clips=clips, ids=ids)
    synth = tmp / "synth"
    generate(SynthConfig(out=synth, train=0, val=12, calib=20, frames=8, size=64, formats=("frames",), workers=1))
    return {"tmp": tmp, "fp32": fp32, "rolled": rolled, "nan": nan, "synth": synth}


def _corrupt(synth: Path, clip: str) -> None:
    """Every frame of ``clip`` replaced by bytes no decoder reads."""
    for f in (synth / "frames" / clip).iterdir():
        f.write_bytes(b"not a jpeg")


# ---------------------------------------------------------------------------------------------- agreement

def test_labels_do_not_hide_an_engine_that_disagrees(work, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The drop with labels is 0 points, the engine agrees on no clip: FAIL on agreement, every clip named with
    the clip source's class names, in the JSON, the HTML and (the worst few) the terminal."""
    from edgefuse.cli.render import render_validate

    rep = validate(ValidateConfig(engine=work["rolled"], reference=work["fp32"], clips=work["tmp"] / "labelled.npz",
                                  report=tmp_path / "r.json", html=tmp_path / "r.html", progress=False))
    r = rep.result
    assert r.top1_reference is not None and rep.drop_points == pytest.approx(0.0) and r.top1_agreement == 0.0
    assert rep.verdict == "fail" and rep.min_agreement == 0.99
    assert any("top-1 agreement 0.00% is below --min-agreement 99.00%" in f for f in rep.failures)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["verdict"] == "fail" and saved["min_agreement"] == 0.99 and saved["failures"] == rep.failures
    dis = saved["disagreements"]
    assert sorted(d["id"] for d in dis) == [f"clip{i:02d}" for i in range(12)]  # all of them
    errors = [d["max_abs_error"] for d in dis]
    assert errors == sorted(errors, reverse=True)  # worst first
    assert all(d["reference_class"] == NAMES[d["reference"]] and d["engine_class"] == NAMES[d["engine"]]
               for d in dis)
    assert saved["skipped"] == []
    page = (tmp_path / "r.html").read_text()
    assert "Clips that disagree (12 of 12)" in page and all(f"clip{i:02d}" in page for i in range(12))
    assert "below --min-agreement" in page
    text = render_validate(rep)
    worst = dis[0]
    assert (f"{worst['id']}: reference {worst['reference_class']} / engine {worst['engine_class']}" in text), text
    assert "... and 7 more" in text and text.splitlines()[-1].startswith("verdict: FAIL: top-1 agreement")


def test_agreement_gate_without_labels_through_the_cli(work, tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = ["validate", work["rolled"], "--reference", work["fp32"], "--clips", work["tmp"] / "unlabelled.npz",
            "--max-drop", "100", "--report", tmp_path / "r.json"]
    res = _edgefuse(*args, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "verdict: FAIL: top-1 agreement 0.00% is below --min-agreement 99.00%" in res.stdout, res.stdout
    assert "clips that disagree: 12 of 12" in res.stdout
    saved = json.loads((tmp_path / "r.json").read_text())
    assert "top1_reference" not in saved["result"] and saved["verdict"] == "fail"
    # the floor is a flag: with it at 0 (and the disagreement within --max-drop 100) the same engine passes
    rep = validate(ValidateConfig(engine=work["rolled"], reference=work["fp32"],
                                  clips=work["tmp"] / "unlabelled.npz", max_drop=100.0, min_agreement=0.0,
                                  progress=False))
    assert rep.passed and not rep.failures and len(rep.disagreements()) == 12


@pytest.mark.slow
def test_the_same_graph_passes_and_int8_has_its_own_floor(work) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.validate.report import default_min_agreement

    rep = validate(ValidateConfig(engine=work["fp32"], reference=work["fp32"], clips=work["tmp"] / "labelled.npz",
                                  progress=False))
    assert rep.passed and rep.result.top1_agreement == 1.0 and rep.disagreements() == []
    assert default_min_agreement("int8") == 0.98 and default_min_agreement("fp16") == 0.99
    assert default_min_agreement(None) == 0.99
    with pytest.raises(EdgefuseError, match="min-agreement"):
        ValidateConfig(engine=work["fp32"], reference=work["fp32"], clips=work["tmp"], min_agreement=1.5)


# ---------------------------------------------------------------------------------------------- non-finite

def test_nan_engine_or_reference_never_passes(work, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.cli.render import render_validate

    for engine, reference, what in ((work["nan"], work["fp32"], "engine"), (work["fp32"], work["nan"], "reference")):
        rep = validate(ValidateConfig(engine=engine, reference=reference, clips=work["tmp"] / "labelled.npz",
                                      max_drop=100.0, min_agreement=0.0, report=tmp_path / "r.json",
                                      html=tmp_path / "r.html", progress=False))
        assert rep.verdict == "fail" and rep.result.top1_agreement == 0.0
        assert rep.failures[0].startswith(f"12 of 12 clips give non-finite (NaN or inf) {what} logits (clip00")
        saved = json.loads((tmp_path / "r.json").read_text())
        assert saved["verdict"] == "fail" and len(saved["result"][f"nonfinite_{what}"]) == 12
        assert all(d["nonfinite"] == what for d in saved["disagreements"])
        assert render_validate(rep).splitlines()[-1].startswith("verdict: FAIL: 12 of 12 clips give non-finite")
        assert "verdict: <b>FAIL</b>" in (tmp_path / "r.html").read_text()


@pytest.mark.slow
def test_input_that_overflows_to_nan_fails(work, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A finite clip whose values overflow inside the network (both runs give NaN for it): one clip is enough."""
    with np.load(work["tmp"] / "labelled.npz") as z:
        clips, labels, ids = z["clips"].copy(), z["labels"], z["ids"]
    clips[5] = 3e38
    np.savez(tmp_path / "overflow.npz", clips=clips, labels=labels, ids=ids)
    rep = validate(ValidateConfig(engine=work["fp32"], reference=work["fp32"], clips=tmp_path / "overflow.npz",
                                  max_drop=100.0, min_agreement=0.0, progress=False))
    assert rep.result.nonfinite_engine == ["clip05"] and rep.result.nonfinite_reference == ["clip05"]
    assert rep.verdict == "fail" and rep.result.top1_agreement == pytest.approx(11 / 12)
    assert [d.id for d in rep.disagreements()] == ["clip05"]


def test_nan_clips_are_refused_in_one_line(work, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with np.load(work["tmp"] / "unlabelled.npz") as z:
        clips = z["clips"].copy()
    clips[2, 0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", clips=clips)
    res = _edgefuse("validate", work["fp32"], "--reference", work["fp32"], "--clips", tmp_path / "nan.npz",
                    cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "NaN" in errors[0], res.stderr


# ---------------------------------------------------------------------------------------------- skipped clips

def test_validate_reports_list_the_skipped_clips(work, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.cli.render import render_validate

    synth = tmp_path / "synth"
    generate(SynthConfig(out=synth, train=0, val=10, calib=0, frames=8, size=64, formats=("frames",), workers=1))
    _corrupt(synth, "val_00003")
    rep = validate(ValidateConfig(engine=work["fp32"], reference=work["fp32"], clips=synth / "val.txt",
                                  report=tmp_path / "r.json", html=tmp_path / "r.html", workers=1, progress=False))
    assert rep.result.clips == 9 and rep.passed
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [s["id"] for s in saved["skipped"]] == ["frames/val_00003"] and saved["skipped"][0]["reason"]
    assert "Clips skipped (1)" in (tmp_path / "r.html").read_text()
    assert "frames/val_00003" in (tmp_path / "r.html").read_text()
    text = render_validate(rep)
    assert "clips skipped (unreadable)" in text and "skipped 1 clip(s) of the source: frames/val_00003:" in text


def test_device_clips_carry_the_skipped_clips_to_validate(work, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The device path: device-clips records the clips it could not read in its manifest, and validate's report on
    the device runner's output lists them (TensorRT cannot run here: the "device" logits are an ONNX Runtime run of
    the same graph, written by the runner's own output writer)."""
    from click.testing import CliRunner

    from edgefuse.backends import device_runner as dr
    from edgefuse.backends.device_io import read_clip_folder
    from edgefuse.cli import cli

    synth = tmp_path / "synth"
    generate(SynthConfig(out=synth, train=0, val=6, calib=0, frames=8, size=64, formats=("frames",), workers=1))
    _corrupt(synth, "val_00002")
    res = CliRunner().invoke(cli, ["device-clips", str(work["fp32"]), "--clips", str(synth / "val.txt"), "-o",
                                   str(tmp_path / "dev"), "--workers", "1"])
    assert res.exit_code == 0 and "1 clip(s) of the source skipped" in res.output, res.output
    clips, ids, manifest = read_clip_folder(tmp_path / "dev")
    assert len(ids) == 5 and [s[0] for s in manifest["edgefuse"]["skipped"]] == ["frames/val_00002"]
    logits = OrtRunner(onnx.load(str(work["fp32"]))).logits(clips)
    dr.write_outputs(str(tmp_path / "out"), ids, logits, {"tensorrt": "10.3", "api": "tensors", "cuda": "cuda-python",
                                                         "gpu": {"name": "stand-in (no GPU here)"}, "batch": 1,
                                                         "warmup": 0, "engine": "m.plan", "input_name": "clips",
                                                         "output_name": "logits", "timings": dr.per_clip_timings(
                                                             [(ids, {"h2d_ms": 0.0, "compute_ms": 0.0, "d2h_ms": 0.0})])})
    rep = validate(ValidateConfig(engine=tmp_path / "out", reference=work["fp32"], clips=tmp_path / "dev",
                                  report=tmp_path / "r.json", progress=False))
    assert rep.passed and rep.result.clips == 5
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [s["id"] for s in saved["skipped"]] == ["frames/val_00002"] and saved["skipped"][0]["reason"]


def test_labels_are_checked_against_the_models_classes(work, tmp_path) -> None:  # type: ignore[no-untyped-def]
    synth = work["synth"]
    bad = tmp_path / "bad.txt"
    bad.write_text("frames/val_00000 8 12\n" + "".join((synth / "val.txt").read_text().splitlines(True)[1:]))
    with pytest.raises(EdgefuseError, match="out of range for 10 classes"):
        validate(ValidateConfig(engine=work["fp32"], reference=work["fp32"], clips=bad, root=synth, progress=False))


# ---------------------------------------------------------------------------------------------- calibrate

def test_calibrate_says_which_clips_calibrated_and_keeps_num_clips(work, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """20 clips (one unreadable), --num-clips 8, no --holdout: too few to hold any out, so the comparison runs on
    the 8 calibration clips, said so; the unreadable clip is listed with its reason."""
    import shutil

    from edgefuse.cli.render import render_calibrate
    from edgefuse.quantize import CalibrateConfig, calibrate
    from edgefuse.quantize.report import CalibrateReport

    synth = tmp_path / "synth"
    shutil.copytree(work["synth"], synth)
    _corrupt(synth, "calib_00004")
    result = calibrate(CalibrateConfig(model=work["fp32"], clips=synth / "calib.txt", output=tmp_path / "q.onnx",
                                       num_clips=8, cache_dir=tmp_path / "cache", workers=1, progress=False))
    rep = result.report
    assert rep.num_clips == 8 and rep.calibration_ids is not None and len(rep.calibration_ids) == 8
    assert not rep.holdout.held_out and rep.holdout.ids == rep.calibration_ids and rep.result.clips == 8
    saved = json.loads(result.report_path.read_text())
    assert [s["id"] for s in saved["skipped"]] == ["frames/calib_00004"] and saved["skipped"][0]["reason"]
    assert saved["holdout"]["held_out"] is False and len(saved["calibration_clips"]) == 8
    assert CalibrateReport.from_dict(saved).to_dict() == saved
    text = render_calibrate(result)
    assert "on the 8 calibration clips (no held-out set)" in text and "held-out clips" not in text
    assert "skipped 1 unreadable clip(s): frames/calib_00004:" in text


@pytest.mark.slow  # two more calibrations; the bookkeeping is the code the case above runs
def test_calibrate_with_a_holdout_lists_its_skipped_clips(work, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from edgefuse.cli.render import render_calibrate
    from edgefuse.quantize import CalibrateConfig, calibrate

    synth = tmp_path / "synth"
    shutil.copytree(work["synth"], synth)
    _corrupt(synth, "val_00001")
    result = calibrate(CalibrateConfig(model=work["fp32"], clips=synth / "calib.txt", output=tmp_path / "q.onnx",
                                       num_clips=8, holdout=synth / "val.txt", num_holdout=12,
                                       cache_dir=tmp_path / "cache", workers=1, progress=False))
    rep = result.report
    assert rep.holdout.held_out and rep.holdout.clips == 11 and len(rep.calibration_ids or []) == 8
    assert [(s["id"], s["source"]) for s in rep.skipped] == [("frames/val_00001", str(synth / "val.txt"))]
    assert "on 11 held-out clips" in render_calibrate(result)
    # the same again from the cache (no decoding): the record of which clips calibrated and were skipped comes too
    again = calibrate(CalibrateConfig(model=work["fp32"], clips=synth / "calib.txt", output=tmp_path / "q2.onnx",
                                      num_clips=8, holdout=synth / "val.txt", num_holdout=12,
                                      cache_dir=tmp_path / "cache", workers=1, progress=False)).report
    assert again.calibration_ids == rep.calibration_ids and again.skipped == rep.skipped
    assert again.holdout.held_out and again.holdout.skipped == rep.holdout.skipped


def test_cache_key_follows_the_clip_reading_options(work, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.clips import ClipSource
    from edgefuse.quantize import CalibrateConfig
    from edgefuse.quantize.inputs import cache_key, load_fp32_graph

    model, meta = load_fp32_graph(work["fp32"])
    calib = work["synth"] / "calib.txt"

    def key(clips: Path, holdout: Path | None = None) -> str:
        return cache_key(model, CalibrateConfig(model=work["fp32"], clips=clips, output=tmp_path / "q.onnx",
                                                holdout=holdout), meta)

    plain = key(ClipSource.of(calib))
    assert key(ClipSource.of(calib)) == plain and key(calib) != plain  # a plain path: no reading options
    assert key(ClipSource.of(calib, min_frames=5)) != plain
    val = work["synth"] / "val.txt"
    assert key(ClipSource.of(calib), ClipSource.of(val, clock="time")) != key(ClipSource.of(calib), ClipSource.of(val))


# ---------------------------------------------------------------------------------------------- folding

def _crafted_adafuse():  # type: ignore[no-untyped-def]
    """An AdaFuse-TSN (width 0.25) whose policy no static fold reproduces (test_fold's construction), and its
    policy clips (2 batches of 2)."""
    import torch
    from test_fold import _first_segment_then, _similar_clips, _tell_clips_apart

    from edgefuse.models import create_model

    torch.manual_seed(0)
    model = create_model("adafuse_tsn_resnet18", num_classes=10, num_segments=4, width=0.25).eval()
    _first_segment_then(model, later=2)
    batches = _similar_clips(9, 10)
    _tell_clips_apart(model, batches)
    return model, batches


def _crafted_files(tmp: Path) -> tuple[Path, Path]:
    """The crafted model saved as a checkpoint, and its policy clips as an .npz."""
    import torch

    model, batches = _crafted_adafuse()
    torch.save(model.state_dict(), tmp / "crafted.pth")
    np.savez(tmp / "policy.npz", clips=torch.cat(batches).numpy())
    return tmp / "crafted.pth", tmp / "policy.npz"


def test_fold_below_the_floor_refuses_unless_tau_is_given(caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from edgefuse.export.fold import fold

    model, batches = _crafted_adafuse()
    with pytest.raises(EdgefuseError) as err:
        fold(model, batches, min_agreement=0.99, progress=False, with_refit=False)  # the plan's slice
    msg = str(err.value)
    assert "\n" not in msg and "no tau reaches top-1 agreement 0.9900" in msg and "nothing written" in msg
    assert "best 0.2500, at tau 1)" in msg and "Give --tau 1 to fold anyway" in msg, msg
    with caplog.at_level(logging.WARNING, logger="edgefuse.export.fold"):
        result = fold(model, batches, tau=1.0, min_agreement=0.99, progress=False, with_refit=False)
    assert result.tau == 1.0 and result.report.agreement == 0.25  # the best the search saw: folded as asked
    assert "below 0.9900" in caplog.text


def test_export_refuses_to_fold_below_the_floor_and_writes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt, policy = _crafted_files(tmp_path)
    out = tmp_path / "folded.onnx"
    res = _edgefuse("export", "adafuse_tsn_resnet18", "-c", ckpt, "-O", "width=0.25", "--size", "64", "--segments",
                    "4", "--policy", "static", "--policy-clips", policy, "--no-refit", "-o", out, cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "best 0.2500" in errors[0] and "--tau" in errors[0], res.stderr
    assert not out.exists() and not list(tmp_path.glob("folded*"))


@pytest.mark.slow  # a whole folded export (trace, simplify, parity) through the command line
def test_export_folds_below_the_floor_with_an_explicit_tau(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt, policy = _crafted_files(tmp_path)
    out = tmp_path / "folded.onnx"
    res = _edgefuse("export", "adafuse_tsn_resnet18", "-c", ckpt, "-O", "width=0.25", "--size", "64", "--segments",
                    "4", "--policy", "static", "--policy-clips", policy, "--tau", "1", "-o", out, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert out.is_file() and "below 0.9900" in res.stderr
