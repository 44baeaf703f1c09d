"""Which devices to reach: ``USER@HOST[:PORT]`` on the command line, or names from a hosts file (TOML).

A hosts file names the devices of a lab::

    [hosts]
    nano = "jetson@10.0.0.5"
    orin = { host = "nvidia@10.0.0.7:2222", identity = "~/.ssh/orin_ed25519" }

Pure parsing: nothing here opens a connection.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefuse.errors import EdgefuseError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_PORT = 22
_SPEC = re.compile(r"^(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))"
                   r"(?::(?P<port>\d+))?$")
_FORM = "USER@HOST[:PORT] (e.g. jetson@10.0.0.5 or jetson@[fe80::1]:2222)"


@dataclass(frozen=True)
class HostSpec:
    """One device to reach over SSH. ``name`` is the hosts-file name, else ``user@host[:port]``."""

    user: str
    host: str
    port: int = DEFAULT_PORT
    name: str = ""
    identity: Path | None = None  # a private key file; None: the default keys (~/.ssh/id_*) and the SSH agent

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}" + (f":{self.port}" if self.port != DEFAULT_PORT else "")

    @property
    def label(self) -> str:
        """How messages name this host: ``nano (jetson@10.0.0.5)`` or ``jetson@10.0.0.5``."""
        return f"{self.name} ({self.address})" if self.name and self.name != self.address else self.address


def _port(text: str, where: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise EdgefuseError(f"{where}: port {port} is out of range; use 1..65535")
    return port


def parse_host(spec: str, *, name: str = "", identity: Path | None = None, where: str = "--host") -> HostSpec:
    """``USER@HOST[:PORT]`` (IPv6 in brackets) as a :class:`HostSpec`; ``where`` names the source in errors."""
    m = _SPEC.match(spec.strip())
    if m is None:
        raise EdgefuseError(f"{where}: {spec!r} is not a host; write {_FORM}")
    port = _port(m.group("port"), where) if m.group("port") else DEFAULT_PORT
    return HostSpec(user=m.group("user"), host=m.group("v6") or m.group("host"), port=port,
                    name=name or "", identity=identity)


def _line_of(text: str, name: str) -> int:
    """The line that defines ``name`` in the hosts table (1-based; 0 when not found)."""
    pat = re.compile(rf"^\s*(?:{re.escape(name)}|\"{re.escape(name)}\"|'{re.escape(name)}')\s*=")
    for i, line in enumerate(text.splitlines(), 1):
        if pat.match(line):
            return i
    return 0


def _entry(name: str, value: Any, where: str, base: Path) -> HostSpec:
    if isinstance(value, str):
        return parse_host(value, name=name, where=where)
    if not isinstance(value, dict):
        raise EdgefuseError(f"{where}: host {name!r} must be a string \"USER@HOST[:PORT]\" or a table "
                            "{ host = \"USER@HOST\", port = 22, identity = \"~/.ssh/id_ed25519\" }")
    unknown = sorted(set(value) - {"host", "port", "identity"})
    if unknown:
        raise EdgefuseError(f"{where}: host {name!r} has unknown keys {unknown}; allowed: host, port, identity")
    if not isinstance(value.get("host"), str):
        raise EdgefuseError(f"{where}: host {name!r} needs host = \"{_FORM.split(' ')[0]}\"")
    identity = value.get("identity")
    if identity is not None and not isinstance(identity, str):
        raise EdgefuseError(f"{where}: host {name!r}: identity must be a path string to a private key file")
    key = None
    if identity:
        key = Path(identity).expanduser()
        key = key if key.is_absolute() else base / key
    spec = parse_host(value["host"], name=name, identity=key, where=where)
    if "port" in value:
        port = value["port"]
        if not isinstance(port, int) or isinstance(port, bool):
            raise EdgefuseError(f"{where}: host {name!r}: port must be an integer")
        if spec.port != DEFAULT_PORT and spec.port != port:
            raise EdgefuseError(f"{where}: host {name!r} gives two ports ({spec.port} and {port}); keep one")
        spec = HostSpec(spec.user, spec.host, _port(str(port), where), name, key)
    return spec


def load_hosts_file(path: Path) -> dict[str, HostSpec]:
    """The ``[hosts]`` table of a TOML file, name -> :class:`HostSpec`, in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise EdgefuseError(f"{path}: cannot read the hosts file ({e.strerror or e}); check the path") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:  # its message ends with "(at line N, column M)"
        raise EdgefuseError(f"{path}: not valid TOML: {e}") from None
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        raise EdgefuseError(f"{path}: no [hosts] table; add one, e.g. [hosts] then nano = \"jetson@10.0.0.5\"")
    return {name: _entry(name, value, f"{path}:{_line_of(text, name)}", path.parent)
            for name, value in hosts.items()}


def resolve_hosts(specs: Sequence[str], hosts_file: Path | None = None) -> list[HostSpec]:
    """``--host`` values as hosts: a name from ``hosts_file`` or ``USER@HOST[:PORT]``; no host twice."""
    named = load_hosts_file(hosts_file) if hosts_file is not None else {}
    out: list[HostSpec] = []
    for spec in specs:
        if spec in named:
            out.append(named[spec])
        elif "@" in spec or not named:
            out.append(parse_host(spec))
        else:
            raise EdgefuseError(f"--host {spec!r} is not in {hosts_file} (names: {', '.join(named)}); "
                                f"use a name from it or {_FORM}")
    return check_unique(out)


def check_unique(hosts: list[HostSpec]) -> list[HostSpec]:
    """``hosts``, refusing one device given twice (the same user, address and port under two names)."""
    seen: dict[tuple[str, str, int], str] = {}
    for h in hosts:
        key = (h.user, h.host, h.port)
        if key in seen:
            raise EdgefuseError(f"--host {h.label} is given twice (also as {seen[key]}); give each device once")
        seen[key] = h.label
    return hosts
