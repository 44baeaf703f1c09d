"""Engines built on the device they run on, over SSH: ``edgefuse build-engine --host``, and the engine step of
``bench --host`` and ``validate --host``.

Per host: the graph is copied (content-addressed: not again when the device has it), then built with the best path
the device has: edgefuse itself (``python3 -m edgefuse build-engine``, any backend it builds there), else trtexec (the
command made here by the same builder as a local trtexec build, :func:`edgefuse.backends.trtexec.build_argv`, the
sidecar written here from trtexec's log), else one line saying what to install. The engine and its sidecar are built
in a staging folder on the device and moved into place together; the sidecar comes back into the local record
(:mod:`.record`), so the next bench or validate on that device reuses the engine instead of building again.
"""
from __future__ import annotations

import asyncio
import json
import logging
import shlex
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from edgefuse.backends.remote.connection import RemoteError, RemoteHost, Timeouts, quote
from edgefuse.backends.remote.detect import RemoteDevice, detect_remote, device_profile
from edgefuse.backends.remote.hosts import HostSpec
from edgefuse.backends.remote.record import EngineRecord, add_record, find_record, forget_record, load_records
from edgefuse.backends.sidecar import Sidecar, read_sidecar, sidecar_path
from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path, sha256_file

log = logging.getLogger(__name__)

STORE = "~/.cache/edgefuse/engines"  # where engines stay on the device between runs
MISSING_TOOLS = ("neither edgefuse nor trtexec is on the device; install TensorRT's trtexec (JetPack ships it at "
                 "/usr/src/tensorrt/bin/trtexec) or edgefuse (pip install edgefuse, Python 3.10+)")
T = TypeVar("T")


@dataclass(frozen=True)
class RemoteOptions:
    """How to reach the devices and where engines are kept: ``known_hosts`` (default ~/.ssh/known_hosts),
    ``accept_new_host_key`` (add the key of a host that has none there; a changed key is always refused), the
    timeouts per step, the local record of built engines (default ~/.cache/edgefuse/remote-engines.json) and the
    folder on the devices that keeps engines and graphs (``store``)."""

    known_hosts: Path | None = None
    accept_new_host_key: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    record: Path | None = None
    store: str = STORE

    def host(self, spec: HostSpec) -> RemoteHost:
        return RemoteHost(spec, known_hosts=self.known_hosts, accept_new_host_key=self.accept_new_host_key,
                          timeouts=self.timeouts)


@dataclass(frozen=True)
class RemoteBuildOptions:
    """The build-engine options that reach the device (the same meaning as locally)."""

    device: str = "auto"  # a device profile, or auto: the profile the device's readings give
    precision: str = "auto"
    shapes: dict[str, list[list[int]]] = field(default_factory=dict)  # input -> [min, opt, max]
    workspace_mb: int | None = None
    dla: int | None = None
    gpu_fallback: bool = False
    backend: str = "auto"
    cpu_int8: str = "auto"

    def key(self) -> str:
        """What identifies an engine built from the same graph (the record's key)."""
        return json.dumps({"device": self.device, "precision": self.precision, "shapes": self.shapes,
                           "workspace_mb": self.workspace_mb, "dla": self.dla, "gpu_fallback": self.gpu_fallback,
                           "backend": self.backend, "cpu_int8": self.cpu_int8}, sort_keys=True)


def shapes_arg(name: str, ranges: Sequence[Sequence[int]]) -> str:
    """``--shapes`` of one input, as build-engine parses it: ``clips:1x8x3x224x224,1x8x3x224x224,4x8x3x224x224``."""
    return f"{name}:" + ",".join("x".join(str(int(d)) for d in dims) for dims in ranges)


def edgefuse_build_argv(graph: str, engine: str, opts: RemoteBuildOptions) -> list[str]:
    """``edgefuse build-engine`` arguments for the device (pure)."""
    argv = ["build-engine", graph, "-o", engine, "--device", opts.device, "--precision", opts.precision,
            "--backend", opts.backend, "--cpu-int8", opts.cpu_int8]
    for name, ranges in opts.shapes.items():
        argv += ["--shapes", shapes_arg(name, ranges)]
    if opts.workspace_mb is not None:
        argv += ["--workspace", str(opts.workspace_mb)]
    if opts.dla is not None:
        argv += ["--dla", str(opts.dla)]
    if opts.gpu_fallback:
        argv.append("--gpu-fallback")
    return argv


