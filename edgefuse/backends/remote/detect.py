"""What a remote device is and has, from one shell script run over SSH: the L4T release, the device-tree model
and compatible strings, nvidia-smi's GPUs, the TensorRT version (dpkg, else the Python bindings), trtexec,
python3 and edgefuse. :func:`parse_detection` is pure (tested on recorded outputs); :func:`device_profile` maps
the result to an edgefuse device profile by the local detection's rules
(:func:`edgefuse.devices.detect.profile_from_readings`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgefuse.devices import DeviceProfile, JetPack, jetpack_for_l4t
from edgefuse.devices.detect import l4t_of, mem_total_kb_of, profile_from_readings

if TYPE_CHECKING:
    from edgefuse.backends.remote.connection import RemoteHost

MARK = "@@edgefuse:"
SECTIONS = ("l4t", "model", "compatible", "nvidia_smi", "dpkg_tensorrt", "python_tensorrt", "trtexec", "python3",
            "edgefuse", "python_modules", "tegrastats", "machine_id", "machine", "meminfo")
TRTEXEC_JETPACK = "/usr/src/tensorrt/bin/trtexec"  # where JetPack installs it, off the PATH
RUNNER_MODULES = ("numpy", "tensorrt", "cuda", "pycuda")  # what device_runner.py imports (cuda: cuda-python)
RUNNER_HINT = ("JetPack 4.6 / 5: sudo apt install python3-numpy python3-libnvinfer, then pip3 install pycuda (or "
               "cuda-python on JetPack 5); or install edgefuse there (Python 3.10+)")

# how each is imported by the runner (a bare namespace package, such as tensorrt-stubs leaves, does not count); in
# double quotes, as the probe sits in a single-quoted sh string
_PROBES = ('(("numpy", "import numpy"), ("tensorrt", "import tensorrt; tensorrt.__version__"), '
           '("cuda", "import cuda.bindings.runtime"), ("cuda", "from cuda import cudart"), '
           '("pycuda", "import pycuda.driver"))')

# POSIX sh (dash on Ubuntu/JetPack); every probe ends quietly when its tool or file is missing
SCRIPT = f"""\
s() {{ printf '\\n{MARK}%s\\n' "$1"; }}
s l4t; cat /etc/nv_tegra_release 2>/dev/null
s model; tr '\\000' '\\n' < /proc/device-tree/model 2>/dev/null
s compatible; tr '\\000' '\\n' < /proc/device-tree/compatible 2>/dev/null
s nvidia_smi; command -v nvidia-smi >/dev/null 2>&1 && \\
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
s dpkg_tensorrt; dpkg -l 2>/dev/null | grep -E '^ii +(libnvinfer[0-9]*|tensorrt|python3-libnvinfer) '
s python_tensorrt; python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null
s trtexec; command -v trtexec 2>/dev/null || {{ [ -x {TRTEXEC_JETPACK} ] && echo {TRTEXEC_JETPACK}; }}
s python3; python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null
s edgefuse; python3 -c 'import edgefuse; print(edgefuse.__version__)' 2>/dev/null
s python_modules; python3 -c '
for name, code in {_PROBES}:
    try:
        exec(code)
        print(name)
    except Exception:
        pass' 2>/dev/null
s tegrastats; command -v tegrastats 2>/dev/null
s machine_id; cat /etc/machine-id 2>/dev/null || cat /var/lib/dbus/machine-id 2>/dev/null
s machine; uname -m
s meminfo; grep MemTotal /proc/meminfo 2>/dev/null
s end
exit 0
"""


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_mib: int | None = None


@dataclass(frozen=True)
class RemoteDevice:
    """What the device reported; ``None`` or empty: absent there."""

    l4t: str | None = None  # "32.6.1"
    model: str | None = None  # /proc/device-tree/model
    compatible: tuple[str, ...] = ()  # /proc/device-tree/compatible, e.g. ("nvidia,p3449-0000-b00+p3448-0002", ...)
    gpus: tuple[Gpu, ...] = ()  # nvidia-smi (desktop GPUs; a Jetson's nvidia-smi, where present, lists nothing)
    tensorrt: str | None = None  # "8.0.1"
    tensorrt_source: str | None = None  # "dpkg" | "python"
    trtexec: str | None = None  # its path
    python3: str | None = None  # "3.6.9"
    edgefuse: str | None = None  # version importable by python3
    machine: str | None = None  # uname -m
    python_modules: tuple[str, ...] = ()  # which of RUNNER_MODULES python3 there finds
    tegrastats: str | None = None  # its path (Jetsons)
    machine_id: str | None = None  # /etc/machine-id: which device this is, whatever address reaches it
    mem_total_kb: int | None = None  # /proc/meminfo MemTotal (tells a Jetson's memory variants apart)

    @property
    def is_jetson(self) -> bool:
        return (self.l4t is not None or "jetson" in (self.model or "").lower()
                or any("tegra" in c.lower() for c in self.compatible))

    @property
    def has_gpu(self) -> bool:
        return self.is_jetson or bool(self.gpus)

    @property
    def part_numbers(self) -> tuple[str, ...]:
        """Module / carrier part numbers from ``compatible`` (``p3448-0002``, ``p3767-0005``)."""
        out: list[str] = []
        for c in self.compatible:
            for p in re.findall(r"p\d{4}-[0-9a-z]{4}", c.lower()):
                if p not in out:
                    out.append(p)
        return tuple(out)

    @property
    def runner_missing(self) -> list[str]:
        """What the device runner (device_runner.py) lacks on this device's python3; [] when it can run."""
        if not self.python3:
            return ["python3"]
        have = set(self.python_modules)
        missing = [m for m in ("numpy", "tensorrt") if m not in have]
        if not have & {"cuda", "pycuda"}:
            missing.append("cuda-python or pycuda")
        return missing

    def describe(self) -> str:
        what = (self.model or "Jetson") if self.is_jetson else (self.gpus[0].name if self.gpus else "no NVIDIA GPU")
        bits = [what, f"L4T {self.l4t}" if self.l4t else "", f"TensorRT {self.tensorrt}" if self.tensorrt else
                "no TensorRT", "trtexec" if self.trtexec else "no trtexec",
                f"python3 {self.python3}" if self.python3 else "no python3",
                f"edgefuse {self.edgefuse}" if self.edgefuse else "no edgefuse"]
        return ", ".join(b for b in bits if b)


