"""Tables of the commands run on remote devices (``--host``): one row per host, each failed host's one line."""
from __future__ import annotations

from typing import TYPE_CHECKING

from edgefuse.cli.render import format_table

if TYPE_CHECKING:
    from edgefuse.backends.remote.build import FleetBuild, RemoteEngine
    from edgefuse.validate.remote import FleetValidateReport


def _how(e: RemoteEngine) -> str:
    """How the engine came to be on the device: reused, built (by which path, how long), or copied."""
    if e.reused:
        return "reused"
    return "copied" if e.builder == "copied" else f"built by {e.builder} in {e.seconds:.1f} s"


def render_fleet_build(fleet: FleetBuild) -> str:
    """``edgefuse build-engine --host ...``."""
    rows = [{"host": h.host, "backend": f"{e.sidecar.backend} {e.sidecar.backend_version}",
             "precision": e.sidecar.precision, "how": _how(e),
             "engine": e.path} for h in fleet.hosts if (e := h.engine) is not None]
    lines = [format_table(rows, ["host", "backend", "precision", "how", "engine"],
                          ["host", "backend", "precision", "built", "engine on the device"])] if rows else []
    for h in fleet.hosts:
        if h.engine is not None:
            lines.append(f"{h.host}: {h.device or 'device unknown'}")
    lines += [f"FAILED {h.failure.error}" for h in fleet.hosts if h.failure is not None]
    if fleet.fetched:
        lines.append(f"fetched {fleet.fetched} (and its sidecar)")
    done = sum(h.engine is not None for h in fleet.hosts)
    n = len(fleet.hosts)
    lines.append(f"{done} of {n} host{'s' if n != 1 else ''} ha{'ve' if n != 1 else 's'} the engine"
                 + (f"; bench or validate {fleet.graph} with the same --host reuses it" if done else ""))
    return "\n".join(lines)


def render_fleet_validate(fleet: FleetValidateReport) -> str:
    """``edgefuse validate --host ...``: the comparison (as a local validate), then who ran how many clips."""
    from edgefuse.cli.render import render_validate

    lines = [render_validate(fleet.report)] if fleet.report is not None else ["no clip came back from any host"]
    rows = [{"host": h.host, "clips": h.clips, "shards": h.shards, "runner": h.runner or "-",
             "engine": f"{h.engine.sidecar.backend} {h.engine.sidecar.precision}, {_how(h.engine)}" if h.engine else "-",
             "status": "FAILED" if h.failure else "ok"} for h in fleet.hosts]
    lines += ["", format_table(rows, ["host", "clips", "shards", "runner", "engine", "status"],
                               ["host", "clips", "shards", "runner", "engine", "status"])]
    lines += [f"FAILED {h.failure.error}" for h in fleet.hosts if h.failure is not None]
    failed = len(fleet.failed_hosts)
    if fleet.partial:
        lines.append(f"PARTIAL: {len(fleet.missing)} of {fleet.clips} clips never ran (no host left to run them); "
                     "the figures above cover the others")
    elif failed:
        lines.append("every clip ran once: the clips a failed host had not reported ran on the others")
    if fleet.report is not None and not fleet.passed:
        why = "; ".join(w for w in ([f"{failed} host{'s' if failed != 1 else ''} failed"] if failed else [])
                        + (["partial"] if fleet.partial else [])
                        + ([f"over the budget ({fleet.report.verdict})"] if not fleet.report.passed else []))
        lines.append(f"fleet verdict: fail ({why})")
    return "\n".join(lines)
