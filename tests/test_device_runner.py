"""The device runner (edgefuse/backends/device_runner.py) under the Pythons of the Jetsons it serves; its
workstation side (edgefuse/backends/device_io.py) writes the clip folders and reads the logits back here, and is
tested on its own in tests/test_device_io.py.

The runner is run for real under Python 3.6 (JetPack 4.6), 3.8 (JetPack 5) and the project's Python, found
through pyenv (skipped, with the reason, only where an interpreter is absent; .ci/run installs numpy for them):
its arguments, the clip folder written by device_io, its output read back by device_io, and its one-line error
where TensorRT is missing. TensorRT and a GPU cannot exist here: the run loop is driven in-process by a stand-in
TensorRT whose objects answer only the names NVIDIA's bindings of that version define
(tests/data/trt_names/<version>.txt) and a stand-in CUDA backed by numpy arrays; nothing here ran on a GPU.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest

from edgefuse.backends import device_io
from edgefuse.backends import device_runner as dr

RUNNER = Path(dr.__file__).resolve()
NAMES = Path(__file__).parent / "data" / "trt_names"
CLIP = (2, 3, 4, 4)  # (T, 3, H, W), small


def sh(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True, timeout=120, cwd=cwd)


def _pyenv_python(minor: str) -> Path | None:
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    try:
        roots.insert(0, sh("pyenv", "root").stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    for root in filter(None, roots):
        found = sorted(Path(root, "versions").glob(f"{minor}.*/bin/python"),
                       key=lambda p: int(p.parts[-3].split(".")[2]) if p.parts[-3].count(".") == 2 else -1)
        if found:
            return found[-1]
    return None


@pytest.fixture(params=["project", "3.6", "3.8"])
def python(request: pytest.FixtureRequest) -> str:
    if request.param == "project":
        return sys.executable
    exe = _pyenv_python(request.param)
    if exe is None:
        pytest.skip(f"no Python {request.param} under pyenv here (CI has it: pyenv install {request.param})")
    probe = sh(exe, "-I", "-c", "import numpy")
    assert probe.returncode == 0, f"numpy is missing for {exe}; .ci/run installs it: {exe} -m pip install numpy"
    return str(exe)


def run_runner(python: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The runner as a device runs it: its own file, isolated (-I: no script folder or user site on sys.path)."""
    return sh(python, "-I", RUNNER, *args, cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("device_runner: error: "), proc.stderr
    return lines[0]


def clips_and_ids(n: int = 7) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, *CLIP)).astype(np.float32), [f"video_{i:02d}" for i in range(n)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    clips, ids = clips_and_ids()
    return device_io.write_clip_folder(clips, ids, "clips", tmp_path / "clips", chunk=3)


# --- the file itself ------------------------------------------------------------------------------

def test_runner_needs_nothing_newer_than_python_36() -> None:
    vermin = shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed (pip install vermin); the 3.6 interpreter tests below still run")
    proc = sh(vermin, "-t=3.6-", "--no-tips", "--violations", RUNNER)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runner_imports_only_the_standard_library_and_numpy() -> None:
    tree = ast.parse(RUNNER.read_text())
    top = {(a.name if isinstance(n, ast.Import) else n.module or "").split(".")[0]
           for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    assert top <= {"argparse", "atexit", "ctypes", "importlib", "json", "os", "sys", "typing", "numpy"}, top
    assert "edgefuse" not in top  # TensorRT and CUDA are imported by name at run time (importlib)


# --- the command under 3.6, 3.8 and the project's Python -----------------------------------------------

def test_arguments_and_missing_files(python: str, tmp_path: Path, folder: Path) -> None:
    helped = run_runner(python, "--help", cwd=tmp_path)
    assert helped.returncode == 0 and all(w in helped.stdout for w in ("ENGINE", "CLIPS_DIR", "--batch", "--warmup",
                                                                       "--stream"))
    assert "required" in one_line_error(run_runner(python, cwd=tmp_path))
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    assert "-o/--out" in one_line_error(run_runner(python, engine, folder, cwd=tmp_path))
    assert "--batch 0" in one_line_error(run_runner(python, engine, folder, "-o", "out", "--batch", "0", cwd=tmp_path))
    assert "invalid int" in one_line_error(run_runner(python, engine, folder, "-o", "out", "--batch", "x",
                                                      cwd=tmp_path))
    assert "no such engine file" in one_line_error(run_runner(python, "none.engine", folder, "-o", "o", cwd=tmp_path))
    assert "not a folder" in one_line_error(run_runner(python, engine, tmp_path / "nope", "-o", "o", cwd=tmp_path))
    assert "no manifest.json" in one_line_error(run_runner(python, engine, tmp_path, "-o", "o", cwd=tmp_path))


def test_reads_the_folder_device_io_wrote_then_names_missing_tensorrt(python: str, tmp_path: Path,
                                                                      folder: Path) -> None:
    clips, ids = clips_and_ids()
    proc = run_runner(python, "unused.engine", folder, "-o", tmp_path / "out", "--dry-run", "--batch", "2",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["clips"], summary["runs"], summary["clip_shape"]) == (7, 4, list(CLIP))
    assert (summary["first"], summary["last"]) == (ids[0], ids[-1])
    assert summary["sum"] == pytest.approx(float(clips.astype(np.float64).sum()), rel=1e-6)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 16)
    if python == sys.executable and hasattr(__import__("tensorrt"), "Runtime"):
        pytest.skip("the real TensorRT is installed for this Python")
    line = one_line_error(run_runner(python, engine, folder, "-o", tmp_path / "out", cwd=tmp_path))
    assert "(tensorrt) is not installed" in line and "python3-libnvinfer" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("breakage, message", [
    ("missing_file", "is listed but missing"), ("count", "but the files list 7 clip ids"),
    ("version", "manifest version 99"), ("shape", "the manifest says [3, 2, 3, 4, 4]"),
    ("dtype", "dtype float64, the manifest says float32"), ("json", "not valid JSON")])
def test_broken_folders_exit_2_with_one_line(python: str, tmp_path: Path, folder: Path, breakage: str,
                                             message: str) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    if breakage == "missing_file":
        (folder / "clips-00001.npy").unlink()
    elif breakage in ("count", "version"):
        manifest.update({"count": 8} if breakage == "count" else {"version": 99})
    elif breakage == "json":
        (folder / "manifest.json").write_text("{")
    else:
        bad = np.zeros((3, 2, 3, 4, 5), np.float32) if breakage == "shape" else np.zeros((3, *CLIP))
        np.save(folder / "clips-00000.npy", bad)
    if breakage in ("count", "version"):
        (folder / "manifest.json").write_text(json.dumps(manifest))
    line = one_line_error(run_runner(python, "x.engine", folder, "-o", "o", "--dry-run", cwd=tmp_path))
    assert message in line


DRIVER = '''
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("device_runner", sys.argv[1])
dr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dr)
assert not [m for m in sys.modules if m.startswith("edgefuse")]
folder, out = sys.argv[2], sys.argv[3]
def err(f, *a):
    try:
        f(*a)
    except dr.RunnerError as e:
        return [e.code, str(e)]
m = dr.read_manifest(folder)
ids = dr.manifest_ids(m)
prof = [(1, 2, 3), (4, 2, 3), (8, 2, 3)]
res = {"ids": ids,
       "padded": [[b, list(a.shape), n, float(a.astype("float64").sum())]
                  for b, a, n in dr.iter_batches(folder, m, 3, True)],
       "plain": [[b, list(a.shape), n] for b, a, n in dr.iter_batches(folder, m, 3, False)],
       "plan": [dr.plan_batch((2, 2, 3), None, None), dr.plan_batch((-1, 2, 3), prof, None),
                dr.plan_batch((-1, 2, 3), prof, 8)],
       "plan_err": [err(dr.plan_batch, (2, 2, 3), None, 4), err(dr.plan_batch, (-1, 2, 3), prof, 9)],
       "api": [dr.api_for_version(v) for v in sys.argv[4].split(",")],
       "api_err": err(dr.api_for_version, "7.1.3"),
       "shape_ok": err(dr.check_clip_shape, (-1, 2, 3, -1, 4), [2, 3, 4, 4], "clips"),
       "shape_err": err(dr.check_clip_shape, (-1, 8, 3, 224, 224), [2, 3, 4, 4], "clips")}
vals = np.array([[0.1, -0.0, 1e-45, -3.4028235e38, float("inf")], [1.0 / 3, 2.5e-39, 123456.789, -7.25, 1e-7]],
                dtype="float32")  # a subnormal, the extremes, values no float64 literal holds as written
res["stream"] = dr.stream_line(2, ids[:2], vals, {"h2d_ms": 0.5, "compute_ms": 1.25})
res["stream_bits"] = vals.view("uint32").tolist()
res["stream_err"] = err(dr.stream_line, 0, ids[:3], vals, {})
runs = [(ids[i:i + 3], {"h2d_ms": 0.5, "compute_ms": 2.0 + i, "d2h_ms": 0.1}) for i in range(0, len(ids), 3)]
record = {"tensorrt": "8.2.1.8", "api": "binding", "cuda": "pycuda", "gpu": {"name": "Xavier"}, "batch": 3,
          "warmup": 2, "engine": "m.engine", "input_name": "clips", "output_name": "logits",
          "timings": dr.per_clip_timings(runs)}
dr.write_outputs(out, ids, np.arange(len(ids) * 5, dtype="float32").reshape(len(ids), 5), record)
print(json.dumps(res))
'''
VERSIONS = ["8.0.1", "8.2.1.8", "8.4.1.5", "8.5.2.2", "8.6.1.6", "10.0.1.6", "10.3.0.26", "11.4.0.106"]


def test_pure_helpers_under_each_python(python: str, tmp_path: Path, folder: Path) -> None:
    clips, ids = clips_and_ids()
    (tmp_path / "driver.py").write_text(DRIVER)
    proc = sh(python, "-I", tmp_path / "driver.py", RUNNER, folder, tmp_path / "out", ",".join(VERSIONS), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["ids"] == ids
    assert [(b, s, n) for b, s, n, _ in res["padded"]] == [
        (ids[0:3], [3, *CLIP], 3), (ids[3:6], [3, *CLIP], 3), (ids[6:], [3, *CLIP], 1)]
    last = np.concatenate([clips[6:]] * 3).astype(np.float64).sum()  # padded by repeating the last clip
    assert res["padded"][2][3] == pytest.approx(float(last), rel=1e-6)
    assert res["plain"][2] == [ids[6:], [1, *CLIP], 1]
    assert res["plan"] == [[2, True], [4, False], [8, False]]
    assert res["plan_err"][0][1].startswith("the engine's batch is fixed at 2; drop --batch 4")
    assert "outside the engine's profile (batch 1..8, opt 4)" in res["plan_err"][1][1]
    assert res["api"] == ["binding"] * 3 + ["tensor"] * 5
    assert res["api_err"][0] == 2 and "older than 8.0" in res["api_err"][1]
    assert res["shape_ok"] is None and "takes (batch, 8, 3, 224, 224)" in res["shape_err"][1]
    back = device_io.read_runner_logits(tmp_path / "out", expect_ids=ids)  # written by that Python, read here
    assert back.ids == ids and back.logits.shape == (7, 5) and back.logits[6, 4] == 34.0
    assert back.timings.tensorrt == "8.2.1.8" and back.timings.batch_compute_ms() == [2.0, 5.0, 8.0]
    assert back.timings.per_clip[6].clips_in_batch == 1
    # --stream's line, made by that Python's stream_line, read here to the same float32 bits
    batch = device_io.parse_stream_line(res["stream"])
    assert batch is not None and (batch.batch_index, batch.ids) == (2, tuple(ids[:2]))
    assert batch.logits.view(np.uint32).tolist() == res["stream_bits"]
    assert (batch.h2d_ms, batch.compute_ms, batch.d2h_ms) == (0.5, 1.25, 0.0)
    assert res["stream_err"] == [1, "batch 0: logits of shape [2, 5] for 3 clips"]


# --- the run loop, in-process, with stand-ins for TensorRT and CUDA (neither exists here) -----------------

def trt_names(version: str) -> set[str]:
    """NVIDIA's Python names of the TensorRT release ``version`` belongs to (same major.minor)."""
    mm = ".".join(version.split(".")[:2]) + "."
    (path,) = [p for p in NAMES.glob("*.txt") if p.name.startswith(mm)]
    return {w.strip() for w in path.read_text().splitlines() if w.strip() and not w.startswith("#")}


class Restricted:
    """A stand-in TensorRT object that answers only the public names its version's bindings define."""

    _allowed: ClassVar[set[str]] = set()

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and name not in object.__getattribute__(self, "_allowed"):
            raise AttributeError(f"this TensorRT has no {name!r}")
        return object.__getattribute__(self, name)


class StandInCuda:
    """Device memory as numpy byte arrays; copies happen at once, events read 0 ms."""

    name, gpu, handle = "stand-in", {"name": "none"}, 0

    def __init__(self) -> None:
        self.mem: dict[int, np.ndarray] = {}

    def pinned(self, shape: Any, dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype)

    def device(self, nbytes: int) -> int:
        ptr = 4096 * (len(self.mem) + 1)
        self.mem[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def h2d(self, dev: int, host: np.ndarray) -> None:
        self.mem[dev][:] = host.reshape(-1).view(np.uint8)

    def d2h(self, host: np.ndarray, dev: int) -> None:
        np.copyto(host, self.mem[dev].view(host.dtype).reshape(host.shape))

    def event(self) -> None:
        return None

    def record(self, event: Any) -> None:
        pass

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return 0.0

    def synchronize(self) -> None:
        pass


def stand_in_tensorrt(version: str, static: int, cuda: StandInCuda, refuse: str = "") -> Any:
    """A one-input engine (B, *CLIP) -> logits (B, 5) = sum(clip) * (1..5); batch ``static`` or dynamic 1..4."""
    allowed = trt_names(version)
    names = ["clips", "logits"]

    def shape(i: int, b: int) -> tuple[int, ...]:
        return (b, *CLIP) if i == 0 else (b, 5)

    class Context(Restricted):
        _allowed = allowed

        def __init__(self) -> None:
            self._batch, self._addr = static or -1, dict[str, int]()

        def _set(self, b: int) -> bool:
            self._batch = b
            return refuse != "shape" and 1 <= b <= 4

        def set_binding_shape(self, i: int, s: tuple[int, ...]) -> bool:
            return self._set(s[0])

        def set_input_shape(self, name: str, s: tuple[int, ...]) -> bool:
            return self._set(s[0])

        def get_binding_shape(self, i: int) -> tuple[int, ...]:
            return shape(i, self._batch)

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return shape(names.index(name), self._batch)

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self._addr[name] = ptr
            return True

        def _run(self, src: int, dst: int) -> bool:
            x = cuda.mem[src].view(np.float32).reshape(self._batch, -1)
            cuda.mem[dst][:] = (x.sum(1)[:, None] * np.arange(1, 6, dtype=np.float32)).reshape(-1).view(np.uint8)
            return refuse != "execute"

        def execute_async_v2(self, bindings: list[int], stream_handle: int) -> bool:
            return self._run(bindings[0], bindings[1])

        def execute_async_v3(self, stream_handle: int) -> bool:
            return self._run(self._addr["clips"], self._addr["logits"])

    class Engine(Restricted):
        _allowed = allowed
        num_bindings = num_io_tensors = 2
        num_optimization_profiles = 1
        has_implicit_batch_dimension = False

        def binding_is_input(self, i: int) -> bool:
            return i == 0

        def get_binding_name(self, i: int) -> str:
            return names[i]

        def get_tensor_name(self, i: int) -> str:
            return names[i]

        def get_tensor_mode(self, name: str) -> str:
            return "INPUT" if name == "clips" else "OUTPUT"

        def get_binding_dtype(self, i: int) -> str:
            return "FLOAT"

        def get_tensor_dtype(self, name: str) -> str:
            return "FLOAT"

        def get_binding_shape(self, i: int) -> tuple[int, ...]:
            return shape(i, static or -1)

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return shape(names.index(name), static or -1)

        def get_profile_shape(self, p: int, i: int) -> list[tuple[int, ...]]:
            return [shape(i, b) for b in ((static,) * 3 if static else (1, 2, 4))]

        def get_tensor_profile_shape(self, name: str, p: int) -> list[tuple[int, ...]]:
            return [shape(0, b) for b in ((static,) * 3 if static else (1, 2, 4))]

        def create_execution_context(self) -> Context:
            return Context()

    class Runtime(Restricted):
        _allowed = allowed

        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            return Engine() if data == b"engine" else None

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity: str) -> None:
            pass

    class Module(Restricted):
        _allowed = allowed
        __version__ = version
        TensorIOMode = SimpleNamespace(INPUT="INPUT")

        def init_libnvinfer_plugins(self, logger: Any, namespace: str) -> bool:
            return True

        def nptype(self, dtype: str) -> Any:
            return np.float32

    Module.Logger, Module.Runtime = Logger, Runtime  # type: ignore[attr-defined]

    return Module()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("static", [0, 2])
def test_run_loop_per_tensorrt_version(version: str, static: int, tmp_path: Path, folder: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = StandInCuda()
    monkeypatch.setattr(dr, "import_tensorrt", lambda: stand_in_tensorrt(version, static, cuda))
    monkeypatch.setattr(dr, "import_cuda", lambda: cuda)
    (tmp_path / "m.engine").write_bytes(b"engine")
    batch = [] if static else ["--batch", "3"]
    assert dr.main([str(tmp_path / "m.engine"), str(folder), "-o", str(tmp_path / "out"), "--warmup", "1", *batch]) == 0
    clips, ids = clips_and_ids()
    back = device_io.read_runner_logits(tmp_path / "out", expect_ids=ids)
    expected = clips.reshape(7, -1).sum(1)[:, None] * np.arange(1, 6)
    np.testing.assert_allclose(back.logits, expected, rtol=1e-5)
    assert back.timings.api == ("binding" if version in VERSIONS[:3] else "tensor")
    assert back.timings.tensorrt == version and back.timings.batch == (static or 3)
    sizes = [t.clips_in_batch for t in back.timings.per_clip]
    assert sizes == ([2] * 6 + [1] if static else [3] * 6 + [1])  # the last run padded (static) or smaller


@pytest.mark.parametrize("version, static", [("8.2.1.8", 2), ("10.3.0.26", 0)])
def test_stream_prints_each_batch_on_stdout_and_nothing_else(version: str, static: int, tmp_path: Path, folder: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    """--stream: one line per batch on stdout (file descriptor 1), together logits.npy to the bit; the summary and
    whatever else writes to stdout during the run (here TensorRT's stand-in, straight to the file descriptor) go to
    stderr; stdout is back as it was afterwards."""
    cuda = StandInCuda()
    trt = stand_in_tensorrt(version, static, cuda)
    deserialize = type(trt.Runtime(None)).deserialize_cuda_engine

    def noisy(self: Any, data: bytes) -> Any:
        os.write(1, b"[TensorRT] a log line of the library itself, without its newline ")
        print("a stray print")
        return deserialize(self, data)

    monkeypatch.setattr(type(trt.Runtime(None)), "deserialize_cuda_engine", noisy)
    monkeypatch.setattr(dr, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(dr, "import_cuda", lambda: cuda)
    (tmp_path / "m.engine").write_bytes(b"engine")
    batch = [] if static else ["--batch", "3"]
    assert dr.main([str(tmp_path / "m.engine"), str(folder), "-o", str(tmp_path / "out"), "--stream", *batch]) == 0
    captured = capfd.readouterr()
    batches = [device_io.parse_stream_line(line) for line in captured.out.splitlines()]
    assert batches and all(b is not None for b in batches), captured.out
    got = [b for b in batches if b is not None]
    _, ids = clips_and_ids()
    assert [len(b.ids) for b in got] == ([2, 2, 2, 1] if static else [3, 3, 1])  # the padding left out
    assert [b.batch_index for b in got] == list(range(len(got))) and [i for b in got for i in b.ids] == ids
    back = device_io.read_runner_logits(tmp_path / "out", expect_ids=ids)
    assert np.array_equal(np.concatenate([b.logits for b in got]).view(np.uint32), back.logits.view(np.uint32))
    assert back.timings.backend == "tensorrt" and back.timings.backend_version == version
    assert "a stray print" in captured.err and "[TensorRT] a log line" in captured.err
    assert json.loads(captured.err.splitlines()[-1])["clips"] == 7  # the summary, last, on stderr
    print("stdout is back")
    assert capfd.readouterr().out == "stdout is back\n"


@pytest.mark.parametrize("version", ["8.2.1.8", "10.3.0.26"])
def test_run_time_refusals_are_one_line(version: str, tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cuda = StandInCuda()
    monkeypatch.setattr(dr, "import_cuda", lambda: cuda)
    (tmp_path / "m.engine").write_bytes(b"engine")
    args = [str(tmp_path / "m.engine"), str(folder), "-o", str(tmp_path / "out")]
    cases = [("", ["--batch", "9"], 2, "outside the engine's profile (batch 1..4, opt 2)"),
             ("shape", ["--batch", "3"], 1, ("refused shape [3, 2, 3, 4, 4] for clips (profile 0: [1, 2, 3, 4, 4] .. "
                                             "[4, 2, 3, 4, 4])")),
             ("execute", [], 1, "execute_async_v"), ("", ["--batch", "2"], 0, "")]
    for refuse, extra, code, message in cases:
        monkeypatch.setattr(dr, "import_tensorrt", lambda r=refuse: stand_in_tensorrt(version, 0, cuda, r))
        assert dr.main(args + extra) == code
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == (1 if code else 0)
    (tmp_path / "m.engine").write_bytes(b"garbage")
    assert dr.main(args) == 1 and "could not deserialize" in capsys.readouterr().err


def test_cuda_python_without_a_driver_is_one_line() -> None:
    try:
        from cuda.bindings import runtime as rt  # the real bindings install without a GPU
    except ImportError:  # a stand-in replaying cuda-bindings 12.9.4 on a machine without a driver
        codes = SimpleNamespace(cudaSuccess=0, cudaErrorInsufficientDriver=35)
        rt = SimpleNamespace(cudaError_t=codes, cudaGetDeviceCount=lambda: (35, None), cudaGetErrorString=lambda e: (
            0, b"CUDA driver version is insufficient for CUDA runtime version"))
    with pytest.raises(dr.RunnerError, match="cudaGetDeviceCount failed: CUDA driver version is insufficient") as e:
        dr.CudaPython(rt)
    assert e.value.code == 2


def test_missing_cuda_bindings_name_both_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither cuda-python nor pycuda importable (a None entry in sys.modules makes Python's import raise
    ImportError, whatever is installed): one line naming both choices, exit code 2."""
    for module in ("cuda.bindings.runtime", "cuda.cudart", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(dr.RunnerError, match="cuda-python or pycuda.*JetPack 4.6.*pycuda") as e:
        dr.import_cuda()
    assert e.value.code == 2


def _chain_names(fn: ast.AST) -> set[str]:
    roots = {"trt", "engine", "context", "runtime"}
    out: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Attribute):
            chain: list[str] = []
            cur: ast.expr = node
            while isinstance(cur, (ast.Attribute, ast.Call)):
                if isinstance(cur, ast.Attribute):
                    chain.append(cur.attr)
                cur = cur.value if isinstance(cur, ast.Attribute) else cur.func
            chain.reverse()
            if isinstance(cur, ast.Name) and cur.id == "self" and chain and chain[0] in roots:
                chain = chain[1:]
            elif not (isinstance(cur, ast.Name) and cur.id in roots):
                continue
            out |= set(chain)
    return out - {"__version__"}


def test_runner_uses_only_names_of_the_versions_its_functions_serve() -> None:
    """Static check of every path (the stand-in above checks the paths a run takes): ``_trt80_84`` against
    8.0/8.2/8.4, ``_trt85plus`` against 8.5 and later, the rest against every version."""
    tree = ast.parse(RUNNER.read_text())
    fns = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    used = {f.name: _chain_names(f) for f in fns}
    assert {"execute_async_v2", "set_binding_shape"} <= used["execute_trt80_84"] | used["set_input_shape_trt80_84"]
    assert "deserialize_cuda_engine" in used["__init__"]
    for name, names in used.items():
        versions = (VERSIONS[:3] if name.endswith("_trt80_84") else VERSIONS[3:] if name.endswith("_trt85plus")
                    else VERSIONS)
        for v in versions:
            missing = names - trt_names(v)
            assert not missing, f"{name} uses {sorted(missing)}, absent from TensorRT {v}"
    assert "execute_async_v2" not in trt_names("10.0.1") and "set_input_shape" not in trt_names("8.4.1")



def test_cuda_python_calls_exist_in_every_cuda_python_listed() -> None:
    """CudaPython's calls against the names of cuda.cudart (cuda-python 11.8, 12.4) and cuda.bindings.runtime
    (cuda-bindings 12.9, 13.5) in tests/data/cuda_names, written from the PyPI wheels by tools/cuda_names.py."""
    lists = sorted((Path(__file__).parent / "data" / "cuda_names").glob("*.txt"))
    if not lists:
        pytest.skip("tests/data/cuda_names has no name lists (tools/cuda_names.py writes them)")
    cls = next(n for n in ast.walk(ast.parse(RUNNER.read_text()))
               if isinstance(n, ast.ClassDef) and n.name == "CudaPython")
    used: set[str] = set()
    for node in ast.walk(cls):  # rt.X, self.rt.X and self.rt.X.Y (inner nodes give the prefixes, names too)
        if not isinstance(node, ast.Attribute):
            continue
        chain, cur = [node.attr], node.value
        while isinstance(cur, ast.Attribute):
            chain.insert(0, cur.attr)
            cur = cur.value
        if isinstance(cur, ast.Name) and cur.id == "self" and chain[0] == "rt":
            chain = chain[1:]
        elif not (isinstance(cur, ast.Name) and cur.id == "rt"):
            continue
        if chain:
            used.add(".".join(chain[:2]))
    used |= {"cudaDeviceProp.name", "cudaDeviceProp.major", "cudaDeviceProp.minor"}  # prop.name, prop.major, ...
    assert {"cudaGetDeviceCount", "cudaMallocHost", "cudaMemcpyAsync", "cudaMemcpyKind.cudaMemcpyHostToDevice",
            "cudaEventElapsedTime", "cudaError_t.cudaSuccess"} <= used
    for path in lists:
        names: set[str] = set()
        for line in path.read_text().splitlines():
            kind, _, rest = line.partition(" ")
            if kind in ("func", "enum", "attr", "class"):
                full = rest.split("(")[0].strip()
                names |= {full, full.split(".")[0]}
        missing = used - names
        assert not missing, f"{path.name} lacks {sorted(missing)}"


def test_an_unexpected_error_is_one_line_unless_asked(tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> Any:
        raise TypeError("execute_async_v3(): incompatible function arguments\nInvoked with: ...")

    monkeypatch.setattr(dr, "import_tensorrt", broken)
    (tmp_path / "m.engine").write_bytes(b"engine")
    args = [str(tmp_path / "m.engine"), str(folder), "-o", str(tmp_path / "out")]
    assert dr.main(args) == 1
    assert capsys.readouterr().err == ("device_runner: error: TypeError: execute_async_v3(): incompatible function "
                                       "arguments (DEVICE_RUNNER_TRACEBACK=1 shows where)\n")
    monkeypatch.setenv("DEVICE_RUNNER_TRACEBACK", "1")
    with pytest.raises(TypeError):
        dr.main(args)
