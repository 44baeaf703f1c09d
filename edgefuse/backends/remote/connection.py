"""One SSH connection to a device (asyncssh): host keys checked against known_hosts, keys or the agent only,
a timeout on every step, content-addressed copies, a remote temporary folder removed on the way out.

Every failure is a :class:`RemoteError`: one line naming the host, the step and what to do.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import re
import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from edgefuse.backends.remote.hosts import HostSpec
from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path, sha256_file

if TYPE_CHECKING:  # annotations only (not evaluated at run time): no typing_extensions needed on Python 3.10
    from typing_extensions import Self

log = logging.getLogger(__name__)

# RemoteError.kind: what went wrong, for callers that go on with the other hosts and mark partial results
KINDS = ("unreachable", "refused", "auth", "host-key-unknown", "host-key-changed", "identity", "timeout",
         "command-failed", "disk-full", "connection-lost", "missing-tool")
DISK_FULL = "No space left on device"


class RemoteError(EdgefuseError):
    """A step on one host failed: ``<host>: <step>: <what>; <fix>`` (one line)."""

    def __init__(self, host: str, step: str, kind: str, detail: str) -> None:
        super().__init__(f"{host}: {step}: {' '.join(detail.split())}")
        self.host, self.step, self.kind = host, step, kind


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed per step: connecting (TCP, key exchange, authentication), each command, each copy."""

    connect: float = 20.0
    command: float = 600.0
    build: float = 3600.0  # an engine build: a Nano takes minutes for a ResNet-50, far longer for large graphs
    copy: float = 600.0
    cleanup: float = 15.0


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str
    exit_status: int


@dataclass(frozen=True)
class Copied:
    """A file on the device: its path there, its sha256, and whether this call copied it."""

    remote: str
    sha256: str
    copied: bool


def _asyncssh() -> Any:
    try:
        import asyncssh
    except ImportError:
        raise EdgefuseError("remote devices need asyncssh; pip install 'edgefuse[remote]'") from None
    return asyncssh


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def quote(path: str) -> str:
    """``path`` for a remote shell; a leading ``~/`` becomes ``"$HOME"/``."""
    if path == "~" or path.startswith("~/"):
        rest = path[2:]
        return '"$HOME"' + (f"/{shlex.quote(rest)}" if rest else "")
    return shlex.quote(path)


def default_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


def known_hosts_name(spec: HostSpec) -> str:
    """How known_hosts names ``spec``: ``host``, or ``[host]:port`` off port 22."""
    return spec.host if spec.port == 22 else f"[{spec.host}]:{spec.port}"


def known_hosts_line(spec: HostSpec, key: Any) -> str:
    """The OpenSSH known_hosts line for ``key`` (a public key) at ``spec``."""
    kind, data = key.export_public_key("openssh").decode("ascii").split()[:2]
    return f"{known_hosts_name(spec)} {kind} {data}\n"


