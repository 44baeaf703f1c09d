"""Which device this is (``--device auto``, ``edgefuse devices --detect``): a Jetson from its device tree (module part
number, else model / compatible text), its L4T release and memory size; else the GPU nvidia-smi lists (its name and
memory); else the CPU.

:func:`decide` is pure: it takes the readings (this machine's, :func:`read_readings`, or a remote device's) and returns
a :class:`Detection` that says which rule chose the profile and why. The rules, in order, are documented in
docs/devices.md.
"""
from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgefuse.devices.profiles import KINDS, DeviceProfile, JetPack, jetpack_for_l4t, list_devices
from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)

# Board IDs (the "nnnn" of a part number pnnnn-ssss) of Jetson *modules*; the other part numbers in a device tree's
# compatible strings are carrier boards (p3768, p3737, p3509, p3449, p2771, p2972, p3542, p3971, p4071 ...).
# source: Jetson Linux Developer Guide, "Jetson EEPROM Layout" (R32.7.x: 3668 Xavier NX, 3448 Nano, 2888 AGX Xavier,
# 3310 TX2, 3489 TX2i / TX2 4GB, 3636 TX2 NX, 2180 TX1), https://docs.nvidia.com/jetson/archives/l4t-archived/l4t-3275/
# Tegra%20Linux%20Driver%20Package%20Development%20Guide/jetson_eeprom_layout.html, and the board table of Jetson
# Linux's nvautoflash.sh (R38/R39: 3701 AGX Orin, 3767 Orin NX / Orin Nano, 3834 Thor)
MODULE_BOARDS = {"3767": "Jetson Orin NX / Orin Nano", "3701": "Jetson AGX Orin", "3668": "Jetson Xavier NX",
                 "2888": "Jetson AGX Xavier", "3310": "Jetson TX2", "3489": "Jetson TX2i / TX2 4GB",
                 "3636": "Jetson TX2 NX", "3448": "Jetson Nano", "3834": "Jetson Thor", "2180": "Jetson TX1"}
_PART = re.compile(r"p(\d{4})-(\d{4})")
_MIB = re.compile(r"(\d+)\s*MiB")
_CC = re.compile(r"\d+\.\d+")


@dataclass(frozen=True)
class Readings:
    """What a machine says about itself; ``None`` or empty: absent or not read."""

    model: str | None = None  # /proc/device-tree/model
    compatible: tuple[str, ...] = ()  # /proc/device-tree/compatible, one string per entry
    l4t: str | None = None  # "36.4.3", from /etc/nv_tegra_release
    mem_total_kb: int | None = None  # /proc/meminfo MemTotal
    gpus: tuple[str, ...] = ()  # nvidia-smi lines: "name, memory.total[, compute_cap]"

    @property
    def is_jetson(self) -> bool:
        return (self.l4t is not None or any("tegra" in c.lower() for c in self.compatible)
                or "jetson" in (self.model or "").lower())

    @property
    def part_numbers(self) -> tuple[str, ...]:
        """Module and carrier part numbers in ``compatible`` and ``model``, in order (``p3767-0001``)."""
        out: list[str] = []
        for text in (*self.compatible, self.model or ""):
            for m in _PART.finditer(text.lower()):
                if m.group(0) not in out:
                    out.append(m.group(0))
        return tuple(out)

    @property
    def mem_total_gib(self) -> float | None:
        return None if self.mem_total_kb is None else self.mem_total_kb / 1024 ** 2

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "compatible": list(self.compatible), "l4t": self.l4t,
                "mem_total_kb": self.mem_total_kb, "nvidia_smi": list(self.gpus)}


@dataclass(frozen=True)
class Detection:
    """The profile detection chose, the rule that chose it and why (one line), and what was read."""

    profile: DeviceProfile
    rule: str  # "part number" | "device-tree text" | "nvidia-smi name" | "no NVIDIA GPU"
    reason: str
    readings: Readings
    jetpack: JetPack | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        jp = self.jetpack
        return {"profile": self.profile.name, "title": self.profile.title, "rule": self.rule, "reason": self.reason,
                "readings": self.readings.to_dict(), "notes": list(self.notes),
                "jetpack": None if jp is None else {"version": jp.version, "l4t": jp.l4t, "tensorrt": jp.tensorrt,
                                                    "cuda": jp.cuda}}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().replace(b"\x00", b"\n").decode("utf-8", "replace").strip()
    except OSError:
        return None


