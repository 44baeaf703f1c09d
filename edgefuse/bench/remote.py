"""``edgefuse bench --host``: the same bench on one device or a fleet over SSH, every host in parallel.

Per host: connect (host key checked, :mod:`edgefuse.backends.remote`) and detect the device; then each engine is
put there: an engine file with its sidecar is copied (content-addressed, into a folder named by its sha256, under its
own file name, beside its sidecar), and an ONNX graph is built there or found already built in the local record
(:func:`edgefuse.backends.remote.build.ensure_engine`). The timing runs where the device allows: ``python3 -m edgefuse
bench`` when edgefuse is installed there (its JSON fetched and read as a :class:`BenchReport`), else trtexec for
TensorRT engines (:mod:`edgefuse.bench.remote_trtexec`, with energy from the device's tegrastats). A host that fails
gives one line naming the host and the step; the other hosts go on. The remote temporary folder is removed on the
way out (also on a failure or Ctrl-C).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from edgefuse.backends.remote import HostSpec, RemoteHost
from edgefuse.backends.remote.build import (
    HOST_ERRORS,
    MISSING_TOOLS,
    HostFailure,
    HostProgress,
    RemoteBuildOptions,
    RemoteEngine,
    RemoteOptions,
    engines_on,
    is_graph,
    run_hosts,
)
from edgefuse.backends.remote.detect import RemoteDevice
from edgefuse.backends.sidecar import read_sidecar
from edgefuse.bench.config import BenchConfig, row_names, write_json
from edgefuse.bench.report import BenchReport
from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostBench:
    """One host of a fleet bench: its label, the device it reported, and its report or the one-line failure."""

    host: str  # HostSpec.label: "nano (jetson@10.0.0.5)" or "jetson@10.0.0.5"
    device: str | None  # RemoteDevice.describe(); None when detection did not get that far
    report: BenchReport | None = None
    error: str | None = None  # one line: "<host>: <step>: <what>; <fix>"
    step: str | None = None  # the step that failed
    kind: str | None = None  # RemoteError.kind, "missing-tool", or "error"
    engines: list[RemoteEngine] = field(default_factory=list)  # the engines on the device (built, reused, copied)

    @property
    def failed(self) -> bool:
        return self.report is None

    def to_dict(self, raw: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"host": self.host, "device": self.device, "status": "failed" if self.failed else "ok"}
        if self.report is not None:
            d["report"] = self.report.to_dict(raw)
        else:
            d.update(error=self.error, step=self.step, kind=self.kind)
        d["engines"] = [e.to_dict() for e in self.engines]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostBench:
        report = BenchReport.from_dict(d["report"]) if d.get("report") is not None else None
        return cls(d["host"], d.get("device"), report, d.get("error"), d.get("step"), d.get("kind"),
                   [RemoteEngine.from_dict(e) for e in d.get("engines", [])])

    @classmethod
    def failed_with(cls, host: str, device: str | None, failure: HostFailure,
                    engines: list[RemoteEngine] | None = None) -> HostBench:
        return cls(host, device, error=failure.error, step=failure.step, kind=failure.kind, engines=engines or [])


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
        if not is_graph(Path(path)):
            read_sidecar(path)  # an engine without its sidecar cannot be placed or timed there


def _renamed(report: BenchReport, names: list[str]) -> BenchReport:
    """The rows labelled as a local bench labels them (the device sees other paths); rows follow the engines."""
    if len(report.rows) != len(names):
        return report
    return dataclasses.replace(report, rows=[dataclasses.replace(r, name=n) for r, n in zip(report.rows, names)])


async def _bench_with_edgefuse(dev: RemoteHost, cfg: BenchConfig, engines: list[RemoteEngine]) -> BenchReport:
    assert dev.tmpdir is not None
    out = f"{dev.tmpdir}/bench.json"
    argv = remote_bench_argv(cfg, [e.path for e in engines], out)
    await dev.run(f"cd {shlex.quote(dev.tmpdir)} && python3 -m edgefuse " + " ".join(shlex.quote(a) for a in argv),
                  step="bench")
    with tempfile.TemporaryDirectory(prefix="edgefuse-fleet-") as tmp:
        local = await dev.get(out, Path(tmp) / "bench.json")
        data = json.loads(local.read_text(encoding="utf-8"))
    if data.get("estimate_only"):
        raise EdgefuseError(f"the device gave roofline estimates only (device {data.get('device')}); use "
                            "--device auto")
    return BenchReport.from_dict(data)


async def _bench_with_trtexec(dev: RemoteHost, found: RemoteDevice, cfg: BenchConfig, engines: list[RemoteEngine],
                              names: list[str], on_step: Any) -> BenchReport:
    from edgefuse.bench.remote_trtexec import trtexec_row_remote

    not_trt = [e for e in engines if e.sidecar.backend != "tensorrt"]
    if not_trt:
        raise EdgefuseError(f"{PurePosixPath(not_trt[0].path).name} is a {not_trt[0].sidecar.backend} engine and the "
                            "device has no edgefuse to run it; trtexec times TensorRT engines only")
    ignored = [flag for flag, on in (("--duration", cfg.duration is not None), ("--threads", cfg.threads is not None),
                                     ("--estimate", cfg.estimate), ("--timer python", cfg.timer == "python")) if on]
    if ignored:
        log.warning("%s: no edgefuse there, so trtexec times the engines with --iterations and --warmup; %s not used",
                    dev.spec.label, ", ".join(ignored))
    meta = engines[0].sidecar.metadata
    t, size = int(meta["segments"]), int(meta["input_size"])
    shape = [cfg.batch, t, 3, size, size]  # (N, T, 3, H, W)
    rows = []
    for name, e in zip(names, engines):
        on_step(f"trtexec timing of {name}")
        rows.append(await trtexec_row_remote(dev, found, e.path, e.sidecar, name, batch=cfg.batch, frames=t,
                                             input_shape=shape, iterations=cfg.iterations, warmup_runs=cfg.warmup))
    base = rows[0].latency.median_ms
    rows = [dataclasses.replace(r, speedup_vs_first=base / r.latency.median_ms if r.latency.median_ms else None)
            for r in rows]
    return BenchReport(device=engines[0].sidecar.device, hardware=dict(engines[0].sidecar.hardware), batch=cfg.batch,
                       input=shape, warmup=cfg.warmup, peak_rss_mb=0.0, threads=None, rows=rows,
                       date=time.strftime("%Y-%m-%d %H:%M:%S"))


async def bench_host(cfg: BenchConfig, spec: HostSpec, remote: RemoteOptions,
                     build: RemoteBuildOptions | None) -> HostBench:
    """Bench ``cfg.engines`` on one host; a failure is returned as a :class:`HostBench` with its one line."""
    at = HostProgress(spec.label)
    engines: list[RemoteEngine] = []
    try:
        async with remote.host(spec) as dev:
            found = await at.detect(dev)
            if not found.edgefuse and not found.trtexec:
                at("bench")
                raise EdgefuseError(MISSING_TOOLS)
            engines = await engines_on(dev, found, [Path(p) for p in cfg.engines], remote, build, at)
            names = row_names(cfg.engines, cfg.names)
            at("bench")
            if found.edgefuse:
                report = await _bench_with_edgefuse(dev, cfg, engines)
            else:
                report = await _bench_with_trtexec(dev, found, cfg, engines, names, at)
            return HostBench(spec.label, at.device, _renamed(report, names), engines=engines)
    except HOST_ERRORS as e:
        return HostBench.failed_with(spec.label, at.device, at.failure(e), engines)


def bench_remote(cfg: BenchConfig, hosts: Sequence[HostSpec], remote: RemoteOptions | None = None,
                 build: RemoteBuildOptions | None = None) -> FleetReport:
    """Bench ``cfg.engines`` on every host in ``hosts`` in parallel; one failing never stops the others, and Ctrl-C
    stops every host's remote command and removes its temporary folder. ``remote``: how the hosts are reached and
    where engines are kept on them (engine files copied there stay for the next bench); ``build``: the options of
    graphs built there (None: an engine recorded for the graph with any options, else built with the defaults).
    ``cfg.json_out`` receives the :class:`FleetReport` with every raw timing per host."""
    check_fleet_config(cfg, hosts)
    reach = remote or RemoteOptions()
    results = run_hosts(lambda h: bench_host(cfg, h, reach, build), hosts)
    for r in results:
        if r.failed:
            log.debug("%s", r.error)
    report = FleetReport(engines=row_names(cfg.engines, cfg.names), hosts=list(results),
                         date=time.strftime("%Y-%m-%d %H:%M:%S"))
    if cfg.json_out:
        write_json(report.to_dict(), cfg.json_out)
    return report
