"""``edgefuse validate --host``: the engine runs on devices over SSH, sharded across a fleet, the reference here, against
REAL OpenSSH servers (tests/sshd.py: /usr/sbin/sshd on 127.0.0.1, two instances on two ports, generated keys). Each
"device" is this machine reached over SSH, running edgefuse there (``edgefuse infer`` on an ONNX Runtime engine it
built itself); the results must match a local validate of the same engine. Faults are real: an sshd stopped in the
middle of a run, a device without the tools. No TensorRT exists here: the device runner's TensorRT run is not
exercised (a device without edgefuse fails in one line, as it must without numpy)."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sshd import MISSING, SSHD, Sshd, device_bin, key_material, start_sshd

from edgefuse.backends.remote import HostSpec, Timeouts
from edgefuse.backends.remote.build import RemoteBuildOptions, RemoteOptions
from edgefuse.cli.render_remote import render_fleet_validate
from edgefuse.errors import EdgefuseError
from edgefuse.validate import ValidateConfig, validate
from edgefuse.validate.remote import FleetValidateReport, ShardQueue, shard_size, validate_fleet, validate_remote

pytest.importorskip("asyncssh")
needs_sshd = pytest.mark.skipif(not SSHD.exists(), reason=MISSING)
FAST = Timeouts(connect=10, command=120, copy=60, cleanup=10, build=240)
STANDIN = Path(__file__).parent / "data" / "trtexec" / "trtexec"


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config

    return export(make_config(None, tmp_path_factory.mktemp("rval") / "tsm.onnx", model="synth_tsm_r18w025")).path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Sshd]]:
    """Two devices with edgefuse, each with its own home (where its engines are kept)."""
    if not SSHD.exists():
        pytest.skip(MISSING)
    root = tmp_path_factory.mktemp("rval-sshd")
    out: list[Sshd] = []
    try:
        for name in ("a", "b"):
            (root / f"tmp-{name}").mkdir()
            out.append(start_sshd(root / name, extra_path=(str(device_bin(root / "bin")),),
                                  session_env={"TMPDIR": str(root / f"tmp-{name}")}))
        yield out
    finally:
        for s in out:
            s.stop()


def _spec(s: Sshd, name: str) -> HostSpec:
    return HostSpec(s.user, "127.0.0.1", s.port, name=name, identity=s.user_key)


def _remote(tmp: Path, *servers: Sshd) -> RemoteOptions:
    known = tmp / "known_hosts"
    known.write_text("".join(s.known_hosts_line() for s in servers))
    return RemoteOptions(known_hosts=known, timeouts=FAST, record=tmp / "record.json")


def _cfg(graph: Path, clips: Path, n: int, **kw: object) -> ValidateConfig:
    return ValidateConfig(engine=graph, reference=graph, clips=clips, num_clips=n, progress=False,  # type: ignore[arg-type]
                          **kw)


def _local(fleet: FleetValidateReport, graph: Path, clips: Path, n: int) -> None:
    """The same engine validated here (the device is this machine: its engine file is here too) gives the same
    figures, clip by clip."""
    engine = next(h.engine for h in fleet.hosts if h.engine is not None)
    rep = validate(ValidateConfig(engine=Path(engine.path), reference=graph, clips=clips, num_clips=n, progress=False))
    assert fleet.report is not None and rep.result.clips == fleet.report.result.clips
    assert rep.result.top1_agreement == fleet.report.result.top1_agreement
    assert rep.result.max_abs_error == pytest.approx(fleet.report.result.max_abs_error, abs=1e-6)
    mine, theirs = rep.result.per_clip.to_dict(), fleet.report.result.per_clip.to_dict()
    assert mine.keys() == theirs.keys() and mine.get("id") == theirs.get("id")
    for k in mine.keys() - {"id"}:
        assert np.allclose(np.asarray(mine[k], dtype=float), np.asarray(theirs[k], dtype=float), atol=1e-6), k


# -- pure ---------------------------------------------------------------------------------------------------------
def test_shards_cover_each_clip_once_and_come_back() -> None:
    assert shard_size(100, 2) == 25 and shard_size(3, 4) == 1 and shard_size(10_000, 1) == 128
    assert shard_size(100, 2, 7) == 7
    with pytest.raises(EdgefuseError, match="shard size 0"):
        shard_size(10, 1, 0)

    async def go() -> list[list[int]]:
        q = ShardQueue.of(7, 3)
        first = await q.take()
        second = await q.take()
        assert first == [0, 1, 2] and second == [3, 4, 5]
        await q.done([1, 2])  # a host dropped after reporting clip 0: its other two go back, first in line
        taken = [await q.take(), await q.take()]

        async def late() -> list[int] | None:
            return await q.take()  # waits: the queue is empty but a shard is still out

        waiter = asyncio.ensure_future(late())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await q.done([5])  # the last host out gives one clip back: the waiting host takes it
        got = await waiter
        for _ in range(3):
            await q.done()
        assert await q.take() is None
        return [t for t in taken if t is not None] + ([got] if got else [])

    assert asyncio.run(go()) == [[1, 2], [6], [5]]


def test_refusals_before_any_work(graph: Path, tmp_path: Path) -> None:
    h = [HostSpec("a", "h")]
    for cfg, hosts, what in [(_cfg(graph, tmp_path, 4), [], "at least one --host"),
                             (_cfg(tmp_path / "none.onnx", tmp_path, 4), h, "no such graph or engine"),
                             (_cfg(graph, tmp_path, 4, per_layer=True), h, "--per-layer")]:
        with pytest.raises(EdgefuseError, match=what) as e:
            validate_remote(cfg, hosts)
        assert "\n" not in str(e.value)


# -- against sshd -------------------------------------------------------------------------------------------------
@needs_sshd
def test_one_host_then_two_sharded_match_local(graph: Path, servers: list[Sshd], synth_default: Path,
                                               tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a, b = servers
    clips = synth_default / "val.txt"
    remote = _remote(tmp_path, a, b)
    opts = RemoteBuildOptions(backend="onnxruntime")
    with caplog.at_level(logging.DEBUG):
        one = validate_remote(_cfg(graph, clips, 12), [_spec(a, "nano")], remote, opts)
        two = validate_remote(_cfg(graph, clips, 12, report=tmp_path / "fleet.json"), [_spec(a, "nano"),
                                                                                       _spec(b, "orin")],
                              remote, opts, shard=2)
    assert one.passed and two.passed, (one.hosts, two.hosts)
    assert one.report is not None and two.report is not None
    _local(one, graph, clips, 12)
    # sharded: every clip exactly once, both hosts ran some, and the merged figures are the one-host figures
    assert sorted(two.ran_on) == sorted(one.ran_on) and len(two.ran_on) == 12 and not two.missing
    per_host = {h.host: h.clips for h in two.hosts}
    assert sum(per_host.values()) == 12 and all(n > 0 for n in per_host.values()), per_host
    assert two.report.result.top1_agreement == one.report.result.top1_agreement
    assert two.report.result.max_abs_error == pytest.approx(one.report.result.max_abs_error, abs=1e-6)
    assert [h.engine.reused for h in two.hosts if h.engine] == [True, False]  # a: built by the first run, kept
    saved = json.loads((tmp_path / "fleet.json").read_text())
    assert FleetValidateReport.from_dict(saved).ran_on == two.ran_on and saved["partial"] is False
    text = render_fleet_validate(two)
    assert "nano (" in text and "orin (" in text and "FAILED" not in text
    everything = text + (tmp_path / "fleet.json").read_text() + caplog.text + (tmp_path / "record.json").read_text()
    for secret in key_material(a, b):
        assert secret not in everything
    for s in servers:  # the remote temporary folders are gone
        assert list((s.directory.parent / f"tmp-{s.directory.name}").glob("edgefuse.*")) == []


@pytest.mark.slow  # ~10 s; sharding itself: test_one_host_then_two_sharded_match_local
@needs_sshd
def test_host_dropping_mid_run_gives_its_clips_to_the_other(graph: Path, synth_default: Path,
                                                            tmp_path: Path) -> None:
    bin_dir = device_bin(tmp_path / "bin")
    a = start_sshd(tmp_path / "a", extra_path=(str(bin_dir),))
    b = start_sshd(tmp_path / "b", extra_path=(str(bin_dir),))
    stopped: list[str] = []

    def on_result(host: str, clip: str) -> None:
        if host.startswith("nano") and not stopped:
            stopped.append(clip)
            a.stop()  # the device goes away in the middle of its shard

    try:
        fleet = asyncio.run(validate_fleet(_cfg(graph, synth_default / "val.txt", 12),
                                           [_spec(a, "nano"), _spec(b, "orin")], _remote(tmp_path, a, b),
                                           RemoteBuildOptions(backend="onnxruntime"), shard=3, on_result=on_result))
    finally:
        a.stop()
        b.stop()
    assert stopped, "host a never reported a clip"
    nano, orin = fleet.hosts
    assert nano.failure is not None and orin.failure is None
    assert nano.failure.kind == "connection-lost" and nano.failure.step.startswith("run shard")
    assert nano.failure.error.startswith(f"nano ({a.address}): run shard") and "\n" not in nano.failure.error
    # each clip exactly once: what a reported before it went stays a's; the rest ran on b
    assert len(fleet.ran_on) == 12 and not fleet.missing and fleet.ran_on[stopped[0]].startswith("nano")
    assert nano.clips == sum(h.startswith("nano") for h in fleet.ran_on.values()) >= 1
    assert orin.clips == 12 - nano.clips
    assert fleet.report is not None and fleet.report.passed and not fleet.passed  # a host failed: exit 1
    assert f"FAILED {nano.failure.error}" in render_fleet_validate(fleet)


@needs_sshd
def test_every_host_gone_gives_a_partial_report(graph: Path, synth_default: Path, tmp_path: Path) -> None:
    a = start_sshd(tmp_path / "a", extra_path=(str(device_bin(tmp_path / "bin")),))

    def on_result(host: str, clip: str) -> None:
        a.stop()

    try:
        fleet = asyncio.run(validate_fleet(_cfg(graph, synth_default / "val.txt", 8), [_spec(a, "nano")],
                                           _remote(tmp_path, a), RemoteBuildOptions(backend="onnxruntime"), shard=4,
                                           on_result=on_result))
    finally:
        a.stop()
    assert fleet.partial and 1 <= len(fleet.ran_on) < 8 and len(fleet.missing) == 8 - len(fleet.ran_on)
    assert fleet.report is not None and fleet.report.result.clips == len(fleet.ran_on) and not fleet.passed
    assert "PARTIAL: " in render_fleet_validate(fleet)


@needs_sshd
def test_device_without_edgefuse_fails_in_one_line(graph: Path, synth_default: Path, tmp_path: Path) -> None:
    """trtexec (a STAND-IN replaying a recorded build log: no TensorRT here) builds, but the device runner needs numpy,
    TensorRT's Python package and CUDA bindings, which this device's python3 lacks: one line naming the host and the
    step, before any clip is sent."""
    logs = ",".join(str(STANDIN.parent.resolve() / n) for n in ("trt8.2.1_explicit_batch_warning.log",
                                                                "build_engine_built.log"))
    s = start_sshd(tmp_path / "d", extra_path=(str(device_bin(tmp_path / "bin", edgefuse=False, tools=(STANDIN,))),),
                   session_env={"EDGEFUSE_TRTEXEC_STANDIN_REPLAY": logs})
    try:
        fleet = validate_remote(_cfg(graph, synth_default / "val.txt", 4), [_spec(s, "nano")], _remote(tmp_path, s),
                                RemoteBuildOptions(device="jetson_nano"))
    finally:
        s.stop()
    (h,) = fleet.hosts
    assert h.failure is not None and h.engine is not None and h.engine.builder == "trtexec"
    assert h.failure.step == "copy the device runner" and "\n" not in h.failure.error
    assert "the device runner needs numpy, tensorrt, cuda-python or pycuda for python3 there" in h.failure.error
    assert fleet.partial and fleet.report is None and len(fleet.missing) == 4


@pytest.mark.slow  # ~9 s of CLI over two hosts
@needs_sshd
def test_validate_command_on_hosts(graph: Path, servers: list[Sshd], synth_default: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
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
    hosts.write_text(f'[hosts]\nnano = {{ host = "{a.user}@127.0.0.1", port = {a.port}, identity = "{a.user_key}" }}\n')
    args = ["validate", str(graph), "--reference", str(graph), "--clips", str(synth_default / "val.txt"),
            "--num-clips", "6", "--hosts-file", str(hosts)]
    # nano runs every clip; the other host is down: its one line, the figures of nano's clips, and exit 1
    res = CliRunner().invoke(cli, [*args, "--host", "nano", "--host", "nobody@127.0.0.1:1"])
    assert res.exit_code == 1, res.output
    assert "FAILED nobody@127.0.0.1:1: connect:" in res.output and "fleet verdict: fail (1 host failed)" in res.output
    assert "top-1 agreement" in res.output and "edgefuse infer" in res.output
    assert (home / ".cache" / "edgefuse" / "remote-engines.json").is_file()  # the engine built there is recorded


@needs_sshd
def test_interrupted_validate_stops_every_host(graph: Path, servers: list[Sshd], synth_default: Path,
                                               tmp_path: Path) -> None:
    """Ctrl-C under asyncio.run cancels the main task: every host's remote command is stopped and its temporary
    folder removed (the same path as a cancelled task, driven here)."""
    def infer_running() -> bool:
        for d in Path("/proc").iterdir():
            try:
                if d.name.isdigit() and b"edgefuse\0infer" in (d / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
        return False

    async def go() -> None:
        task: asyncio.Future[FleetValidateReport] | None = None

        def on_result(host: str, clip: str) -> None:
            assert task is not None
            task.cancel()

        task = asyncio.ensure_future(validate_fleet(_cfg(graph, synth_default / "val.txt", 8),
                                                    [_spec(s, n) for s, n in zip(servers, ("nano", "orin"))],
                                                    _remote(tmp_path, *servers),
                                                    RemoteBuildOptions(backend="onnxruntime"), shard=1,
                                                    on_result=on_result))
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert not infer_running()
    for s in servers:
        assert list((s.directory.parent / f"tmp-{s.directory.name}").glob("edgefuse.*")) == []
