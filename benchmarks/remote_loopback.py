"""Remote devices end to end, through the command line, on two loopback "devices": two real OpenSSH servers on
127.0.0.1 (tests/sshd.py), each a session on THIS machine with edgefuse installed, its own home folder (where
edgefuse keeps its engines there) and its own temporary folder. No Jetson and no GPU: the devices build ONNX Runtime
(or OpenVINO) engines for their CPU, which is this machine's CPU.

    python benchmarks/remote_loopback.py [--work /tmp/edgefuse-loopback] [--out benchmarks/results/remote_loopback.md]

Needs /usr/sbin/sshd (apt-get install openssh-server) and asyncssh (pip install 'edgefuse[remote]').

What runs, each as `python -m edgefuse ...` in a subprocess with HOME set to a fresh home whose ~/.ssh/known_hosts
holds both servers' host keys and whose ~/.ssh/id_ed25519 is the key both servers accept; the hosts file
devices.toml names the servers nano and orin:

  build-engine tsm.onnx --host nano --host orin        first build, then again (reused from the record)
  bench tsm.onnx --host nano --host orin               both devices at once (they share this machine's cores),
  bench tsm.onnx --host nano                           one device alone,
  bench ENGINE                                         the engine nano built (a file on this machine), locally
  validate tsm.onnx --reference tsm.onnx ... --host nano, then --host nano --host orin (sharded), then the same
  engine locally
  infer ENGINE CLIPS --stream                          what a device runs per shard (edgefuse there), timed here

and writes every command's output (progress lines left out) with its wall time and a summary table to --out. The
servers are stopped at the end, whatever happens.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sshd import MISSING, SSHD, Sshd, device_bin, make_key, start_sshd

MARKER = ".edgefuse-remote-loopback"  # a work folder holding this is ours to empty
PROGRESS = re.compile(r": \d+/\d+ \(\d+%\) \S+ elapsed, \S+ left$")  # edgefuse.progress's plain lines
HOSTS = ("nano", "orin")


@dataclass
class Run:
    title: str
    argv: list[str]
    seconds: float
    rc: int
    stdout: str
    stderr: str
    load: float = 0.0  # the 1-minute load average when it started: other work on this machine shows here
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        return "edgefuse " + " ".join(self.argv)

    def output(self, cut: int = 0) -> str:
        """stdout, then stderr, without the progress lines; ``cut``: longer lines end there with "..."."""
        lines = [ln for ln in (self.stdout.rstrip("\n").splitlines() + self.stderr.rstrip("\n").splitlines())
                 if not PROGRESS.search(ln)]
        return "\n".join(ln[:cut] + "..." if cut and len(ln) > cut else ln for ln in lines)


def machine() -> str:
    model, cpus = platform.processor() or "unknown CPU", os.cpu_count()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        got = dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)
        model = got.get("Model name", model).strip()
        cpus = int(got.get("CPU(s)", str(cpus)).strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    return f"{model}, {cpus} cores"


def versions() -> str:
    import asyncssh
    import onnxruntime

    import edgefuse

    ssh = subprocess.run(["ssh", "-V"], check=False, capture_output=True, text=True).stderr.strip() if shutil.which("ssh") else ""
    parts = [f"edgefuse {edgefuse.__version__}", f"Python {platform.python_version()}",
             f"onnxruntime {onnxruntime.__version__}", f"asyncssh {asyncssh.__version__}"]
    try:
        import openvino

        parts.append(f"openvino {openvino.__version__.split('-')[0]}")
    except ImportError:
        pass
    if ssh:
        parts.append(ssh.split(",")[0])
    return ", ".join(parts)


def prepare_work(work: Path) -> None:
    if work.exists():
        if not (work / MARKER).is_file():
            sys.exit(f"{work} exists and was not made by this script; give another --work")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / MARKER).write_text("made by benchmarks/remote_loopback.py; removed by its next run\n")


def make_inputs(work: Path) -> None:
    """The graph (edgefuse export synth_tsm_r18w025) and the val clips of the synthetic benchmark (edgefuse synth's
    defaults, frames only, no train or calib split), through the library as the tests make them."""
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.lab.synth import SynthConfig, generate

    t = time.monotonic()
    export(make_config(None, work / "tsm.onnx", model="synth_tsm_r18w025"))
    print(f"exported tsm.onnx in {time.monotonic() - t:.1f} s", flush=True)
    t = time.monotonic()
    generate(SynthConfig(out=work / "synth", train=0, calib=0, formats=("frames",)))
    print(f"wrote synth/val.txt (250 clips) in {time.monotonic() - t:.1f} s", flush=True)


def start_devices(work: Path, home: Path) -> list[Sshd]:
    """Two sshd on 127.0.0.1, both accepting ~/.ssh/id_ed25519 of ``home``; their host keys go into its
    ~/.ssh/known_hosts and their addresses into devices.toml."""
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    key = make_key(ssh / "id_ed25519")
    bin_dir = device_bin(work / "device-bin")  # python3 there: this interpreter, importing this edgefuse
    servers: list[Sshd] = []
    for name in HOSTS:
        (work / f"device-tmp-{name}").mkdir()
        servers.append(start_sshd(work / "devices" / name, user_key=key, extra_path=(str(bin_dir),),
                                  session_env={"TMPDIR": str(work / f"device-tmp-{name}")}))
    (ssh / "known_hosts").write_text("".join(s.known_hosts_line() for s in servers))
    (work / "devices.toml").write_text("[hosts]\n" + "".join(
        f'{name} = {{ host = "{s.user}@127.0.0.1:{s.port}", identity = "~/.ssh/id_ed25519" }}\n'
        for name, s in zip(HOSTS, servers)))
    return servers


def cli(work: Path, home: Path, title: str, *argv: str) -> Run:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EDGEFUSE_CACHE_DIR", "XDG_CACHE_HOME", "SSH_AUTH_SOCK", "EDGEFUSE_PROGRESS")}
    env["HOME"] = str(home)
    print(f"$ edgefuse {' '.join(argv)}", flush=True)
    load, t = os.getloadavg()[0], time.monotonic()
    done = subprocess.run([sys.executable, "-m", "edgefuse", *argv], check=False, cwd=work, env=env,
                          capture_output=True, text=True)
    run = Run(title, list(argv), time.monotonic() - t, done.returncode, done.stdout, done.stderr, load)
    print(run.output() + f"\n[exit {run.rc}, {run.seconds:.1f} s]\n", flush=True)
    return run


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def build_figures(run: Run) -> None:
    for name in HOSTS:
        m = re.search(rf"^{name} \(.*?\)\s+(\S+ \S+)\s+\S+\s+(\w+), (reused|[\d.]+ s)", run.stdout, re.MULTILINE)
        if m:
            run.figures[name] = f"{m.group(1)}, " + (m.group(3) if m.group(3) == "reused" else f"built in {m.group(3)}")


def bench_figures(run: Run, path: Path) -> None:
    data = _load(path)
    reports = ([(h["host"].split(" ")[0], h.get("report")) for h in data["hosts"]] if data.get("fleet")
               else [("here", data)])
    for host, rep in reports:
        if rep and rep.get("rows"):
            row = rep["rows"][0]
            run.figures[host] = f"p50 {row['median_ms']:.2f} ms, p90 {row['p90_ms']:.2f} ms, {row['clips_per_s']:.0f} clips/s"


def validate_figures(run: Run, path: Path) -> None:
    data = _load(path)
    rep = data.get("report") if data.get("fleet") else data
    if rep:
        res = rep["result"]
        run.figures["agreement"] = f"top-1 agreement {100 * res['top1_agreement']:.1f}% of {res['clips']} clips"
        run.figures["max_abs_error"] = f"max abs error {res['max_abs_error']:.2e}"
    if data.get("fleet"):
        run.figures["clips"] = ", ".join(f"{h['host'].split(' ')[0]} {h['clips']} clips in {h['shards']} shards"
                                         for h in data["hosts"])


def recorded_engine(home: Path, host: str) -> str:
    """The engine file a device built, from the local record (the device is this machine: the file is here)."""
    data = _load(home / ".cache" / "edgefuse" / "remote-engines.json")
    for e in data.get("engines", []):
        if e["host"].endswith(f":{host}"):
            return str(e["remote_engine"])
    raise SystemExit(f"no engine recorded for port {host}; did build-engine fail?")


def _p50(run: Run, host: str) -> float | None:
    m = re.match(r"p50 ([\d.]+) ms", str(run.figures.get(host, "")))
    return float(m.group(1)) if m else None


def _shard_note(shard: Run | None) -> str:
    if shard is None:
        return ""
    m = re.search(r": (\d+) runs, ([\d.]+) ms per run", shard.output())
    if not m:
        return f" (one shard's `edgefuse infer` run: {shard.seconds:.1f} s here)"
    busy = int(m.group(1)) * float(m.group(2)) / 1000
    return (f": one shard's `edgefuse infer` run took {shard.seconds:.1f} s here, of which {busy:.1f} s inference "
            "and the rest starting Python, importing edgefuse and loading the engine")


def notes(runs: list[Run]) -> list[str]:
    """What the figures say, computed from them."""
    by = {r.title: r for r in runs}
    out = []
    fleet, one, here = (by.get(t) for t in ("Bench on both devices at once", "Bench on one device",
                                            "Bench the engine nano built, locally"))
    if fleet and one and here and _p50(one, "nano") and _p50(here, "here") and _p50(fleet, "nano"):
        out.append(f"- Bench: the engine nano built times {_p50(one, 'nano'):.2f} ms p50 through `--host nano` and "
                   f"{_p50(here, 'here'):.2f} ms run here directly: the same file on the same cores, timed by the same "
                   "`edgefuse bench` (on the device, SSH carries only the command and the JSON back), so a gap between the two is "
                   "noise of this shared machine (see the load column). With both devices timing at once on these "
                   f"{os.cpu_count()} cores each gets {_p50(fleet, 'nano'):.2f} / {_p50(fleet, 'orin'):.2f} ms: "
                   "two devices sharing one CPU, which separate devices do not.")
    vals = [by[t] for t in ("Validate on one device", "Validate sharded across both devices",
                            "Validate the engine nano built, locally") if t in by]
    if len(vals) == 3:
        v1, v2, vl = vals
        same = len({str(v.figures.get("agreement")) + str(v.figures.get("max_abs_error")) for v in vals}) == 1
        shard = next((r for r in runs if r.argv and r.argv[0] == "infer"), None)
        built = next((r for r in runs if r.argv[:1] == ["build-engine"]), None)
        backends = {str(v).split(",")[0] for k, v in (built.figures.items() if built else []) if k in HOSTS}
        if same:
            figures = f"the three runs give the same figures ({v1.figures.get('agreement')}, " \
                      f"{v1.figures.get('max_abs_error')})"
        else:
            figures = "; ".join(f"{where}: {v.figures.get('agreement')}, {v.figures.get('max_abs_error')}"
                                for where, v in (("one device", v1), ("two", v2), ("here", vl)))
            if len(backends) > 1:
                figures += (f" (the devices' `--backend auto` builds, timed while both built at once on these cores, "
                            f"kept different backends: {' and '.join(sorted(backends))})")
        out.append(f"- Validate: {figures}. Wall time: "
                   f"{vl.seconds:.1f} s here, {v1.seconds:.1f} s on one device, {v2.seconds:.1f} s across two sharing "
                   "these cores. Each shard is a new process on the device"
                   + _shard_note(shard) + f" (one device: {v1.figures.get('clips')}).")
    return out


def write_markdown(out: Path, runs: list[Run], started: str, total: float, work: Path,
                   load: tuple[float, float]) -> None:
    lines = [
        "# Remote devices over SSH: two loopback devices on this machine",
        "",
        (f"Command: `python benchmarks/remote_loopback.py`, {started}. Machine: {machine()}; {versions()}. "
         f"Load average (1 min) {load[0]:.2f} before the run, {load[1]:.2f} after it."),
        "",
        ("The two \"devices\", `nano` and `orin`, are two real OpenSSH servers on 127.0.0.1 (`tests/sshd.py`), each a "
        "session on this same machine with edgefuse installed, its own home folder and temporary folder. They are "
        "named like Jetsons only to read like a lab's hosts file: no Jetson, no GPU and no TensorRT took part; the "
        "devices build ONNX Runtime / OpenVINO engines for this machine's CPU. When both devices run at once they "
        "share these "
        f"{os.cpu_count()} cores, so fleet timings include that contention. Every command ran through the command line "
        f"(`python -m edgefuse`) with HOME set to a fresh home: `~/.ssh/id_ed25519` is the key both servers accept and "
        "`~/.ssh/known_hosts` holds their host keys (nothing was accepted on first use). The hosts file:"),
        "",
        "```toml",
        (work / "devices.toml").read_text().rstrip().replace(str(work), "<work>"),
        "```",
        "",
        "## Summary",
        "",
        "| command | wall s | exit | load | key figures |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        figs = "; ".join(f"{k}: {v}" if k in HOSTS or k == "here" else str(v) for k, v in r.figures.items())
        lines.append(f"| `{r.command}` | {r.seconds:.1f} | {r.rc} | {r.load:.2f} | {figs} |")
    lines += ["", "load: this machine's 1-minute load average as the command started (work of other users included).",
              "", *notes(runs), "", f"Whole script (export, synth clips, servers, every command): {total:.0f} s.", "",
              "## Output of each command", "",
              f"Verbatim stdout then stderr (progress lines left out); the current directory is `{work}`.", ""]
    for r in runs:
        cut = 160 if "--stream" in r.argv else 0
        lines += [f"### {r.title}", "", f"`{r.command}`: {r.seconds:.1f} s, exit {r.rc}"
                  + (f" (lines cut at {cut} characters)" if cut else ""), "", "```", r.output(cut), "```", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgefuse-loopback"),
                    help="work folder (emptied first when an earlier run of this script made it)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "remote_loopback.md")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--num-clips", type=int, default=64)
    args = ap.parse_args()
    if not SSHD.exists():
        sys.exit(MISSING)
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    t0, load0 = time.monotonic(), os.getloadavg()[0]
    work = args.work.resolve()
    prepare_work(work)
    home = work / "home"
    make_inputs(work)
    servers: list[Sshd] = []
    runs: list[Run] = []
    hosts = ["--hosts-file", "devices.toml"]
    both = [*hosts, "--host", "nano", "--host", "orin"]
    nano = [*hosts, "--host", "nano"]
    it = ["--iterations", str(args.iterations)]
    clips = ["--clips", "synth/val.txt", "--num-clips", str(args.num_clips)]
    try:
        servers = start_devices(work, home)
        runs.append(cli(work, home, "Build on both devices (first time)", "build-engine", "tsm.onnx", *both))
        build_figures(runs[-1])
        runs.append(cli(work, home, "Build again (the recorded engines are reused)", "build-engine", "tsm.onnx", *both))
        build_figures(runs[-1])
        engine = recorded_engine(home, str(servers[0].port))
        runs.append(cli(work, home, "Bench on both devices at once", "bench", "tsm.onnx", *both, *it,
                        "--json-out", "bench-fleet.json"))
        bench_figures(runs[-1], work / "bench-fleet.json")
        runs.append(cli(work, home, "Bench on one device", "bench", "tsm.onnx", *nano, *it,
                        "--json-out", "bench-nano.json"))
        bench_figures(runs[-1], work / "bench-nano.json")
        runs.append(cli(work, home, "Bench the engine nano built, locally", "bench", engine, *it,
                        "--json-out", "bench-local.json"))
        bench_figures(runs[-1], work / "bench-local.json")
        runs.append(cli(work, home, "Validate on one device", "validate", "tsm.onnx", "--reference", "tsm.onnx",
                        *clips, *nano, "--report", "validate-nano.json"))
        validate_figures(runs[-1], work / "validate-nano.json")
        runs.append(cli(work, home, "Validate sharded across both devices", "validate", "tsm.onnx", "--reference",
                        "tsm.onnx", *clips, *both, "--report", "validate-fleet.json"))
        validate_figures(runs[-1], work / "validate-fleet.json")
        runs.append(cli(work, home, "Validate the engine nano built, locally", "validate", engine, "--reference",
                        "tsm.onnx", *clips, "--report", "validate-local.json"))
        validate_figures(runs[-1], work / "validate-local.json")
        # what a device with edgefuse runs for each shard of a validate: a fresh process on a clip folder
        from edgefuse.validate.remote import shard_size

        shard = str(shard_size(args.num_clips, 1))  # the size of a shard of the one-device validate
        prep = cli(work, home, "", "device-clips", "tsm.onnx", "--clips", "synth/val.txt", "--num-clips", shard,
                   "-o", "shard/")
        if prep.rc == 0:
            runs.append(cli(work, home, f"One shard as a device runs it ({shard} clips; shard/ from `{prep.command}`)",
                            "infer", engine, "shard/",
                            "-o", "shard-out/", "--stream"))
            runs[-1].figures["batches"] = f"{runs[-1].stdout.count('@@edgefuse-batch')} stream lines"
    finally:
        for s in servers:
            s.stop()
    write_markdown(args.out, runs, started, time.monotonic() - t0, work, (load0, os.getloadavg()[0]))
    failed = [r for r in runs if r.rc != 0]
    if failed:
        sys.exit(f"{len(failed)} command(s) failed: " + "; ".join(r.command for r in failed))


if __name__ == "__main__":
    main()
