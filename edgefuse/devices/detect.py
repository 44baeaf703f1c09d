"""Which device this is (``--device auto``): a Jetson from its device tree and L4T release, else the GPU
nvidia-smi lists, else the CPU."""
from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from edgefuse.devices.profiles import KINDS, DeviceProfile, jetpack_for_l4t, list_devices
from edgefuse.errors import EdgefuseError

log = logging.getLogger(__name__)


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
    model = _read_text(root / "proc" / "device-tree" / "model")
    compatible = _read_text(root / "proc" / "device-tree" / "compatible")
    l4t = detect_l4t(root)
    tegra = l4t is not None or "tegra" in (compatible or "").lower() or "jetson" in (model or "").lower()
    gpus = _query_gpus(nvidia_smi) if nvidia_smi is not None and not tegra else []
    return profile_from_readings(model, compatible, l4t, gpus, directory)


def _query_gpus(nvidia_smi: str | Sequence[str]) -> list[str]:
    """nvidia-smi's ``name, compute_cap`` lines (none when it is absent, fails or hangs)."""
    cmd = [nvidia_smi] if isinstance(nvidia_smi, str) else list(nvidia_smi)
    try:
        out = subprocess.run([*cmd, "--query-gpu=name,compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30, check=False)
    except (FileNotFoundError, PermissionError):
        return []
    except subprocess.TimeoutExpired:
        log.warning("%s did not answer in 30 s; assuming no GPU", cmd[0])
        return []
    if out.returncode != 0:
        detail = (out.stderr or out.stdout or "").strip().splitlines()
        log.warning("%s failed (%s); assuming no GPU", cmd[0], detail[0] if detail else f"exit {out.returncode}")
        return []
    return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]


def profile_from_readings(model: str | None, compatible: str | None, l4t: str | None, gpus: Sequence[str],
                          directory: Path | None = None) -> DeviceProfile:
    """The device profile of what a machine reports: its device-tree ``model`` and ``compatible`` text, its L4T
    release, and nvidia-smi's ``name, compute_cap`` lines (``gpus``). Pure: this machine's readings
    (:func:`detect_device`) and a remote device's (edgefuse.backends.remote) go through it alike."""
    profiles = list_devices(directory)
    by_kind = {k: [p for p in profiles if p.kind == k] for k in KINDS}
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
    if gpus:
        name, _, cc = (x.strip() for x in gpus[0].rpartition(","))
        if not name:  # no compute_cap column (old driver)
            name, cc = cc, ""
        if len(gpus) > 1:
            log.info("%d GPUs; using the first, %s", len(gpus), name)
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
