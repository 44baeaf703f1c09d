"""Progress of long loops (decoding, folding, calibration, benchmarks), drawn by tqdm on stderr.

A redrawn bar on a terminal; a plain line every ~10 % otherwise (logs, CI), so a log holds no
carriage returns. ``EDGEFUSE_PROGRESS=0`` turns it off; ``enabled=False`` turns one display off.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm  # type: ignore[import-untyped]

T = TypeVar("T")
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) {elapsed} elapsed, {remaining} left"


class _Lines(tqdm):
    """tqdm writing one plain line per tenth of the total instead of redrawing one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._decile = -1
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "" or not self.total:  # clearing the bar (close), or no total to count tenths of
            return False
        decile = int(10 * min(self.n, self.total) / self.total)
        if decile == self._decile:
            return True
        self._decile = decile
        self.fp.write(self.format_meter(**self.format_dict) + "\n")
        self.fp.flush()
        return True


def _enabled(enabled: bool | None) -> bool:
    env = os.environ.get("EDGEFUSE_PROGRESS", "1") != "0"
    return env if enabled is None else (enabled and env)


class Progress:
    """A progress display of ``total`` steps (None: unknown) named ``desc``; ``update(k)`` after each ``k``."""

    def __init__(self, total: int | None, desc: str, enabled: bool | None = None) -> None:
        self.total = total
        self.desc = desc
        self.n = 0
        self.enabled = _enabled(enabled)
        self.tty = sys.stderr.isatty()
        common = {"total": total, "desc": desc, "file": sys.stderr, "disable": not self.enabled}
        if self.tty:
            self._bar = tqdm(**common, dynamic_ncols=True)
        else:
            self._bar = _Lines(**common, leave=False, mininterval=0.0, miniters=1, bar_format=LINE_FORMAT)

    def update(self, k: int = 1) -> None:
        self.n += k
        self._bar.update(k)

    def close(self) -> None:
        self._bar.close()


def progress(items: Iterable[T], desc: str, total: int | None = None, enabled: bool | None = None) -> Iterator[T]:
    """``items``, showing progress as they are consumed (``total`` from ``len(items)`` when it has one)."""
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
