"""Deployment targets: the names users know (``jetpack4.6``, ``jetpack5``, ``trt8.2``, ``trt10``, ...) mapped to the
TensorRT release(s) a user of that name may have (``data/trt_targets.json``, with the source of every mapping).

A target is met when the graph passes every one of its releases (operator table, opset range and Q/DQ rules of
:mod:`.hygiene`); :func:`export_opset` is the highest opset all of them read, capped by what the exporter writes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import onnx

from edgefuse.errors import EdgefuseError
from edgefuse.graph import hygiene


@dataclass(frozen=True)
class Check:
    """One TensorRT release of a target: its operator table and how the target narrows it."""
    table: str  # key in trt_onnx_ops.json
    tensorrt: str  # the release, as users name it (8.0.1, 10.13, 11.x)
    max_opset: int
    min_opset: int
    exclude_ops: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    checks: tuple[Check, ...]
    sources: tuple[str, ...]  # the facts behind the mapping (trt_targets.json "sources")

    @property
    def max_opset(self) -> int:
        """The highest opset every release of the target reads."""
        return min(c.max_opset for c in self.checks)

    @property
    def min_opset(self) -> int:
        return max(c.min_opset for c in self.checks)

    @property
    def tensorrt(self) -> str:
        """Its releases, e.g. ``8.0.1 / 8.2.1``."""
        return " / ".join(c.tensorrt for c in self.checks)


_TABLE_TARGET = {"10.x-latest": "trt10.15", "11": "trt11"}  # target naming a table's release, where not trt<key>


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    text = resources.files("edgefuse.graph").joinpath("data/trt_targets.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def _target(name: str, d: dict[str, Any]) -> Target:
    versions = hygiene.trt_tables()["versions"]
    checks = []
    for c in d["checks"]:
        table = versions[c["table"]]
        checks.append(Check(c["table"], c["tensorrt"], min(table["max_opset"], c.get("max_opset", 99)),
                            table["min_opset"], tuple(c.get("exclude_ops", ()))))
    sources = _data()["sources"]
    return Target(name, d["description"], tuple(checks), tuple(f"{k}: {sources[k]}" for k in d["source"]))


def target_names() -> list[str]:
    return list(_data()["targets"])


def resolve(name: str) -> Target:
    """The target ``name`` (case and spaces ignored; ``jp6`` for ``jetpack6``, ``tensorrt8.2`` for ``trt8.2``)."""
    key = name.strip().lower().replace(" ", "").replace("tensorrt", "trt")
    data = _data()
    key = data["aliases"].get(key, key)
    if key not in data["targets"]:
        raise EdgefuseError(f"unknown target {name!r}; use one of {', '.join(target_names())}")
    return _target(key, data["targets"][key])


def export_opset(target: Target, exporter_max: int) -> int:
    """The opset to export for ``target``: the highest its parsers read, never above ``exporter_max``."""
    opset = min(target.max_opset, exporter_max)
    if opset < target.min_opset:
        raise EdgefuseError(f"{target.name} reads opsets {target.min_opset}-{target.max_opset} but the exporter writes "
                            f"at most {exporter_max}; choose another --exporter")
    return opset


def check(model: onnx.ModelProto, target: Target) -> list[hygiene.Verdict]:
    """The verdict of each release of ``target`` on ``model``."""
    nodes = hygiene._all_nodes(model.graph)
    return [hygiene.verdict(model, c.table, nodes, max_opset=c.max_opset, exclude_ops=c.exclude_ops,
                            version=c.tensorrt) for c in target.checks]


def failure(verdicts: list[hygiene.Verdict], target: Target) -> str | None:
    """One line naming the first problem, the target and what to do; None when every release passes."""
    for v in verdicts:
        if v.ok:
            continue
        problem = v.problems[0]
        where = f"TensorRT {v.version} ({target.name})"
        op = problem.split(":", 1)[0]
        if problem.startswith("opset "):
            fix = f"export with --target {target.name} (opset {target.max_opset}) instead of --opset"
        elif op in hygiene.trt_tables()["versions"][v.target]["ops"] or problem.endswith("operator table"):
            first = hygiene.first_supporting(op)
            newer = f"TensorRT {first} and later read it (--target {_TABLE_TARGET.get(first, 'trt' + first)}), or " \
                if first else ""
            fix = f"{newer}change the model so the export does not emit {op}"
        else:
            fix = "re-quantize the graph for this TensorRT (edgefuse calibrate writes FP32 weights with INT8 Q/DQ)"
        more = f" (+{sum(len(x.problems) for x in verdicts) - 1} more)" if sum(len(x.problems) for x in verdicts) > 1 else ""
        return f"{problem} on {where}{more}; {fix}"
    return None
