"""Kernels: the nodes that run as kernels of their own, with their epilogues, MACs and the bytes they move.

The roofline (:mod:`.roofline`) and the fit of its constants (:mod:`.fit`) share this accounting, so the constants
fitted on published measurements apply to what ``estimate`` computes. A :class:`Kernel` keeps activation bytes
(which grow with the batch) apart from weight bytes (which do not), so one table at batch 1 gives any batch.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edgefuse.estimate.result import LayerCost


@dataclass(frozen=True)
class Kernel:
    name: str
    op: str
    precision: str  # int8 | fp16 | fp32: the precision of the kernel's main node
    macs: int
    act_bytes: int  # activations read and written (tensors passed inside the kernel not counted)
    weight_bytes: int  # constants read (weights, biases, scales)
    epilogue: tuple[str, ...] = ()  # nodes fused into this one

    @property
    def bytes(self) -> int:
        return self.act_bytes + self.weight_bytes

    def scaled(self, batch: int) -> Kernel:
        """The same kernel on ``batch`` samples where this one runs one (MACs and activations scale, weights not)."""
        return Kernel(self.name, self.op, self.precision, self.macs * batch, self.act_bytes * batch, self.weight_bytes,
                      self.epilogue)

    def row(self) -> list[int | str]:
        """Compact form for data files: [op, precision, macs, act_bytes, weight_bytes]."""
        return [self.op, self.precision, self.macs, self.act_bytes, self.weight_bytes]

    @classmethod
    def from_row(cls, row: Sequence[int | str], name: str = "") -> Kernel:
        op, precision, macs, act, weight = row
        return cls(name, str(op), str(precision), int(macs), int(act), int(weight))


def group_kernels(costs: Sequence[LayerCost], graph_outputs: Iterable[str]) -> list[Kernel]:
    """One :class:`Kernel` per node that is not fused away, with the epilogue nodes fused into it; a tensor passed
    from a node to its epilogue inside one kernel is not moved, one read outside the kernel (or a graph output) is."""
    outputs = set(graph_outputs)
    members: dict[str, list[LayerCost]] = {c.name: [c] for c in costs if c.fused is None}
    for c in costs:
        if c.fused == "epilogue" and c.fused_into in members:
            members[c.fused_into].append(c)
    readers: dict[str, set[str]] = {}
    for c in costs:
        for t in (*c.inputs, *c.weights):
            readers.setdefault(t, set()).add(c.name)
    kernels = []
    for c in costs:
        if c.fused is not None:
            continue
        group = members[c.name]
        inside = {t for m in group for t in m.outputs}
        names = {m.name for m in group}
        act: dict[str, int] = {}
        weight: dict[str, int] = {}
        for m in group:
            act.update({t: b for t, b in m.inputs.items() if t not in inside})
            weight.update(m.weights)
            act.update({t: b for t, b in m.outputs.items() if t in outputs or not readers.get(t) or readers[t] - names})
        weight = {t: b for t, b in weight.items() if t not in act}
        kernels.append(Kernel(c.name, c.op, c.precision, sum(m.macs for m in group), sum(act.values()),
                              sum(weight.values()), tuple(m.name for m in group[1:])))
    return kernels