@dataclass(frozen=True)
class RemoteEngine:
    """An engine on a device: where it is there, its sidecar, and whether this run built it or found it."""

    host: str  # HostSpec.label
    path: str  # on the device
    sidecar: Sidecar
    builder: str  # "edgefuse", "trtexec", or "copied" (a local engine file sent to the device)
    reused: bool
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "path": self.path, "builder": self.builder, "reused": self.reused,
                "seconds": self.seconds, "sidecar": self.sidecar.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RemoteEngine:
        return cls(d["host"], d["path"], Sidecar.from_dict(d["sidecar"]), d["builder"], bool(d["reused"]),
                   float(d.get("seconds", 0.0)))


def device_id(spec: HostSpec, found: RemoteDevice) -> str:
    """Which device, for the record: its machine id at its address (a device swapped in at the same address, or one
    reached by two addresses, is not taken for another)."""
    return f"{found.machine_id or 'no-machine-id'}@{spec.address}"


def builder_of(found: RemoteDevice) -> str:
    """The best build path the device has: edgefuse, else trtexec; one line when it has neither."""
    if found.edgefuse:
        return "edgefuse"
    if found.trtexec:
        return "trtexec"
    raise EdgefuseError(MISSING_TOOLS)


async def remote_sha256(dev: RemoteHost, path: str, step: str) -> str | None:
    """The sha256 of a file on the device, None when it is not there."""
    got = await dev.run(f"sha256sum -- {quote(path)} 2>/dev/null", step=step, check=False)
    first = got.stdout.split()[:1]
    return first[0] if got.exit_status == 0 and first else None


