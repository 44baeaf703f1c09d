"""The local record of engines built on remote devices: which device (its machine id, whatever address reached it),
which TensorRT, which graph (sha256) and which build options gave which engine file there, with its sidecar.

``build-engine --host`` adds to it; ``bench --host`` and ``validate --host`` look a graph up in it first and reuse
the engine on the device when the device still holds it unchanged (its sha256 is checked there), so a second bench
does not build again. One JSON file (default ``~/.cache/edgefuse/remote-engines.json``, see
:func:`edgefuse.utils.cache_root`), written atomically; nothing secret is kept in it (no keys, no passwords).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgefuse.backends.sidecar import Sidecar
from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path, cache_root

log = logging.getLogger(__name__)

FORMAT, VERSION = "edgefuse-remote-engines", 1


def default_record_path() -> Path:
    return cache_root() / "remote-engines.json"


@dataclass(frozen=True)
class EngineRecord:
    """One engine on one device."""

    device_id: str  # /etc/machine-id of the device, else its address
    device: str  # what the device reported (RemoteDevice.describe())
    host: str  # the address that reached it last (user@host[:port])
    tensorrt: str | None  # the device's TensorRT version when the engine was built (None: no TensorRT there)
    graph_sha256: str
    options: str  # the build options' key (RemoteBuildOptions.key())
    remote_engine: str  # the engine's path on the device
    engine_sha256: str
    builder: str  # "edgefuse" (edgefuse on the device) or "trtexec"
    sidecar: dict[str, Any] = field(default_factory=dict)  # the engine's sidecar (Sidecar.to_dict())
    built_at: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.device_id, self.graph_sha256, self.options)

    def side(self) -> Sidecar:
        return Sidecar.from_dict(self.sidecar)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EngineRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def load_records(path: Path | None = None) -> list[EngineRecord]:
    """Every record in ``path`` (default :func:`default_record_path`); none when the file does not exist."""
    path = Path(path) if path is not None else default_record_path()
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} file")
        return [EngineRecord.from_dict(e) for e in data.get("engines", [])]
    except (OSError, ValueError, TypeError) as e:
        raise EdgefuseError(f"{path}: unreadable record of remote engines ({e}); delete it (the engines are "
                            "rebuilt on the next use)") from None


def find_record(records: list[EngineRecord], device_id: str, graph_sha256: str, options: str | None,
                tensorrt: str | None) -> EngineRecord | None:
    """The record of this graph built on this device with these options (``None``: any, the latest built), if it was
    built with the TensorRT the device has now (an engine does not run on another TensorRT version)."""
    for r in reversed(records):  # the latest first
        if (r.device_id, r.graph_sha256) == (device_id, graph_sha256) and options in (None, r.options) \
                and r.tensorrt == tensorrt:
            return r
    return None


def add_record(record: EngineRecord, path: Path | None = None) -> Path:
    """Add ``record`` to the file (replacing one with the same device, graph and options), atomically."""
    path = Path(path) if path is not None else default_record_path()
    _write(path, [r for r in load_records(path) if r.key != record.key] + [record])
    log.debug("recorded %s on %s in %s", record.remote_engine, record.host, path)
    return path


def forget_record(record: EngineRecord, path: Path | None = None) -> None:
    """Drop ``record`` from the file (its engine is gone from the device)."""
    path = Path(path) if path is not None else default_record_path()
    records = load_records(path)
    kept = [r for r in records if r.key != record.key]
    if len(kept) != len(records):
        _write(path, kept)


def _write(path: Path, records: list[EngineRecord]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"format": FORMAT, "version": VERSION, "engines": [r.to_dict() for r in records]},
                                  indent=1) + "\n", encoding="utf-8")
