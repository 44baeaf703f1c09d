"""Device profiles: what each target (a Jetson, a desktop/datacenter GPU, a CPU) runs and how fast.

One TOML file per device in the repository's ``devices/`` folder (installed as ``edgefuse.data.devices``). Figures are
NVIDIA's published ones, each with its source in the file; a figure NVIDIA does not publish is left out (``None``).
"""
from __future__ import annotations

import difflib
import logging
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from edgefuse.data import data_dir
from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)

KINDS = ("jetson", "gpu", "cpu")
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8", "fp4")
AUTO_ORDER = ("int8", "fp16", "fp32")  # what --precision auto picks, best first
# what to suggest instead of a precision the device lacks, nearest first
INSTEAD = {"fp16": ("fp32",), "bf16": ("fp16", "fp32"), "int8": ("fp16", "fp32"), "fp8": ("int8", "fp16", "fp32"),
           "fp4": ("fp8", "int8", "fp16", "fp32")}
# what a precision needs from the hardware, for the error when a device lacks it
NEEDS = {
    "fp16": "fast fp16 arithmetic",
    "bf16": "bf16 tensor cores (Ampere, sm_80, or later)",
    "int8": "int8 tensor cores or DP4A (sm_61 or later; VNNI or Arm dot-product on CPUs)",
    "fp8": "fp8 tensor cores (Ada sm_89, Hopper sm_90 or Blackwell)",
    "fp4": "fp4 tensor cores (Blackwell, sm_100 or later)",
}

_FIGURES = ("memory_gb", "memory_bandwidth_gbs", "fp16_tflops", "int8_tops", "int8_tops_sparse", "fp8_tflops",
            "fp4_tflops_sparse")
_REQUIRED = {
    "jetson": ("name", "title", "kind", "precisions", "architecture", "compute_capability", "match", "dla_cores",
               "memory_gb", "memory_bandwidth_gbs", "jetpack", "power_modes"),
    "gpu": ("name", "title", "kind", "precisions", "architecture", "compute_capability", "match", "dla_cores",
            "memory_gb", "memory_bandwidth_gbs", "min_tensorrt", "min_cuda"),
    "cpu": ("name", "title", "kind", "precisions"),
}
_OPTIONAL = {"slow_precisions", "notes", "extra_tensorrt", "jetpack", "power_modes", "min_tensorrt", "min_cuda",
             "architecture", "compute_capability", "match", "dla_cores", *_FIGURES}
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
    match: tuple[str, ...] = ()  # substrings of the device-tree model/compatible or nvidia-smi name (detect_device)
    dla_cores: int = 0
    memory_gb: float | None = None
    memory_bandwidth_gbs: float | None = None
    fp16_tflops: float | None = None  # peak dense
    int8_tops: float | None = None  # peak dense
    int8_tops_sparse: float | None = None
    fp8_tflops: float | None = None  # peak dense
    fp4_tflops_sparse: float | None = None
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
    figures = {}
    for key in _FIGURES:
        if key in raw:
            figures[key] = float(_check(path, key, raw[key], (int, float), "a number"))
            if figures[key] <= 0:
                raise _fail(path, f"{key} must be positive, not {raw[key]!r}")

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
        _table(path, key, entry, ("name",), ("watts", "note"))
        watts, note = entry.get("watts"), entry.get("note")
        modes.append(PowerMode(
            _check(path, f"{key}.name", entry["name"], str, "a string"),
            None if watts is None else float(_check(path, f"{key}.watts", watts, (int, float), "a number")),
            None if note is None else _check(path, f"{key}.note", note, str, "a string"),
        ))

    dla = _check(path, "dla_cores", raw.get("dla_cores", 0), int, "a whole number")
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
    """A profile by name (case insensitive; '-' and spaces count as '_')."""
    key = re.sub(r"[-\s]+", "_", name.strip().lower())
    folder = Path(directory) if directory is not None else devices_dir()
    path = folder / f"{key}.toml"
    if key and "/" not in key and path.is_file():
        return load_profile(path)
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


def check_precision(profile: DeviceProfile, precision: str) -> str:
    """The precision to build with on ``profile`` for the requested one (``auto``: the best fast one)."""
    p = precision.strip().lower()
    if p == "auto":
        chosen = next(c for c in AUTO_ORDER if c in profile.precisions)
        log.info("--precision auto: %s on %s", chosen, profile.name)
        return chosen
    if p not in PRECISIONS:
        raise EdgefuseError(f"--precision must be auto or one of {', '.join(PRECISIONS)}, not {precision!r}")
    if p in profile.precisions:
        return p
    slow = profile.slow(p)
    if slow is not None:
        if slow.fallback:
            log.warning("%s is not fast on %s (%s); using %s", p, profile.name, slow.reason, slow.instead)
            return slow.instead
        raise EdgefuseError(f"{p} is not fast on {profile.name}: {slow.reason}; use --precision {slow.instead}")
    best = next(c for c in INSTEAD[p] if c in profile.precisions)
    sm = profile.compute_capability and f"sm_{profile.compute_capability.replace('.', '')}"
    hw = ", ".join(x for x in (profile.architecture, sm) if x)
    raise EdgefuseError(f"{profile.name}{f' ({hw})' if hw else ''} does not support {p}, which needs {NEEDS[p]}; "
                        f"it has {', '.join(profile.precisions)}: use --precision {best}")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().replace(b"\x00", b"\n").decode("utf-8", "replace").strip()
    except OSError:
        return None


