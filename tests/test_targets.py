"""TensorRT 8.0 to 11: the ONNX parser's opset range, operator table and Q/DQ rules per release, deployment targets
(JetPack / TensorRT names), and ``edgefuse export --target`` picking the opset and checking the graph.

No TensorRT here: the verdicts are checked against the tables extracted from onnx/onnx-tensorrt at each release tag
(edgefuse/graph/data/trt_onnx_ops.json) and the facts recorded there, not against a parser run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefuse.errors import EdgefuseError
from edgefuse.export.config import ExportConfig
from edgefuse.graph import hygiene, targets
from edgefuse.graph.qdq_rules import qdq_problems

V8 = ("8.0", "8.2", "8.4", "8.5", "8.6")
V10 = ("10.0", "10.3", "10.x-latest", "11")


def graph_with(op: str, opset: int, **attrs: object) -> onnx.ModelProto:
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def oks(model: onnx.ModelProto) -> dict[str, bool]:
    return {v.target: v.ok for v in hygiene.check(model).verdicts}


def test_every_version_has_a_sourced_table() -> None:
    versions = hygiene.trt_tables()["versions"]
    assert tuple(versions) == hygiene.TARGETS
    for key in ("8.0", "8.2", "8.4", "10.0"):  # added here: verbatim from a release tag, commit recorded
        t = versions[key]
        assert t["table_status"] == "verbatim" and t["ref"].startswith("release/") and len(t["commit"]) == 40
        assert t["ops"]["Conv"]["supported"] and "qdq" in t
    ranges = {k: (v["min_opset"], v["max_opset"]) for k, v in versions.items()}
    assert ranges["8.0"] == ranges["8.2"] == (7, 13) and ranges["8.4"] == ranges["8.6"] == (7, 17)
    assert ranges["10.0"] == ranges["10.3"] == (9, 20) and ranges["10.x-latest"] == (9, 24)


def test_opset_verdicts_per_version() -> None:
    assert all(oks(graph_with("Relu", 13)).values())  # 13: every TensorRT from 8.0 reads it
    by = {v.target: v for v in hygiene.check(graph_with("Relu", 17)).verdicts}
    assert [k for k, v in by.items() if not v.ok] == ["8.0", "8.2"]
    assert by["8.0"].problems == ["opset 17 outside the parser's range 7-13"]
    assert [k for k, ok in oks(graph_with("Relu", 21)).items() if not ok] == [*V8, "10.0", "10.3"]
    assert not any(oks(graph_with("Relu", 6)).values())  # below 7 (8.x) and 9 (10.x)
    assert [k for k, ok in oks(graph_with("Relu", 8)).items() if not ok] == list(V10)


def test_operator_verdicts_per_version() -> None:
    ok = oks(graph_with("Mod", 13))  # Mod: N up to 8.4, Y from 8.5
    assert [k for k, v in ok.items() if not v] == ["8.0", "8.2", "8.4"]
    by = {v.target: v for v in hygiene.check(graph_with("LayerNormalization", 17)).verdicts}
    assert "LayerNormalization: not supported" in by["8.4"].problems  # listed N in 8.4 and 8.5 ...
    assert by["8.6"].ok and by["10.0"].ok  # ... Y from 8.6
    ok = oks(graph_with("DeformConv", 19))  # not in 10.0's table, added in 10.1
    assert not ok["10.0"] and ok["10.3"] and ok["11"]
    ok = oks(graph_with("Einsum", 13, equation="ij->ji"))  # no importer in 8.0, one from 8.2
    assert not ok["8.0"] and ok["8.2"]


def test_doc_rows_contradicted_by_the_parser_source() -> None:
    """operators.md at release/8.0 lists Reciprocal as N but the parser there imports it: supported, with a note."""
    by = {v.target: v for v in hygiene.check(graph_with("Reciprocal", 13)).verdicts}
    assert by["8.0"].ok and any("importer" in n for n in by["8.0"].notes)
    row = hygiene.trt_tables()["versions"]["8.4"]["ops"]["HardSwish"]
    assert row["supported"] and row["doc_supported"] is False


# --- explicit quantization -------------------------------------------------------------------------------------

def qdq_conv(*, axis_on_activation: bool = False, zero_point: bool = True, scale_type: int = TensorProto.FLOAT,
             prequantized: bool = False, zero_type: int = TensorProto.INT8, per_channel_activation: bool = False,
             residual_qdq: bool = True, opset: int = 13) -> onnx.ModelProto:
    """x -> Q/DQ -> Conv(W behind Q/DQ, per output channel) -> Add(identity x) : the shape edgefuse calibrate writes,
    with one rule broken at a time."""
    fp = np.float16 if scale_type == TensorProto.FLOAT16 else np.float32
    zdt = np.uint8 if zero_type == TensorProto.UINT8 else np.int8
    w = np.random.default_rng(0).standard_normal((4, 4, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(np.array(0.02, fp), "s_x"), numpy_helper.from_array(np.zeros((), zdt), "z_x"),
             numpy_helper.from_array(np.full(4, 0.01, fp), "s_w"), numpy_helper.from_array(np.zeros(4, zdt), "z_w"),
             numpy_helper.from_array(np.full(4, 0.02, fp), "s_xc"), numpy_helper.from_array(np.zeros(4, zdt), "z_xc")]
    xin = lambda s, z: [s, z] if zero_point else [s]
    nodes = []
    if per_channel_activation:
        nodes += [helper.make_node("QuantizeLinear", ["x", *xin("s_xc", "z_xc")], ["xq"], name="x_Q", axis=1),
                  helper.make_node("DequantizeLinear", ["xq", *xin("s_xc", "z_xc")], ["xd"], name="x_DQ", axis=1)]
    else:
        extra = {"axis": 1} if axis_on_activation else {}
        nodes += [helper.make_node("QuantizeLinear", ["x", *xin("s_x", "z_x")], ["xq"], name="x_Q", **extra),
                  helper.make_node("DequantizeLinear", ["xq", *xin("s_x", "z_x")], ["xd"], name="x_DQ", **extra)]
    if prequantized:
        inits.append(numpy_helper.from_array(np.round(w / 0.01).astype(np.int8), "w_q"))
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", *xin("s_w", "z_w")], ["wd"], name="w_DQ", axis=0))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
        nodes += [helper.make_node("QuantizeLinear", ["w", *xin("s_w", "z_w")], ["wq"], name="w_Q", axis=0),
                  helper.make_node("DequantizeLinear", ["wq", *xin("s_w", "z_w")], ["wd"], name="w_DQ", axis=0)]
    nodes.append(helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv"))
    if residual_qdq:
        nodes += [helper.make_node("QuantizeLinear", ["x", *xin("s_x", "z_x")], ["rq"], name="r_Q"),
                  helper.make_node("DequantizeLinear", ["rq", *xin("s_x", "z_x")], ["rd"], name="r_DQ"),
                  helper.make_node("Add", ["c", "rd"], ["y"], name="residual_add")]
    else:
        nodes += [helper.make_node("Relu", ["x"], ["r"], name="identity"),
                  helper.make_node("Add", ["c", "r"], ["y"], name="residual_add")]
    g = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def failing(model: onnx.ModelProto) -> list[str]:
    return [k for k, ok in oks(model).items() if not ok]


def test_qdq_shape_calibrate_writes_passes_every_version() -> None:
    good = qdq_conv()
    assert failing(good) == []
    assert qdq_problems(good, {}, 13) == ([], [])  # a version without rules says nothing


def test_qdq_rules_that_changed_between_versions() -> None:
    assert failing(qdq_conv(axis_on_activation=True)) == ["8.0"]  # 8.0 rejects `axis` on a per-tensor Q/DQ
    assert failing(qdq_conv(zero_point=False)) == list(V8)  # 8.x needs the zero-point input
    assert failing(qdq_conv(scale_type=TensorProto.FLOAT16)) == ["8.0", "8.2", "8.4"]  # FP16 Q/DQ from 8.5
    assert failing(qdq_conv(prequantized=True)) == list(V8)  # INT8 weight initializers from 10.0
    by = {v.target: v for v in hygiene.check(qdq_conv(prequantized=True)).verdicts}
    assert "write FP32 weights with a Q/DQ pair" in by["8.6"].problems[0]
    by = {v.target: v for v in hygiene.check(qdq_conv(zero_type=TensorProto.UINT8)).verdicts}
    assert [k for k, v in by.items() if not v.ok] == list(V8)  # UINT8: refused on 8.x, converted (a note) on 10.x
    assert any("UINT8" in n for n in by["10.3"].notes)


def test_qdq_rules_of_every_version() -> None:
    assert failing(qdq_conv(per_channel_activation=True)) == [*V8, *V10]  # per-channel only for weights
    assert failing(qdq_conv(opset=12)) == [*V8, *V10]  # per-channel `axis` needs opset 13
    assert "per-channel Q/DQ at opset 12" in " ".join(hygiene.check(qdq_conv(opset=12)).verdicts[0].problems)
    by = {v.target: v for v in hygiene.check(qdq_conv(residual_qdq=False)).verdicts}
    assert all(v.ok for v in by.values())  # placement is performance, not parsing: a note on every version
    assert all(any("residual Add" in n and "'residual_add'" in n for n in v.notes) for v in by.values())
    assert not any("residual" in n for n in hygiene.check(qdq_conv()).verdicts[0].notes)


# --- targets ---------------------------------------------------------------------------------------------------

def test_target_names_resolve() -> None:
    jp46 = targets.resolve("JetPack4.6")
    assert jp46.name == "jetpack4.6" and jp46.tensorrt == "8.0.1 / 8.2.1" and jp46.max_opset == 13
    assert targets.resolve("jp5").tensorrt == "8.4.1 / 8.5.2" and targets.resolve("jetpack5").max_opset == 17
    assert targets.resolve("jetpack6").tensorrt == "8.6.2 / 10.3" and targets.resolve("jetpack6").max_opset == 17
    assert targets.resolve("jetpack6.2").name == "jetpack6.1" and targets.resolve("jetpack6.1").max_opset == 20
    assert targets.resolve("TensorRT 8.2").name == "trt8.2"
    assert targets.resolve("trt11").max_opset == 24 and targets.resolve("trt11.5").max_opset == 25
    assert targets.resolve("trt10").max_opset == 20  # every 10.x: 10.0 reads up to 20
    assert all(t.sources for t in map(targets.resolve, ("jetpack4.6", "jetpack5", "jetpack6", "jetpack7")))
    with pytest.raises(EdgefuseError, match="unknown target 'jetpack3'.*jetpack4.6"):
        targets.resolve("jetpack3")


def test_target_narrows_a_table_to_its_release() -> None:
    """JetPack 7.0's TensorRT 10.13 predates Attention (10.14), which the newest 10.x table lists."""
    attention = graph_with("Attention", 23)
    assert targets.check(attention, targets.resolve("trt10.15"))[0].ok
    v = targets.check(attention, targets.resolve("jetpack7"))
    assert not v[0].ok and v[0].version == "10.13" and "Attention" in v[0].problems[0]


