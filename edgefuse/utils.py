"""Small shared helpers: atomic output, output checks, file sets, file digests, preprocessed clips from .npz."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success.

    An exception or Ctrl-C inside the block removes the temporary file, so no
    half-written artifact is ever left at ``path``.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_output(path: str | Path, *, inputs: Iterable[str | Path | None] = (), what: str = "output",
                 folder: bool = False) -> Path:
    """Refuse, before any work, an output that cannot be written: one :class:`EdgefuseError` line naming ``path``.

    Checked: the path is not one of ``inputs`` (a command must not overwrite what it reads), is not a folder
    (``folder=False``) or a file (``folder=True``), no part of its parent is a file, and the nearest existing
    folder above it takes a new file (probed by creating and removing one, so /proc, read-only mounts and
    permissions are all seen as the write would see them). Returns ``path`` as a Path."""
    p = Path(path)
    for inp in inputs:
        if inp is None:
            continue
        q = Path(inp)
        same = os.path.samefile(p, q) if p.exists() and q.exists() else p.resolve() == q.resolve()
        if same:
            raise EdgefuseError(f"{p}: the {what} would overwrite the input {q}; write it to another path")
    if p.is_dir() and not folder:
        raise EdgefuseError(f"{p}: is a folder; give the {what} a file path")
    if p.exists() and folder and not p.is_dir():
        raise EdgefuseError(f"{p}: is a file; the {what} is a folder: give a folder path")
    parent = p.absolute().parent
    probe_dir = parent
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise EdgefuseError(f"{p}: cannot write the {what}: {probe_dir} is a file, not a folder; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgefuse-probe-", dir=probe_dir)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise EdgefuseError(f"{p}: cannot write the {what}: {probe_dir} does not take new files ({reason}); choose a "
                            "writable folder") from None
    os.close(fd)
    os.unlink(probe)
    return p


@contextlib.contextmanager
def write_set(*paths: str | Path) -> Iterator[tuple[Path, ...]]:
    """Write files that belong together (an engine and its sidecar, a graph and its report) as a set: they
    appear together or not at all, Ctrl-C at any moment included.

    Yields one staging path per destination, all in a hidden staging folder beside the first (same file
    system, so the moves are renames), each under its destination's name where the names differ (so a sidecar
    named after its engine, or external data named in a graph, is found beside it there too). On success the staged files are moved into place together: files already
    at the destinations are first moved aside into the staging folder, and if a move fails (or is interrupted)
    every destination is put back as it was. SIGINT is held off during the moves (main thread) and delivered
    after them. An exception or Ctrl-C inside the block leaves the destinations untouched. The staging folder is
    always removed."""
    dests = [Path(p) for p in paths]
    if not dests:
        raise ValueError("write_set needs at least one path")
    if len({d.absolute() for d in dests}) != len(dests):
        raise ValueError("write_set: the paths must differ")
    for d in dests:
        d.parent.mkdir(parents=True, exist_ok=True)
    stage: Path | None = None
    try:
        with _sigint_held():  # a Ctrl-C here must not leave the staging folder behind
            stage = Path(tempfile.mkdtemp(prefix=f".{dests[0].name}.", suffix=".set", dir=dests[0].parent))
        unique = len({d.name for d in dests}) == len(dests)  # then each keeps its name: an engine's sidecar
        staged = tuple(stage / (d.name if unique else f"{i}.{d.name}") for i, d in enumerate(dests))  # is beside it
        yield staged
        missing = [d for d, s in zip(dests, staged) if not s.exists()]
        if missing:
            raise EdgefuseError(f"{missing[0]}: was not written; nothing of the set was kept")
        umask = os.umask(0)
        os.umask(umask)
        for s in staged:
            if s.is_file():
                os.chmod(s, 0o666 & ~umask)  # mkstemp-made files are 0600; give the usual permissions
        with _sigint_held():
            _commit(dests, staged, stage)
    finally:
        if stage is not None:
            with _sigint_held():
                shutil.rmtree(stage, ignore_errors=True)


def _commit(dests: list[Path], staged: tuple[Path, ...], stage: Path) -> None:
    """Move ``staged`` onto ``dests``; any failure puts every destination back as it was, then re-raises."""
    backups: list[tuple[Path, Path]] = []  # (destination, its old file moved aside)
    placed: list[Path] = []  # each recorded before its move: an interruption right after a move is undone too
    try:
        for i, d in enumerate(dests):
            if d.exists() or d.is_symlink():
                old = stage / f"old.{i}.{d.name}"
                backups.append((d, old))
                os.replace(d, old)
        for d, s in zip(dests, staged):
            placed.append(d)  # every old file is aside by now: whatever is at d is ours
            os.replace(s, d)
    except BaseException:
        for d in placed:
            with contextlib.suppress(OSError):
                os.unlink(d)
        for d, old in backups:
            if old.exists():
                with contextlib.suppress(OSError):
                    os.replace(old, d)
        raise


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold SIGINT off for the block (main thread only; elsewhere a no-op) and deliver it after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    except (ValueError, OSError):  # no signal handling here (an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(*caught[0])
        elif previous == signal.default_int_handler or previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def cache_root() -> Path:
    """edgefuse's cache folder on this machine: $EDGEFUSE_CACHE_DIR, else $XDG_CACHE_HOME/edgefuse or
    ~/.cache/edgefuse."""
    base = os.environ.get("EDGEFUSE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgefuse")
    return Path(base)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_npz_clips(path: Path, what: str) -> torch.Tensor:
    """Preprocessed clips (N, T, 3, H, W) from an .npz ('clips' array)."""
    import torch  # only this helper needs it: the ground floor stays importable without loading torch

    try:
        with np.load(path) as data:
            if "clips" not in data:
                raise EdgefuseError(f"{path}: no 'clips' array (has {', '.join(data.files)}); store {what} as "
                                    "clips=(N, T, 3, H, W) float32 with numpy.savez")
            arr = np.asarray(data["clips"], dtype=np.float32)
    except FileNotFoundError:
        raise EdgefuseError(f"{path}: no such file; check the path of {what}") from None
    except (OSError, ValueError) as e:
        raise EdgefuseError(f"{path}: not a readable .npz archive ({e}); write it with numpy.savez") from None
    if arr.ndim != 5 or arr.shape[2] != 3:
        raise EdgefuseError(f"{path}: clips have shape {arr.shape}, expected (N, T, 3, H, W)")
    finite = np.isfinite(arr).reshape(len(arr), -1).all(axis=1)  # (N,)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise EdgefuseError(f"{path}: {len(bad)} of {len(arr)} clips hold NaN or infinite values (first: clip "
                            f"{int(bad[0])}); {what} must be finite: rewrite them (edgefuse clips SRC -o FILE.npz)")
    return torch.from_numpy(arr)