def detect_l4t(root: Path = Path("/")) -> str | None:
    """The L4T (Jetson Linux) version in ``/etc/nv_tegra_release``: "# R36 (release), REVISION: 4.3, ..." is 36.4.3."""
    text = _read_text(Path(root) / "etc" / "nv_tegra_release")
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    return f"{m.group(1)}.{m.group(2).strip('.')}" if m else None


def _best_match(profiles: list[DeviceProfile], text: str) -> DeviceProfile | None:
    """The profile with the longest ``match`` substring found in ``text`` (case-insensitive)."""
    low = text.lower()
    hits = [(len(m), p) for p in profiles for m in p.match if m.lower() in low]
    return max(hits, key=lambda h: h[0])[1] if hits else None


def detect_device(root: Path = Path("/"), nvidia_smi: str | Sequence[str] | None = "nvidia-smi",
                  directory: Path | None = None) -> DeviceProfile:
    """The profile of the machine this runs on (``--device auto``).

    A Jetson is recognised from ``/proc/device-tree/model`` and ``compatible`` (and ``/etc/nv_tegra_release``) under
    ``root``; otherwise the first GPU ``nvidia_smi`` lists (its name against the profiles' ``match``); otherwise
    ``cpu``. ``nvidia_smi=None`` skips the GPU query.
    """
    root = Path(root)
    profiles = list_devices(directory)
    by_kind = {k: [p for p in profiles if p.kind == k] for k in KINDS}

    model = _read_text(root / "proc" / "device-tree" / "model")
    compatible = _read_text(root / "proc" / "device-tree" / "compatible")
    l4t = detect_l4t(root)
    tegra = l4t is not None or "tegra" in (compatible or "").lower() or "jetson" in (model or "").lower()
    if tegra:
        text = "\n".join(t for t in (model, compatible) if t)
        found = _best_match(by_kind["jetson"], text)
        if found is None:
            names = ", ".join(p.name for p in by_kind["jetson"])
            raise EdgefuseError(f"this Jetson ({(model or 'unknown model').splitlines()[0]}) has no device profile; "
                                f"pass --device with one of {names}")
        jp = jetpack_for_l4t(found, l4t) if l4t else None
        log.info("detected %s (L4T %s%s)", found.name, l4t or "unknown",
                 f", JetPack {jp.version}, TensorRT {jp.tensorrt}" if jp else "")
        return found

    if nvidia_smi is not None:
        cmd = [nvidia_smi] if isinstance(nvidia_smi, str) else list(nvidia_smi)
        try:
            out = subprocess.run([*cmd, "--query-gpu=name,compute_cap", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30, check=False)
        except (FileNotFoundError, PermissionError):
            out = None
        except subprocess.TimeoutExpired:
            log.warning("%s did not answer in 30 s; assuming no GPU", cmd[0])
            out = None
        if out is not None and out.returncode != 0:
            detail = (out.stderr or out.stdout or "").strip().splitlines()
            log.warning("%s failed (%s); assuming no GPU", cmd[0], detail[0] if detail else f"exit {out.returncode}")
        elif out is not None:
            lines = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
            if lines:
                name, _, cc = (x.strip() for x in lines[0].rpartition(","))
                if not name:  # no compute_cap column (old driver)
                    name, cc = cc, ""
                if len(lines) > 1:
                    log.info("%d GPUs; using the first, %s", len(lines), name)
                found = _best_match(by_kind["gpu"] + by_kind["jetson"], name)
                if found is None:
                    same = [p.name for p in by_kind["gpu"] if cc and p.compute_capability == cc]
                    hint = f" (same compute capability: {', '.join(same)})" if same else ""
                    raise EdgefuseError(f"GPU {name!r}{f' (compute capability {cc})' if cc else ''} has no device "
                                        f"profile{hint}; pass --device with a name from 'edgefuse devices'")
                if cc and found.compute_capability and cc != found.compute_capability:
                    log.warning("%s reports compute capability %s, profile %s says %s", name, cc, found.name,
                                found.compute_capability)
                log.info("detected %s (%s)", found.name, name)
                return found
    found = next((p for p in by_kind["cpu"]), None)
    if found is None:
        raise EdgefuseError("no GPU found and no cpu device profile installed; reinstall edgefuse")
    log.info("no NVIDIA GPU found; using %s", found.name)
    return found