def test_failure_is_one_line_with_the_fix() -> None:
    jp46 = targets.resolve("jetpack4.6")
    line = targets.failure(targets.check(graph_with("Mod", 13), jp46), jp46)
    assert line is not None and "\n" not in line
    assert line.startswith("Mod: not supported on TensorRT 8.0.1 (jetpack4.6)") and "--target trt8.5" in line
    line = targets.failure(targets.check(graph_with("Relu", 17), jp46), jp46)
    assert line is not None and "opset 17" in line and "--target jetpack4.6 (opset 13)" in line
    assert targets.failure(targets.check(graph_with("Relu", 13), jp46), jp46) is None


def test_export_opset_follows_the_target(tmp_path: Path) -> None:
    assert targets.export_opset(targets.resolve("jetpack4.6"), 23) == 13
    assert targets.export_opset(targets.resolve("trt10.15"), 20) == 20  # never above what the exporter writes
    with pytest.raises(EdgefuseError, match="exporter writes at most 8"):
        targets.export_opset(targets.resolve("trt10"), 8)
    cfg = lambda **kw: ExportConfig(model="tsm_mobilenetv2", output=tmp_path / "m.onnx", **kw)
    assert cfg().opset == 17 and cfg(target="jetpack4.6").opset == 13 and cfg(target="jp5").opset == 17
    assert cfg(target="jetpack6.1", exporter="torchscript").opset == 20
    assert cfg(target="jetpack4.6", opset=11).opset == 11
    with pytest.raises(EdgefuseError, match="opset 17 is outside 7-13.*jetpack4.6"):
        cfg(target="jetpack4.6", opset=17)
    with pytest.raises(EdgefuseError, match="unknown target"):
        cfg(target="jetson-nano")


