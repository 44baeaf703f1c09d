"""``edgefuse build-engine --host``: engines built on the device over SSH, recorded here and reused, against a REAL
OpenSSH server (tests/sshd.py: /usr/sbin/sshd on 127.0.0.1, generated keys). The "device" is this machine.

- With edgefuse on the device (its python3 is this interpreter): ``python3 -m edgefuse build-engine`` runs there, for
  real, building an ONNX Runtime engine.
- Without edgefuse (python3 isolated from site-packages) and with trtexec: the trtexec on the device's PATH is a
  STAND-IN (tests/data/trtexec/trtexec) replaying recorded real trtexec output, because TensorRT cannot exist here;
  what is tested is the command sent, the log read back, the sidecar made and the faults reported.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import MISSING, SSHD, Sshd, device_bin, start_sshd

from edgefuse.backends.remote import HostSpec, Timeouts
from edgefuse.backends.remote.build import (
    MISSING_TOOLS,
    RemoteBuildOptions,
    RemoteOptions,
    build_remote,
    edgefuse_build_argv,
    shapes_arg,
)
from edgefuse.backends.remote.record import load_records
from edgefuse.errors import EdgefuseError
from edgefuse.utils import sha256_file

pytest.importorskip("asyncssh")
needs_sshd = pytest.mark.skipif(not SSHD.exists(), reason=MISSING)
FAST = Timeouts(connect=10, command=120, copy=60, cleanup=10, build=240)
STANDIN = Path(__file__).parent / "data" / "trtexec" / "trtexec"


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config

    return export(make_config(None, tmp_path_factory.mktemp("rbuild") / "tsm.onnx", model="synth_tsm_r18w025")).path


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A device with edgefuse installed."""
    if not SSHD.exists():
        pytest.skip(MISSING)
    root = tmp_path_factory.mktemp("rbuild-sshd")
    s = start_sshd(root / "d", extra_path=(str(device_bin(root / "bin")),))
    try:
        yield s
    finally:
        s.stop()


def _logs(*names: str) -> str:
    """Recorded trtexec logs for the stand-in, by absolute path (it runs through a link on the device's PATH)."""
    return ",".join(str(STANDIN.parent.resolve() / n) for n in names)


def _spec(s: Sshd, name: str = "dev") -> HostSpec:
    return HostSpec(s.user, "127.0.0.1", s.port, name=name, identity=s.user_key)


def _remote(s: Sshd, tmp: Path, **kw: object) -> RemoteOptions:
    known = tmp / "known_hosts"
    known.write_text(s.known_hosts_line())
    return RemoteOptions(known_hosts=known, timeouts=kw.pop("timeouts", FAST), record=tmp / "record.json",  # type: ignore[arg-type]
                         store=str(tmp / "store"), **kw)  # type: ignore[arg-type]


# -- pure ---------------------------------------------------------------------------------------------------------
def test_build_argv_for_the_device_carries_the_options() -> None:
    opts = RemoteBuildOptions(precision="fp16", shapes={"clips": [[1, 8, 3, 224, 224], [2, 8, 3, 224, 224],
                                                                 [4, 8, 3, 224, 224]]}, workspace_mb=512, dla=0,
                              gpu_fallback=True)
    argv = edgefuse_build_argv("g.onnx", "e.engine", opts)
    assert argv[:4] == ["build-engine", "g.onnx", "-o", "e.engine"]
    assert argv[argv.index("--shapes") + 1] == "clips:1x8x3x224x224,2x8x3x224x224,4x8x3x224x224"
    assert argv[argv.index("--precision") + 1] == "fp16" and "--gpu-fallback" in argv
    assert argv[argv.index("--dla") + 1] == "0" and argv[argv.index("--workspace") + 1] == "512"
    # the shapes text is what build-engine's own parser reads back
    from edgefuse.backends.plan import parse_shapes

    assert parse_shapes([shapes_arg("clips", opts.shapes["clips"])]) == opts.shapes
    assert RemoteBuildOptions().key() != RemoteBuildOptions(precision="fp16").key()


def test_output_needs_one_host(graph: Path, tmp_path: Path) -> None:
    hosts = [HostSpec("a", "h1"), HostSpec("a", "h2")]
    with pytest.raises(EdgefuseError, match="cannot share one local file"):
        build_remote(graph, hosts, output=tmp_path / "e.engine")
    with pytest.raises(EdgefuseError, match="no such graph"):
        build_remote(tmp_path / "missing.onnx", hosts)


