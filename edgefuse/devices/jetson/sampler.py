"""Sampling ``tegrastats`` around a workload: each line stamped with ``time.monotonic()`` as it arrives."""
from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from edgefuse.devices.jetson.tegrastats import TegraSample, parse_tegrastats
from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:  # annotations only (not evaluated at run time): no typing_extensions needed on Python 3.10
    from typing_extensions import Self

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimedSample:
    """A tegrastats sample and the ``time.monotonic()`` second its line arrived."""

    t: float
    sample: TegraSample


class TegrastatsSampler:
    """Run ``tegrastats --interval MS`` for the duration of a ``with`` block and keep every line it prints.

    ::

        with TegrastatsSampler(interval_ms=50) as ts:
            start = time.monotonic(); run_clips(); end = time.monotonic()
        joules = energy_mj(ts.samples, start, end) / 1000

    Each line is stamped with ``time.monotonic()`` when it is read (tegrastats' own timestamp has one-second
    resolution), so compare against ``time.monotonic()`` readings of the workload. tegrastats flushes each line,
    which is also what jetson_stats relies on when it reads the same pipe. ``command`` replaces the whole command
    line (tests use a script that prints recorded lines); on some JetPack 4 boards the GPU clock and rails need
    ``command=["sudo", "tegrastats", "--interval", "50"]``.
    """

    def __init__(self, interval_ms: int = 100, command: Sequence[str] | None = None, *,
                 stop_timeout_s: float = 5.0) -> None:
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or interval_ms <= 0:
            raise EdgefuseError(f"tegrastats interval must be a positive whole number of milliseconds, "
                                f"not {interval_ms!r}")
        self.interval_ms = interval_ms
        self.command = list(command) if command is not None else ["tegrastats", "--interval", str(interval_ms)]
        self.stop_timeout_s = stop_timeout_s
        self.skipped = 0  # lines that were not tegrastats lines
        self.returncode: int | None = None
        self._samples: list[TimedSample] = []
        self._stderr: deque[str] = deque(maxlen=20)
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False

    @property
    def samples(self) -> tuple[TimedSample, ...]:
        """The samples read so far, oldest first."""
        with self._cond:
            return tuple(self._samples)

    def start(self) -> Self:
        if self._proc is not None:
            raise EdgefuseError("this TegrastatsSampler was already started; create a new one for each run")
        exe = self.command[0]
        if shutil.which(exe) is None:
            if exe == "tegrastats":
                raise EdgefuseError("tegrastats not found: it ships with JetPack (package nvidia-l4t-tools) and "
                                    "exists only on a Jetson; run this on the Jetson, or install nvidia-l4t-tools")
            raise EdgefuseError(f"{exe}: command not found; give the full path of the tegrastats command")
        log.debug("starting %s", " ".join(self.command))
        try:
            self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          bufsize=1, errors="replace")
        except OSError as e:
            raise EdgefuseError(f"cannot run {exe}: {e}; check that it is executable") from e
        self._threads = [threading.Thread(target=self._read_stdout, name="tegrastats-stdout", daemon=True),
                         threading.Thread(target=self._read_stderr, name="tegrastats-stderr", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            t = time.monotonic()
            line = raw.strip()
            if not line:
                continue
            try:
                sample = parse_tegrastats(line)
            except EdgefuseError:
                log.debug("skipping a line that is not tegrastats output: %r", line[:80])
                with self._cond:
                    self.skipped += 1
                continue
            with self._cond:
                self._samples.append(TimedSample(t, sample))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            if raw.strip():
                self._stderr.append(raw.rstrip())

    def wait_for_samples(self, n: int, timeout_s: float = 10.0) -> bool:
        """Block until at least ``n`` samples have arrived (True) or ``timeout_s`` passed or tegrastats ended (False)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._samples) < n:
                left = deadline - time.monotonic()
                if left <= 0 or self._proc is None or (self._proc.poll() is not None
                                                        and not self._threads[0].is_alive()):
                    return len(self._samples) >= n
                self._cond.wait(min(left, 0.1))
            return True

    def stop(self) -> tuple[TimedSample, ...]:
        """Stop tegrastats (SIGTERM, then SIGKILL) and return every sample read."""
        proc = self._proc
        if proc is None or self._stopping:
            return self.samples
        self._stopping = True
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s; killing it", self.command[0], self.stop_timeout_s)
                proc.kill()
                proc.wait()
        for t in self._threads:
            t.join(self.stop_timeout_s)
        self.returncode = proc.returncode
        samples = self.samples
        failed = self.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL)
        if failed:
            detail = self._stderr[-1] if self._stderr else f"exit status {self.returncode}"
            if not samples:
                raise EdgefuseError(f"{self.command[0]} failed before printing a sample ({detail}); run "
                                    f"`{' '.join(self.command)}` by hand to see why (it may need sudo)")
            log.warning("%s ended early (%s) after %d samples", self.command[0], detail, len(samples))
        if self.skipped:
            log.info("%d lines from %s were not tegrastats output and were skipped", self.skipped, self.command[0])
        log.debug("%d tegrastats samples", len(samples))
        return samples

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop()
        except EdgefuseError:
            if exc is None:
                raise
            log.warning("tegrastats also failed while handling another error", exc_info=True)