def split_sections(text: str) -> dict[str, str]:
    """The script's output as section -> text (stripped)."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith(MARK):
            current = line[len(MARK):].strip()
            out.setdefault(current, [])
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


def parse_l4t(text: str) -> str | None:
    """The L4T version in the text of ``/etc/nv_tegra_release``, by the local detection's rule."""
    return l4t_of(text)


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader``: "NVIDIA GeForce RTX 3090, 24576 MiB"."""
    gpus = []
    for line in text.splitlines():
        name, _, mem = line.strip().rpartition(",")
        if not name.strip():
            continue
        m = re.match(r"\s*(\d+)\s*MiB", mem)
        gpus.append(Gpu(name.strip(), int(m.group(1)) if m else None))
    return tuple(gpus)


def parse_dpkg_tensorrt(text: str) -> str | None:
    """The TensorRT version from ``dpkg -l`` lines: "ii  libnvinfer8  8.0.1-1+cuda10.2  arm64  ..." is 8.0.1."""
    versions = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "ii" and re.match(r"(lib)?nvinfer\d*$|tensorrt$", parts[1].split(":")[0]):
            m = re.match(r"(?:\d+:)?(\d+(?:\.\d+)+)", parts[2])
            if m:
                versions.append(m.group(1))
    if not versions:
        return None
    return max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))


def _version(text: str) -> str | None:
    line = text.strip().splitlines()[-1].strip() if text.strip() else ""
    return line if re.fullmatch(r"\d+(\.\w+)*", line) else None


def _first_line(text: str) -> str | None:
    return text.strip().splitlines()[0].strip() if text.strip() else None


def _machine_id(text: str) -> str | None:
    line = text.strip().splitlines()[0].strip().lower() if text.strip() else ""
    return line if re.fullmatch(r"[0-9a-f]{32}", line) else None


def parse_detection(text: str) -> RemoteDevice:
    """The detection script's output as a :class:`RemoteDevice` (pure)."""
    s = split_sections(text)
    dpkg = parse_dpkg_tensorrt(s.get("dpkg_tensorrt", ""))
    python_trt = _version(s.get("python_tensorrt", ""))
    compatible = tuple(c.strip() for c in s.get("compatible", "").splitlines() if c.strip())
    trtexec = s.get("trtexec", "").splitlines()
    return RemoteDevice(
        l4t=parse_l4t(s["l4t"]) if s.get("l4t") else None,
        model=(s.get("model") or "").splitlines()[0].strip() if s.get("model") else None,
        compatible=compatible,
        gpus=parse_nvidia_smi(s.get("nvidia_smi", "")),
        tensorrt=dpkg or python_trt,
        tensorrt_source="dpkg" if dpkg else ("python" if python_trt else None),
        trtexec=trtexec[0].strip() if trtexec and trtexec[0].strip() else None,
        python3=_version(s.get("python3", "")),
        edgefuse=_version(s.get("edgefuse", "")),
        machine=s.get("machine") or None,
        python_modules=tuple(dict.fromkeys(m for m in s.get("python_modules", "").split() if m in RUNNER_MODULES)),
        tegrastats=_first_line(s.get("tegrastats", "")),
        machine_id=_machine_id(s.get("machine_id", "")),
        mem_total_kb=mem_total_kb_of(s.get("meminfo", "")),
    )


def device_profile(device: RemoteDevice, directory: Path | None = None) -> DeviceProfile:
    """The edgefuse device profile of ``device``: its readings through the same rules as local detection
    (:func:`edgefuse.devices.detect.profile_from_readings`)."""
    gpus = [f"{g.name}, {g.memory_mib} MiB" if g.memory_mib is not None else g.name for g in device.gpus]
    return profile_from_readings(device.model, "\n".join(device.compatible) or None, device.l4t, gpus, directory,
                                 mem_total_kb=device.mem_total_kb)


def jetpack(device: RemoteDevice, profile: DeviceProfile) -> JetPack | None:
    """The JetPack release of a Jetson, from its L4T version and profile."""
    return jetpack_for_l4t(profile, device.l4t) if device.l4t else None


async def detect_remote(host: RemoteHost) -> RemoteDevice:
    """Run the detection script on ``host`` (one command) and parse its answer."""
    result = await host.run("sh -s", input=SCRIPT, step="detect the device")
    return parse_detection(result.stdout)
