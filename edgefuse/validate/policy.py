"""AdaFuse under validation: per block, how often the engine's decisions differ from the reference's,
the engine's skip / reuse / keep fractions, and the MACs each clip costs given its decisions."""
from __future__ import annotations

from typing import Any

import numpy as np

from edgefuse import metrics
from edgefuse.validate.report import PolicyBlock, RealizedMacs


def fractions(onehots: np.ndarray) -> dict[str, float]:
    """skip / reuse / keep fractions of one block's decisions: a one-hot whose last axis is the
    choice (the exported tensor is (N*T, C, 3); stacked per clip it is flattened, the order kept)."""
    sums = onehots.reshape(-1, 3).sum(axis=0)  # (3,)
    total = float(sums.sum())
    return {k: float(v / total) for k, v in zip(("skip", "reuse", "keep"), sums)} if total else {}


def policy_blocks(reference: dict[str, np.ndarray], engine: dict[str, np.ndarray]) -> list[PolicyBlock]:
    """One row per decision tensor (both runs' decisions, stacked per clip)."""
    from edgefuse.quantize.evaluate import block_of

    out = []
    for name, eng in engine.items():
        f = fractions(eng)
        out.append(PolicyBlock(block_of(name), metrics.flip_rate(reference[name], eng), engine_skip=f.get("skip"),
                               engine_reuse=f.get("reuse"), engine_keep=f.get("keep")))
    return out


def realized_macs(decisions: dict[str, np.ndarray], macs: dict[str, Any], clips: int) -> np.ndarray:
    """MACs per clip (N,) given each block's decisions, priced as :func:`edgefuse.models.cost.decision_savings`
    does (the cost model training used), from the pricing export put in the metadata."""
    import torch

    from edgefuse.models.cost import FusePricing, decision_savings
    from edgefuse.quantize.evaluate import block_of

    per_clip = np.full(clips, float(macs["dense_per_clip"]))
    frames = int(macs["frames"])
    for name, onehot in decisions.items():
        priced = macs["blocks"].get(block_of(name))
        if priced is None:
            continue
        mask = onehot.reshape(clips, frames, -1, 3)  # (N, T, C, 3) one-hot over skip / reuse / keep
        pricing = FusePricing.from_meta(priced, mask.shape[2])
        for i in range(clips):
            per_clip[i] -= decision_savings(torch.from_numpy(mask[i:i + 1].astype(np.float32)), pricing)
    return per_clip


def realized(reference: dict[str, np.ndarray], engine: dict[str, np.ndarray], macs: dict[str, Any],
             clips: int) -> RealizedMacs:
    """GMACs per clip of the engine and the reference given their decisions, and the dense GMACs."""
    return RealizedMacs((realized_macs(engine, macs, clips) / 1e9).tolist(),
                        (realized_macs(reference, macs, clips) / 1e9).tolist(), macs["dense_per_clip"] / 1e9)