# -- against sshd -------------------------------------------------------------------------------------------------
@needs_sshd
def test_build_on_device_records_and_reuses(graph: Path, device: Sshd, tmp_path: Path) -> None:
    remote = _remote(device, tmp_path)
    first = build_remote(graph, [_spec(device)], RemoteBuildOptions(backend="onnxruntime"), remote)
    assert first.ok, first.hosts[0].failure
    eng = first.hosts[0].engine
    assert eng is not None and not eng.reused and eng.builder == "edgefuse"
    assert eng.sidecar.backend == "onnxruntime" and eng.sidecar.source_onnx_sha256 == sha256_file(graph)
    on_device = Path(eng.path)  # the device is this machine: its files are visible here
    assert on_device.is_file() and sha256_file(on_device) == eng.sidecar.engine_sha256
    assert json.loads(Path(str(on_device) + ".json").read_text())["engine_sha256"] == eng.sidecar.engine_sha256
    assert not list((tmp_path / "store").glob("*.part-*")), "the staging folder is left behind"
    records = load_records(tmp_path / "record.json")
    assert len(records) == 1 and records[0].remote_engine == eng.path and records[0].builder == "edgefuse"
    mtime = on_device.stat().st_mtime_ns

    again = build_remote(graph, [_spec(device)], RemoteBuildOptions(backend="onnxruntime"), remote)
    assert again.hosts[0].engine is not None and again.hosts[0].engine.reused
    assert on_device.stat().st_mtime_ns == mtime  # not built again

    on_device.unlink()  # the device lost it: built again, and recorded again
    third = build_remote(graph, [_spec(device)], RemoteBuildOptions(backend="onnxruntime"), remote)
    assert third.hosts[0].engine is not None and not third.hosts[0].engine.reused and on_device.is_file()
    assert len(load_records(tmp_path / "record.json")) == 1

    out = tmp_path / "local" / "tsm.engine"  # -o: the engine and its sidecar come back together
    fetched = build_remote(graph, [_spec(device)], RemoteBuildOptions(backend="onnxruntime"), remote, output=out)
    assert fetched.fetched == str(out) and sha256_file(out) == third.hosts[0].engine.sidecar.engine_sha256
    assert json.loads((out.parent / "tsm.engine.json").read_text())["backend"] == "onnxruntime"


@needs_sshd
def test_device_build_error_is_one_line_and_others_go_on(graph: Path, device: Sshd, tmp_path: Path) -> None:
    remote = _remote(device, tmp_path)
    dead = HostSpec(device.user, "127.0.0.1", 1, name="dead", identity=device.user_key)
    # --dla on a CPU: edgefuse on the device refuses it in one line
    fleet = build_remote(graph, [_spec(device), dead], RemoteBuildOptions(dla=0), remote)
    assert not fleet.ok
    bad, gone = (h.failure for h in fleet.hosts)
    assert bad is not None and bad.step == "build (edgefuse)" and "\n" not in bad.error
    assert bad.error.startswith("dev (") and "DLA" in bad.error
    assert gone is not None and gone.kind == "refused" and gone.error.startswith("dead (")
    assert load_records(tmp_path / "record.json") == []


@pytest.fixture()
def trt_device(tmp_path: Path) -> Iterator[tuple[Sshd, Path]]:
    """A device without edgefuse, with a STAND-IN trtexec (replaying a recorded Jetson TensorRT 8.2.1 build log)."""
    if not SSHD.exists():
        pytest.skip(MISSING)
    argv = tmp_path / "trtexec-argv.json"
    s = start_sshd(tmp_path / "d", extra_path=(str(device_bin(tmp_path / "bin", edgefuse=False, tools=(STANDIN,))),),
                   session_env={"EDGEFUSE_TRTEXEC_STANDIN_REPLAY":
                                    _logs("trt8.2.1_explicit_batch_warning.log", "build_engine_built.log"),
                                "EDGEFUSE_TRTEXEC_STANDIN_ARGV": str(argv)})
    try:
        yield s, argv
    finally:
        s.stop()


