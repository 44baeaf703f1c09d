"""Deterministic weights and inputs for the official-equivalence fixtures.

The fixtures in this folder were recorded by running the official research code
(outside this repository) on weights produced by :func:`synth_state_dict` from a
manifest of the official state dict's key names, shapes and dtypes. The tests
rebuild the same weights from the same manifest, load them through edgefuse's
converters and compare logits. Only facts are stored here (names, shapes,
logits), never the official code.

Manifest format (JSON)::

    {"name": ..., "container": "adafuse" | "gsf" | "tsm" | "plain",
     "entries": [{"key": "module.base_model.conv1.weight", "shape": [64, 3, 7, 7],
                  "dtype": "float32", "alias": null}, ...],
     "input": {"shape": [N, T, 3, H, W], "seed": 0},
     "logits": [[...], ...], ...}

``alias`` names an earlier key whose tensor this entry shares (the official
AdaFuse model stores shared policy nets twice); aliased entries get the value of
the key they alias.
"""
from __future__ import annotations

import zlib
from typing import Any

import torch

_DTYPES = {"float32": torch.float32, "int64": torch.int64, "float64": torch.float64}


def synth_tensor(key: str, shape: list[int], dtype: str = "float32") -> torch.Tensor:
    """A tensor that depends only on ``key``, ``shape`` and ``dtype``, with sane statistics."""
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    leaf = key.rsplit(".", 1)[-1]
    if dtype == "int64":  # num_batches_tracked
        return torch.zeros(shape, dtype=torch.int64)
    size = tuple(shape)
    if leaf == "running_mean":
        t = torch.rand(size, generator=gen) * 0.2 - 0.1
    elif leaf == "running_var":
        t = torch.rand(size, generator=gen) + 0.5
    elif leaf == "bias":
        t = torch.rand(size, generator=gen) * 0.2 - 0.1
    elif len(size) == 1:  # BatchNorm weight
        t = torch.rand(size, generator=gen) * 0.4 + 0.3
    else:  # conv / linear weight: He-normal on fan-in
        fan_in = 1
        for d in size[1:]:
            fan_in *= d
        t = torch.randn(size, generator=gen) * (2.0 / fan_in) ** 0.5
    return t.to(_DTYPES[dtype])


def synth_state_dict(entries: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Rebuild the state dict described by manifest ``entries`` (in order)."""
    out: dict[str, torch.Tensor] = {}
    for e in entries:
        if e.get("alias"):
            out[e["key"]] = out[e["alias"]]
        else:
            out[e["key"]] = synth_tensor(e["key"], e["shape"], e.get("dtype", "float32"))
    return out


def synth_input(shape: list[int], seed: int = 0) -> torch.Tensor:
    """The fixed input clip batch (N, T, 3, H, W) used for the reference logits."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=gen)
