"""The Jetson's power mode (``nvpmodel -q``) and clock state (``jetson_clocks --show``): parsed, and read from the
tools when they are installed."""
from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)

# "NV Power Mode: MAXN" (`nvpmodel -q`, and the end of `jetson_clocks --show`) or, with --verbose,
# "NVPM VERB: Current mode: NV Power Mode: MAXN"; the mode id follows on the next line
_NV_POWER_MODE = re.compile(r"^\s*(?:NVPM VERB:\s*Current mode:\s*)?NV Power Mode:\s*(\S.*?)\s*$", re.MULTILINE)
_ACTIVE_MODE = re.compile(r"^\s*NVPM VERB:\s*ACTIVE=(.+?)\((\d+)\)\s*$", re.MULTILINE)  # old --verbose: ACTIVE=MAXN(0)
_CLOCK_LINE = re.compile(r"^\s*(cpu\d+|GPU|EMC)\b:?(.*)$", re.MULTILINE)
_KV = re.compile(r"(\w+)=(\S+)")


def parse_nvpmodel(text: str) -> tuple[str, int | None]:
    """``(mode name, mode id)`` from ``nvpmodel -q`` output ("NV Power Mode: MAXN" then the id on the next line) or
    ``nvpmodel -q --verbose`` output ("NVPM VERB: Current mode: NV Power Mode: MAXN", the id next, then ``NVPM VERB:``
    lines; older releases also print "NVPM VERB: ACTIVE=MAXN(0)"). ``NVPM ERROR`` / ``WARN`` lines around it (nvpmodel
    run without root) are ignored. The id is None when the output has none (some quotes of it, and
    ``jetson_clocks --show``)."""
    m = _NV_POWER_MODE.search(text)
    if m is None:
        raise EdgefuseError("no 'NV Power Mode:' line in the nvpmodel output; pass the output of `nvpmodel -q` "
                            "(or `nvpmodel -q --verbose`)")
    name = m.group(1)
    rest = text[m.end():].split("\n")
    following = next((ln.strip() for ln in rest if ln.strip()), "")
    if following.isdigit():
        return name, int(following)
    active = next((int(a.group(2)) for a in _ACTIVE_MODE.finditer(text) if a.group(1).strip() == name), None)
    return name, active


@dataclass(frozen=True)
class ClockState:
    """What ``jetson_clocks --show`` says of the CPU, GPU and EMC clocks; a field is None when not shown.

    A clock counts as pinned when it runs at its maximum, or when its minimum has been raised to the maximum (what
    ``jetson_clocks`` does; the CPU frequency counters on Orin can read a few MHz under the maximum even then).
    """

    cpu_pinned: bool | None
    gpu_pinned: bool | None
    emc_pinned: bool | None

    @property
    def pinned(self) -> bool:
        return all(v for v in (self.cpu_pinned, self.gpu_pinned, self.emc_pinned) if v is not None)


def parse_jetson_clocks(text: str) -> ClockState:
    """Parse ``jetson_clocks --show`` (JetPack 3 to 6 layout: ``cpuN: ... MinFreq= MaxFreq= CurrentFreq=``,
    ``GPU MinFreq= ...``, ``EMC MinFreq= ...``). Offline cores are ignored."""
    cpu: list[bool] = []
    gpu = emc = None
    for name, rest in _CLOCK_LINE.findall(text):
        kv = dict(_KV.findall(rest))
        if kv.get("Online") == "0" or "MaxFreq" not in kv or "CurrentFreq" not in kv:
            continue
        try:
            lo, hi, cur = int(kv.get("MinFreq", "-1")), int(kv["MaxFreq"]), int(kv["CurrentFreq"])
        except ValueError:
            continue
        pinned = cur >= hi or lo == hi
        if name.startswith("cpu"):
            cpu.append(pinned)
        elif name == "GPU":
            gpu = pinned
        else:
            emc = pinned
    if not cpu and gpu is None and emc is None:
        raise EdgefuseError("no cpu/GPU/EMC clock lines in the jetson_clocks output; pass the output of "
                            "`sudo jetson_clocks --show`")
    return ClockState(all(cpu) if cpu else None, gpu, emc)


def _run_tool(command: Sequence[str], what: str) -> str | None:
    cmd = list(command)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (FileNotFoundError, PermissionError):
        log.debug("%s not available (%s not found); not a Jetson?", what, cmd[0])
        return None
    except subprocess.TimeoutExpired:
        log.warning("%s did not answer in 30 s", " ".join(cmd))
        return None
    if out.returncode != 0:
        detail = (out.stderr or out.stdout or "").strip().splitlines()
        log.warning("%s failed (%s)%s", " ".join(cmd), detail[-1] if detail else f"exit {out.returncode}",
                    "; it may need sudo" if what == "jetson_clocks" else "")
        return None
    return out.stdout


def power_mode(command: Sequence[str] = ("nvpmodel", "-q")) -> tuple[str, int | None] | None:
    """The active nvpmodel power mode as ``(name, id)``, e.g. ``("MAXN", 0)``; None when nvpmodel is missing or
    fails."""
    text = _run_tool(command, "nvpmodel")
    if text is None:
        return None
    try:
        return parse_nvpmodel(text)
    except EdgefuseError as e:
        log.warning("%s", e)
        return None


def clocks_pinned(command: Sequence[str] = ("jetson_clocks", "--show")) -> bool | None:
    """Whether ``jetson_clocks`` has pinned the CPU, GPU and EMC clocks at their maximum; None when the tool is
    missing, fails (it needs root) or prints nothing recognisable."""
    text = _run_tool(command, "jetson_clocks")
    if text is None:
        return None
    try:
        return parse_jetson_clocks(text).pinned
    except EdgefuseError as e:
        log.warning("%s", e)
        return None

