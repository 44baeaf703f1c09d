"""A small progress display for long loops (decoding, folding, calibration, benchmarks).

Writes to stderr: a redrawn bar on a terminal, a line every ~10% otherwise (logs, CI).
``EDGEFUSE_PROGRESS=0`` turns it off.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Progress:
    def __init__(self, total: int | None, desc: str, enabled: bool | None = None) -> None:
        self.total = total
        self.desc = desc
        self.n = 0
        self.start = time.monotonic()
        env = os.environ.get("EDGEFUSE_PROGRESS", "1") != "0"
        self.enabled = env if enabled is None else (enabled and env)
        self.tty = sys.stderr.isatty()
        self._last_decile = -1

    def update(self, k: int = 1) -> None:
        self.n += k
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        if self.total:
            frac = min(1.0, self.n / self.total)
            eta = elapsed / frac - elapsed if frac > 0 else 0.0
            if self.tty:
                bar = "#" * int(30 * frac)
                sys.stderr.write(f"\r{self.desc} [{bar:<30}] {self.n}/{self.total} {elapsed:.0f}s eta {eta:.0f}s")
                sys.stderr.flush()
            else:
                decile = int(frac * 10)
                if decile != self._last_decile:
                    self._last_decile = decile
                    sys.stderr.write(f"{self.desc}: {self.n}/{self.total} ({100 * frac:.0f}%) {elapsed:.0f}s\n")
        elif self.tty:
            sys.stderr.write(f"\r{self.desc}: {self.n} {elapsed:.0f}s")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def progress(items: Iterable[T], desc: str, total: int | None = None, enabled: bool | None = None) -> Iterator[T]:
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    bar = Progress(total, desc, enabled)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()