@needs_sshd
def test_build_with_trtexec_on_a_device_without_edgefuse(graph: Path, trt_device: tuple[Sshd, Path],
                                                         tmp_path: Path) -> None:
    s, argv_file = trt_device
    remote = _remote(s, tmp_path)
    fleet = build_remote(graph, [_spec(s)], RemoteBuildOptions(device="jetson_xavier_nx", precision="fp16"), remote)
    assert fleet.ok, fleet.hosts[0].failure
    eng = fleet.hosts[0].engine
    assert eng is not None and eng.builder == "trtexec"
    side = eng.sidecar
    assert side.backend == "tensorrt" and side.backend_version.startswith("8.2") and side.device == "jetson_xavier_nx"
    assert side.precision == "fp16" and side.settings["trtexec_command"].split()[0].endswith("/trtexec")
    sent = json.loads(argv_file.read_text())
    assert "--fp16" in sent and any(a.startswith("--saveEngine=") for a in sent)
    assert any(a.startswith("--onnx=") and a.endswith(".onnx") for a in sent)
    # the sidecar written beside the engine on the device is the one recorded here
    assert json.loads(Path(eng.path + ".json").read_text()) == side.to_dict()
    assert load_records(tmp_path / "record.json")[0].builder == "trtexec"


@needs_sshd
def test_trtexec_failure_and_missing_tools_are_one_line(graph: Path, tmp_path: Path) -> None:
    if not SSHD.exists():
        pytest.skip(MISSING)
    failing = start_sshd(tmp_path / "f", extra_path=(str(device_bin(tmp_path / "fb", edgefuse=False,
                                                                    tools=(STANDIN,))),),
                         session_env={"EDGEFUSE_TRTEXEC_STANDIN_REPLAY":
                                      _logs("trt8.2.1_explicit_batch_warning.log", "fail_build_trt8.5.log")})
    bare = start_sshd(tmp_path / "b", extra_path=(str(device_bin(tmp_path / "bb", edgefuse=False)),))
    try:
        known = tmp_path / "known_hosts"
        known.write_text(failing.known_hosts_line() + bare.known_hosts_line())
        remote = RemoteOptions(known_hosts=known, timeouts=FAST, record=tmp_path / "r.json", store=str(tmp_path / "st"))
        fleet = build_remote(graph, [_spec(failing, "orin"), _spec(bare, "nano")],
                             RemoteBuildOptions(device="jetson_agx_orin"), remote)
        f, b = (h.failure for h in fleet.hosts)
        assert f is not None and f.step == "build (trtexec)" and f.error.startswith("orin (")
        assert "trtexec failed (exit 1, TensorRT 8.2.1): " in f.error and "\n" not in f.error
        assert b is not None and b.kind == "missing-tool" and b.error == f"{_spec(bare, 'nano').label}: build: "\
            f"{MISSING_TOOLS}" or (b is not None and MISSING_TOOLS in b.error)
        assert not list((tmp_path / "st").glob("*.part-*"))
    finally:
        failing.stop()
        bare.stop()


def test_record_lookup_by_options_or_latest(tmp_path: Path) -> None:
    from edgefuse.backends.remote.record import EngineRecord, add_record, find_record

    def rec(options: str, engine: str, trt: str | None = "8.2.1") -> EngineRecord:
        return EngineRecord("id@jetson@10.0.0.5", "Jetson Nano", "jetson@10.0.0.5", trt, "g" * 64, options, engine,
                            "e" * 64, "trtexec")

    path = tmp_path / "record.json"
    for r in (rec("fp16", "/e/a.engine"), rec("int8", "/e/b.engine"), rec("fp16", "/e/c.engine")):
        add_record(r, path)
    records = load_records(path)
    assert [r.remote_engine for r in records] == ["/e/b.engine", "/e/c.engine"]  # fp16 rebuilt: replaced
    assert find_record(records, "id@jetson@10.0.0.5", "g" * 64, "int8", "8.2.1").remote_engine == "/e/b.engine"
    # bench / validate give no options: the latest engine of the graph, whatever options built it
    assert find_record(records, "id@jetson@10.0.0.5", "g" * 64, None, "8.2.1").remote_engine == "/e/c.engine"
    # TensorRT upgraded on the device (JetPack update): nothing recorded fits any more
    assert find_record(records, "id@jetson@10.0.0.5", "g" * 64, None, "8.2.3") is None
    assert find_record(records, "other@jetson@10.0.0.5", "g" * 64, None, "8.2.1") is None
    path.write_text("{not json")
    with pytest.raises(EdgefuseError, match="unreadable record of remote engines"):
        load_records(path)