@pytest.fixture(scope="module")
def jetpack46_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgefuse.export.api import export

    out = tmp_path_factory.mktemp("jp46") / "m.onnx"
    export(ExportConfig(model="tsm_mobilenetv2", output=out, num_classes=5, segments=4, size=64, target="jetpack4.6"))
    return out


def test_export_for_jetpack46_reads_on_every_tensorrt(jetpack46_graph: Path) -> None:
    from edgefuse.graph.metadata import read_metadata

    model = onnx.load(str(jetpack46_graph))
    assert hygiene.opset_of(model) == 13
    assert all(oks(model).values())  # opset 13 and these ops: 8.0 to 11
    meta = read_metadata(jetpack46_graph)
    assert meta["target"] == "jetpack4.6" and meta["tensorrt"] == "8.0.1 / 8.2.1" and meta["opset"] == 13


def test_calibrated_graph_passes_the_qdq_rules(jetpack46_graph: Path) -> None:
    """The Q/DQ graph edgefuse calibrate writes (here with unit ranges: the shape, not the accuracy, is checked)."""
    from edgefuse.quantize import qdq

    model = onnx.load(str(jetpack46_graph))
    nodes = [n.name for n in qdq.candidate_nodes(model)]
    q = qdq.quantize_int8(model, {t: 1.0 for t in qdq.activation_tensors(model, nodes)}, nodes)
    assert sum(n.op_type == "QuantizeLinear" for n in q.graph.node) > 10
    verdicts = hygiene.check(q).verdicts
    assert all(v.ok for v in verdicts), [(v.target, v.problems) for v in verdicts if not v.ok]


@pytest.mark.slow  # a whole export in a subprocess (~12 s); test_export_for_jetpack46_reads_on_every_tensorrt is the same in-process
def test_cli_target(tmp_path: Path) -> None:
    out = tmp_path / "z.onnx"
    proc = subprocess.run([sys.executable, "-m", "edgefuse", "export", "synth_tsm_r18w025", "--target", "jetpack4.6",
                           "-o", str(out)], check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "opset 13" in proc.stdout and hygiene.opset_of(onnx.load(str(out))) == 13
    proc = subprocess.run([sys.executable, "-m", "edgefuse", "inspect", str(out)], check=False, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split()[:2] for line in proc.stdout.splitlines() if line.strip()[:3] in ("8.0", "8.2", "10.", "11.")]
    assert ["8.0", "ok"] in rows and ["11.5", "ok"] in rows
    bad = subprocess.run([sys.executable, "-m", "edgefuse", "export", "synth_tsm_r18w025", "--target", "jetpack4.6",
                          "--opset", "17", "-o", str(tmp_path / "bad.onnx")], check=False, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "jetpack4.6" in bad.stderr
