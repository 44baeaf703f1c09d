"""Remote devices over SSH, against a REAL OpenSSH server (tests/sshd.py: /usr/sbin/sshd on 127.0.0.1, generated
host and user keys). Nothing is mocked: the "device" is this machine, reached over SSH. Detection on Jetsons and
GPUs is tested on text in the formats those machines print (no Jetson, GPU or TensorRT exists here)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import MISSING, SSHD, Sshd, free_port, make_key, start_sshd

from edgefuse.backends.remote import (
    HostSpec,
    RemoteError,
    RemoteHost,
    Timeouts,
    detect_remote,
    device_profile,
    load_hosts_file,
    parse_detection,
    parse_host,
    resolve_hosts,
)
from edgefuse.backends.remote.detect import SCRIPT, jetpack
from edgefuse.errors import EdgefuseError

pytest.importorskip("asyncssh")
needs_sshd = pytest.mark.skipif(not SSHD.exists(), reason=MISSING)
FAST = Timeouts(connect=10, command=30, copy=30, cleanup=10)


# -- host specs and hosts files (pure) -------------------------------------------------------------------------
def test_parse_host() -> None:
    assert parse_host("jetson@10.0.0.5") == HostSpec("jetson", "10.0.0.5", 22)
    h = parse_host("nvidia@orin.lab:2222")
    assert (h.user, h.host, h.port, h.address) == ("nvidia", "orin.lab", 2222, "nvidia@orin.lab:2222")
    assert parse_host("me@[fe80::1]:2200").host == "fe80::1"
    for bad in ("10.0.0.5", "jetson@", "jetson@host:0", "jetson@host:70000", "a b@host", "jetson@host:x"):
        with pytest.raises(EdgefuseError, match="--host") as e:
            parse_host(bad)
        assert "\n" not in str(e.value)


def test_hosts_file(tmp_path: Path) -> None:
    f = tmp_path / "devices.toml"
    f.write_text('[hosts]\nnano = "jetson@10.0.0.5"\n'
                 'orin = { host = "nvidia@10.0.0.7", port = 2222, identity = "keys/orin" }\n')
    hosts = load_hosts_file(f)
    assert list(hosts) == ["nano", "orin"]
    assert hosts["nano"].label == "nano (jetson@10.0.0.5)"
    assert hosts["orin"].port == 2222 and hosts["orin"].identity == tmp_path / "keys" / "orin"
    assert [h.name for h in resolve_hosts(["orin", "nano"], f)] == ["orin", "nano"]
    assert resolve_hosts(["me@other"], f)[0].host == "other"
    with pytest.raises(EdgefuseError, match="not in .*devices.toml.*names: nano, orin"):
        resolve_hosts(["xavier"], f)
    with pytest.raises(EdgefuseError, match="given twice"):
        resolve_hosts(["nano", "jetson@10.0.0.5"], f)


@pytest.mark.parametrize("body,line,what", [
    ('[hosts]\nnano = "jetson@10.0.0.5"\nbad = "10.0.0.6"\n', 3, "is not a host"),
    ('[hosts]\nnano = 5\n', 2, "must be a string"),
    ('[hosts]\n\nx = { host = "a@b", user = "c" }\n', 3, "unknown keys"),
    ('[hosts]\nx = { host = "a@b:22", port = "22" }\n', 2, "port must be an integer"),
    ('[hosts]\nx = { host = "a@b:2200", port = 2222 }\n', 2, "two ports"),
])
def test_hosts_file_errors_name_file_and_line(tmp_path: Path, body: str, line: int, what: str) -> None:
    f = tmp_path / "devices.toml"
    f.write_text(body)
    with pytest.raises(EdgefuseError, match=what) as e:
        load_hosts_file(f)
    assert str(e.value).startswith(f"{f}:{line}: ") and "\n" not in str(e.value)


def test_hosts_file_not_toml_or_empty(tmp_path: Path) -> None:
    f = tmp_path / "devices.toml"
    f.write_text('[hosts\nnano = "x"\n')
    with pytest.raises(EdgefuseError, match=r"not valid TOML.*line 1"):
        load_hosts_file(f)
    f.write_text('[devices]\nnano = "jetson@x"\n')
    with pytest.raises(EdgefuseError, match=r"no \[hosts\] table"):
        load_hosts_file(f)


# -- detection (pure, on text in the devices' own formats) -----------------------------------------------------
def _answer(**sections: str) -> str:
    return "".join(f"\n@@edgefuse:{k}\n{v}" for k, v in sections.items()) + "\n@@edgefuse:end\n"


def test_parse_jetson_nano_jetpack46() -> None:
    # formats: /etc/nv_tegra_release as L4T writes it (see tests/test_devices.py), device-tree strings NUL-split by
    # the script, `dpkg -l` columns (ii, name, version, arch, description) with JetPack 4.6's TensorRT 8.0.1
    # packages (libnvinfer8 8.0.1-1+cuda10.2: docs.nvidia.com/deeplearning/tensorrt/archives, release 8.0.1)
    out = _answer(
        l4t="# R32 (release), REVISION: 6.1, GCID: 27863751, BOARD: t210ref, EABI: aarch64, DATE: Mon Jul 26 2021",
        model="NVIDIA Jetson Nano Developer Kit", compatible="nvidia,p3449-0000-b00+p3448-0002\nnvidia,jetson-nano\n"
        "nvidia,tegra210", nvidia_smi="",
        dpkg_tensorrt="ii  libnvinfer8     8.0.1-1+cuda10.2   arm64   TensorRT runtime libraries\n"
                      "ii  tensorrt       8.0.1.6-1+cuda10.2 arm64   Meta package of TensorRT",
        python_tensorrt="", trtexec="/usr/src/tensorrt/bin/trtexec", python3="3.6.9", edgefuse="",
        python_modules="numpy\npycuda\npycuda\nsomething-else", tegrastats="/usr/bin/tegrastats",
        machine_id="3D1219C7C4C5404AAA1F6D2A48ADFDA4", machine="aarch64")
    d = parse_detection(out)
    # the device runner lacks TensorRT's Python package (python3-libnvinfer not installed): said before any work
    assert d.python_modules == ("numpy", "pycuda") and d.runner_missing == ["tensorrt"]
    assert d.tegrastats == "/usr/bin/tegrastats" and d.machine_id == "3d1219c7c4c5404aaa1f6d2a48adfda4"
    assert (d.l4t, d.tensorrt, d.tensorrt_source, d.python3, d.edgefuse) == ("32.6.1", "8.0.1.6", "dpkg", "3.6.9",
                                                                             None)
    assert d.is_jetson and d.has_gpu and d.trtexec == "/usr/src/tensorrt/bin/trtexec"
    assert d.part_numbers == ("p3449-0000", "p3448-0002")
    profile = device_profile(d)
    assert profile.name == "jetson_nano"
    jp = jetpack(d, profile)
    assert jp is not None and jp.version.startswith("4.6")


def test_parse_desktop_gpu_and_python_tensorrt() -> None:
    # nvidia-smi --query-gpu=name,memory.total --format=csv,noheader prints "<name>, <N> MiB" per GPU
    d = parse_detection(_answer(nvidia_smi="NVIDIA GeForce RTX 3090, 24576 MiB\nNVIDIA GeForce RTX 3090, 24576 MiB",
                                dpkg_tensorrt="", python_tensorrt="10.3.0", trtexec="", python3="3.10.12"))
    assert not d.is_jetson and d.has_gpu and len(d.gpus) == 2 and d.gpus[0].memory_mib == 24576
    assert (d.tensorrt, d.tensorrt_source, d.trtexec) == ("10.3.0", "python", None)
    assert device_profile(d).name == "rtx3090"


def test_parse_nothing_is_cpu() -> None:
    d = parse_detection(_answer(l4t="", model="", nvidia_smi="", python3="", machine_id="not-an-id"))
    assert not d.has_gpu and d.python3 is None and d.tensorrt is None and d.machine_id is None
    assert d.runner_missing == ["python3"]
    assert device_profile(d).name == "cpu"


# -- against a real sshd -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not SSHD.exists():
        pytest.skip(MISSING)
    s = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield s
    s.stop()


def _spec(s: Sshd, key: Path | None = None) -> HostSpec:
    return HostSpec(s.user, "127.0.0.1", s.port, identity=key or s.user_key)


def _known(s: Sshd, tmp: Path, *servers: Sshd) -> Path:
    f = tmp / "known_hosts"
    f.write_text("".join(x.known_hosts_line() for x in (s, *servers)))
    return f


def _host(s: Sshd, tmp: Path, **kw: object) -> RemoteHost:
    return RemoteHost(_spec(s), known_hosts=_known(s, tmp), timeouts=FAST, **kw)  # type: ignore[arg-type]


def _running(argv: list[str]) -> bool:
    """Whether a process with exactly this command line runs here (the device is this machine)."""
    want = "\0".join(argv).encode() + b"\0"
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "cmdline").read_bytes() == want:
                return True
        except OSError:
            continue
    return False


def _one_line(e: pytest.ExceptionInfo[RemoteError], kind: str, s: Sshd | None = None) -> str:
    msg = str(e.value)
    assert e.value.kind == kind, msg
    assert "\n" not in msg and msg.startswith(f"{_spec(s).label if s else ''}"), msg
    return msg


@needs_sshd
def test_run_put_get_round_trip(server: Sshd, tmp_path: Path) -> None:
    payload = tmp_path / "model.int8.onnx"
    payload.write_bytes(bytes(range(256)) * 4000)

    async def go() -> None:
        async with _host(server, tmp_path) as dev:
            r = await dev.run("echo out; echo err >&2; exit 3", check=False)
            assert (r.stdout, r.stderr, r.exit_status) == ("out\n", "err\n", 3)
            assert (await dev.run("cat", input="fed\n")).stdout == "fed\n"
            first = await dev.put(payload, "~/.cache/edgefuse-test-remote")
            again = await dev.put(payload, "~/.cache/edgefuse-test-remote")
            assert first.copied and not again.copied and first.remote == again.remote
            assert first.sha256 in Path(first.remote).name and Path(first.remote).name.endswith(".int8.onnx")
            assert Path(first.remote).read_bytes() == payload.read_bytes()  # the device is this machine
            back = await dev.get(first.remote, tmp_path / "back" / "model.onnx")
            assert back.read_bytes() == payload.read_bytes()
            with pytest.raises(RemoteError, match="fetch /nonexistent") as e:
                await dev.get("/nonexistent", tmp_path / "missing.bin")
            assert "No such file" in _one_line(e, "command-failed", server)
            assert not (tmp_path / "missing.bin").exists() and not list(tmp_path.glob(".missing.bin*"))
            assert Path(first.remote).parent == server.home / ".cache" / "edgefuse-test-remote"  # "~": the device's
    asyncio.run(go())


@needs_sshd
def test_failed_command_and_full_disk_are_one_line(server: Sshd, tmp_path: Path) -> None:
    async def go() -> None:
        async with _host(server, tmp_path) as dev:
            with pytest.raises(RemoteError) as e:
                await dev.run("echo first >&2; echo 'trtexec: parse error' >&2; exit 3", step="build")
            assert _one_line(e, "command-failed", server).endswith("build: remote command failed (exit 3): "
                                                                   "trtexec: parse error")
            with pytest.raises(RemoteError) as e:  # /dev/full: every write fails with ENOSPC, a real full disk
                await dev.run("cat /etc/hostname > /dev/full", step="copy")
            assert "disk full on the device" in _one_line(e, "disk-full", server)
            assert "No space left on device" in str(e.value)
    asyncio.run(go())


@needs_sshd
def test_host_key_checked_by_default(server: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    with pytest.raises(RemoteError, match="host key unknown") as e:
        asyncio.run(RemoteHost(_spec(server), known_hosts=known, timeouts=FAST).connect())
    _one_line(e, "host-key-unknown", server)
    assert known.read_text() == ""

    async def accept() -> str:
        async with RemoteHost(_spec(server), known_hosts=known, accept_new_host_key=True, timeouts=FAST) as dev:
            return (await dev.run("echo ok")).stdout
    assert asyncio.run(accept()) == "ok\n"
    assert known.read_text() == server.known_hosts_line()  # the public key only, as OpenSSH writes it

    async def plain() -> str:
        async with RemoteHost(_spec(server), known_hosts=known, timeouts=FAST) as dev:
            return (await dev.run("echo again")).stdout
    assert asyncio.run(plain()) == "again\n"


@needs_sshd
def test_changed_host_key_refused_even_with_accept_new(server: Sshd, tmp_path: Path) -> None:
    other = make_key(tmp_path / "impostor")
    kind, data = Path(str(other) + ".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{server.port} {kind} {data}\n")
    before = known.read_text()
    for accept in (False, True):
        with pytest.raises(RemoteError, match="host key CHANGED") as e:
            asyncio.run(RemoteHost(_spec(server), known_hosts=known, accept_new_host_key=accept,
                                   timeouts=FAST).connect())
        _one_line(e, "host-key-changed", server)
    assert known.read_text() == before


@needs_sshd
def test_wrong_user_key_refused(server: Sshd, tmp_path: Path) -> None:
    wrong = make_key(tmp_path / "wrong_ed25519")
    dev = RemoteHost(_spec(server, wrong), known_hosts=_known(server, tmp_path), timeouts=FAST)
    with pytest.raises(RemoteError, match="authentication failed") as e:
        asyncio.run(dev.connect())
    assert "passwords are not used" in _one_line(e, "auth", server)


def test_unreachable_port_is_one_line(tmp_path: Path) -> None:
    spec = HostSpec("nobody", "127.0.0.1", free_port())  # nothing listens there
    with pytest.raises(RemoteError) as e:
        asyncio.run(RemoteHost(spec, known_hosts=tmp_path / "kh", timeouts=FAST).connect())
    msg = _one_line(e, "refused")
    assert msg.startswith(f"nobody@127.0.0.1:{spec.port}: connect: connection refused")


@needs_sshd
def test_command_that_never_returns_times_out(server: Sshd, tmp_path: Path) -> None:
    async def go() -> None:
        async with _host(server, tmp_path) as dev:
            with pytest.raises(RemoteError) as e:
                await dev.run("sleep 611", timeout=1, step="bench")
            assert "bench: no end within 1 s" in _one_line(e, "timeout", server)
            assert not _running(["sleep", "611"])  # stopped on the device, not left behind
            assert (await dev.run("echo still usable")).stdout == "still usable\n"
    asyncio.run(go())


@needs_sshd
def test_remote_temporary_folder_removed(server: Sshd, tmp_path: Path) -> None:
    seen: list[str] = []

    async def normal() -> None:
        async with _host(server, tmp_path) as dev:
            assert dev.tmpdir is not None and Path(dev.tmpdir).is_dir()
            seen.append(dev.tmpdir)
            await dev.put(Path(__file__))

    async def failing() -> None:
        async with _host(server, tmp_path) as dev:
            assert dev.tmpdir is not None
            seen.append(dev.tmpdir)
            raise ValueError("boom")

    async def interrupted() -> None:  # Ctrl-C under asyncio.run cancels the main task: the same path
        async def body() -> None:
            async with _host(server, tmp_path) as dev:
                assert dev.tmpdir is not None
                seen.append(dev.tmpdir)
                await dev.run("sleep 612")
        task = asyncio.ensure_future(body())
        while not seen[2:]:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(normal())
    with pytest.raises(ValueError):
        asyncio.run(failing())
    asyncio.run(interrupted())
    assert len(seen) == 3 and not any(Path(p).exists() for p in seen)
    assert not _running(["sleep", "612"])  # the interrupted command was stopped too


@needs_sshd
def test_sshd_stopped_mid_run_is_connection_lost(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    own = start_sshd(tmp_path / "sshd")
    marker = tmp_path / "started"
    try:
        async def go() -> None:
            dev = _host(own, tmp_path)
            async with dev:
                task = asyncio.ensure_future(dev.run(f"touch {marker}; sleep 600", step="bench"))
                while not marker.exists():
                    await asyncio.sleep(0.05)
                own.stop()
                with pytest.raises(RemoteError) as e:
                    await task
                assert "bench: connection lost" in _one_line(e, "connection-lost", own)
        with caplog.at_level(logging.WARNING):
            asyncio.run(go())
        assert "the remote temporary folder /tmp/edgefuse." in caplog.text and "stays on the device" in caplog.text
    finally:
        own.stop()
        import shutil
        for line in caplog.text.splitlines():  # the folder the lost connection could not remove (this machine)
            for word in line.split():
                if word.startswith("/tmp/edgefuse."):
                    shutil.rmtree(word, ignore_errors=True)


@needs_sshd
def test_detect_this_machine_over_ssh(server: Sshd, tmp_path: Path) -> None:
    async def go() -> object:
        async with _host(server, tmp_path) as dev:
            return await detect_remote(dev)
    d = asyncio.run(go())
    from edgefuse.backends.remote import RemoteDevice
    assert isinstance(d, RemoteDevice)
    # this machine: no Jetson, no GPU, no TensorRT, and trtexec is a missing tool the detection reports absent
    assert not d.is_jetson and d.gpus == () and d.l4t is None and d.tensorrt is None and d.trtexec is None
    assert d.python3 is not None and d.python3.startswith("3.") and d.machine
    assert device_profile(d).name == "cpu"
    assert "no trtexec" in d.describe() and "trtexec" in SCRIPT


@needs_sshd
def test_two_hosts_in_parallel(server: Sshd, tmp_path: Path) -> None:
    second = start_sshd(tmp_path / "second")
    try:
        known = _known(server, tmp_path, second)
        hosts = [RemoteHost(_spec(s), known_hosts=known, timeouts=FAST) for s in (server, second)]
        down = RemoteHost(HostSpec("nobody", "127.0.0.1", free_port()), known_hosts=known, timeouts=FAST)

        async def one(dev: RemoteHost) -> str:
            async with dev:
                return (await dev.run("sleep 0.5; echo $PPID")).stdout.strip()

        async def go() -> list[object]:
            return list(await asyncio.gather(*(one(h) for h in (*hosts, down)), return_exceptions=True))
        a, b, c = asyncio.run(go())
        assert isinstance(a, str) and isinstance(b, str) and a.isdigit() and b.isdigit() and a != b
        assert isinstance(c, RemoteError) and c.kind == "refused"  # the others complete
    finally:
        second.stop()


@needs_sshd
def test_no_key_material_in_output_or_logs(server: Sshd, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    wrong = make_key(tmp_path / "wrong_ed25519")
    messages: list[str] = []

    async def go() -> None:
        async with _host(server, tmp_path) as dev:
            await dev.run("echo hi")
            await dev.put(Path(__file__))
            await detect_remote(dev)
            for bad in ("exit 2", "sleep 5"):
                try:
                    await dev.run(bad, timeout=1)
                except RemoteError as e:
                    messages.append(str(e))
        for rh in (RemoteHost(_spec(server, wrong), known_hosts=_known(server, tmp_path), timeouts=FAST),
                   RemoteHost(_spec(server), known_hosts=tmp_path / "empty", timeouts=FAST)):
            try:
                await rh.connect()
            except RemoteError as e:
                messages.append(str(e))
    with caplog.at_level(logging.DEBUG):
        asyncio.run(go())
    out, err = capfd.readouterr()
    text = "\n".join([caplog.text, out, err, *messages, server.log.read_text(errors="replace")])
    assert len(messages) == 4 and "asyncssh" in caplog.text  # the library's own debug logging was captured
    for key in (server.user_key, wrong, server.host_key):
        lines = [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")]
        assert lines and all(len(ln) > 20 for ln in lines)
        assert lines[0] in key.read_text()  # the check below can fail: it looks for exactly these lines
        for ln in lines:
            assert ln not in text and ln[:24] not in text, f"private key material of {key.name} leaked"
