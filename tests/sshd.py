"""A real OpenSSH server for the remote-device tests: ``/usr/sbin/sshd -D`` on 127.0.0.1, a free port, a
generated host key and user key in a temporary folder, the current user allowed (root: key only). Nothing is
mocked: the tests talk SSH to it, and the "device" is this machine.

CI installs Debian's openssh-server (.ci/run); without /usr/sbin/sshd the tests are skipped with that reason.
"""
from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
# a device's PATH: the sessions see this, not the test's virtual environment
DEVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MISSING = f"{SSHD} is missing: install OpenSSH's server (apt-get install openssh-server; .ci/run does)"


def device_bin(folder: Path, *, edgefuse: bool = True, tools: tuple[Path, ...] = ()) -> Path:
    """A folder to put first on a test device's PATH: ``python3`` runs this interpreter (a wrapper, so a virtual
    environment stays one), importing edgefuse and its dependencies, or with ``edgefuse=False`` the same interpreter
    isolated from every installed package (``-I -S``: the standard library only, as a device without edgefuse);
    ``tools``: executables linked in by their names (e.g. the stand-in trtexec)."""
    import sys

    import edgefuse as package

    folder.mkdir(parents=True, exist_ok=True)
    source = Path(package.__file__).resolve().parent.parent  # the edgefuse these tests import, whatever installed it
    line = f'exec "{sys.executable}" -I -S "$@"' if not edgefuse else \
        f'PYTHONPATH="{source}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"'
    (folder / "python3").write_text(f"#!/bin/sh\n{line}\n")
    (folder / "python3").chmod(0o755)
    for tool in tools:
        (folder / tool.name).symlink_to(tool.resolve())
    return folder


def key_material(*servers: Sshd) -> list[str]:
    """What must never appear in an output, report, record or log: the private keys' base64 lines (user and host) and
    the user's public key data."""
    out = []
    for s in servers:
        for key in (s.user_key, s.host_key):
            out += [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")]
        out.append(Path(str(s.user_key) + ".pub").read_text().split()[1])
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_key(path: Path) -> Path:
    """A new ed25519 key pair: ``path`` (private, 0600) and ``path.pub``."""
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    key.write_public_key(str(path) + ".pub")
    os.chmod(path, 0o600)
    return path


@dataclass
class Sshd:
    directory: Path
    port: int
    host_key: Path  # private; host_key.pub is the public half
    user_key: Path  # private; its .pub is the only authorized key
    user: str
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def home(self) -> Path:
        """The device's home folder (``~`` there)."""
        return self.directory / "home"

    @property
    def address(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def known_hosts_line(self) -> str:
        kind, data = (Path(str(self.host_key) + ".pub").read_text().split())[:2]
        return f"[127.0.0.1]:{self.port} {kind} {data}\n"

    def _descendants(self) -> list[int]:
        """The processes this sshd started (its per-connection children and their commands), by /proc."""
        parent: dict[int, int] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    parent[int(d.name)] = int((d / "stat").read_text().rpartition(")")[2].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            kids = [p for p, pp in parent.items() if pp == pid]
            out += kids
            todo += kids
        return out

    def stop(self) -> None:
        """Stop the server and drop every connection it holds (as a device that goes away)."""
        for pid in self._descendants():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_sshd(directory: Path, *, user_key: Path | None = None, timeout: float = 15.0,
               extra_path: tuple[str, ...] = (), session_env: dict[str, str] | None = None) -> Sshd:
    """Start sshd in ``directory`` (made if needed) and wait until it accepts connections. ``extra_path``: folders
    put before the device PATH, e.g. a folder from :func:`device_bin`;
    ``session_env``: more variables set there (plain values, no spaces)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "home").mkdir(exist_ok=True)
    env = {"HOME": str(directory / "home"), **(session_env or {})}  # the device's home: its own, not this user's
    path = ":".join([*extra_path, DEVICE_PATH])
    host_key = make_key(directory / "host_ed25519")
    user_key = user_key or make_key(directory / "user_ed25519")
    (directory / "authorized_keys").write_text(Path(str(user_key) + ".pub").read_text())
    user = getpass.getuser()
    port = free_port()
    config = directory / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {directory / 'sshd.pid'}",
        f"AuthorizedKeysFile {directory / 'authorized_keys'}", "StrictModes no",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", f"AllowUsers {user}", "Subsystem sftp internal-sftp", "LogLevel VERBOSE",
        *([f"SetEnv {' '.join(f'{k}={v}' for k, v in env.items())}"] if env else []),
        # every command runs under /bin/sh with the device PATH, whatever the user's shell start-up files (this
        # machine's ~/.bashrc puts pyenv first) would make of it
        f'ForceCommand PATH={path}; export PATH; exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"', ""]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    log = directory / "sshd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={"PATH": DEVICE_PATH})
    server = Sshd(directory, port, host_key, user_key, user, log, proc)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"sshd did not answer on port {port} within {timeout:g} s: {log.read_text()[-2000:]}")
