"""TensorRT 8.0 to 11.x without TensorRT: the version decisions, the DLA rules, and every TensorRT name the
adapter uses checked against the names NVIDIA's bindings export in each version it serves.

No GPU and no TensorRT exist here: the name lists in tests/data/trt_names/ stand in for the real modules (each
list's header says where it was read: NVIDIA's bindings wheel, or the bindings source at a release tag of
github.com/NVIDIA/TensorRT), and the devices and engines are passed as data."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from edgefuse.backends.plan import BuildPlan, cache_version, dla_unavailable, plan_dla, plan_precision
from edgefuse.backends.sidecar import Sidecar, check_compatible
from edgefuse.backends.trt import build as trt_build
from edgefuse.backends.trt.versions import build_api, has_suffix, parse_version, suffix_covers
from edgefuse.devices import get_device
from edgefuse.errors import EdgefuseError

HERE = Path(__file__).parent
NAMES = HERE / "data" / "trt_names"
TRT_DIR = HERE.parent / "edgefuse" / "backends" / "trt"
# one list per supported release line: JetPack 4.6 (8.0.1), 4.6.1+ (8.2.1), 5.0.2 (8.4.1), 5.1 (8.5.2), 8.6.1,
# 10.0.1, JetPack 6 (10.3.0), the newest 10.x and 11.x when written
LISTS = ("8.0.1", "8.2.1", "8.4.1", "8.5.2", "8.6.1", "10.0.1", "10.3.0", "10.16.1.11", "11.4.0.106")
ORIN, XAVIER, ORIN_NANO = get_device("jetson_agx_orin"), get_device("jetson_agx_xavier"), get_device("jetson_orin_nano")
STATIC = {"clips": [[1, 8, 3, 224, 224]] * 3}


def trt_names(version: str) -> set[str]:
    lines = (NAMES / f"{version}.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


# --- the name lists ------------------------------------------------------------------------------

def test_every_list_names_its_source() -> None:
    for version in LISTS:
        header = [line for line in (NAMES / f"{version}.txt").read_text().splitlines() if line.startswith("#")]
        assert any(line.startswith(("# wheel: ", "# source: https://github.com/NVIDIA/TensorRT@")) for line in header)
        assert len(trt_names(version)) > 600, version


def test_the_lists_tell_the_versions_apart() -> None:
    """A check against the lists can fail: each API difference the adapter relies on is in them."""
    has = {v: trt_names(v) for v in LISTS}
    first = {"set_memory_pool_limit": "8.4.1", "execute_async_v3": "8.5.2", "set_input_shape": "8.5.2",
             "node_name": "10.0.1", "STRONGLY_TYPED": "10.0.1", "device_memory_size_v2": "10.3.0"}
    for name, since in first.items():
        for v in LISTS:
            assert (name in has[v]) == (parse_version(v) >= parse_version(since)), (name, v)
    last = {"max_workspace_size": "8.6.1", "build_engine": "8.6.1", "execute_async_v2": "8.6.1",
            "get_binding_shape": "8.6.1", "EXPLICIT_BATCH": "10.16.1.11", "int8_calibrator": "10.16.1.11",
            "platform_has_fast_fp16": "10.16.1.11", "FP16": "10.16.1.11"}
    for name, until in last.items():
        for v in LISTS:
            assert (name in has[v]) == (parse_version(v) <= parse_version(until)), (name, v)
    assert all("build_serialized_network" in has[v] for v in LISTS)  # no build_engine fallback is needed


def test_source_extraction_reads_pybind11_registrations() -> None:
    sys.path.insert(0, str(HERE.parent / "tools"))
    import trt_names as tool

    cpp = ('py::class_<IBuilder, std::unique_ptr<IBuilder>>(m, "Builder", BuilderDoc::descr)\n'
           '    .def("build_serialized_network", &f, "network"_a, "config"_a)\n'
           '    .def_property("max_workspace_size", &g, &h)\n'
           '    // .def("commented_out", &x)\n'
           'py::enum_<BuilderFlag>(m, "BuilderFlag", py::arithmetic{})\n    .value("FP16", BuilderFlag::kFP16);\n'
           'py::class_<ILogger, PyLogger> binding{m, "ILogger"};\n'
           'PYBIND11_OVERLOAD_PURE_NAME(void, IOutputAllocator, "notify_shape", notifyShape, name, dims);\n')
    init = "import ##TENSORRT_MODULE##_bindings\ndef nptype(t):\n    pass\nBuilder.__enter__ = f\n"
    names = tool.source_names({"pyCore.cpp": cpp, "tensorrt/__init__.py": init})
    assert names == {"Builder", "build_serialized_network", "max_workspace_size", "BuilderFlag", "FP16", "ILogger",
                     "notify_shape", "nptype"}


# --- version decisions ---------------------------------------------------------------------------

def test_supported_versions_and_refusals() -> None:
    assert parse_version("8.5.2.2") == parse_version("8.5.2") and str(parse_version("10.3")) == "10.3.0"
    for bad, why in [("7.1.3", "JetPack 4.6"), ("8.1.0", "not supported"), ("9.3.0", "LLM-only"),
                     ("12.0.0", "newer than edgefuse knows"), ("trt", "not a version")]:
        with pytest.raises(EdgefuseError, match=why):
            parse_version(bad)


def test_version_suffixes() -> None:
    table = {"_f_trt80_84": {"8.0.1", "8.2.1", "8.4.1"}, "_f_trt85plus": set(LISTS) - {"8.0.1", "8.2.1", "8.4.1"},
             "_f_trt8": {v for v in LISTS if v.startswith("8.")}, "_f_trt86": {"8.6.1"}, "_f_trt100": {"10.0.1"},
             "_f_trt101plus": {"10.3.0", "10.16.1.11", "11.4.0.106"}, "_f_trt11": {"11.4.0.106"},
             "_f_trt10plus": {"10.0.1", "10.3.0", "10.16.1.11", "11.4.0.106"}, "_f_trt80_82": {"8.0.1", "8.2.1"},
             "_f_trt8_10": set(LISTS) - {"11.4.0.106"}, "_f": set(LISTS)}
    for fn, versions in table.items():
        assert {v for v in LISTS if suffix_covers(fn, v)} == versions, fn
    assert has_suffix("_x_trt84plus") and not has_suffix("build_engine_file")


@pytest.mark.parametrize("version", LISTS)
def test_each_version_calls_functions_that_serve_it(version: str) -> None:
    """build_api names the adapter function for each API difference; it exists and its suffix covers the version."""
    api = build_api(version)
    for fn in (api.workspace, api.parser_errors, api.calibrator):
        if fn is not None:
            assert callable(getattr(trt_build, fn)) and suffix_covers(fn, version), (version, fn)
    assert api.explicit_batch == version.startswith("8.")
    assert (api.implicit_int8, api.tensor_api, api.device_memory_v2) == (
        not version.startswith("11"), parse_version(version) >= parse_version("8.5"),
        parse_version(version) >= parse_version("10.1"))


# --- every TensorRT name of the adapter, per version ---------------------------------------------

def _chain(node: ast.expr) -> tuple[str | None, list[str]]:
    """(root, attribute names) of an expression like ``parser.get_error(i).desc``; ``self.x`` roots stay whole."""
    names: list[str] = []
    cur = node
    while True:
        if isinstance(cur, ast.Attribute):
            names.append(cur.attr)
            cur = cur.value
        elif isinstance(cur, ast.Call):
            cur = cur.func
        elif isinstance(cur, ast.Subscript):
            cur = cur.value
        else:
            break
    names.reverse()
    root = cur.id if isinstance(cur, ast.Name) else None
    if root == "self" and names:
        return "self." + names[0], names[1:]
    return root, names


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return ["self." + node.attr]
    return []


def _units(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """Top-level functions and the methods of top-level classes (a method without a suffix takes its class's);
    nested functions and classes are checked as part of the function holding them."""
    out: list[tuple[str, ast.AST]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    out.append((item.name if has_suffix(item.name) else node.name, item))
    return out


def trt_names_used(source: str) -> dict[str, set[str]]:
    """TensorRT names each function uses: attributes reached from ``trt``, from parameters annotated with a
    ``trt.`` type, and from variables (and ``self`` attributes) bound to such expressions; plus the string
    given to getattr / setattr / hasattr on them."""
    tree = ast.parse(source)
    rooted_self: set[str] = set()
    for _ in range(3):  # self attributes bound in one method are used in another
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and _chain(node.value)[0] in ({"trt"} | rooted_self | _locals(tree)):
                rooted_self |= {t for tgt in node.targets for t in _targets(tgt) if t.startswith("self.")}
    used: dict[str, set[str]] = {}
    for name, fn in _units(tree):
        rooted = {"trt"} | rooted_self | _locals(fn)
        names: set[str] = set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute):
                root, chain = _chain(node)
                if root in rooted:
                    names |= set(chain)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2
                  and _chain(node.args[0])[0] in rooted and isinstance(node.args[1], ast.Constant)):
                names.add(str(node.args[1].value))
        used.setdefault(name, set()).update(n for n in names if not n.startswith("__"))
    return used


def _locals(fn: ast.AST) -> set[str]:
    """Names in ``fn`` bound to TensorRT objects: trt-annotated parameters, then assignments from those."""
    rooted = {"trt"}
    for node in ast.walk(fn):
        if isinstance(node, ast.arg) and node.annotation is not None and "trt." in ast.unparse(node.annotation):
            rooted.add(node.arg)
    for _ in range(4):
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and _chain(node.value)[0] in rooted:
                rooted |= {t for tgt in node.targets for t in _targets(tgt)}
    return rooted


def violations(source: str) -> list[str]:
    out = []
    for fn, names in trt_names_used(source).items():
        for version in LISTS:
            if suffix_covers(fn, version):
                missing = names - trt_names(version)
                if missing:
                    out.append(f"{fn} uses {sorted(missing)}, absent from TensorRT {version}")
    return out


def test_every_trt_module_uses_only_names_its_versions_export() -> None:
    files = sorted(TRT_DIR.glob("*.py"))
    assert TRT_DIR / "build.py" in files
    for path in files:
        assert violations(path.read_text()) == [], path.name
    used = trt_names_used((TRT_DIR / "build.py").read_text())  # the check sees the names, so it can fail
    assert {"build_serialized_network", "create_network", "set_timing_cache"} <= used["build_engine_file"] | used[
        "_timing_cache"]
    assert "max_workspace_size" in used["_set_workspace_trt80_82"]
    assert "node_name" in used["_parser_errors_trt10plus"]
    assert {"IInt8EntropyCalibrator2"} <= used["_cache_calibrator_trt8_10"]
    assert {"can_run_on_DLA", "DLA_core", "default_device_type"} <= used["_dla_layers"]


def test_the_name_check_catches_a_wrong_suffix() -> None:
    source = ("def run_trt8(context: trt.IExecutionContext) -> None:\n    context.execute_async_v3(0)\n"
              "def run_trt85plus(context: trt.IExecutionContext) -> None:\n    context.execute_async_v3(0)\n"
              "def ws_trt80_84(config: trt.IBuilderConfig) -> None:\n    setattr(config, 'set_memory_pool_limit', 1)\n"
              "def mem(x):\n    engine = trt.Runtime(x).deserialize_cuda_engine(b'')\n"
              "    return engine.device_memory_size_v2\n"
              "class Runner:\n    def __init__(self, r):\n"
              "        self.context = trt.Runtime(r).create_execution_context()\n"
              "    def go(self):\n        self.context.execute_async_v2([], 0)\n")
    found = violations(source)
    assert any(v.startswith("run_trt8 uses ['execute_async_v3'], absent from TensorRT 8.4.1") for v in found)
    assert not any(v.startswith("run_trt85plus") for v in found)
    assert any(v.startswith("ws_trt80_84") and "8.0.1" in v for v in found)
    assert any(v.startswith("mem uses ['device_memory_size_v2'], absent from TensorRT 10.0.1") for v in found)
    assert any(v.startswith("Runner uses ['execute_async_v2'], absent from TensorRT 10.0.1") for v in found)


# --- build plans per version ---------------------------------------------------------------------

@pytest.mark.parametrize("version", LISTS)
def test_every_planned_flag_exists_in_that_version(version: str) -> None:
    names = trt_names(version)
    for requested, graph in [("auto", "fp32"), ("auto", "int8"), ("auto", "fp16"), ("fp16", "fp32")]:
        try:
            plan = plan_precision(requested, graph, ORIN, version)
        except EdgefuseError:
            assert version.startswith("11") and (requested, graph) == ("fp16", "fp32")
            continue
        for flag in plan.flags + plan.network_flags:
            assert flag in names, (version, flag)
    if dla_unavailable(version) is None:
        for plan in (plan_dla("fp16", "fp32", ORIN, version, 0, STATIC) if not version.startswith("11") else
                     plan_dla("auto", "fp16", ORIN, version, 0, STATIC),):
            assert all(f in names for f in plan.flags + plan.network_flags), (version, plan)


def test_int8_builds_allow_fp16_where_the_device_is_fast_in_fp16() -> None:
    assert plan_precision("auto", "int8", ORIN, "8.0.1").flags == ("INT8", "FP16")
    assert plan_precision("auto", "int8", ORIN, "8.0.1").network_flags == ("EXPLICIT_BATCH",)
    assert plan_precision("auto", "int8", ORIN, "10.3.0").network_flags == ()
    pascal = get_device("jetson_nano")  # Maxwell: no INT8 at all
    with pytest.raises(EdgefuseError, match="int8"):
        plan_precision("auto", "int8", pascal, "8.2.1")
    assert plan_precision("auto", "int8", ORIN, "11.4.0").flags == ()


# --- DLA -----------------------------------------------------------------------------------------

def test_dla_versions() -> None:
    for ok in ("8.0.1", "8.2.1", "8.5.2", "8.6.2", "10.0.1", "10.3.0", "10.7.0", "11.4.1"):
        assert dla_unavailable(ok) is None, ok
    for no in ("10.8.0", "10.13.3", "11.0.0", "11.3.0", "11.4.0", "11.5.0"):
        assert dla_unavailable(no), no
    with pytest.raises(EdgefuseError, match=r"--dla: TensorRT 10.13.3 has no DLA .* build for the GPU"):
        plan_dla("fp16", "fp32", ORIN, "10.13.3", 0, STATIC)


def test_dla_plans_and_their_refusals() -> None:
    fp16 = plan_dla("fp16", "fp32", XAVIER, "8.5.2", 1, STATIC)
    assert fp16 == BuildPlan("fp16", ("FP16",), ("EXPLICIT_BATCH",), ("DLA core 1",), 1, None)
    int8 = plan_dla("auto", "fp32", ORIN, "10.3.0", 0, STATIC, "m.cache", "TRT-100300-EntropyCalibration2")
    assert (int8.precision, int8.flags, int8.calibration_cache, int8.dla_core) == (
        "int8", ("INT8", "FP16"), "m.cache", 0)
    assert plan_dla("auto", "fp32", ORIN, "8.5.2", 0, STATIC).precision == "fp16"
    assert plan_dla("auto", "int8", ORIN, "11.4.1", 0, STATIC).flags == ()  # strongly typed: the Q/DQ graph
    refusals = [
        ({"profile": ORIN_NANO}, "jetson_orin_nano has no DLA; build without --dla"),
        ({"core": 2}, r"2 DLA core\(s\); use 0..1"),
        ({"requested": "fp32"}, "FP16 or INT8 only, not FP32: pass --precision fp16"),
        ({"graph": "int8"}, "not from Q/DQ nodes: build from the FP32 graph with --calibration-cache"),
        ({"requested": "int8"}, "needs the INT8 scales as a calibration cache: run 'edgefuse calibrate"),
        ({"requested": "int8", "cache": "m.cache", "header": "TRT-8601-EntropyCalibration2"},
         "written for TensorRT 8.6.1, this is TensorRT 8.5.2.*--trt-version 8.5.2"),
        ({"requested": "int8", "cache": "m.cache", "header": "garbage"}, "not a TensorRT calibration cache"),
        ({"requested": "fp16", "cache": "m.cache"}, "--calibration-cache is for --precision int8 on DLA"),
        ({"shapes": {"clips": [[1, 8, 3, 224, 224], [2, 8, 3, 224, 224], [4, 8, 3, 224, 224]]}},
         r"dynamic shape .* DLA needs min = opt = max: pass --shapes clips:2x8x3x224x224,2x8x3x224x224,"),
        ({"version": "11.4.1", "graph": "fp32"}, "TensorRT 11.4.1 takes the precision from the graph"),
        ({"version": "11.4.1", "graph": "int8", "cache": "m.cache"}, "has no implicit INT8"),
    ]
    for kw, message in refusals:
        args = {"requested": "auto", "graph": "fp32", "profile": ORIN, "version": "8.5.2", "core": 0,
                "shapes": STATIC, "cache": None, "header": None}
        args.update(kw)
        with pytest.raises(EdgefuseError, match=message) as e:
            plan_dla(args["requested"], args["graph"], args["profile"], args["version"], args["core"], args["shapes"],
                     args["cache"], args["header"])
        assert "\n" not in str(e.value)
    assert cache_version("TRT-8502-EntropyCalibration2") == "8.5.2"
    assert cache_version("TRT-100300-EntropyCalibration2") == "10.3.0" and cache_version("TRT-x") is None


# --- engines on the wrong Orin ---------------------------------------------------------------------

def test_engines_refuse_another_orin_module_or_a_missing_dla_core() -> None:
    """Every Orin module's GPU reports "Orin", sm 8.7: the device profile and the DLA core tell them apart."""
    side = Sidecar(backend="tensorrt", backend_version="10.3.0", device="jetson_agx_orin",
                   hardware={"name": "Orin", "compute_capability": "8.7"}, precision="fp16", engine_sha256="0",
                   source_onnx="m.onnx", source_onnx_sha256="0", settings={"dla_core": 1})
    gpu = {"name": "Orin", "compute_capability": "8.7"}
    assert side.dla_core == 1
    check_compatible("m.engine", side, "10.3.0", gpu, device="jetson_agx_orin", dla_cores=2)
    check_compatible("m.engine", side, "10.3.0", gpu)  # callers that do not know the device: as before
    with pytest.raises(EdgefuseError, match="built for jetson_agx_orin, this device is jetson_orin_nano"):
        check_compatible("m.engine", side, "10.3.0", gpu, device="jetson_orin_nano", dla_cores=0)
    with pytest.raises(EdgefuseError, match=r"built for DLA core 1, this device has 1 DLA core\(s\).*--dla 0"):
        check_compatible("m.engine", side, "10.3.0", gpu, device="jetson_agx_orin", dla_cores=1)
