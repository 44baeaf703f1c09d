"""``edgefuse bench --host``: the same bench on one device or a fleet over SSH, every host in parallel.

Per host: connect (host key checked, :mod:`edgefuse.backends.remote`), detect the device, copy every engine and its
sidecar into one remote folder named by the engine's sha256 under their own file names (the sidecar is found beside
its engine by name), run ``python3 -m edgefuse bench`` there, fetch its JSON and read it as a :class:`BenchReport`.
A host that fails gives one line naming the host and the step; the other hosts go on. The remote temporary folder
is removed on the way out (also on a failure or Ctrl-C).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shlex
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edgefuse.backends.remote import HostSpec, RemoteError, RemoteHost, Timeouts, detect_remote
from edgefuse.backends.sidecar import sidecar_path
from edgefuse.bench.config import BenchConfig, row_names, write_json
from edgefuse.bench.report import BenchReport
from edgefuse.errors import EdgefuseError
from edgefuse.utils import sha256_file

log = logging.getLogger(__name__)

TIMEOUTS = Timeouts()
NO_EDGEFUSE = "edgefuse is not installed on {host}; the trtexec path is not wired yet"


@dataclass(frozen=True)
class HostBench:
    """One host of a fleet bench: its label, the device it reported, and its report or the one-line failure."""

    host: str  # HostSpec.label: "nano (jetson@10.0.0.5)" or "jetson@10.0.0.5"
    device: str | None  # RemoteDevice.describe(); None when detection did not get that far
    report: BenchReport | None = None
    error: str | None = None  # one line: "<host>: <step>: <what>; <fix>"
    step: str | None = None  # the step that failed
    kind: str | None = None  # RemoteError.kind, "edgefuse-missing", or "error"

    @property
    def failed(self) -> bool:
        return self.report is None

    def to_dict(self, raw: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"host": self.host, "device": self.device, "status": "failed" if self.failed else "ok"}
        if self.report is not None:
            d["report"] = self.report.to_dict(raw)
        else:
            d.update(error=self.error, step=self.step, kind=self.kind)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostBench:
        report = BenchReport.from_dict(d["report"]) if d.get("report") is not None else None
        return cls(d["host"], d.get("device"), report, d.get("error"), d.get("step"), d.get("kind"))


@dataclass(frozen=True)
class FleetReport:
    """``edgefuse bench --host ...``: one :class:`HostBench` per host, in the order the hosts were given."""

    engines: list[str]  # the row labels, as local bench names them
    hosts: list[HostBench]
    date: str

    @property
    def failed(self) -> list[HostBench]:
        return [h for h in self.hosts if h.failed]

    @property
    def ok(self) -> bool:
        """True when every host gave a report (the command exits non-zero otherwise)."""
        return not self.failed

    def to_dict(self, raw: bool = True) -> dict[str, Any]:
        return {"fleet": True, "engines": list(self.engines), "hosts": [h.to_dict(raw) for h in self.hosts],
                "date": self.date}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FleetReport:
        return cls(list(d["engines"]), [HostBench.from_dict(h) for h in d["hosts"]], d["date"])


def remote_bench_argv(cfg: BenchConfig, engines: Sequence[str], json_out: str) -> list[str]:
    """The ``edgefuse bench`` arguments for the device (pure): the local options that mean the same there."""
    argv = ["bench", *engines, "--device", cfg.device, "--json-out", json_out, "--batch", str(cfg.batch),
            "--iterations", str(cfg.iterations), "--warmup", str(cfg.warmup)]
    if cfg.duration is not None:
        argv += ["--duration", f"{cfg.duration:g}"]
    if cfg.threads is not None:
        argv += ["--threads", str(cfg.threads)]
    if cfg.timer != "auto":
        argv += ["--timer", cfg.timer]
    if cfg.estimate:
        argv.append("--estimate")
    return argv


def check_fleet_config(cfg: BenchConfig, hosts: Sequence[HostSpec]) -> None:
    """Refuse, before connecting, what a remote bench cannot do yet (one line each)."""
    if not hosts:
        raise EdgefuseError("bench on remote devices needs at least one --host")
    if not cfg.engines:
        raise EdgefuseError("bench needs at least one engine or .onnx graph")
    if cfg.eager is not None:
        raise EdgefuseError("--eager runs PyTorch on this machine: drop it with --host (the devices time engines)")
    if cfg.png_out is not None:
        raise EdgefuseError("--png is not drawn for a fleet yet: drop it with --host (the JSON keeps every timing)")
    for path in cfg.engines:
        if not Path(path).is_file():
            raise EdgefuseError(f"{path}: no such engine file to copy to the devices; check the path")


async def _put_engine(dev: RemoteHost, engine: Path, base: str) -> str:
    """Copy ``engine`` (and its sidecar, when it has one) into ``<base>/<engine sha256>/`` under their own file
    names; the copies are content-addressed (a file already there is not sent again). Returns the engine's path."""
    if (base == "~" or base.startswith("~/")) and dev.home:
        base = str(PurePosixPath(dev.home) / base[2:])
    folder = str(PurePosixPath(base) / sha256_file(engine))
    files = [engine] + ([sidecar_path(engine)] if sidecar_path(engine).is_file() else [])
    links = []
    for f in files:
        copied = await dev.put(f, folder)
        links.append(f"ln -f -- {shlex.quote(copied.remote)} {shlex.quote(f'{folder}/{f.name}')}")
    await dev.run(" && ".join(links), step=f"place {engine.name} beside its sidecar", timeout=dev.timeouts.copy)
    return f"{folder}/{engine.name}"


