"""Real input, real users: every bad input gives one clear line.

A corpus of bad checkpoints, graphs, engines and sidecars, devices and flags, output paths and label files, each
run through the command line as a subprocess (``python -m edgefuse ...``): exit code 1, a single stderr line
starting ``error: `` that names the file (or flag) at fault, no traceback, and nothing left behind (no output
file, no temporary file, the inputs untouched). The clip, list-file and .npz cases are in test_clip_inputs.py.

All cases run at once (a few processes in parallel) on fixtures built once: a tiny TSN graph, its ONNX Runtime
engine and a few clips.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from argparse import Namespace
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

SIZE, SEGMENTS = 64, 2


def _write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def _export(ckpt: str) -> Callable[[Path, Path], list[str]]:
    return lambda fx, d: ["export", "tsn_resnet18", "-c", str(d / ckpt), "-O", "width=0.125", "--size", str(SIZE),
                          "--segments", str(SEGMENTS), "-o", str(d / "out.onnx")]


def _graph_file(name: str, model: onnx.ModelProto) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        onnx.save(model, str(d / name))
    return setup


def _add_graph() -> onnx.ModelProto:
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"])], "add",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(g)


def _image_graph() -> onnx.ModelProto:  # one input, but an image (N, 3, H, W), not clips
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "img",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])])
    return helper.make_model(g)


def _external(d: Path, fx: Path) -> None:
    model = onnx.load(str(fx / "m.onnx"))
    (d / "weights").mkdir()
    onnx.save(model, str(d / "ext.onnx"), save_as_external_data=True, location="weights/ext.onnx.data",
              size_threshold=0)
    shutil.rmtree(d / "weights")


def _truncated(d: Path, fx: Path) -> None:
    data = (fx / "m.onnx").read_bytes()
    (d / "cut.onnx").write_bytes(data[: len(data) // 3])


def _engine_with_sidecar(sidecar: Callable[[dict], object] | str) -> Callable[[Path, Path], None]:
    def setup(d: Path, fx: Path) -> None:
        shutil.copy(fx / "e.engine", d / "e.engine")
        good = json.loads((fx / "e.engine.json").read_text())
        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar(good))
        (d / "e.engine.json").write_text(text)
    return setup


def _replaced_engine(d: Path, fx: Path) -> None:
    _engine_with_sidecar(lambda s: s)(d, fx)
    with (d / "e.engine").open("ab") as f:
        f.write(b"\0")


def _drop(key: str) -> Callable[[dict], dict]:
    return lambda s: {k: v for k, v in s.items() if k != key}


def _set(**kw: object) -> Callable[[dict], dict]:
    return lambda s: {**s, **kw}


def _bench(d: Path) -> list[str]:
    return ["bench", str(d / "e.engine"), "--iterations", "1", "--warmup", "0", "--device", "cpu"]


def _ck(name: str) -> Callable[[Path, Path], list[str]]:
    return lambda fx, d: ["build-engine", str(fx / "m.onnx"), "--device", "cpu", "-o", str(d / name)]


# name -> (argv, what the line names, setup (d) or (d, fx))
CASES: dict[str, tuple[Callable[[Path, Path], list[str]], str, Callable[..., None] | None]] = {
    # checkpoints
    "ckpt_nan_weights": (_export("nan.pth"), "nan.pth: 1 of", lambda d, fx: shutil.copy(fx / "nan.pth", d)),
    "ckpt_inf_weights_inspect": (lambda fx, d: ["inspect", "tsn_resnet18", "-c", str(d / "inf.pth"),
                                                "--num-classes", "5"], "inf.pth: 2 of",
                                 lambda d, fx: shutil.copy(fx / "inf.pth", d)),
    "ckpt_torchscript": (_export("ts.pt"), "ts.pt: a TorchScript archive",
                         lambda d, fx: torch.jit.script(torch.nn.Linear(2, 2)).save(str(d / "ts.pt"))),
    "ckpt_text_file": (_export("notes.pth"), "notes.pth", lambda d, fx: _write("notes.pth", "just text\n")(d)),
    "ckpt_empty": (_export("empty.pth"), "empty.pth: empty file", lambda d, fx: _write("empty.pth", b"")(d)),
    "ckpt_wrong_pickle": (_export("obj.pth"), "obj.pth: not a plain-weights checkpoint",
                          lambda d, fx: _write("obj.pth", pickle.dumps(Namespace(a=1), protocol=2))(d)),
    "ckpt_list_of_tensors": (_export("list.pth"), "list.pth: holds a list",
                             lambda d, fx: torch.save([torch.zeros(2)], d / "list.pth")),
    "ckpt_missing": (_export("nowhere.pth"), "nowhere.pth: no such checkpoint", None),
    # ONNX graphs, for every command that takes one
    "onnx_zero_bytes_build": (lambda fx, d: ["build-engine", str(d / "z.onnx"), "--device", "cpu", "-o",
                                             str(d / "z.engine")], "z.onnx: empty file",
                              lambda d, fx: _write("z.onnx", b"")(d)),
    "onnx_add_build": (lambda fx, d: ["build-engine", str(d / "add.onnx"), "--device", "cpu", "-o",
                                      str(d / "add.engine")], "add.onnx: not an edgefuse video model (2 inputs",
                       lambda d, fx: _graph_file("add.onnx", _add_graph())(d)),
    "onnx_add_bench": (lambda fx, d: ["bench", str(d / "add.onnx"), "--iterations", "1"],
                       "add.onnx: not an edgefuse video model", lambda d, fx: _graph_file("add.onnx", _add_graph())(d)),
    "onnx_add_calibrate": (lambda fx, d: ["calibrate", str(d / "add.onnx"), "--clips", str(fx / "c.npz"), "-o",
                                          str(d / "q.onnx")], "add.onnx: not an edgefuse video model",
                           lambda d, fx: _graph_file("add.onnx", _add_graph())(d)),
    "onnx_add_validate_reference": (lambda fx, d: ["validate", str(fx / "e.engine"), "--reference", str(d / "add.onnx"),
                                                   "--clips", str(fx / "c.npz"), "--report", str(d / "r.json")],
                                    "add.onnx: not an edgefuse video model",
                                    lambda d, fx: _graph_file("add.onnx", _add_graph())(d)),
    "onnx_add_infer": (lambda fx, d: ["infer", str(d / "add.onnx"), str(d), "-o", str(d / "logits")],
                       "add.onnx: not an edgefuse video model", lambda d, fx: _graph_file("add.onnx", _add_graph())(d)),
    "onnx_image_device_clips": (lambda fx, d: ["device-clips", str(d / "img.onnx"), "--clips", str(fx / "c.npz"),
                                               "-o", str(d / "folder")], ("img.onnx: not an edgefuse video model "
                                 "(its input is x (1, 3, 64, 64))"), lambda d, fx: _graph_file("img.onnx", _image_graph())(d)),
    "onnx_missing_external_data": (lambda fx, d: ["build-engine", str(d / "ext.onnx"), "--device", "cpu", "-o",
                                                  str(d / "x.engine")], "weights/ext.onnx.data, which is missing",
                                   _external),
    "onnx_not_onnx": (lambda fx, d: ["build-engine", str(d / "text.onnx"), "--device", "cpu", "-o", str(d / "x.engine")],
                      "text.onnx: not a readable ONNX model", lambda d, fx: _write("text.onnx", "hello, not ONNX\n")(d)),
    "onnx_truncated": (lambda fx, d: ["validate", str(d / "cut.onnx"), "--reference", str(fx / "m.onnx"), "--clips",
                                      str(fx / "c.npz")], "cut.onnx", _truncated),
    # engines and sidecars
    "sidecar_foreign_json": (lambda fx, d: _bench(d), ("e.engine.json: not a valid engine sidecar (missing "
                              "field(s) backend"), _engine_with_sidecar(lambda s: {"name": "resnet", "version": 3})),
    "sidecar_missing_field": (lambda fx, d: _bench(d), "missing field(s) engine_sha256",
                              _engine_with_sidecar(_drop("engine_sha256"))),
    "sidecar_wrong_type": (lambda fx, d: _bench(d), "field 'hardware' is a string, expected a JSON object",
                           _engine_with_sidecar(_set(hardware="AMD EPYC"))),
    "sidecar_unknown_backend": (lambda fx, d: _bench(d), "backend 'tflite' is none of",
                                _engine_with_sidecar(_set(backend="tflite"))),
    "sidecar_newer_schema": (lambda fx, d: _bench(d), "schema 99 is newer", _engine_with_sidecar(_set(schema=99))),
    "sidecar_not_json": (lambda fx, d: _bench(d), "e.engine.json: not a valid engine sidecar (not JSON",
                         _engine_with_sidecar("{not json")),
    "sidecar_json_list": (lambda fx, d: _bench(d), "e.engine.json: not a valid engine sidecar (holds a list",
                          _engine_with_sidecar("[1, 2]")),
    "engine_without_sidecar": (lambda fx, d: _bench(d), "e.engine: no sidecar e.engine.json",
                               lambda d, fx: shutil.copy(fx / "e.engine", d / "e.engine")),
    "engine_bytes_replaced": (lambda fx, d: _bench(d), "e.engine: its bytes do not match", _replaced_engine),
    # devices and flags
    "device_unknown": (lambda fx, d: ["build-engine", str(fx / "m.onnx"), "--device", "nosuch", "-o",
                                      str(d / "x.engine")], "unknown device 'nosuch'", None),
    "device_dla_without_dla": (lambda fx, d: ["build-engine", str(fx / "m.onnx"), "--device", "cpu", "--dla", "0",
                                              "-o", str(d / "x.engine")], "--dla 0: cpu has 0 DLA core", None),
    "flag_bad_shapes": (lambda fx, d: ["build-engine", str(fx / "m.onnx"), "--device", "cpu", "--shapes", "clips:1x2",
                                       "-o", str(d / "x.engine")], "--shapes 'clips:1x2'", None),
    "flag_bf16_onnxruntime": (lambda fx, d: ["build-engine", str(fx / "m.onnx"), "--device", "cpu", "--backend",
                                             "onnxruntime", "--precision", "bf16", "-o", str(d / "x.engine")],
                              "--precision bf16", None),
    # output paths
    "out_export_proc": (lambda fx, d: ["export", "tsn_resnet18", "-o", "/proc/edgefuse-m.onnx"],
                        "/proc/edgefuse-m.onnx: cannot write the graph", None),
    "out_export_parent_is_file": (lambda fx, d: ["export", "tsn_resnet18", "-o", str(d / "f.txt" / "m.onnx")],
                                  "f.txt is a file, not a folder", lambda d, fx: _write("f.txt", "x")(d)),
    "out_calibrate_same_as_input": (lambda fx, d: ["calibrate", str(fx / "m.onnx"), "--clips", str(fx / "c.npz"),
                                                   "-o", str(fx / "m.onnx")], "would overwrite the input", None),
    "out_build_engine_same_as_input": (lambda fx, d: ["build-engine", str(d / "m.onnx"), "--device", "cpu", "-o",
                                                      str(d / "m.onnx")], "would overwrite the input",
                                       lambda d, fx: shutil.copy(fx / "m.onnx", d / "m.onnx")),
    "out_build_engine_proc": (lambda fx, d: ["build-engine", str(fx / "m.onnx"), "--device", "cpu", "-o",
                                             "/proc/edgefuse.engine"], "/proc/edgefuse.engine: cannot write", None),
    "out_build_engine_sidecar_is_folder": (_ck("s.engine"), "s.engine.json: is a folder",
                                           lambda d, fx: (d / "s.engine.json").mkdir()),
    "out_validate_report_read_only": (lambda fx, d: ["validate", str(fx / "e.engine"), "--reference",
                                                     str(fx / "m.onnx"), "--clips", str(fx / "c.npz"), "--report",
                                                     "/sys/edgefuse-report.json"], "/sys/edgefuse-report.json", None),
    "out_bench_json_parent_is_file": (lambda fx, d: ["bench", str(fx / "e.engine"), "--json-out",
                                                     str(d / "f.txt" / "b.json")], "f.txt is a file",
                                      lambda d, fx: _write("f.txt", "x")(d)),
    "out_device_clips_is_file": (lambda fx, d: ["device-clips", str(fx / "m.onnx"), "--clips", str(fx / "c.npz"),
                                                "-o", str(d / "f.txt" / "clips")], "f.txt is a file, not a folder",
                                 lambda d, fx: _write("f.txt", "x")(d)),
    "out_infer_proc": (lambda fx, d: ["infer", str(fx / "e.engine"), str(d), "-o", "/proc/edgefuse-logits"],
                       "/proc/edgefuse-logits: cannot write the logits folder", None),
    "out_synth_proc": (lambda fx, d: ["synth", "-o", "/proc/edgefuse-synth"], "/proc/edgefuse-synth", None),
    "out_train_same_as_init": (lambda fx, d: ["train", "tsn_resnet18", "--data", str(d), "--init", str(d / "i.pth"),
                                              "-o", str(d / "i.pth")], "would overwrite the input",
                               lambda d, fx: shutil.copy(fx / "good.pth", d / "i.pth")),
    "out_clips_npz_proc": (lambda fx, d: ["clips", str(fx / "c.npz"), "-o", "/proc/edgefuse-c.npz"],
                           "/proc/edgefuse-c.npz: cannot write the .npz", None),
    # label files, read by the commands other than 'clips' (whose cases are in test_clip_inputs.py)
    "classes_empty_device_clips": (lambda fx, d: ["device-clips", str(fx / "m.onnx"), "--clips", str(fx / "list.txt"),
                                                  "--classes", str(d / "e.classes"), "-o", str(d / "folder")],
                                   "e.classes: the class file is empty", lambda d, fx: _write("e.classes", "\n")(d)),
    "classes_duplicate_validate": (lambda fx, d: ["validate", str(fx / "e.engine"), "--reference", str(fx / "m.onnx"),
                                                  "--clips", str(fx / "list.txt"), "--classes", str(d / "d.classes")],
                                   "d.classes: class 'x' is listed twice",
                                   lambda d, fx: _write("d.classes", "x\ny\nx\n")(d)),
    # paths that are not there (the command line's own checks, before any work)
    "path_classes_missing": (lambda fx, d: ["validate", str(fx / "e.engine"), "--reference", str(fx / "m.onnx"),
                                            "--clips", str(fx / "list.txt"), "--classes", str(d / "nope.classes")],
                             "nope.classes' does not exist. Check its spelling", None),
    "path_clips_missing": (lambda fx, d: ["calibrate", str(fx / "m.onnx"), "--clips", str(d / "nope.txt"), "-o",
                                          str(d / "q.onnx")], "nope.txt' does not exist", None),
    "path_graph_missing": (lambda fx, d: ["build-engine", str(d / "nope.onnx"), "--device", "cpu", "-o",
                                          str(d / "x.engine")], "nope.onnx", None),
}


# The default suite runs one or two cases of each kind (each case is a process of its own, ~1.5-3 s of imports on
# two cores); every case runs with -m slow (benchmarks/run_slow_tests.sh).
DEFAULT = {"ckpt_nan_weights", "device_unknown", "onnx_add_build", "out_calibrate_same_as_input",
           "sidecar_foreign_json", "classes_duplicate_validate"}
SLOW = set(CASES) - DEFAULT


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny TSN graph, its ONNX Runtime engine and sidecar, clips, and a few checkpoints, built once."""
    from edgefuse.backends import BuildConfig, build_engine
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.models import create_model

    fx = tmp_path_factory.mktemp("badin_fixtures")
    export(make_config(None, fx / "m.onnx", model="tsn_resnet18", options={"width": 0.125}, size=SIZE,
                       segments=SEGMENTS, num_classes=5, ranges={}))
    build_engine(BuildConfig(fx / "m.onnx", fx / "e.engine", device="cpu", backend="onnxruntime"))
    np.savez(fx / "c.npz", clips=np.random.default_rng(0).standard_normal((2, SEGMENTS, 3, SIZE, SIZE)).astype("f4"))
    (fx / "list.txt").write_text("a 12 0\nb 12 1\n")
    sd = create_model("tsn_resnet18", num_classes=5, width=0.125).state_dict()
    torch.save(sd, fx / "good.pth")
    nan = {k: v.clone() for k, v in sd.items()}
    nan["fc.weight"][0, 0] = float("nan")
    torch.save(nan, fx / "nan.pth")
    inf = {k: v.clone() for k, v in sd.items()}
    inf["fc.bias"][0] = float("inf")
    inf["backbone.conv1.weight"][0] = float("-inf")
    torch.save({"state_dict": inf}, fx / "inf.pth")
    return fx


