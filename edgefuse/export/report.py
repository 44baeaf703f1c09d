"""What an export reports (:class:`ExportReport`): the graph written, its metadata, the hygiene verdicts, the parity
checks, its cost and, for a folded policy, the fold; plain data with a JSON round trip."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefuse.export.fold.report import FoldReport
from edgefuse.export.parity import Parity
from edgefuse.graph.hygiene import Hygiene


@dataclass(frozen=True)
class ExportReport:
    path: Path
    model: str
    policy: str  # dynamic | static | stream
    shape: str  # static | dynamic
    opset: int
    metadata: dict[str, Any]  # the facts written into the graph (edgefuse.* metadata entries)
    hygiene: Hygiene
    parity: tuple[Parity, ...]
    macs_per_clip: int  # per frame for a stream graph
    params: int
    seconds: dict[str, float] = field(default_factory=dict)
    fold: FoldReport | None = None

    @property
    def per(self) -> str:
        """What ``macs_per_clip`` counts: one clip, or one frame of a stream."""
        return "frame" if self.policy == "stream" else "clip"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "model": self.model, "policy": self.policy, "shape": self.shape,
            "opset": self.opset, "metadata": self.metadata, "hygiene": self.hygiene.to_dict(),
            "parity": [p.to_dict() for p in self.parity], "macs_per_clip": self.macs_per_clip,
            "params": self.params, "seconds": dict(self.seconds),
            "fold": self.fold.to_dict() if self.fold is not None else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExportReport:
        return cls(
            path=Path(d["path"]), model=str(d["model"]), policy=str(d["policy"]), shape=str(d["shape"]),
            opset=int(d["opset"]), metadata=dict(d["metadata"]), hygiene=Hygiene.from_dict(d["hygiene"]),
            parity=tuple(Parity(**p) for p in d["parity"]), macs_per_clip=int(d["macs_per_clip"]),
            params=int(d["params"]), seconds={k: float(v) for k, v in d["seconds"].items()},
            fold=FoldReport.from_dict(d["fold"]) if d.get("fold") is not None else None,
        )
