"""``edgefuse validate --host``: the engine runs on one device or is sharded across a fleet, the FP32 reference runs
here, and the two are compared as for a local engine.

The clips are sampled and preprocessed here (as the graph's metadata says) and shipped to the devices as arrays, a
shard at a time (a clip folder, :func:`edgefuse.backends.device_io.write_clip_folder`). A device runs each shard with
``python3 -m edgefuse infer --stream`` when edgefuse is installed there, else with the one-file device runner
(``device_runner.py --stream``, TensorRT engines), and its logits come back batch by batch as they are computed. Each
clip is run exactly once: a host that drops mid-shard gives back only the clips it has not reported, and another host
takes them; with no host left, the report covers the clips that came back and is marked partial.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import shlex
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
)
from edgefuse.backends.remote.detect import RUNNER_HINT, RemoteDevice
from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path
from edgefuse.validate.compare import compare_logits
from edgefuse.validate.report import EngineInfo, ValidateReport
from edgefuse.validate.run import CHUNK, ValidateConfig, class_names, min_agreement

log = logging.getLogger(__name__)

MAX_SHARD = 128  # clips per shard at most (a dropped host gives back what it has not reported, whatever the size)
SHARDS_PER_HOST = 2  # each shard starts the runner anew on the device (about 1.5 s of Python start-up and loading)


def shard_size(clips: int, hosts: int, requested: int | None = None) -> int:
    """Clips per shard: two shards per host, so that a fast host takes more while each device starts its runner only
    a few times (pure)."""
    if requested is not None:
        if requested < 1:
            raise EdgefuseError(f"shard size {requested}: give 1 or more clips per shard")
        return requested
    return max(1, min(MAX_SHARD, math.ceil(clips / max(1, SHARDS_PER_HOST * hosts))))


@dataclass
class ShardQueue:
    """Clip indices waiting to run, as shards; a shard a host could not finish comes back with its remaining clips.
    ``take`` waits while another host still holds a shard (it may come back) and gives None once all is done."""

    pending: deque[list[int]]
    in_flight: int = 0
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)

    @classmethod
    def of(cls, n: int, size: int) -> ShardQueue:
        return cls(deque(list(range(i, min(n, i + size))) for i in range(0, n, size)))

    async def take(self) -> list[int] | None:
        async with self.cond:
            while not self.pending and self.in_flight:
                await self.cond.wait()
            if not self.pending:
                return None
            self.in_flight += 1
            return self.pending.popleft()

    async def done(self, left: Sequence[int] = ()) -> None:
        async with self.cond:
            self.in_flight -= 1
            if left:
                self.pending.appendleft(list(left))
            self.cond.notify_all()


@dataclass(frozen=True)
class HostShare:
    """What one host of a fleet validate did: its device, its engine there, the clips it ran, or its failure."""

    host: str
    device: str | None
    clips: int = 0
    shards: int = 0
    runner: str | None = None  # "edgefuse infer" or "device_runner.py"
    engine: RemoteEngine | None = None
    failure: HostFailure | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"host": self.host, "device": self.device, "clips": self.clips, "shards": self.shards,
                             "runner": self.runner, "status": "failed" if self.failure else "ok",
                             "engine": self.engine.to_dict() if self.engine else None}
        if self.failure is not None:
            d.update(self.failure.to_dict())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostShare:
        return cls(d["host"], d.get("device"), int(d["clips"]), int(d["shards"]), d.get("runner"),
                   RemoteEngine.from_dict(d["engine"]) if d.get("engine") else None,
                   HostFailure(d["error"], d["step"], d["kind"]) if d.get("error") else None)


@dataclass(frozen=True)
class FleetValidateReport:
    """``edgefuse validate --host ...``: the comparison over every clip that came back, who ran what, and what is
    missing (``partial``: some clips never ran because every host that could run them failed)."""

    report: ValidateReport | None  # None when no clip came back
    hosts: list[HostShare]
    clips: int  # asked for
    ran_on: dict[str, str]  # clip id -> the host that ran it
    missing: list[str]  # clip ids that never ran

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    @property
    def failed_hosts(self) -> list[HostShare]:
        return [h for h in self.hosts if h.failure is not None]

    @property
    def passed(self) -> bool:
        """Every host ran, every clip came back, and the comparison is within the budget."""
        return self.report is not None and self.report.passed and not self.partial and not self.failed_hosts

    def to_dict(self, per_clip: bool = True) -> dict[str, Any]:
        return {"fleet": True, "partial": self.partial, "clips": self.clips, "missing": list(self.missing),
                "hosts": [h.to_dict() for h in self.hosts], "ran_on": dict(self.ran_on) if per_clip else {},
                "report": self.report.to_dict(per_clip=per_clip) if self.report is not None else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FleetValidateReport:
        return cls(ValidateReport.from_dict(d["report"]) if d.get("report") else None,
                   [HostShare.from_dict(h) for h in d["hosts"]], int(d["clips"]), dict(d.get("ran_on") or {}),
                   list(d["missing"]))


@dataclass
class _Work:
    """What every host shares: the clips, the queue of shards, the results as they come back."""

    clips: np.ndarray  # (N, T, 3, H, W) float32
    ids: list[str]
    input_name: str
    metadata: dict[str, Any]
    queue: ShardQueue
    local: Path  # a local temporary folder for the shards' files
    logits: dict[int, np.ndarray] = field(default_factory=dict)  # clip index -> (K,)
    ran_on: dict[int, str] = field(default_factory=dict)
    progress: Any = None
    on_result: Callable[[str, str], None] | None = None  # (host, clip id) as each clip's logits arrive


def _runner_command(found: RemoteDevice, engine: RemoteEngine, runner: str | None, shard: str, out: str) -> str:
    if found.edgefuse:
        return (f"python3 -m edgefuse infer {shlex.quote(engine.path)} {shlex.quote(shard)} -o {shlex.quote(out)} "
                "--stream")
    assert runner is not None
    return f"python3 {shlex.quote(runner)} {shlex.quote(engine.path)} {shlex.quote(shard)} -o {shlex.quote(out)} --stream"


async def _run_shard(dev: RemoteHost, found: RemoteDevice, engine: RemoteEngine, runner: str | None,
                     work: _Work, shard: list[int], number: int, left: set[int]) -> None:
    """Ship ``shard`` to the device, run it there and keep each clip's logits as its batch's line arrives (its index
    leaves ``left``)."""
    from edgefuse.backends.device_io import parse_stream_line, write_clip_folder

    assert dev.tmpdir is not None
    by_id = {work.ids[i]: i for i in shard}
    folder = work.local / f"shard-{number}"
    write_clip_folder(work.clips[shard], [work.ids[i] for i in shard], work.input_name, folder)
    remote = f"{dev.tmpdir}/shard-{number}"
    for f in sorted(folder.iterdir()):
        await dev.put_file(f, f"{remote}/{f.name}")

    def on_line(line: str) -> None:
        batch = parse_stream_line(line)
        if batch is None:
            return
        for clip_id, row in zip(batch.ids, batch.logits):
            i = by_id.get(clip_id)
            if i is None or i not in left:
                raise EdgefuseError(f"the device reported clip {clip_id!r}, not one it was sent (or twice)")
            work.logits[i] = np.asarray(row, dtype=np.float32)
            work.ran_on[i] = dev.spec.label
            left.discard(i)
            if work.progress is not None:
                work.progress.update(1)
            if work.on_result is not None:
                work.on_result(dev.spec.label, clip_id)

    command = _runner_command(found, engine, runner, remote, f"{remote}-out")
    await dev.run(command, step=f"run shard {number} ({len(shard)} clips)", on_line=on_line)
    if left:
        raise EdgefuseError(f"the device's run ended without logits for {len(left)} of {len(shard)} clips")
    await dev.run(f"rm -rf -- {shlex.quote(remote)} {shlex.quote(remote + '-out')}", step="remove the shard",
                  check=False)


async def _validate_host(spec: HostSpec, graph: Path, work: _Work, remote: RemoteOptions,
                         build: RemoteBuildOptions | None, counter: list[int]) -> HostShare:
    from edgefuse.backends.device_io import runner_path

    at = HostProgress(spec.label)
    engine: RemoteEngine | None = None
    runner: str | None = None
    done_clips = shards = 0
    try:
        async with remote.host(spec) as dev:
            found = await at.detect(dev)
            if not found.edgefuse and not found.trtexec:
                at("validate")
                raise EdgefuseError(MISSING_TOOLS)
            (engine,) = await engines_on(dev, found, [graph], remote, build, at)
            runner_name = "edgefuse infer"
            if not found.edgefuse:
                at("copy the device runner")
                if engine.sidecar.backend != "tensorrt":
                    raise EdgefuseError(f"a {engine.sidecar.backend} engine and no edgefuse on the device to run it; "
                                        "the device runner runs TensorRT engines")
                if found.runner_missing:
                    raise EdgefuseError(f"no edgefuse there, and the device runner needs {', '.join(found.runner_missing)}"
                                        f" for python3 there; {RUNNER_HINT}")
                runner = (await dev.put(runner_path(), remote.store + "/runner")).remote
                runner_name = "device_runner.py"
            while (shard := await work.queue.take()) is not None:
                counter[0] += 1
                number = counter[0]
                left = set(shard)
                at(f"run shard {number} ({len(shard)} clips)")
                try:
                    await _run_shard(dev, found, engine, runner, work, shard, number, left)
                except BaseException:
                    await work.queue.done(sorted(left))  # the clips not reported go back for another host
                    raise
                await work.queue.done()
                done_clips += len(shard)
                shards += 1
            return HostShare(spec.label, at.device, done_clips, shards, runner_name, engine)
    except HOST_ERRORS as e:
        return HostShare(spec.label, at.device, sum(1 for h in work.ran_on.values() if h == spec.label), shards,
                         None, engine, at.failure(e))


def _prepare(cfg: ValidateConfig) -> tuple[np.ndarray, Any, list[str], dict[str, Any], str]:
    """The clips preprocessed here as the graph's metadata says: (clips, labels, ids, metadata, input name)."""
    from edgefuse.backends.sidecar import read_sidecar
    from edgefuse.clips import Preprocess, Sampling, model_reading
    from edgefuse.clips import open as open_clips
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.metadata import read_metadata
    from edgefuse.graph.query import graph_inputs

    path = Path(cfg.engine)
    if is_graph(path):
        model = load_onnx(path)
        meta, input_name = read_metadata(model), graph_inputs(model)[0].name
    else:
        side = read_sidecar(path)
        meta, input_name = dict(side.metadata), next(iter(side.profiles), "clips")
    if not meta.get("segments") or not meta.get("input_size"):
        raise EdgefuseError(f"{path}: no edgefuse metadata (segments, input size), so the clips' sampling is unknown; "
                            "give a graph from 'edgefuse export' or 'edgefuse calibrate'")
    clip_set = open_clips(cfg.clips, Preprocess.from_metadata(meta, source=str(path)),
                          Sampling(num_segments=int(meta["segments"])), root=cfg.root, num_clips=cfg.num_clips,
                          seed=cfg.seed, workers=cfg.workers, progress=cfg.progress, **model_reading(meta))
    data, labels, ids = clip_set.stack()
    names = class_names(clip_set.class_names, meta)
    return data.numpy(), labels, [str(i) for i in ids], {**meta, "_class_names": names,
                                                         "_skipped": list(clip_set.skipped)}, input_name


