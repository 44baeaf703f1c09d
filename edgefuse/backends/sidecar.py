"""The engine sidecar ``<engine>.json``: what an engine is, where it was built and from what.
Loading reads it first and refuses an engine built by another backend version or for another
device, before touching the engine bytes."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgefuse.errors import EdgefuseError
from edgefuse.utils import atomic_path, write_set

SCHEMA = 1


@dataclass(frozen=True)
class Sidecar:
    backend: str  # "onnxruntime" | "openvino" | "tensorrt"
    backend_version: str
    device: str  # device profile name
    hardware: dict[str, Any]  # GPU: name, compute_capability; CPU: name, machine, isa, cores
    precision: str  # fp32 | fp16 | int8 (what the engine computes in)
    engine_sha256: str
    source_onnx: str
    source_onnx_sha256: str
    profiles: dict[str, list[list[int]]] = field(default_factory=dict)  # input -> [min, opt, max] shapes
    settings: dict[str, Any] = field(default_factory=dict)  # session options / builder settings
    calibration: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # the ONNX metadata copied through
    build_seconds: float = 0.0
    built_at: str = ""
    notes: list[str] = field(default_factory=list)
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # The backend's own settings stay a JSON object (each backend records its own); what the summary shows of
    # them is read here, once.
    @property
    def backend_choice(self) -> str | None:
        """Why ``--backend auto`` kept this backend (CPU engines), if it chose."""
        choice = self.settings.get("backend_choice")
        return str(choice.get("reason")) if isinstance(choice, Mapping) else None

    @property
    def int8_rewrite(self) -> str | None:
        """What the ONNX Runtime INT8 rewrite did to the Q/DQ graph, if it ran."""
        value = self.settings.get("int8_rewrite")
        return str(value) if value else None

    @property
    def gpu_fallback_layers(self) -> list[str]:
        """TensorRT with DLA: the layers that run on the GPU instead."""
        return [str(x) for x in self.settings.get("gpu_fallback_layers") or []]

    @property
    def dla_core(self) -> int | None:
        """TensorRT: the DLA core the engine was built for, which the runtime must use (None: the GPU)."""
        core = self.settings.get("dla_core")
        return None if core is None else int(core)

    @property
    def hardware_name(self) -> str | None:
        name = self.hardware.get("name")
        return None if name is None else str(name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sidecar:
        """From :meth:`to_dict`'s form; fields this version does not know are ignored (a newer sidecar). A dict
        that is not a sidecar (missing fields, wrong types) raises one :class:`EdgefuseError` line saying which."""
        problem = sidecar_problem(data)
        if problem is not None:
            raise EdgefuseError(f"not a valid engine sidecar: {problem}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


BACKEND_NAMES = ("onnxruntime", "openvino", "tensorrt")
# field -> (JSON types it may hold, what the message calls them); fields without a default must be present
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "backend": ((str,), "a string"), "backend_version": ((str,), "a string"), "device": ((str,), "a string"),
    "hardware": ((dict,), "a JSON object"), "precision": ((str,), "a string"),
    "engine_sha256": ((str,), "a string"), "source_onnx": ((str,), "a string"),
    "source_onnx_sha256": ((str,), "a string"), "profiles": ((dict,), "a JSON object"),
    "settings": ((dict,), "a JSON object"), "calibration": ((dict, type(None)), "a JSON object or null"),
    "metadata": ((dict,), "a JSON object"), "build_seconds": ((int, float), "a number"),
    "built_at": ((str,), "a string"), "notes": ((list,), "a list"), "schema": ((int,), "an integer"),
}
_JSON_NAMES = {str: "a string", dict: "a JSON object", list: "a list", int: "an integer", float: "a number",
               bool: "true/false", type(None): "null"}


def sidecar_problem(data: Mapping[str, Any]) -> str | None:
    """What keeps ``data`` from being an engine sidecar this version reads (None: nothing): the missing
    fields, a field of the wrong type, an unknown backend, a newer schema."""
    if not isinstance(data, Mapping):
        return f"holds {_JSON_NAMES.get(type(data), type(data).__name__)}, not a JSON object"
    required = [f.name for f in Sidecar.__dataclass_fields__.values()
                if f.default is MISSING and f.default_factory is MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    for key, (types, what) in _FIELD_TYPES.items():
        if key in data and (not isinstance(data[key], types) or isinstance(data[key], bool)):
            got = _JSON_NAMES.get(type(data[key]), type(data[key]).__name__)
            return f"field {key!r} is {got}, expected {what}"
    if data["backend"] not in BACKEND_NAMES:
        return f"backend {data['backend']!r} is none of {', '.join(BACKEND_NAMES)}"
    if int(data.get("schema", SCHEMA)) > SCHEMA:
        return f"schema {data['schema']} is newer than this edgefuse's {SCHEMA} (upgrade edgefuse)"
    return None


def sidecar_path(engine: str | Path) -> Path:
    p = Path(engine)
    return p.with_name(p.name + ".json")


@contextlib.contextmanager
def engine_set(engine: str | Path) -> Iterator[Path]:
    """Build ``engine`` and its sidecar as a set: yields the staged engine path to build to (its sidecar written
    beside it, :func:`write_sidecar`); on success both are moved into place together, else neither is (Ctrl-C at
    any moment included; a failed move puts back what was there). The staged path is in a hidden folder beside
    ``engine``."""
    with write_set(engine, sidecar_path(engine)) as (staged, _):
        _STAGED[staged] = Path(engine)
        try:
            yield staged
        finally:
            _STAGED.pop(staged, None)


_STAGED: dict[Path, Path] = {}  # staged engine path -> where engine_set moves it


def final_path(engine: str | Path) -> Path:
    """Where an engine being built ends up: its destination while :func:`engine_set` stages it, else itself (for
    what a sidecar records, e.g. trtexec's command)."""
    return _STAGED.get(Path(engine), Path(engine))


def write_sidecar(engine: str | Path, sidecar: Sidecar) -> Path:
    dest = sidecar_path(engine)
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return dest


def read_sidecar(engine: str | Path) -> Sidecar:
    path = sidecar_path(engine)
    if not Path(engine).is_file():
        raise EdgefuseError(f"{engine}: no such engine file; build one with 'edgefuse build-engine'")
    if not path.is_file():
        raise EdgefuseError(f"{engine}: no sidecar {path.name} beside it, so its backend, device and source are "
                            "unknown; build the engine with 'edgefuse build-engine' (it writes both)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise EdgefuseError(f"{path}: not a valid engine sidecar (not JSON: {e}); rebuild the engine with "
                            "'edgefuse build-engine'") from None
    except OSError as e:
        raise EdgefuseError(f"{path}: cannot read the engine sidecar ({e.strerror or e})") from None
    problem = sidecar_problem(data)
    if problem is not None:
        raise EdgefuseError(f"{path}: not a valid engine sidecar ({problem}); it was not written by 'edgefuse "
                            "build-engine' or was edited: rebuild the engine with 'edgefuse build-engine'")
    return Sidecar.from_dict(data)


def check_compatible(engine: str | Path, sidecar: Sidecar, backend_version: str, hardware: Mapping[str, Any],
                     device: str | None = None, dla_cores: int | None = None) -> None:
    """An engine runs only on the backend version and hardware it was built for: one error naming both.
    TensorRT: ``device`` (the detected device profile's name) and ``dla_cores`` (its DLA core count) are
    compared too when given: every Orin module's GPU reports "Orin", sm 8.7, so only the profile tells an AGX
    Orin engine from an Orin Nano's, and a DLA engine needs its DLA core on this device."""
    if sidecar.backend == "tensorrt":
        if sidecar.backend_version != backend_version:
            raise EdgefuseError(f"{engine}: built with TensorRT {sidecar.backend_version}, this machine has TensorRT "
                                f"{backend_version}; TensorRT engines are tied to one version: rebuild it here with "
                                "'edgefuse build-engine'")
        built, here = sidecar.hardware, hardware
        if (built.get("name"), built.get("compute_capability")) != (here.get("name"), here.get("compute_capability")):
            raise EdgefuseError(f"{engine}: built for {built.get('name')} (sm {built.get('compute_capability')}), this "
                                f"GPU is {here.get('name')} (sm {here.get('compute_capability')}); rebuild it on this "
                                "GPU with 'edgefuse build-engine'")
        if device is not None and sidecar.device and sidecar.device != device:
            raise EdgefuseError(f"{engine}: built for {sidecar.device}, this device is {device} (the same GPU "
                                "name and sm, another module); rebuild it here with 'edgefuse build-engine'")
        core = sidecar.dla_core
        if core is not None and dla_cores is not None and core >= dla_cores:
            fix = "'edgefuse build-engine'" + (" --dla 0" if dla_cores else "")
            raise EdgefuseError(f"{engine}: built for DLA core {core}, this device has {dla_cores} DLA core(s); "
                                f"rebuild it here with {fix}")
        return
    built_major = ".".join(sidecar.backend_version.split(".")[:2])
    here_major = ".".join(backend_version.split(".")[:2])
    if built_major != here_major:
        raise EdgefuseError(f"{engine}: optimized by ONNX Runtime {sidecar.backend_version}, this machine has "
                            f"{backend_version}; offline-optimized graphs hold version-specific fused operators: "
                            "rebuild it here with 'edgefuse build-engine'")
    missing = sorted(set(sidecar.hardware.get("isa", [])) - set(hardware.get("isa", [])))
    if missing:
        raise EdgefuseError(f"{engine}: optimized for a CPU with {', '.join(missing)} ({sidecar.hardware.get('name')}), "
                            f"which this CPU ({hardware.get('name')}) lacks; rebuild it here with 'edgefuse build-engine'")


def check_engine_bytes(engine: str | Path, sidecar: Sidecar) -> None:
    """The engine file is the one the sidecar describes (a corrupt or replaced engine is refused)."""
    from edgefuse.utils import sha256_file

    if sha256_file(Path(engine)) != sidecar.engine_sha256:
        raise EdgefuseError(f"{engine}: its bytes do not match the sidecar's sha256: the engine is corrupt or was "
                            "replaced; rebuild it with 'edgefuse build-engine'")