def _renamed(report: BenchReport, names: list[str]) -> BenchReport:
    """The rows labelled as a local bench labels them (the device sees other paths); rows follow the engines."""
    if len(report.rows) != len(names):
        return report
    return dataclasses.replace(report, rows=[dataclasses.replace(r, name=n) for r, n in zip(report.rows, names)])


async def bench_host(cfg: BenchConfig, spec: HostSpec, *, known_hosts: Path | None = None,
                     accept_new_host_key: bool = False, timeouts: Timeouts = TIMEOUTS,
                     remote_cache: str | None = None) -> HostBench:
    """Bench ``cfg.engines`` on one host; a failure is returned as a :class:`HostBench` with its one line."""
    device: str | None = None
    step = "connect"
    try:
        async with RemoteHost(spec, known_hosts=known_hosts, accept_new_host_key=accept_new_host_key,
                              timeouts=timeouts) as dev:
            step = "detect the device"
            found = await detect_remote(dev)
            device = found.describe()
            log.info("%s: %s", spec.label, device)
            if found.edgefuse is None:
                step = "bench"
                return HostBench(spec.label, device, error=f"{spec.label}: bench: "
                                 + NO_EDGEFUSE.format(host=spec.label), step=step, kind="edgefuse-missing")
            assert dev.tmpdir is not None
            base = remote_cache or dev.tmpdir
            remote = []
            for engine in cfg.engines:
                step = f"copy {Path(engine).name}"
                remote.append(await _put_engine(dev, Path(engine), base))
            step = "bench"
            out = f"{dev.tmpdir}/bench.json"
            argv = remote_bench_argv(cfg, remote, out)
            await dev.run(f"cd {shlex.quote(dev.tmpdir)} && python3 -m edgefuse "
                          + " ".join(shlex.quote(a) for a in argv), step=step)
            step = "fetch the report"
            with tempfile.TemporaryDirectory(prefix="edgefuse-fleet-") as tmp:
                local = await dev.get(out, Path(tmp) / "bench.json")
                data = json.loads(local.read_text(encoding="utf-8"))
            if data.get("estimate_only"):
                raise EdgefuseError(f"{spec.label}: bench: the device gave roofline estimates only (device "
                                    f"{data.get('device')}); use --device auto")
            report = _renamed(BenchReport.from_dict(data), row_names(cfg.engines, cfg.names))
            return HostBench(spec.label, device, report)
    except RemoteError as e:
        return HostBench(spec.label, device, error=str(e), step=e.step, kind=e.kind)
    except EdgefuseError as e:
        line = " ".join(str(e).split())
        return HostBench(spec.label, device, error=line if line.startswith(spec.label) else
                         f"{spec.label}: {step}: {line}", step=step, kind="error")
    except (ValueError, KeyError, TypeError, OSError) as e:  # a report that does not read, a local file problem
        what = " ".join(f"{type(e).__name__}: {e}".split())
        return HostBench(spec.label, device, error=f"{spec.label}: {step}: {what}", step=step, kind="error")


async def bench_fleet(cfg: BenchConfig, hosts: Sequence[HostSpec], **kw: Any) -> FleetReport:
    """Every host at once (asyncio.gather); one failing never stops the others. Cancelling (Ctrl-C) stops every
    host's remote command and removes its temporary folder."""
    check_fleet_config(cfg, hosts)
    results = await asyncio.gather(*(bench_host(cfg, h, **kw) for h in hosts))
    for r in results:
        if r.failed:
            log.warning("%s", r.error)
    report = FleetReport(engines=row_names(cfg.engines, cfg.names), hosts=list(results),
                         date=time.strftime("%Y-%m-%d %H:%M:%S"))
    if cfg.json_out:
        write_json(report.to_dict(), cfg.json_out)
    return report


def bench_remote(cfg: BenchConfig, hosts: list[HostSpec], *, known_hosts: Path | None = None,
                 accept_new_host_key: bool = False, timeouts: Timeouts = TIMEOUTS,
                 remote_cache: str | None = None) -> FleetReport:
    """Bench ``cfg.engines`` on every host in ``hosts`` in parallel (see :func:`bench_fleet`).

    ``known_hosts``: default ``~/.ssh/known_hosts``; ``accept_new_host_key`` adds a host's key when it has none there
    (never a changed one). ``remote_cache``: a folder on the devices (e.g. ``~/.cache/edgefuse/engines``) that keeps
    the copied engines for the next bench; default the remote temporary folder, removed at the end.
    ``cfg.json_out`` receives the :class:`FleetReport` with every raw timing per host.
    """
    return asyncio.run(bench_fleet(cfg, hosts, known_hosts=known_hosts, accept_new_host_key=accept_new_host_key,
                                   timeouts=timeouts, remote_cache=remote_cache))