async def ensure_engine(dev: RemoteHost, found: RemoteDevice, graph: Path, opts: RemoteBuildOptions | None,
                        remote: RemoteOptions, *, rebuild: bool = False,
                        on_step: Callable[[str], None] | None = None) -> RemoteEngine:
    """The engine of ``graph`` on this device: the recorded one when the device still holds it unchanged (and has
    the same TensorRT), else built now (and recorded). ``opts`` None: any engine recorded for the graph (the latest;
    what bench and validate take, so an engine built with options is found again), else one built with defaults."""
    step = (on_step or (lambda s: None))
    spec = dev.spec
    graph_sha = sha256_file(graph)
    dev_id = device_id(spec, found)
    old = find_record(load_records(remote.record), dev_id, graph_sha, opts.key() if opts else None, found.tensorrt)
    opts = opts or RemoteBuildOptions()
    key = opts.key()
    if old is not None and not rebuild:
        step("check the recorded engine")
        if await remote_sha256(dev, old.remote_engine, "check the recorded engine") == old.engine_sha256:
            log.info("%s: reusing %s (built %s)", spec.label, old.remote_engine, old.built_at)
            return RemoteEngine(spec.label, old.remote_engine, old.side(), old.builder, reused=True)
        log.info("%s: the recorded engine %s is gone or changed; building again", spec.label, old.remote_engine)
        forget_record(old, remote.record)
    step("build")
    builder = builder_of(found)
    start = time.monotonic()
    step(f"copy {graph.name}")
    store = dev.expand(remote.store)
    copied = await dev.put(graph, f"{store}/graphs")
    folder = f"{store}/{graph_sha[:16]}-{_digest(key)[:8]}"
    staging = f"{folder}.part-{_digest(dev.tmpdir or '')[:8]}"
    name = f"{graph.name.split('.')[0]}.engine"
    await dev.run(f"rm -rf -- {quote(staging)} && mkdir -p -- {quote(staging)}", step="make the build folder")
    try:
        if builder == "edgefuse":
            step("build (edgefuse)")
            sidecar = await _build_edgefuse(dev, copied.remote, f"{staging}/{name}", opts)
        else:
            step("build (trtexec)")
            sidecar = await _build_trtexec(dev, found, graph, copied.remote, f"{staging}/{name}", opts)
        await dev.run(f"rm -rf -- {quote(folder)} && mv -- {quote(staging)} {quote(folder)}",
                      step="move the engine and its sidecar into place")
    finally:
        await dev.run(f"rm -rf -- {quote(staging)}", step="remove the build folder", check=False)
    seconds = round(time.monotonic() - start, 2)
    path = f"{folder}/{name}"
    add_record(EngineRecord(device_id=dev_id, device=found.describe(), host=spec.address, tensorrt=found.tensorrt,
                            graph_sha256=graph_sha, options=key, remote_engine=path,
                            engine_sha256=sidecar.engine_sha256, builder=builder, sidecar=sidecar.to_dict(),
                            built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z")), remote.record)
    log.info("%s: built %s with %s in %.1f s", spec.label, path, builder, seconds)
    return RemoteEngine(spec.label, path, sidecar, builder, reused=False, seconds=seconds)


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


async def _fetch_json(dev: RemoteHost, path: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgefuse-remote-") as tmp:
        local = await dev.get(path, Path(tmp) / "file.json")
        data = json.loads(local.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise EdgefuseError(f"{dev.spec.label}: {path} is not a JSON object")
    return data


async def _build_edgefuse(dev: RemoteHost, graph: str, engine: str, opts: RemoteBuildOptions) -> Sidecar:
    argv = edgefuse_build_argv(graph, engine, opts)
    await dev.run("python3 -m edgefuse " + " ".join(shlex.quote(a) for a in argv), step="build (edgefuse)",
                  timeout=dev.timeouts.build)
    return Sidecar.from_dict(await _fetch_json(dev, f"{engine}.json"))


async def _build_trtexec(dev: RemoteHost, found: RemoteDevice, graph: Path, remote_graph: str, engine: str,
                         opts: RemoteBuildOptions) -> Sidecar:
    """trtexec on the device, the command and the sidecar made here (the same rules as a local trtexec build)."""
    from edgefuse.backends import BuildConfig, trt_plan
    from edgefuse.backends.plan import graph_precision, optimization_profiles
    from edgefuse.backends.trtexec import BuildSpec, build_argv, build_settings, check_build, check_report
    from edgefuse.backends.trtexec import parse_report as parse_trtexec
    from edgefuse.backends.trtexec.report import failure_reason
    from edgefuse.devices import get_device
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.metadata import read_metadata
    from edgefuse.graph.query import dims, graph_inputs

    assert found.trtexec is not None
    step = "build (trtexec)"
    if opts.backend not in ("auto", "trtexec"):
        raise EdgefuseError(f"--backend {opts.backend} needs edgefuse on the device; it has only trtexec: build with "
                            "--backend auto or trtexec")
    profile = get_device(opts.device) if opts.device not in ("auto", "jetson") else device_profile(found)
    if profile.kind == "cpu":
        raise EdgefuseError(f"the device reads as {profile.title} (no NVIDIA GPU found): name its profile with "
                            "--device ('edgefuse devices') to build with trtexec")
    version = found.tensorrt or await _probe_version(dev, found.trtexec)
    model = load_onnx(graph)
    meta = read_metadata(model)
    precision = graph_precision(model, meta)
    profiles = optimization_profiles({vi.name: dims(vi) for vi in graph_inputs(model)},
                                     meta.get("dynamic_ranges") or {}, opts.shapes)
    cfg = BuildConfig(model=graph, output=Path(engine), device=profile.name, precision=opts.precision,
                      shapes=opts.shapes, workspace_mb=opts.workspace_mb, dla=opts.dla, gpu_fallback=opts.gpu_fallback,
                      backend="trtexec")
    plan = trt_plan(cfg, precision, profile, version, profiles)
    argv = build_argv(BuildSpec(onnx=Path(remote_graph), engine=Path(engine), version=version,
                                fp16="FP16" in plan.flags, int8="INT8" in plan.flags,
                                strongly_typed="STRONGLY_TYPED" in plan.network_flags, shapes=profiles,
                                dla_core=plan.dla_core, gpu_fallback=opts.gpu_fallback,
                                workspace_mb=opts.workspace_mb), exe=found.trtexec)
    start = time.monotonic()
    done = await dev.run(" ".join(shlex.quote(a) for a in argv), step=step, timeout=dev.timeouts.build, check=False)
    text = done.stdout + "\n" + done.stderr
    report = parse_trtexec(text)
    if done.exit_status != 0:
        err = dev.command_failed(step, done.exit_status, done.stderr)
        if err.kind == "disk-full":
            raise err
        reason = failure_reason(report) or " ".join(err.args[0].split(": ", 2)[-1:]) or "no output"
        where = f", TensorRT {report.version}" if report.version else ""
        raise RemoteError(dev.spec.label, step, "command-failed", f"trtexec failed (exit {done.exit_status}{where}): "
                                                                   f"{reason}")
    try:
        check_report(report, "build")
        check_build(report, version, plan.dla_core, opts.gpu_fallback)
    except EdgefuseError as e:
        raise RemoteError(dev.spec.label, step, "command-failed", str(e)) from None
    sha = await remote_sha256(dev, engine, step)
    if sha is None:
        raise RemoteError(dev.spec.label, step, "command-failed", f"trtexec exited cleanly but wrote no engine at "
                                                                  f"{engine}; check the disk there (df -h)")
    settings = build_settings(report, argv, version, plan.flags, plan.network_flags, plan.dla_core, None,
                              opts.workspace_mb)
    sidecar = Sidecar(backend="tensorrt", backend_version=str(settings["trtexec_version"]), device=profile.name,
                      hardware=dict(settings["trtexec_device"] or {}), precision=plan.precision, engine_sha256=sha,
                      source_onnx=str(graph), source_onnx_sha256=sha256_file(graph), profiles=profiles,
                      settings=settings, calibration=meta.get("calibration") if isinstance(meta.get("calibration"),
                                                                                          dict) else None,
                      metadata=meta, build_seconds=round(time.monotonic() - start, 2),
                      built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), notes=list(plan.notes))
    await dev.run(f"cat > {quote(engine + '.json')}", input=json.dumps(sidecar.to_dict(), indent=2, sort_keys=True),
                  step="write the sidecar")
    return sidecar


async def _probe_version(dev: RemoteHost, trtexec: str) -> str:
    from edgefuse.backends.trtexec import parse_report as parse_trtexec

    done = await dev.run(f"{shlex.quote(trtexec)} --help", step="trtexec version", check=False)
    version = parse_trtexec(done.stdout + "\n" + done.stderr).version
    if version is None:
        raise RemoteError(dev.spec.label, "trtexec version", "command-failed",
                          f"'{trtexec} --help' names no TensorRT version; check the TensorRT install there")
    return version


def is_graph(path: Path) -> bool:
    """An ONNX graph to build on the device (no sidecar beside it), rather than an engine file to copy."""
    return path.suffix.lower() == ".onnx" and not sidecar_path(path).is_file()


async def put_engine(dev: RemoteHost, engine: Path, base: str) -> RemoteEngine:
    """Copy ``engine`` and its sidecar into ``<base>/<engine sha256>/`` under their own file names; the copies are
    content-addressed (a file already there is not sent again)."""
    sidecar = read_sidecar(engine)
    folder = str(PurePosixPath(dev.expand(base)) / sha256_file(engine))
    links = []
    for f in (engine, sidecar_path(engine)):
        copied = await dev.put(f, folder)
        links.append(f"ln -f -- {shlex.quote(copied.remote)} {shlex.quote(f'{folder}/{f.name}')}")
    await dev.run(" && ".join(links), step=f"place {engine.name} beside its sidecar", timeout=dev.timeouts.copy)
    return RemoteEngine(dev.spec.label, f"{folder}/{engine.name}", sidecar, "copied", reused=False)


async def engines_on(dev: RemoteHost, found: RemoteDevice, paths: Sequence[Path], remote: RemoteOptions,
                     build: RemoteBuildOptions | None, on_step: Any) -> list[RemoteEngine]:
    """Each of ``paths`` on the device: engine files copied, graphs built there or reused from the record."""
    out = []
    for path in paths:
        if is_graph(path):
            out.append(await ensure_engine(dev, found, path, build, remote, on_step=on_step))
        else:
            on_step(f"copy {path.name}")
            out.append(await put_engine(dev, path, remote.store))
    return out


# -- one step per host, a fleet at once ----------------------------------------------------------------------------
@dataclass(frozen=True)
class HostFailure:
    """One host's failure: its one line, the step and the kind (RemoteError kinds, or 'error')."""

    error: str
    step: str
    kind: str

    def to_dict(self) -> dict[str, str]:
        return {"error": self.error, "step": self.step, "kind": self.kind}


def failure_of(label: str, step: str, e: BaseException) -> HostFailure:
    """Any exception of a host's work as its one line ``<host>: <step>: <what>``."""
    if isinstance(e, RemoteError):
        return HostFailure(str(e), e.step, e.kind)
    if isinstance(e, EdgefuseError):
        line = " ".join(str(e).split())
        kind = "missing-tool" if line == MISSING_TOOLS else "error"
        return HostFailure(line if line.startswith(label) else f"{label}: {step}: {line}", step, kind)
    what = " ".join(f"{type(e).__name__}: {e}".split())
    return HostFailure(f"{label}: {step}: {what}", step, "error")


HOST_ERRORS = (EdgefuseError, ValueError, KeyError, TypeError, OSError)


@dataclass
class HostProgress:
    """Where one host's work stands, for its one-line failure: the step under way (call it with the next step) and
    the device it reported."""

    label: str
    step: str = "connect"
    device: str | None = None

    def __call__(self, step: str) -> None:
        self.step = step

    async def detect(self, dev: RemoteHost) -> RemoteDevice:
        self("detect the device")
        found = await detect_remote(dev)
        self.device = found.describe()
        log.debug("%s: %s", self.label, self.device)
        return found

    def failure(self, e: BaseException) -> HostFailure:
        return failure_of(self.label, self.step, e)


@dataclass(frozen=True)
class HostBuild:
    """One host of ``build-engine --host``: the device it reported and its engine, or its failure."""

    host: str
    device: str | None
    engine: RemoteEngine | None = None
    failure: HostFailure | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"host": self.host, "device": self.device, "status": "ok" if self.engine else "failed"}
        if self.engine is not None:
            d["engine"] = self.engine.to_dict()
        if self.failure is not None:
            d.update(self.failure.to_dict())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostBuild:
        engine = RemoteEngine.from_dict(d["engine"]) if d.get("engine") else None
        failure = HostFailure(d["error"], d["step"], d["kind"]) if d.get("error") else None
        return cls(d["host"], d.get("device"), engine, failure)


@dataclass(frozen=True)
class FleetBuild:
    """``edgefuse build-engine --host ...``: one :class:`HostBuild` per host, in the order given."""

    graph: str
    hosts: list[HostBuild]
    fetched: str | None = None  # the local engine file, when asked for (-o with one host)

    @property
    def ok(self) -> bool:
        return all(h.engine is not None for h in self.hosts)

    def to_dict(self) -> dict[str, Any]:
        return {"graph": self.graph, "hosts": [h.to_dict() for h in self.hosts], "fetched": self.fetched}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FleetBuild:
        return cls(d["graph"], [HostBuild.from_dict(h) for h in d["hosts"]], d.get("fetched"))


async def build_host(graph: Path, spec: HostSpec, opts: RemoteBuildOptions, remote: RemoteOptions, *,
                     rebuild: bool = False, fetch: Path | None = None) -> HostBuild:
    at = HostProgress(spec.label)
    try:
        async with remote.host(spec) as dev:
            found = await at.detect(dev)
            engine = await ensure_engine(dev, found, graph, opts, remote, rebuild=rebuild, on_step=at)
            if fetch is not None:
                at("fetch the engine")
                await fetch_engine(dev, engine, fetch)
            return HostBuild(spec.label, at.device, engine)
    except HOST_ERRORS as e:
        return HostBuild(spec.label, at.device, failure=at.failure(e))


async def fetch_engine(dev: RemoteHost, engine: RemoteEngine, local: Path) -> None:
    """The device's engine and its sidecar at ``local`` and ``local``.json: both appear, or neither."""
    from edgefuse.backends.sidecar import write_sidecar

    with atomic_path(local) as tmp:
        await dev.get(engine.path, tmp)
        if sha256_file(tmp) != engine.sidecar.engine_sha256:
            raise RemoteError(dev.spec.label, "fetch the engine", "command-failed",
                              "the fetched engine's sha256 differs from its sidecar's; run again")
        write_sidecar(local, engine.sidecar)  # the sidecar first: the engine's rename is the last step


def build_remote(graph: Path, hosts: Sequence[HostSpec], opts: RemoteBuildOptions | None = None,
                 remote: RemoteOptions | None = None, *, rebuild: bool = False,
                 output: Path | None = None) -> FleetBuild:
    """Build ``graph`` on every host at once (see :func:`ensure_engine`); a host that fails gives its one line and
    the others go on. ``output`` (one host only): also fetch the engine and its sidecar to this local file."""
    graph = Path(graph)
    if not graph.is_file():
        raise EdgefuseError(f"{graph}: no such graph to build on the devices; check the path")
    if not hosts:
        raise EdgefuseError("building on remote devices needs at least one --host")
    if output is not None and len(hosts) != 1:
        raise EdgefuseError(f"-o {output}: engines of {len(hosts)} devices cannot share one local file; give one "
                            "--host, or leave -o out (the engines stay on the devices, recorded here)")
    o, r = opts or RemoteBuildOptions(), remote or RemoteOptions()
    results = run_hosts(lambda h: build_host(graph, h, o, r, rebuild=rebuild, fetch=output), hosts)
    for r in results:
        if r.failure is not None:
            log.debug("%s", r.failure.error)
    fetched = str(output) if output is not None and results[0].engine is not None else None
    return FleetBuild(str(graph), list(results), fetched)


def run_hosts(work: Callable[[HostSpec], Any], hosts: Sequence[HostSpec]) -> list[Any]:
    """``work(host)`` (a coroutine per host) on every host at once; Ctrl-C cancels them all, and each one's remote
    commands are stopped and its temporary folder removed on the way out."""

    async def all_hosts() -> list[Any]:
        return list(await asyncio.gather(*(work(h) for h in hosts)))

    return asyncio.run(all_hosts())

