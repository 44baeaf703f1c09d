"""``edgefuse bench`` on one device or a fleet over SSH, against REAL OpenSSH servers (tests/sshd.py: /usr/sbin/sshd
on 127.0.0.1, two instances on two ports, generated host and user keys). Nothing is mocked: each "device" is this
machine reached over SSH, running this interpreter's edgefuse with the ONNX Runtime (CPU) backend on an engine built
here. No Jetson, GPU or TensorRT exists here: the TensorRT paths are not exercised."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import MISSING, SSHD, Sshd, device_bin, free_port, key_material, start_sshd

from edgefuse.backends.remote import HostSpec, Timeouts
from edgefuse.backends.remote.build import MISSING_TOOLS, STORE, RemoteOptions
from edgefuse.bench import BenchConfig
from edgefuse.bench.remote import FleetReport, bench_remote, check_fleet_config, remote_bench_argv
from edgefuse.cli.render import render_fleet
from edgefuse.errors import EdgefuseError

pytest.importorskip("asyncssh")
needs_sshd = pytest.mark.skipif(not SSHD.exists(), reason=MISSING)
FAST = Timeouts(connect=10, command=240, copy=60, cleanup=10)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ONNX Runtime engine and its sidecar (the shipped synthetic TSM), built here for the CPU."""
    from edgefuse.backends import BuildConfig, build_engine
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config

    tmp = tmp_path_factory.mktemp("fleet")
    fp32 = export(make_config(None, tmp / "tsm.onnx", model="synth_tsm_r18w025")).path
    return build_engine(BuildConfig(fp32, tmp / "tsm.engine", device="cpu", backend="onnxruntime")).path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Sshd]]:
    """Two devices: sshd on two ports whose sessions find this interpreter (with edgefuse) as python3."""
    if not SSHD.exists():
        pytest.skip(MISSING)
    root = tmp_path_factory.mktemp("fleet-sshd")
    bin_dir = root / "bin"
    device_bin(bin_dir)
    out: list[Sshd] = []
    try:
        for name in ("a", "b"):  # each device's TMPDIR is its own, to see its temporary folders removed
            (root / f"tmp-{name}").mkdir()
            out.append(start_sshd(root / name, extra_path=(str(bin_dir),),
                                  session_env={"TMPDIR": str(root / f"tmp-{name}")}))
        yield out
    finally:
        for s in out:
            s.stop()


def _known(tmp: Path, *servers: Sshd) -> Path:
    f = tmp / "known_hosts"
    f.write_text("".join(s.known_hosts_line() for s in servers))
    return f


def _remote(tmp: Path, *servers: Sshd, store: str = STORE) -> RemoteOptions:
    """Keys known, the record of built engines in this test's folder, engines on the devices under ``store`` (by
    default in each device's own home)."""
    return RemoteOptions(known_hosts=_known(tmp, *servers), timeouts=FAST, record=tmp / "record.json", store=store)


def _spec(s: Sshd, name: str) -> HostSpec:
    return HostSpec(s.user, "127.0.0.1", s.port, name=name, identity=s.user_key)


# -- pure ---------------------------------------------------------------------------------------------------------
def test_remote_argv_carries_the_local_options() -> None:
    cfg = BenchConfig(engines=(Path("a.engine"),), iterations=7, warmup=2, batch=2, threads=3, duration=1.5,
                      timer="trtexec", estimate=True)
    argv = remote_bench_argv(cfg, ["/t/x/a.engine"], "/t/bench.json")
    assert argv[:6] == ["bench", "/t/x/a.engine", "--device", "auto", "--json-out", "/t/bench.json"]
    joined = " ".join(argv)
    for part in ("--iterations 7", "--warmup 2", "--batch 2", "--threads 3", "--duration 1.5", "--timer trtexec",
                 "--estimate"):
        assert part in joined
    assert "--timer" not in remote_bench_argv(BenchConfig(engines=(Path("a"),)), ["a"], "o")


def test_fleet_config_refusals_are_one_line(tmp_path: Path) -> None:
    e = tmp_path / "x.engine"
    e.write_bytes(b"x")
    h = [HostSpec("u", "h")]
    for cfg, hosts, what in [(BenchConfig(engines=(e,)), [], "--host"),
                             (BenchConfig(engines=(e,), eager=e), h, "--eager"),
                             (BenchConfig(engines=(e,), png_out=tmp_path / "p.png"), h, "--png"),
                             (BenchConfig(engines=(tmp_path / "none.engine",)), h, "no such engine")]:
        with pytest.raises(EdgefuseError, match=what) as err:
            check_fleet_config(cfg, hosts)
        assert "\n" not in str(err.value)


