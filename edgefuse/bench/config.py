"""What ``edgefuse bench`` is asked to do (:class:`BenchConfig`), the rows' labels, and the JSON file."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefuse.utils import atomic_path

EAGER = "PyTorch eager FP32"  # the baseline row's label


@dataclass(frozen=True)
class BenchConfig:
    engines: tuple[Path, ...]
    device: str = "auto"
    batch: int = 1
    iterations: int = 50
    duration: float | None = None  # seconds per engine instead of a count
    warmup: int = 5
    eager: Path | None = None  # a checkpoint: add PyTorch eager FP32 as a baseline row
    threads: int | None = None
    json_out: Path | None = None
    png_out: Path | None = None
    seed: int = 0
    progress: bool = True
    names: tuple[str, ...] = field(default_factory=tuple)  # row labels (default: file names)
    estimate: bool = False  # add a roofline estimate per engine on the device profile (measured too where possible)
    energy_seconds: float = 3.0  # Jetson: seconds each engine runs under tegrastats for energy per clip
    # TensorRT engines: "python" (edgefuse's runner), "trtexec", or auto = the runner where TensorRT's Python
    # bindings import, else trtexec (edgefuse.bench.trtexec)
    timer: str = "auto"



def row_names(engines: tuple[Path, ...], names: tuple[str, ...]) -> list[str]:
    """Row labels: the given names, else the file names; two engines with the same file name (in different
    folders) are labelled by their paths, so every engine has its own row."""
    default = [Path(p).name for p in engines]
    out = []
    for i, path in enumerate(engines):
        if i < len(names):
            out.append(names[i])
        else:
            out.append(default[i] if default.count(default[i]) == 1 else str(path))
    return out


def write_json(data: dict[str, Any], path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path
