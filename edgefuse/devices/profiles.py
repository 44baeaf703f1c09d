"""Device profiles: what each target (a Jetson, a desktop/datacenter GPU, a CPU) runs and how fast.

One TOML file per device in the repository's ``devices/`` folder (installed as ``edgefuse.data.devices``). Figures are
NVIDIA's published ones, each with its source in the file; a figure NVIDIA does not publish is left out (``None``).
"""
from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefuse.data import data_dir
from edgefuse.errors import EdgefuseError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6's): the same parser from PyPI
    import tomli as tomllib

KINDS = ("jetson", "gpu", "cpu")
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8", "fp4")

# The per-unit peaks the latency estimate reads (dense, no structured sparsity): gpu_fp32_tflops (CUDA cores),
# gpu_fp16_tflops (tensor cores where the GPU has them, FP32 accumulation; CUDA cores' FP16 where it has none),
# gpu_int8_tops (the GPU alone), dla_int8_tops (all DLA cores together). fp16_tflops, int8_tops (a Jetson's
# module total, GPU + DLA, as NVIDIA publishes it), int8_tops_sparse, fp8_tflops and fp4_tflops_sparse are the
# headline figures as published, kept for the estimator that reads them until it moves to the gpu_/dla_ figures.
UNIT_FIGURES = ("gpu_fp32_tflops", "gpu_fp16_tflops", "gpu_int8_tops", "dla_int8_tops")
_FIGURES = ("memory_gb", "memory_bandwidth_gbs", "fp16_tflops", "int8_tops", "int8_tops_sparse", "fp8_tflops",
            "fp4_tflops_sparse", *UNIT_FIGURES)
_MODE_FIGURES = ("gpu_fp32_tflops", "gpu_fp16_tflops", "gpu_int8_tops", "dla_int8_tops", "memory_bandwidth_gbs")
_PART = re.compile(r"p\d{4}-\d{4}")
_REQUIRED = {
    "jetson": ("name", "title", "kind", "precisions", "architecture", "compute_capability", "match", "dla_cores",
               "memory_gb", "memory_bandwidth_gbs", "jetpack", "power_modes"),
    "gpu": ("name", "title", "kind", "precisions", "architecture", "compute_capability", "match", "dla_cores",
            "memory_gb", "memory_bandwidth_gbs", "min_tensorrt", "min_cuda"),
    "cpu": ("name", "title", "kind", "precisions"),
}
_OPTIONAL = {"slow_precisions", "notes", "extra_tensorrt", "jetpack", "power_modes", "min_tensorrt", "min_cuda",
             "architecture", "compute_capability", "match", "dla_cores", "part_numbers", "aliases", *_FIGURES}
_VERSION = re.compile(r"\d+(\.\d+)*")


@dataclass(frozen=True)
class SlowPrecision:
    """A precision the device can run but not fast: an error naming ``instead``, or with ``fallback`` a warning
    and ``instead`` is used."""

    precision: str
    reason: str
    instead: str
    fallback: bool = False


@dataclass(frozen=True)
class JetPack:
    version: str
    l4t: str
    tensorrt: str
    cuda: str


@dataclass(frozen=True)
class PowerMode:
    name: str
    watts: float | None = None  # None: no power budget (MAXN on some modules)
    note: str | None = None
    # this mode's peaks where they differ from the profile's top-level ones (e.g. MAXN SUPER); None: not given
    gpu_fp32_tflops: float | None = None
    gpu_fp16_tflops: float | None = None
    gpu_int8_tops: float | None = None
    dla_int8_tops: float | None = None
    memory_bandwidth_gbs: float | None = None


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    title: str
    kind: str  # jetson | gpu | cpu
    precisions: tuple[str, ...]  # fast precisions, as TensorRT (GPU) or ONNX Runtime (CPU) runs them
    path: Path
    architecture: str | None = None
    compute_capability: str | None = None  # "8.7"; None for cpu
    slow_precisions: tuple[SlowPrecision, ...] = ()
    match: tuple[str, ...] = ()  # Jetson: substrings of the device-tree model/compatible; GPU: nvidia-smi names
    part_numbers: tuple[str, ...] = ()  # Jetson module part numbers ("p3767-0001") that identify this profile
    aliases: tuple[str, ...] = ()  # other names get_device accepts for this profile
    dla_cores: int = 0
    memory_gb: float | None = None
    memory_bandwidth_gbs: float | None = None
    fp16_tflops: float | None = None  # peak dense
    int8_tops: float | None = None  # peak dense
    int8_tops_sparse: float | None = None
    fp8_tflops: float | None = None  # peak dense
    fp4_tflops_sparse: float | None = None
    gpu_fp32_tflops: float | None = None  # dense, CUDA cores
    gpu_fp16_tflops: float | None = None  # dense, tensor cores with FP32 accumulation (CUDA cores where none)
    gpu_int8_tops: float | None = None  # dense, the GPU alone (never a Jetson's GPU + DLA total)
    dla_int8_tops: float | None = None  # dense, all DLA cores together; None where there is no DLA
    jetpack: tuple[JetPack, ...] = ()
    power_modes: tuple[PowerMode, ...] = ()
    min_tensorrt: str | None = None  # desktop GPUs: first TensorRT release with this architecture
    min_cuda: str | None = None
    extra_tensorrt: tuple[str, ...] = ()  # TensorRT releases installable beyond what JetPack ships
    notes: tuple[str, ...] = ()

    def slow(self, precision: str) -> SlowPrecision | None:
        return next((s for s in self.slow_precisions if s.precision == precision), None)