def detect_l4t(root: Path = Path("/")) -> str | None:
    """The L4T (Jetson Linux) version in ``/etc/nv_tegra_release`` under ``root`` (:func:`l4t_of`)."""
    return l4t_of(_read_text(Path(root) / "etc" / "nv_tegra_release") or "")


def l4t_of(text: str) -> str | None:
    """The L4T version in the text of ``/etc/nv_tegra_release``: "# R36 (release), REVISION: 4.3, ..." is 36.4.3."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2).strip('.')}" if m else None


def mem_total_kb_of(text: str) -> int | None:
    """MemTotal in kB from the text of ``/proc/meminfo`` ("MemTotal:  7620000 kB")."""
    m = re.search(r"MemTotal:\s*(\d+)\s*kB", text)
    return int(m.group(1)) if m else None


def compatible_of(text: str | None) -> tuple[str, ...]:
    """The entries of a device tree's compatible property, NUL- or newline-separated."""
    return tuple(c.strip() for c in re.split(r"[\x00\n]", text or "") if c.strip())


def read_readings(root: Path = Path("/"), nvidia_smi: str | Sequence[str] | None = "nvidia-smi") -> Readings:
    """This machine's readings under ``root``; nvidia-smi is asked only off a Jetson (``None``: not asked)."""
    root = Path(root)
    model = _read_text(root / "proc" / "device-tree" / "model")
    compatible = compatible_of(_read_text(root / "proc" / "device-tree" / "compatible"))
    readings = Readings(model=(model or "").splitlines()[0].strip() or None if model else None, compatible=compatible,
                        l4t=detect_l4t(root), mem_total_kb=mem_total_kb_of(_read_text(root / "proc" / "meminfo") or ""))
    if nvidia_smi is not None and not readings.is_jetson:
        readings = Readings(readings.model, readings.compatible, readings.l4t, readings.mem_total_kb,
                            tuple(_query_gpus(nvidia_smi)))
    return readings


def detect(root: Path = Path("/"), nvidia_smi: str | Sequence[str] | None = "nvidia-smi",
           directory: Path | None = None) -> Detection:
    """The detection of the machine this runs on (see :func:`decide`)."""
    return decide(read_readings(root, nvidia_smi), directory)


def detect_device(root: Path = Path("/"), nvidia_smi: str | Sequence[str] | None = "nvidia-smi",
                  directory: Path | None = None) -> DeviceProfile:
    """The profile of the machine this runs on (``--device auto``).

    A Jetson is recognised from ``/proc/device-tree/model`` and ``compatible`` (and ``/etc/nv_tegra_release``,
    ``/proc/meminfo``) under ``root``; otherwise the first GPU ``nvidia_smi`` lists (its name and memory against the
    profiles); otherwise ``cpu``. ``nvidia_smi=None`` skips the GPU query.
    """
    return detect(root, nvidia_smi, directory).profile