class RemoteHost:
    """``async with RemoteHost(spec) as dev: await dev.run("uname -m")``.

    The host key must be in ``known_hosts`` (default ``~/.ssh/known_hosts``); ``accept_new_host_key=True`` adds
    the key of a host that has none there, never one whose key changed. Authentication uses ``spec.identity`` or
    the default keys and the SSH agent, never a password; the user's ~/.ssh/config is not read.
    """

    def __init__(self, spec: HostSpec, *, known_hosts: Path | None = None, accept_new_host_key: bool = False,
                 timeouts: Timeouts = Timeouts()) -> None:
        self.spec = spec
        self.known_hosts = Path(known_hosts) if known_hosts is not None else default_known_hosts()
        self.accept_new_host_key = accept_new_host_key
        self.timeouts = timeouts
        self.tmpdir: str | None = None  # the remote temporary folder, removed by close()
        self.home: str | None = None
        self._conn: Any = None
        self._runs = 0  # commands started, for their pid files
        self._gone = False  # the connection was lost: nothing to clean there

    def _fail(self, step: str, kind: str, detail: str) -> RemoteError:
        err = RemoteError(self.spec.label, step, kind, detail)
        log.debug("%s", err)
        return err

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connecting --------------------------------------------------------------------------------------------
    def _client_factory(self, verdict: dict[str, str]) -> Any:
        asyncssh = _asyncssh()
        try:
            text = self.known_hosts.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except OSError as e:
            raise self._fail("connect", "host-key-unknown", f"cannot read {self.known_hosts} ({e.strerror})") from None
        known = asyncssh.import_known_hosts(text)
        owner = self

        class _Client(asyncssh.SSHClient):  # type: ignore[misc, name-defined]
            def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
                # called only for a key that known_hosts does not trust
                trusted = known.match(host, addr, port)[0]
                if trusted:
                    verdict["kind"] = "host-key-changed"
                    return False
                if not owner.accept_new_host_key:
                    verdict["kind"] = "host-key-unknown"
                    return False
                line = known_hosts_line(owner.spec, key)
                owner.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                with open(owner.known_hosts, "a", encoding="ascii") as f:
                    f.write(line)
                verdict["kind"] = "added"
                log.warning("%s: added its host key (%s) to %s", owner.spec.label, line.split()[1], owner.known_hosts)
                return True

        return known, _Client

    async def connect(self) -> None:
        asyncssh = _asyncssh()
        spec, t = self.spec, self.timeouts.connect
        verdict: dict[str, str] = {}
        known, client = self._client_factory(verdict)
        keys = [str(spec.identity)] if spec.identity is not None else ()
        if spec.identity is not None and not spec.identity.is_file():
            raise self._fail("connect", "identity", f"identity {spec.identity} does not exist; give a private key file")
        try:
            self._conn, _ = await asyncio.wait_for(asyncssh.create_connection(
                client, spec.host, spec.port, username=spec.user, known_hosts=known, client_keys=keys,
                preferred_auth="publickey", password=None, config=None, agent_forwarding=False,
                connect_timeout=t, login_timeout=t), timeout=t + 1)
        except asyncio.TimeoutError:
            raise self._fail("connect", "timeout", f"no SSH answer within {t:g} s; check the address and that the "
                                                   "device is on") from None
        except asyncssh.HostKeyNotVerifiable:
            where = self.known_hosts
            if verdict.get("kind") == "host-key-changed":
                raise self._fail("connect", "host-key-changed",
                                 f"host key CHANGED from the one in {where} (a reinstalled device or someone in "
                                 f"between); check it, then remove the old line (ssh-keygen -R "
                                 f"'{known_hosts_name(spec)}' -f {where})") from None
            raise self._fail("connect", "host-key-unknown",
                             f"host key unknown (not in {where}); check its fingerprint and connect once with "
                             "ssh, or pass --accept-new-host-key") from None
        except asyncssh.PermissionDenied:
            which = f"key {spec.identity}" if spec.identity else "default keys or agent"
            raise self._fail("connect", "auth", f"authentication failed for user {spec.user} ({which}; passwords "
                                                "are not used); add your public key with ssh-copy-id") from None
        except asyncssh.KeyImportError as e:
            raise self._fail("connect", "identity", f"cannot use identity {spec.identity} ({e}); an encrypted key "
                                                    "must be loaded into the SSH agent (ssh-add)") from None
        except ConnectionRefusedError:
            raise self._fail("connect", "refused", f"connection refused on port {spec.port}; is sshd running "
                                                   "there and the port right?") from None
        except socket.gaierror as e:
            raise self._fail("connect", "unreachable", f"cannot resolve {spec.host} ({e.strerror}); check the "
                                                       "name") from None
        except asyncssh.DisconnectError as e:
            raise self._fail("connect", "connection-lost", f"disconnected by the device ({e.reason})") from None
        except OSError as e:
            kind = "refused" if e.errno == errno.ECONNREFUSED else "unreachable"
            raise self._fail("connect", kind, f"unreachable ({e.strerror or e}); check the address and "
                                              "the network") from None
        log.debug("%s: connected%s", spec.label, " (new host key added)" if verdict.get("kind") == "added" else "")
        made = await self.run('printf "%s\\n" "$HOME"; mktemp -d "${TMPDIR:-/tmp}/edgefuse.XXXXXXXX"',
                              step="make the remote temporary folder", timeout=self.timeouts.command)
        lines = made.stdout.splitlines()
        if len(lines) != 2:
            raise self._fail("make the remote temporary folder", "command-failed", f"unexpected answer {made.stdout!r}")
        if not re.fullmatch(r"/[\w./-]+", lines[1]):
            raise self._fail("make the remote temporary folder", "command-failed", f"unusual path {lines[1]!r}; "
                             "set TMPDIR on the device to a plain path")
        self.home, self.tmpdir = lines

    # -- commands ----------------------------------------------------------------------------------------------
    def _lost(self, step: str, why: object) -> RemoteError:
        self._gone = True
        what = str(why).strip().rstrip(".")
        detail = "connection lost" + (f" ({what})" if what and what.lower() != "connection lost" else "")
        return self._fail(step, "connection-lost", f"{detail}; check the device and the network, then run again")

    async def run(self, command: str, *, timeout: float | None = None, step: str | None = None,
                  check: bool = True, input: str | None = None,
                  on_line: Callable[[str], None] | None = None) -> RunResult:
        """Run ``command`` (a shell line) on the device; a non-zero exit raises unless ``check=False``.
        ``on_line``: called with each line of its output as it arrives (the result's stdout is then empty)."""
        asyncssh = _asyncssh()
        if self._conn is None:
            raise EdgefuseError(f"{self.spec.label}: not connected; use 'async with RemoteHost(...)'")
        step = step or f"run `{command if len(command) <= 60 else command[:57] + '...'}`"
        t = self.timeouts.command if timeout is None else timeout
        log.debug("%s: %s", self.spec.label, step)
        pidfile = None
        if self.tmpdir is not None:
            # sshd starts each command in its own session: the shell's pid is the group to stop on a timeout,
            # an interruption or close(); the pid file goes when the command ends by itself
            self._runs += 1
            pidfile = f"{self.tmpdir}/run.{self._runs}.pid"
            # a stop marker (this command's, or the connection's on close) written before the pid file was read
            # stops the command before it starts: no command escapes a stop however late it starts
            command = (f"{{ echo $$ > {pidfile} && trap 'rm -f {pidfile}' EXIT; }} || exit 125\n"
                       f"[ -e {pidfile}.stop ] || [ -e {self.tmpdir}/stop ] && exit 130\n{command}")
        try:
            proc = await self._conn.create_process(command, encoding="utf-8", errors="replace")
            if input is not None:
                proc.stdin.write(input)
            proc.stdin.write_eof()
            try:
                done = await (self._wait(proc, t, step) if on_line is None else
                              self._wait_lines(proc, t, step, on_line))
            except RemoteError as e:
                if e.kind == "timeout" and pidfile is not None:
                    await self._stop_remote(pidfile, f"{pidfile}.stop")
                raise
            except Exception:  # on_line refused a line: the command is stopped, not left running
                proc.close()
                if pidfile is not None:
                    await self._stop_remote(pidfile, f"{pidfile}.stop")
                raise
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError,
                ConnectionError, BrokenPipeError) as e:
            raise self._lost(step, e) from None
        result = RunResult(str(done.stdout or ""), str(done.stderr or ""), done.exit_status)
        if check and result.exit_status != 0:
            raise self.command_failed(step, result.exit_status, result.stderr)
        return result

    async def _stop_remote(self, pidfiles: str, marker: str) -> None:
        """Kill the process groups of the commands whose pid files match ``pidfiles`` (a shell glob), after writing
        ``marker``, which the commands not yet started see (see :meth:`run`)."""
        if self._conn is None:
            return
        try:
            await asyncio.wait_for(self._conn.run(
                f'touch {marker}; for f in {pidfiles}; do [ -f "$f" ] && kill -s KILL -- "-$(cat "$f")"; rm -f "$f"; '
                'done 2>/dev/null', check=False), timeout=self.timeouts.cleanup)
        except (_asyncssh().Error, OSError, asyncio.TimeoutError) as e:
            log.debug("%s: could not stop a remote command (%s)", self.spec.label, type(e).__name__)

    async def _wait(self, proc: Any, t: float, step: str) -> Any:
        asyncssh = _asyncssh()
        try:
            done = await proc.wait(check=False, timeout=t)
        except asyncssh.TimeoutError:
            proc.close()
            raise self._fail(step, "timeout", f"no end within {t:g} s; stopped it (raise the timeout if it is "
                                              "just slow)") from None
        if done.exit_status is None or done.exit_status < 0:
            if done.exit_signal:
                return done  # killed by a signal on the device: a failed command, not a lost connection
            raise self._lost(step, "the channel closed without an exit status")
        return done

    async def _wait_lines(self, proc: Any, t: float, step: str, on_line: Callable[[str], None]) -> Any:
        """:meth:`_wait` with stdout handed to ``on_line`` line by line as it comes (stderr read alongside, so a
        chatty command never stalls on a full channel)."""
        async def lines() -> None:
            async for line in proc.stdout:
                on_line(line)

        end = asyncio.get_running_loop().time() + t
        errors = asyncio.ensure_future(proc.stderr.read())
        try:
            await asyncio.wait_for(lines(), timeout=t)
        except asyncio.TimeoutError:
            errors.cancel()
            proc.close()
            raise self._fail(step, "timeout", f"no end within {t:g} s; stopped it (raise the timeout if it is "
                                              "just slow)") from None
        except BaseException:
            errors.cancel()
            raise
        stderr = await errors
        done = await self._wait(proc, max(1.0, end - asyncio.get_running_loop().time()), step)
        if not done.stderr:
            done.stderr = stderr  # what was read alongside (asyncssh's record of the exit is a plain object)
        return done

    def command_failed(self, step: str, status: int | None, stderr: str) -> RemoteError:
        if DISK_FULL in stderr:
            return self._fail(step, "disk-full", f"disk full on the device ({_last_line(stderr)}); free space "
                                                 "there (df -h) and run again")
        last = _last_line(stderr) or "no error output"
        return self._fail(step, "command-failed", f"remote command failed (exit {status}): {last}")

    # -- copies ------------------------------------------------------------------------------------------------
    def expand(self, path: str) -> str:
        """``path`` on the device with a leading ``~`` as the remote home folder."""
        if (path == "~" or path.startswith("~/")) and self.home:
            return str(PurePosixPath(self.home) / path[2:])
        return path

    async def _stream(self, command: str, step: str, **redirect: str) -> None:
        asyncssh = _asyncssh()
        try:
            proc = await self._conn.create_process(command, encoding=None, **redirect)
            done = await self._wait(proc, self.timeouts.copy, step)
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError,
                ConnectionError, BrokenPipeError) as e:
            raise self._lost(step, e) from None
        if done.exit_status != 0:
            err = done.stderr.decode("utf-8", "replace") if isinstance(done.stderr, bytes) else str(done.stderr)
            raise self.command_failed(step, done.exit_status if done.exit_status is not None else -1, err)

    async def put(self, local: Path, remote_dir: str | None = None) -> Copied:
        """Copy ``local`` into ``remote_dir`` (default: the temporary folder) as ``<stem>.<sha256><suffix>``;
        a file already there with that digest is not copied again."""
        local = Path(local)
        if self._conn is None or self.tmpdir is None:
            raise EdgefuseError(f"{self.spec.label}: not connected; use 'async with RemoteHost(...)'")
        if not local.is_file():
            raise EdgefuseError(f"{local}: no such file to copy to {self.spec.label}")
        digest = sha256_file(local)
        folder = self.expand(remote_dir or self.tmpdir)
        name = f"{local.name.split('.')[0]}.{digest}{''.join(local.suffixes)}"
        target = str(PurePosixPath(folder) / name)
        step = f"copy {local.name} to {folder}"
        have = await self.run(f"sha256sum -- {quote(target)} 2>/dev/null", step=step, check=False,
                              timeout=self.timeouts.copy)
        if have.stdout.split()[:1] == [digest]:
            log.info("%s: %s already there (sha256 %s)", self.spec.label, name, digest[:12])
            return Copied(target, digest, copied=False)
        part = f"{quote(target)}.part.$$"  # the shell's pid: two copies of one file at once do not collide
        await self._stream(f"mkdir -p -- {quote(folder)} && cat > {part} && mv -f -- {part} {quote(target)}", step,
                           stdin=str(local))
        check = await self.run(f"sha256sum -- {quote(target)}", step=step, timeout=self.timeouts.copy)
        if check.stdout.split()[:1] != [digest]:
            raise self._fail(step, "command-failed", "the copy's sha256 differs from the local file's; run again")
        log.info("%s: copied %s (%d bytes)", self.spec.label, name, local.stat().st_size)
        return Copied(target, digest, copied=True)

    async def put_file(self, local: Path, remote: str) -> None:
        """Copy ``local`` to exactly ``remote`` (its folder made if needed); ``remote`` appears only once complete."""
        if self._conn is None:
            raise EdgefuseError(f"{self.spec.label}: not connected; use 'async with RemoteHost(...)'")
        target = self.expand(remote)
        part = f"{quote(target)}.part.$$"
        await self._stream(f"mkdir -p -- {quote(str(PurePosixPath(target).parent))} && cat > {part} && mv -f -- "
                           f"{part} {quote(target)}", f"copy {Path(local).name}", stdin=str(local))

    async def get(self, remote: str, local: Path) -> Path:
        """Copy the device's ``remote`` file to ``local``; ``local`` appears only once it is complete."""
        if self._conn is None:
            raise EdgefuseError(f"{self.spec.label}: not connected; use 'async with RemoteHost(...)'")
        local = Path(local)
        step = f"fetch {remote}"
        with atomic_path(local) as tmp:
            await self._stream(f"cat -- {quote(remote)}", step, stdout=str(tmp))
        return local

    # -- the way out -------------------------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop the commands still running there, remove the remote temporary folder and disconnect. A cancellation
        (Ctrl-C) arriving during this cleanup does not cut it short: the cleanup finishes, then the cancellation goes
        on. A connection already lost is not cleaned (nothing can reach the device)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        cancelled = False
        if self.tmpdir is not None and self._gone:
            log.warning("%s: the connection was lost, so the remote temporary folder %s stays on the device (remove "
                        "it once the device is back)", self.spec.label, self.tmpdir)
        try:
            if self.tmpdir is not None and not self._gone:
                for _ in range(3):  # each further Ctrl-C restarts the (idempotent) cleanup, up to three times
                    try:
                        await self._cleanup(conn)
                        break
                    except asyncio.CancelledError:
                        cancelled = True
        finally:
            self.tmpdir = None
            conn.close()
            try:
                await asyncio.wait_for(conn.wait_closed(), timeout=self.timeouts.cleanup)
            except (asyncio.TimeoutError, OSError, asyncio.CancelledError):
                pass
            log.debug("%s: disconnected", self.spec.label)
        if cancelled:
            raise asyncio.CancelledError

    async def _cleanup(self, conn: Any) -> None:
        asyncssh = _asyncssh()
        assert self.tmpdir is not None
        try:
            self._conn = conn  # for _stop_remote: commands still running (Ctrl-C, an error) are stopped first
            await self._stop_remote(f"{self.tmpdir}/run.*.pid", f"{self.tmpdir}/stop")
            proc = await asyncio.wait_for(conn.run(f"rm -rf -- {shlex.quote(self.tmpdir)}", check=False),
                                          timeout=self.timeouts.cleanup)
            if proc.exit_status != 0:
                log.warning("%s: could not remove %s (%s)", self.spec.label, self.tmpdir,
                            _last_line(str(proc.stderr or "")) or f"exit {proc.exit_status}")
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as e:
            log.warning("%s: could not remove the remote temporary folder %s (%s)", self.spec.label, self.tmpdir,
                        type(e).__name__)
        finally:
            self._conn = None