@pytest.fixture(scope="module")
def results(fixtures: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
            ) -> dict[str, tuple[Path, subprocess.CompletedProcess[str], set[str]]]:
    """The selected cases run through the command line (four at a time): name -> (its folder, the process, the files
    its setup left there)."""
    selected = {item.callspec.params.get("name") for item in request.session.items
                if getattr(item, "module", None) is sys.modules[__name__] and hasattr(item, "callspec")}
    root = tmp_path_factory.mktemp("badin_cases")
    before = _digests(fixtures)
    env = {**os.environ, "EDGEFUSE_CACHE_DIR": str(root / "cache"), "PYTHONWARNINGS": "ignore"}
    prepared: dict[str, tuple[Path, list[str], set[str]]] = {}
    for name, (argv, _, setup) in CASES.items():
        if name not in selected:
            continue
        d = root / name
        d.mkdir()
        if setup is not None:
            setup(d, fixtures)
        prepared[name] = (d, argv(fixtures, d), {p.name for p in d.iterdir()})

    def run(name: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        d, argv, _ = prepared[name]
        return name, subprocess.run([sys.executable, "-m", "edgefuse", *argv], cwd=d, env=env, capture_output=True,
                                    text=True, timeout=120, check=False)

    with ThreadPoolExecutor(4) as pool:
        done = dict(pool.map(run, prepared))
    assert _digests(fixtures) == before, "a case changed the fixtures (an input was overwritten)"
    return {name: (prepared[name][0], done[name], prepared[name][2]) for name in prepared}


def test_corpus_size() -> None:
    kinds = {name.split("_")[0] for name in CASES}
    assert len(CASES) >= 45 and {"ckpt", "onnx", "sidecar", "engine", "device", "flag", "out", "classes",
                                 "path"} <= kinds


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES])
def test_bad_input_one_line(name: str, results: dict[str, tuple[Path, subprocess.CompletedProcess[str], set[str]]]) -> None:
    folder, proc, setup_files = results[name]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert CASES[name][1] in lines[0], lines[0]
    left = {p.name for p in folder.iterdir()} - setup_files
    assert not left, f"left behind: {sorted(left)}"  # no output, no staging folder, no temporary file


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(fixtures: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        proc = subprocess.run([sys.executable, "-m", "edgefuse", "build-engine", str(fixtures / "m.onnx"), "--device",
                               "cpu", "-o", str(ro / "x.engine")], capture_output=True, text=True, timeout=120,
                              check=False)
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 1 and proc.stderr.strip().startswith(f"error: {ro / 'x.engine'}: cannot write")
    assert not list(ro.iterdir())


def test_external_data_error_names_the_full_path(fixtures: Path, tmp_path: Path) -> None:
    """In-process: the missing external data file is named in full, not cut off mid-path."""
    from edgefuse.errors import EdgefuseError
    from edgefuse.graph.io import load_onnx

    deep = tmp_path / ("a_rather_long_folder_name_" * 4)
    deep.mkdir()
    onnx.save(onnx.load(str(fixtures / "m.onnx")), str(deep / "m.onnx"), save_as_external_data=True,
              location="m.onnx.weights.bin", size_threshold=0)
    (deep / "m.onnx.weights.bin").unlink()
    with pytest.raises(EdgefuseError) as err:
        load_onnx(deep / "m.onnx")
    assert str((deep / "m.onnx.weights.bin").resolve()) in str(err.value)


@pytest.mark.parametrize("argv,code,text", [
    (["validate", "e.engine", "--clips", "c.npz", "--classes", "nope.classes"], 1,
     "Invalid value for '--classes': File 'nope.classes' does not exist. Check its spelling, or give the full path."),
    (["valdate"], 2, "No such command 'valdate'."),
    (["export", "tsn_resnet18", "--bogus"], 2, "No such option '--bogus'. See 'cli export -h'."),
    (["calibrate", "m.onnx", "--clips", "c.npz", "--method", "kl"], 2, "'kl' is not one of"),
])
def test_command_line_errors_are_one_line(fixtures: Path, argv: list[str], code: int, text: str) -> None:
    """A missing file named on the command line is bad input (exit 1); any other misuse of the command line is a
    usage error (exit 2, with the help command): either way one line, not click's usage block."""
    from click.testing import CliRunner

    from edgefuse.cli import cli
    args = [str(fixtures / a) if (fixtures / a).exists() else a for a in argv]
    res = CliRunner().invoke(cli, args)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == code and len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert text in lines[0], lines[0]