def _run_smi(cmd: list[str], query: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run([*cmd, f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30, check=False)
    except (FileNotFoundError, PermissionError):
        return None
    except subprocess.TimeoutExpired:
        log.warning("%s did not answer in 30 s; assuming no GPU", cmd[0])
        return None


def _query_gpus(nvidia_smi: str | Sequence[str]) -> list[str]:
    """nvidia-smi's ``name, memory.total, compute_cap`` lines (``name, memory.total`` from drivers that lack the
    compute_cap field); none when it is absent, fails or hangs."""
    cmd = [nvidia_smi] if isinstance(nvidia_smi, str) else list(nvidia_smi)
    out = _run_smi(cmd, "name,memory.total,compute_cap")
    if out is not None and out.returncode != 0 and "compute_cap" in (out.stdout + out.stderr):
        out = _run_smi(cmd, "name,memory.total")  # a driver older than the compute_cap field
    if out is None:
        return []
    if out.returncode != 0:
        detail = (out.stderr or out.stdout or "").strip().splitlines()
        log.warning("%s failed (%s); assuming no GPU", cmd[0], detail[0] if detail else f"exit {out.returncode}")
        return []
    return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]


def gpu_line(line: str) -> tuple[str, int | None, str]:
    """One nvidia-smi line as (name, memory MiB or None, compute capability or ""): the fields after the name are
    recognised by their form, so ``name``, ``name, memory``, ``name, cap`` and ``name, memory, cap`` all parse."""
    name, *rest = (x.strip() for x in line.split(","))
    mib = next((int(m.group(1)) for x in rest if (m := _MIB.fullmatch(x))), None)
    cc = next((x for x in rest if _CC.fullmatch(x)), "")
    return name, mib, cc


def profile_from_readings(model: str | None, compatible: str | None, l4t: str | None, gpus: Sequence[str],
                          directory: Path | None = None, mem_total_kb: int | None = None) -> DeviceProfile:
    """The device profile of what a machine reports: its device-tree ``model`` and ``compatible`` text, its L4T
    release, nvidia-smi's lines (``gpus``) and its memory. Pure: this machine's readings (:func:`detect_device`) and
    a remote device's (edgefuse.backends.remote) go through it alike (:func:`decide`)."""
    readings = Readings(model=model, compatible=compatible_of(compatible), l4t=l4t, mem_total_kb=mem_total_kb,
                        gpus=tuple(gpus))
    return decide(readings, directory).profile


def _nearest_memory(candidates: list[DeviceProfile], gib: float | None) -> list[DeviceProfile]:
    """The candidates whose memory_gb is nearest the memory the device reports (all of them when it reports none)."""
    if gib is None or len(candidates) < 2 or any(p.memory_gb is None for p in candidates):
        return candidates
    best = min(abs((p.memory_gb or 0) - gib) for p in candidates)
    return [p for p in candidates if abs((p.memory_gb or 0) - gib) == best]


def _pick(candidates: list[DeviceProfile], gib: float | None) -> tuple[DeviceProfile, str]:
    """One profile among candidates that the readings matched equally well: by memory, then the family's base
    profile (the shortest name: jetson_agx_xavier before jetson_agx_xavier_64gb); says how it chose."""
    near = _nearest_memory(candidates, gib)
    chosen = min(near, key=lambda p: (len(p.name), p.name))
    if len(candidates) == 1:
        return chosen, ""
    why = (f"; its memory ({gib:.1f} GiB) leaves {', '.join(sorted(p.name for p in near))} of "
           f"{', '.join(sorted(p.name for p in candidates))}") if gib is not None and len(near) < len(candidates) else ""
    if len(near) > 1:
        why += (f"; ambiguous between {', '.join(sorted(p.name for p in near))}: chose {chosen.name}, the family's "
                "base profile (pass --device to choose)")
    return chosen, why


def _jetson(readings: Readings, jetsons: list[DeviceProfile]) -> tuple[DeviceProfile, str, str]:
    gib = readings.mem_total_gib
    by_part = {part: p for p in jetsons for part in p.part_numbers}
    modules = [part for part in readings.part_numbers if part[1:5] in MODULE_BOARDS]
    known = [part for part in modules if part in by_part]
    if known:
        profile = by_part[known[0]]
        said = f"module part number {known[0]} in the device tree is {profile.title}"
        if gib is not None and profile.memory_gb and abs(profile.memory_gb - gib) > profile.memory_gb / 4:
            # the device tree can name another SKU than the module's: JetPack 7's AGX Orin device tree says p3701-0000
            # (32GB) on a p3701-0001 module (recorded, jetson_stats issue 864); then the memory picks the module's SKU
            family = [p for p in jetsons if any(q[1:5] == known[0][1:5] for q in p.part_numbers)]
            near = _nearest_memory(family, gib)
            if profile not in near:
                chosen, why = _pick(near, gib)
                return chosen, "part number", (f"{said}, but its memory ({gib:.1f} GiB) is not {profile.memory_gb} GB: "
                                               f"{chosen.title} by memory{why}")
        return profile, "part number", said
    if modules:
        part = modules[0]
        raise EdgefuseError(f"this Jetson's module {part} ({MODULE_BOARDS[part[1:5]]} family) has no device profile; "
                            f"pass --device with the nearest of {', '.join(sorted(p.name for p in jetsons))}")
    text = "\n".join(t for t in (readings.model, *readings.compatible) if t).lower()
    hits = {p.name: max((len(m) for m in p.match if m.lower() in text), default=0) for p in jetsons}
    if not any(hits.values()):
        names = ", ".join(sorted(p.name for p in jetsons))
        raise EdgefuseError(f"this Jetson ({readings.model or 'unknown model'}) has no device profile; pass --device "
                            f"with one of {names}")
    # memory first (it tells 32GB from 64GB where the text does not), then the longest matching text
    candidates = _nearest_memory([p for p in jetsons if hits[p.name]], gib)
    longest = max(hits[p.name] for p in candidates)
    candidates = [p for p in candidates if hits[p.name] == longest]
    profile, why = _pick(candidates, gib)
    said = next(m for m in profile.match if len(m) == longest and m.lower() in text)
    memory = f" and its memory ({gib:.1f} GiB)" if gib is not None else ""
    return profile, "device-tree text", f"no module part number; {said!r} in the model/compatible{memory}{why}"


def _gpu(readings: Readings, profiles: list[DeviceProfile]) -> tuple[DeviceProfile, str, str]:
    name, mib, cc = gpu_line(readings.gpus[0])
    low = name.lower()

    def length(p: DeviceProfile) -> int:  # the longest of its names that the reported name ends with, as a word
        return max((len(m) for m in p.match if low.endswith(m.lower())
                    and (len(low) == len(m) or not low[-len(m) - 1].isalnum())), default=0)

    hits = [p for p in profiles if length(p)]
    if not hits:
        same = [p.name for p in profiles if p.kind == "gpu" and cc and p.compute_capability == cc]
        hint = f" (same compute capability: {', '.join(same)})" if same else ""
        raise EdgefuseError(f"GPU {name!r}{f' (compute capability {cc})' if cc else ''} has no device profile{hint}; "
                            "pass --device with a name from 'edgefuse devices'")
    longest = max(length(p) for p in hits)
    gib = None if mib is None else mib / 1024
    profile, why = _pick([p for p in hits if length(p) == longest], gib)
    if cc and profile.compute_capability and cc != profile.compute_capability:
        log.warning("%s reports compute capability %s, profile %s says %s", name, cc, profile.name,
                    profile.compute_capability)
    said = next(m for m in profile.match if len(m) == longest and low.endswith(m.lower()))
    many = f"; {len(readings.gpus)} GPUs, the first one used" if len(readings.gpus) > 1 else ""
    return profile, "nvidia-smi name", f"the name {name!r} ends with {said!r}{why}{many}"


def decide(readings: Readings, directory: Path | None = None) -> Detection:
    """The profile of what a machine reports (pure). A Jetson: (1) the module part number in the device tree's
    compatible strings (``p3767-0001`` is Orin NX 8GB), an unknown module being an error; else (2) the profiles' model
    / compatible substrings, the memory (/proc/meminfo) choosing among equal matches. Off a Jetson, the first
    nvidia-smi GPU: (3) the profile whose names the reported name ends with, its memory choosing among equal ones.
    Else (4) cpu."""
    profiles = list_devices(directory)
    by_kind = {k: [p for p in profiles if p.kind == k] for k in KINDS}
    notes: list[str] = []
    if readings.is_jetson:
        profile, rule, reason = _jetson(readings, by_kind["jetson"])
        if any(c.lower().endswith("-super") for c in readings.compatible):
            notes.append("the device tree is the Super one (JetPack 6.2's MAXN SUPER mode and its clocks)")
        jp = jetpack_for_l4t(profile, readings.l4t) if readings.l4t else None
        if readings.l4t and jp is None:
            notes.append(f"L4T {readings.l4t} is not a JetPack release listed for {profile.name}")
        log.info("detected %s by %s (L4T %s%s)", profile.name, rule, readings.l4t or "unknown",
                 f", JetPack {jp.version}, TensorRT {jp.tensorrt}" if jp else "")
        return Detection(profile, rule, reason, readings, jp, tuple(notes))
    if readings.gpus:
        profile, rule, reason = _gpu(readings, by_kind["gpu"] + by_kind["jetson"])
        log.info("detected %s (%s)", profile.name, reason)
        return Detection(profile, rule, reason, readings, None, tuple(notes))
    cpu = next((p for p in by_kind["cpu"]), None)
    if cpu is None:
        raise EdgefuseError("no GPU found and no cpu device profile installed; reinstall edgefuse")
    log.info("no NVIDIA GPU found; using %s", cpu.name)
    return Detection(cpu, "no NVIDIA GPU", "no Jetson device tree and no GPU from nvidia-smi", readings)
