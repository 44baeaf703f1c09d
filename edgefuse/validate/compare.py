"""The engine's logits against the reference's on the same clips, with and without labels (figures
from :mod:`edgefuse.metrics`)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgefuse import metrics
from edgefuse.validate.report import ClassShift, EngineComparison, PerClip


def per_class(reference: np.ndarray, engine: np.ndarray, labels: np.ndarray,
              class_names: Sequence[str] | None) -> list[ClassShift]:
    """Every labelled class's top-1 accuracy in both, the classes whose accuracy fell most first."""
    r, e = reference.argmax(1), engine.argmax(1)
    classes = []
    for c in sorted(set(labels.tolist())):
        m = labels == c
        name = class_names[c] if class_names and c < len(class_names) else str(c)
        classes.append(ClassShift(name, int(m.sum()), float(np.mean(r[m] == c)), float(np.mean(e[m] == c))))
    return sorted(classes, key=lambda x: x.delta)


def compare_logits(ref: np.ndarray, eng: np.ndarray, labels: np.ndarray | None,
                   class_names: Sequence[str] | None, ids: list[str] | None = None) -> EngineComparison:
    """``eng`` (N, K) against ``ref`` (N, K); top-1 / top-5 and per-class accuracy with ``labels`` (N,). Clips
    whose logits hold NaN or inf are listed (``nonfinite_engine`` / ``nonfinite_reference``) and never agree."""
    diff = metrics.compare_logits(ref, eng, labels)
    finite_r, finite_e = np.isfinite(ref).all(axis=1), np.isfinite(eng).all(axis=1)  # (N,)
    names = ids if ids is not None else [str(i) for i in range(len(ref))]
    # a clip with non-finite logits never agrees (argmax would pick the first NaN)
    agreement = float(np.mean((diff.reference_top1 == diff.candidate_top1) & finite_r & finite_e)) if len(ref) else 0.0
    clip = PerClip(max_abs_error=diff.max_abs_error.tolist(), kl=diff.kl.tolist(), cosine=diff.cosine.tolist(),
                   reference_top1=diff.reference_top1.tolist(), engine_top1=diff.candidate_top1.tolist(),
                   label=labels.tolist() if labels is not None else None, id=ids)
    with_labels: dict[str, Any] = {}
    if labels is not None:
        r, e = ref.astype(np.float64), eng.astype(np.float64)
        with_labels = {"top1_reference": diff.top1_reference, "top1_engine": diff.top1_candidate,
                       "top5_reference": metrics.topk_accuracy(r, labels, 5),
                       "top5_engine": metrics.topk_accuracy(e, labels, 5),
                       "per_class": per_class(r, e, labels, class_names)}
    return EngineComparison(
        clips=diff.clips, top1_agreement=agreement, cosine_mean=float(diff.cosine.mean()),
        cosine_min=float(diff.cosine.min()), max_abs_error=float(diff.max_abs_error.max()),
        mean_abs_error=diff.mean_abs_error, kl_mean=float(diff.kl.mean()), kl_max=float(diff.kl.max()), per_clip=clip,
        nonfinite_engine=[names[i] for i in np.flatnonzero(~finite_e)] or None,
        nonfinite_reference=[names[i] for i in np.flatnonzero(~finite_r)] or None,
        **with_labels,
    )