def _reference_logits(cfg: ValidateConfig, meta: dict[str, Any], clips: np.ndarray) -> np.ndarray:
    from edgefuse.validate.run import _reference

    reference = _reference(cfg, meta)
    return np.concatenate([reference.run(clips[i:i + CHUNK]) for i in range(0, len(clips), CHUNK)])


def check_remote_config(cfg: ValidateConfig, hosts: Sequence[HostSpec]) -> None:
    """Refuse, before any work, what a validate on devices cannot do (one line each)."""
    if not hosts:
        raise EdgefuseError("validate on remote devices needs at least one --host")
    if not Path(cfg.engine).is_file():
        raise EdgefuseError(f"{cfg.engine}: no such graph or engine to run on the devices; check the path")
    if not Path(cfg.reference).is_file():
        raise EdgefuseError(f"{cfg.reference}: no such reference; give the FP32 .onnx from 'edgefuse export'")
    if cfg.per_layer:
        raise EdgefuseError("--per-layer compares tensors inside the engine, which stays on the device: run it there, "
                            "or drop --per-layer with --host")


async def validate_fleet(cfg: ValidateConfig, hosts: Sequence[HostSpec], remote: RemoteOptions,
                         build: RemoteBuildOptions | None, shard: int | None = None,
                         on_result: Callable[[str, str], None] | None = None) -> FleetValidateReport:
    """:func:`validate_remote` inside a running event loop; ``on_result(host, clip id)`` is called as each clip's
    logits arrive."""
    from edgefuse.progress import Progress

    check_remote_config(cfg, hosts)
    clips, labels, ids, meta, input_name = _prepare(cfg)
    with tempfile.TemporaryDirectory(prefix="edgefuse-shards-") as tmp:
        work = _Work(clips, ids, input_name, meta, ShardQueue.of(len(ids), shard_size(len(ids), len(hosts), shard)),
                     Path(tmp), on_result=on_result)
        work.progress = Progress(len(ids), f"validate on {len(hosts)} host{'s' if len(hosts) > 1 else ''}",
                                 enabled=cfg.progress)
        counter = [0]
        reference = asyncio.ensure_future(asyncio.to_thread(_reference_logits, cfg, meta, clips))
        try:
            shares = await asyncio.gather(*(_validate_host(h, Path(cfg.engine), work, remote, build, counter)
                                            for h in hosts))
            ref = await reference
        finally:
            reference.cancel()
            work.progress.close()
    for s in shares:
        if s.failure is not None:
            log.debug("%s", s.failure.error)
    got = sorted(work.logits)
    missing = [ids[i] for i in range(len(ids)) if i not in work.logits]
    if missing:
        log.warning("%d of %d clips never ran (every host that could run them failed); the report covers the %d "
                    "that did", len(missing), len(ids), len(got))
    report = None
    if got:
        engine = next((s.engine for s in shares if s.engine is not None), None)
        names = meta.pop("_class_names")
        skipped = meta.pop("_skipped", [])
        result = compare_logits(ref[got], np.stack([work.logits[i] for i in got]),
                                labels.numpy()[got] if labels is not None else None, names,
                                [ids[i] for i in got])
        side = engine.sidecar if engine is not None else None
        devices = sorted({s.device or s.host for s in shares if s.clips})
        used = [s.engine.sidecar for s in shares if s.clips and s.engine is not None]
        # hosts may hold different engines (a CPU picks its backend by timing): each one is named
        backends = " / ".join(dict.fromkeys(e.backend for e in used)) or (side.backend if side else None)
        versions = " / ".join(dict.fromkeys(e.backend_version for e in used)) or (side.backend_version if side
                                                                                  else None)
        precision = side.precision if side else meta.get("precision")
        info = EngineInfo(backends, versions, "; ".join(devices), precision)
        report = ValidateReport(str(cfg.engine), str(cfg.reference), str(cfg.clips), info, cfg.max_drop, result,
                                None, None, None, min_agreement(cfg, precision or meta.get("precision")),
                                skipped, names)
    fleet = FleetValidateReport(report, list(shares), len(ids), {ids[i]: h for i, h in sorted(work.ran_on.items())},
                                missing)
    if cfg.report:
        with atomic_path(cfg.report) as tmp_file:
            tmp_file.write_text(json.dumps(fleet.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
    if cfg.html and report is not None:
        from edgefuse.validate.html import write_html

        write_html(report, cfg.html)
    return fleet


def validate_remote(cfg: ValidateConfig, hosts: Sequence[HostSpec], remote: RemoteOptions | None = None,
                    build: RemoteBuildOptions | None = None, shard: int | None = None) -> FleetValidateReport:
    """Run ``cfg.engine`` (a graph, built on each device or reused from the record (``build`` None: an engine
    recorded with any options, else built with the defaults), or an engine file with its sidecar) on the clips across ``hosts``, each clip once, and compare with ``cfg.reference`` run here. Ctrl-C stops
    every host's remote command and removes its temporary folder."""
    start = time.monotonic()
    fleet = asyncio.run(validate_fleet(cfg, hosts, remote or RemoteOptions(), build, shard))
    log.info("validated %d clip%s on %d host%s in %.1f s", len(fleet.ran_on), "" if len(fleet.ran_on) == 1 else "s",
             len(hosts), "" if len(hosts) == 1 else "s", time.monotonic() - start)
    return fleet