def _fail(path: Path, what: str) -> EdgefuseError:
    return EdgefuseError(f"{path}: {what}; fix the device profile")


def _check(path: Path, key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _fail(path, f"{key} must be {what}, not {value!r}")
    if not isinstance(value, kind):
        raise _fail(path, f"{key} must be {what}, not {value!r}")
    return value


def _strings(path: Path, key: str, value: Any) -> tuple[str, ...]:
    _check(path, key, value, list, "a list of strings")
    for v in value:
        _check(path, key, v, str, "a list of strings")
    return tuple(value)


def _table(path: Path, key: str, value: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> dict:
    _check(path, key, value, dict, "a table")
    for k in required:
        if k not in value:
            raise _fail(path, f"{key} is missing required key '{k}'")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise _fail(path, f"{key} has unknown key(s) {', '.join(unknown)}")
    return value


def _version(path: Path, key: str, value: Any) -> str:
    _check(path, key, value, str, 'a version string such as "10.3"')
    if not _VERSION.fullmatch(value):
        raise _fail(path, f'{key} must be a version string such as "10.3", not {value!r}')
    return value


def _positive(path: Path, key: str, value: Any) -> float:
    number = float(_check(path, key, value, (int, float), "a number"))
    if number <= 0:
        raise _fail(path, f"{key} must be positive, not {value!r}")
    return number


def _check_unit_figures(path: Path, figures: dict[str, float], precisions: tuple[str, ...], dla: int) -> None:
    """A GPU or Jetson profile carries the dense per-unit peaks the estimate reads: fp32 and fp16 always, int8 where
    int8 is fast, the DLAs' int8 exactly when it has DLA cores."""
    for key in ("gpu_fp32_tflops", "gpu_fp16_tflops"):
        if key not in figures:
            raise _fail(path, f"missing required key '{key}'")
    if "int8" in precisions and "gpu_int8_tops" not in figures:
        raise _fail(path, "missing required key 'gpu_int8_tops' (int8 is among its precisions)")
    if dla and "dla_int8_tops" not in figures:
        raise _fail(path, f"missing required key 'dla_int8_tops' (it has {dla} DLA core(s))")
    if not dla and "dla_int8_tops" in figures:
        raise _fail(path, "dla_int8_tops is given but dla_cores is 0")


def load_profile(path: Path) -> DeviceProfile:
    """Read and validate one device profile TOML."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise EdgefuseError(f"{path}: cannot read device profile: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise _fail(path, f"not valid TOML ({e})") from e

    kind = raw.get("kind")
    if kind is None:
        raise _fail(path, "missing required key 'kind'")
    if kind not in KINDS:
        raise _fail(path, f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    for key in _REQUIRED[kind]:
        if key not in raw:
            raise _fail(path, f"missing required key '{key}'")
    unknown = sorted(set(raw) - set(_REQUIRED[kind]) - _OPTIONAL)
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)}")

    name = _check(path, "name", raw["name"], str, "a string")
    if name != path.stem:
        raise _fail(path, f"name {name!r} must equal the file name {path.stem!r}")
    precisions = _strings(path, "precisions", raw["precisions"])
    if not precisions or "fp32" not in precisions:
        raise _fail(path, "precisions must include fp32")
    for p in precisions:
        if p not in PRECISIONS:
            raise _fail(path, f"precisions: {p!r} is not one of {', '.join(PRECISIONS)}")

    slow = []
    for p, entry in _check(path, "slow_precisions", raw.get("slow_precisions", {}), dict, "a table").items():
        key = f"slow_precisions.{p}"
        _table(path, key, entry, ("reason", "instead"), ("fallback",))
        if p not in PRECISIONS or p in precisions:
            raise _fail(path, f"{key}: {p!r} must be a known precision not already in precisions")
        if entry["instead"] not in precisions:
            raise _fail(path, f"{key}.instead {entry['instead']!r} must be one of the device's precisions")
        slow.append(SlowPrecision(p, _check(path, f"{key}.reason", entry["reason"], str, "a string"), entry["instead"],
                                  _check(path, f"{key}.fallback", entry.get("fallback", False), bool, "true or false")))

    cc = raw.get("compute_capability")
    if cc is not None:
        _check(path, "compute_capability", cc, str, 'a string such as "8.7"')
        if not re.fullmatch(r"\d+\.\d+", cc):
            raise _fail(path, f'compute_capability must look like "8.7", not {cc!r}')
    figures = {key: _positive(path, key, raw[key]) for key in _FIGURES if key in raw}

    jetpack = []
    for i, entry in enumerate(_check(path, "jetpack", raw.get("jetpack", []), list, "a list of [[jetpack]] tables")):
        key = f"jetpack[{i}]"
        _table(path, key, entry, ("version", "l4t", "tensorrt", "cuda"), ())
        fields = ("version", "l4t", "tensorrt", "cuda")
        jetpack.append(JetPack(*(_version(path, f"{key}.{k}", entry[k]) for k in fields)))
    if kind == "jetson" and not jetpack:
        raise _fail(path, "a jetson profile needs at least one [[jetpack]] table")

    modes = []
    for i, entry in enumerate(_check(path, "power_modes", raw.get("power_modes", []), list, "a list of tables")):
        key = f"power_modes[{i}]"
        _table(path, key, entry, ("name",), ("watts", "note", *_MODE_FIGURES))
        watts, note = entry.get("watts"), entry.get("note")
        mode_figures = {k: _positive(path, f"{key}.{k}", entry[k]) for k in _MODE_FIGURES if k in entry}
        modes.append(PowerMode(
            _check(path, f"{key}.name", entry["name"], str, "a string"),
            None if watts is None else float(_check(path, f"{key}.watts", watts, (int, float), "a number")),
            None if note is None else _check(path, f"{key}.note", note, str, "a string"),
            **mode_figures,
        ))

    dla = _check(path, "dla_cores", raw.get("dla_cores", 0), int, "a whole number")
    if kind != "cpu":
        _check_unit_figures(path, figures, precisions, dla)
    parts = _strings(path, "part_numbers", raw.get("part_numbers", []))
    for part in parts:
        if not _PART.fullmatch(part):
            raise _fail(path, f'part_numbers: {part!r} must look like "p3767-0001"')
    aliases = _strings(path, "aliases", raw.get("aliases", []))
    for alias in aliases:
        if not re.fullmatch(r"[a-z0-9_]+", alias):
            raise _fail(path, f"aliases: {alias!r} must be a lowercase name such as jetson_orin_nano_8gb")
    return DeviceProfile(
        name=name,
        title=_check(path, "title", raw["title"], str, "a string"),
        kind=kind,
        precisions=precisions,
        path=path,
        architecture=None if "architecture" not in raw else _check(path, "architecture", raw["architecture"], str,
                                                                   "a string"),
        compute_capability=cc,
        slow_precisions=tuple(slow),
        match=_strings(path, "match", raw.get("match", [])),
        part_numbers=parts,
        aliases=aliases,
        dla_cores=dla,
        jetpack=tuple(jetpack),
        power_modes=tuple(modes),
        min_tensorrt=None if "min_tensorrt" not in raw else _version(path, "min_tensorrt", raw["min_tensorrt"]),
        min_cuda=None if "min_cuda" not in raw else _version(path, "min_cuda", raw["min_cuda"]),
        extra_tensorrt=tuple(_version(path, "extra_tensorrt", v)
                             for v in _strings(path, "extra_tensorrt", raw.get("extra_tensorrt", []))),
        notes=_strings(path, "notes", raw.get("notes", [])),
        **figures,
    )


def devices_dir() -> Path:
    return data_dir("devices")


def list_devices(directory: Path | None = None) -> list[DeviceProfile]:
    """Every device profile, sorted by name."""
    folder = Path(directory) if directory is not None else devices_dir()
    return [load_profile(p) for p in sorted(folder.glob("*.toml"))]


def get_device(name: str, directory: Path | None = None) -> DeviceProfile:
    """A profile by name or one of its ``aliases`` (case insensitive; '-' and spaces count as '_')."""
    key = re.sub(r"[-\s]+", "_", name.strip().lower())
    folder = Path(directory) if directory is not None else devices_dir()
    path = folder / f"{key}.toml"
    if key and "/" not in key and path.is_file():
        return load_profile(path)
    if key and "/" not in key:
        for profile in list_devices(folder):
            if key in profile.aliases:
                return profile
    names = sorted(p.stem for p in folder.glob("*.toml"))
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise EdgefuseError(f"unknown device {name!r}; {hint}known devices: {', '.join(names)}; run 'edgefuse devices'")


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def tensorrt_versions(profile: DeviceProfile) -> list[str]:
    """TensorRT versions the device runs: for a Jetson the versions its JetPack releases ship (oldest first) and then
    ``extra_tensorrt``; for a desktop GPU the lower bound ``"X.Y+"`` (any later release supports it); none for a CPU."""
    if profile.kind == "jetson":
        shipped = sorted({j.tensorrt for j in profile.jetpack}, key=_version_key)
        return shipped + [v for v in profile.extra_tensorrt if v not in shipped]
    if profile.kind == "gpu" and profile.min_tensorrt:
        return [f"{profile.min_tensorrt}+"]
    return []


def jetpack_for_l4t(profile: DeviceProfile, l4t: str) -> JetPack | None:
    """The JetPack release an L4T version (from /etc/nv_tegra_release) belongs to: the newest listed release of the
    same L4T major whose L4T version is not above it."""
    try:
        want = _version_key(l4t)
    except ValueError:
        return None
    same = [j for j in profile.jetpack if _version_key(j.l4t)[0] == want[0] and _version_key(j.l4t) <= want]
    return max(same, key=lambda j: _version_key(j.l4t), default=None)