# -- against real sshd servers ----------------------------------------------------------------------------------
@needs_sshd
def test_fleet_bench_two_hosts_and_one_unreachable(engine: Path, servers: list[Sshd], tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    a, b = servers
    down = HostSpec("nobody", "127.0.0.1", free_port(), name="gone")
    cfg = BenchConfig(engines=(engine, engine.with_name("tsm.onnx")), iterations=4, warmup=1,
                      json_out=tmp_path / "fleet.json", progress=False)
    with caplog.at_level(logging.DEBUG):
        rep = bench_remote(cfg, [_spec(a, "nano"), down, _spec(b, "orin")], _remote(tmp_path, a, b))
    assert [h.host for h in rep.hosts] == [f"nano ({a.address})", f"gone ({down.address})", f"orin ({b.address})"]
    ok = [h for h in rep.hosts if not h.failed]
    assert len(ok) == 2 and not rep.ok and [h.host for h in rep.failed] == [rep.hosts[1].host]
    for h in ok:
        assert h.report is not None and h.device is not None and "edgefuse" in h.device and "no trtexec" in h.device
        assert h.report.device == "cpu"
        assert [r.name for r in h.report.rows] == ["tsm.engine", "tsm.onnx"] == rep.engines
        assert h.report.rows[0].backend == "onnxruntime"
        # the engine file was copied; the graph was built there by edgefuse (and recorded here)
        assert [e.builder for e in h.engines] == ["copied", "edgefuse"]
        assert all(len(r.raw_ms) == 4 and r.latency.iterations == 4 for r in h.report.rows)
    gone = rep.hosts[1]
    assert gone.device is None and gone.step == "connect" and gone.kind in ("refused", "unreachable")
    assert gone.error is not None and "\n" not in gone.error and gone.error.startswith(f"gone ({down.address}): connect:")

    table = render_fleet(rep)
    lines = table.splitlines()
    rows = [ln for ln in lines[1:] if ln.startswith(("nano", "orin"))]
    assert len([r for r in rows if "tsm." in r]) == 4  # one row per host x engine
    assert sum(ln.startswith("FAILED gone") for ln in lines) == 1 and lines[-1] == "2 of 3 hosts benched"

    # the JSON written is the report, with every raw timing per host, and reads back to the same object
    saved = json.loads((tmp_path / "fleet.json").read_text())
    assert FleetReport.from_dict(saved) == rep == FleetReport.from_dict(json.loads(json.dumps(rep.to_dict())))
    assert [h["status"] for h in saved["hosts"]] == ["ok", "failed", "ok"]
    assert len(saved["hosts"][0]["report"]["rows"][1]["raw_ms"]) == 4
    assert "raw_ms" not in json.dumps(rep.to_dict(raw=False))

    # nothing secret anywhere: output, JSON, logs; the devices' temporary folders are gone
    text = table + (tmp_path / "fleet.json").read_text() + caplog.text
    for secret in key_material(a, b):
        assert secret not in text
    assert str(a.user_key) not in text  # not even the key's path
    for s in (a, b):
        tmp = s.directory.parent / f"tmp-{s.directory.name}"
        assert tmp.is_dir() and list(tmp.glob("edgefuse.*")) == []  # (the login shell may leave its own files)


@needs_sshd
def test_engine_copies_are_reused_and_sidecar_kept_beside(engine: Path, servers: list[Sshd], tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    a = servers[0]
    cache = f"~/.cache/edgefuse-test-fleet-{tmp_path.name}"  # "~": the device's home
    cfg = BenchConfig(engines=(engine,), iterations=2, warmup=0, progress=False)
    with caplog.at_level(logging.INFO, logger="edgefuse.backends.remote"):
        first = bench_remote(cfg, [_spec(a, "nano")], _remote(tmp_path, a, store=cache))
        caplog.clear()
        second = bench_remote(cfg, [_spec(a, "nano")], _remote(tmp_path, a, store=cache))
    assert first.ok and second.ok
    # the second bench sent nothing: engine and sidecar were already there (content-addressed)
    assert caplog.text.count("already there") == 2 and "copied" not in caplog.text
    folder = a.home / ".cache" / f"edgefuse-test-fleet-{tmp_path.name}"
    placed = sorted(p.name for p in next(folder.iterdir()).iterdir())
    assert "tsm.engine" in placed and "tsm.engine.json" in placed  # the sidecar under its engine's name


@needs_sshd
def test_host_without_edgefuse_or_trtexec_is_one_line(engine: Path, tmp_path: Path) -> None:
    # a device whose python3 cannot import edgefuse (isolated from site-packages) and without trtexec
    s = start_sshd(tmp_path / "sshd", extra_path=(str(device_bin(tmp_path / "bin", edgefuse=False)),))
    try:
        rep = bench_remote(BenchConfig(engines=(engine,), iterations=2, warmup=0, progress=False),
                           [_spec(s, "nano")], _remote(tmp_path, s))
    finally:
        s.stop()
    (h,) = rep.hosts
    assert h.failed and h.kind == "missing-tool" and h.device is not None and "no edgefuse" in h.device
    assert h.error == f"nano ({s.address}): bench: {MISSING_TOOLS}"
    assert render_fleet(rep).splitlines()[-2] == f"FAILED {h.error}"


@needs_sshd
def test_bench_command_on_hosts(engine: Path, servers: list[Sshd], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``edgefuse bench ENGINE --hosts-file F`` and ``--host``: known_hosts read from this test's own HOME (the key
    of host a is known there), exit 0 when every host benched, 1 when one failed, the others' rows kept."""
    from click.testing import CliRunner

    from edgefuse.cli import cli

    a = servers[0]
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(a.known_hosts_line())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("EDGEFUSE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    hosts = tmp_path / "devices.toml"
    hosts.write_text(f'[hosts]\nnano = {{ host = "{a.user}@127.0.0.1", port = {a.port}, '
                     f'identity = "{a.user_key}" }}\n')
    args = ["bench", str(engine), "--hosts-file", str(hosts), "--iterations", "2", "--warmup", "0"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "1 of 1 host benched" in res.output and "tsm.engine" in res.output
    res = CliRunner().invoke(cli, [*args, "--host", "nano", "--host", f"nobody@127.0.0.1:{free_port()}"])
    assert res.exit_code == 1 and "1 of 2 hosts benched" in res.output and "FAILED" in res.output


@needs_sshd
def test_graph_built_and_timed_with_trtexec_on_a_device_without_edgefuse(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A JetPack-4.6-like device: no edgefuse, trtexec only. trtexec there is a STAND-IN replaying recorded real output
    (a TensorRT 8.2.1 build, then a Xavier NX timing summary) and copying per-run times written here: TensorRT cannot
    exist on this machine. The graph is built there by trtexec, timed by trtexec, and the second bench reuses the
    engine from the record instead of building again."""
    from test_remote_trtexec import RAW, write_times

    from edgefuse.backends.remote.build import RemoteBuildOptions
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config

    graph = export(make_config(None, tmp_path / "tsm.onnx", model="synth_tsm_r18w025", segments=8, size=224)).path
    standin = Path(__file__).parent / "data" / "trtexec" / "trtexec"
    logs = ",".join(str(standin.parent.resolve() / n) for n in ("trt8.2.1_explicit_batch_warning.log",
                                                                 "build_engine_built.log", "trt8.2_xavier_nx.log"))
    argv = tmp_path / "argv.json"
    s = start_sshd(tmp_path / "d", extra_path=(str(device_bin(tmp_path / "bin", edgefuse=False, tools=(standin,))),),
                   session_env={"EDGEFUSE_TRTEXEC_STANDIN_REPLAY": logs, "EDGEFUSE_TRTEXEC_STANDIN_ARGV": str(argv),
                                "EDGEFUSE_TRTEXEC_STANDIN_TIMES": str(write_times(tmp_path / "times.json", RAW))})
    cfg = BenchConfig(engines=(graph,), iterations=len(RAW), warmup=1, progress=False)
    build = RemoteBuildOptions(device="jetson_xavier_nx")
    try:
        first = bench_remote(cfg, [_spec(s, "xnx")], _remote(tmp_path, s), build)
        with caplog.at_level(logging.INFO, logger="edgefuse.backends.remote"):
            second = bench_remote(cfg, [_spec(s, "xnx")], _remote(tmp_path, s), build)
    finally:
        s.stop()
    for rep in (first, second):
        (h,) = rep.hosts
        assert not h.failed, h.error
        assert h.report is not None and h.report.device == "jetson_xavier_nx" and h.report.input == [1, 8, 3, 224, 224]
        (row,) = h.report.rows
        assert row.backend == "tensorrt (trtexec)" and row.name == "tsm.onnx" and row.raw_ms == RAW
        assert row.command is not None and "--loadEngine=" in row.command
    assert [e.builder for e in first.hosts[0].engines] == ["trtexec"] and not first.hosts[0].engines[0].reused
    assert second.hosts[0].engines[0].reused and "reusing" in caplog.text
    sent = json.loads(argv.read_text())  # the last trtexec call: the timing of the engine built there
    assert f"--loadEngine={second.hosts[0].engines[0].path}" in sent
