"""Small shared helpers: atomic output, file digests, preprocessed clips from .npz."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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
    return torch.from_numpy(arr)
