"""Seeded, class-balanced choice of benchmark clips (calibration and validation subsets)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["balanced_subset"]


def balanced_subset(labels: Sequence[int | None], n: int, seed: int = 0) -> list[int]:
    """``n`` indices into ``labels`` (sorted, so clips keep their source order).

    With labels: classes are visited round-robin in a seeded order, each class's clips in a
    seeded order, so every class gets ``n // classes`` or one more clip (a class with fewer
    clips gives all it has and the others fill in). Unknown labels (None) form one group of
    their own. Without any label: a seeded uniform subset. ``n >= len(labels)``: all indices.
    """
    total = len(labels)
    if n < 0:
        raise ValueError(f"cannot choose {n} clips")
    if n >= total:
        return list(range(total))
    rng = np.random.default_rng(seed)
    if all(label is None for label in labels):
        return sorted(int(i) for i in rng.choice(total, size=n, replace=False))
    groups: dict[int | None, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    keys = sorted(groups, key=lambda k: (k is None, k if k is not None else 0))
    order = [keys[int(j)] for j in rng.permutation(len(keys))]
    members = {k: [groups[k][int(j)] for j in rng.permutation(len(groups[k]))] for k in order}
    picked: list[int] = []
    rank = 0
    while len(picked) < n:
        for key in order:
            if rank < len(members[key]):
                picked.append(members[key][rank])
                if len(picked) == n:
                    break
        rank += 1
    return sorted(picked)
