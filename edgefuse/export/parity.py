"""ONNX Runtime against PyTorch on the same inputs: the check every export ends with."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnx
import torch

from edgefuse.errors import EdgefuseError
from edgefuse.graph.ort import ort_session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parity:
    label: str  # what was compared, e.g. "random (1, 8, 3, 224, 224)"
    max_abs: float
    max_rel: float  # max |onnx - torch| / max |torch|
    top1_agreement: float
    samples: int
    fp32_noise: float | None = None  # max |PyTorch fp32 - PyTorch fp64|, measured when the error is large

    def within(self, tolerance: float) -> bool:
        """Within tolerance, or no further from PyTorch than PyTorch fp32 itself is from fp64
        (an ill-conditioned model, e.g. random deep weights, cannot be matched closer than its own rounding)."""
        if self.max_rel <= tolerance:
            return True
        return self.fp32_noise is not None and self.max_abs <= 2 * self.fp32_noise

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def compare(label: str, reference: np.ndarray, candidate: np.ndarray) -> Parity:
    ref = reference.reshape(-1, reference.shape[-1])  # (samples, K)
    got = candidate.reshape(-1, candidate.shape[-1])  # (samples, K)
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    scale = max(float(np.abs(ref).max()), 1e-12)
    agree = float((ref.argmax(-1) == got.argmax(-1)).mean())
    return Parity(label, float(diff.max()), float(diff.max()) / scale, agree, int(ref.shape[0]))


def clip_parity(
    model: torch.nn.Module,
    onnx_model: onnx.ModelProto,
    shapes: Sequence[tuple[int, ...]],
    clips: torch.Tensor | None = None,
    seed: int = 0,
    input_name: str = "clips",
    batch: int | None = None,
    tolerance: float | None = None,
) -> list[Parity]:
    """Logits of ``model`` and of the ONNX graph on random inputs of each shape, and on ``clips``
    (run ``batch`` clips at a time when the graph's batch is static)."""
    sess = ort_session(onnx_model)
    gen = torch.Generator().manual_seed(seed)
    cases = [(f"random {tuple(s)}", torch.randn(tuple(s), generator=gen)) for s in shapes]
    if clips is not None:
        cases.append((f"{clips.shape[0]} real clips", clips))
    results = []
    for label, x in cases:
        with torch.no_grad():
            ref = model(x).numpy()
        step = batch or x.shape[0]
        chunks = [x[i:i + step] for i in range(0, x.shape[0] - step + 1, step)]
        if not chunks:
            raise EdgefuseError(f"{label}: fewer clips than the graph's batch {step}")
        got = np.concatenate([sess.run(None, {input_name: c.numpy()})[0] for c in chunks])
        ref = ref[: got.shape[0]]
        result = compare(label, ref, got)
        if tolerance is not None and result.max_rel > tolerance:
            import copy

            with torch.no_grad():
                ref64 = copy.deepcopy(model).double()(x.double()).numpy()[: got.shape[0]]
            noise = float(np.abs(ref64 - ref).max())
            result = Parity(result.label, result.max_abs, result.max_rel, result.top1_agreement, result.samples, noise)
            log.warning("parity %s: error %.3g above tolerance; PyTorch fp32 itself is %.3g from fp64",
                        label, result.max_abs, noise)
        results.append(result)
        log.debug("parity %s: max abs %.3g, rel %.3g", label, results[-1].max_abs, results[-1].max_rel)
    return results


def stream_parity(
    reference_frames: Callable[[torch.Tensor], torch.Tensor],
    onnx_model: onnx.ModelProto,
    input_names: Sequence[str],
    initial_states: Callable[[int], list[np.ndarray]],
    shapes: Sequence[tuple[int, ...]],
    seed: int = 0,
) -> list[Parity]:
    """Per-frame logits of the stream graph, run frame by frame from zero state, against
    ``reference_frames(clips) -> (N, T, K)`` (the clip model's per-frame logits)."""
    sess = ort_session(onnx_model)
    gen = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        clips = torch.randn(tuple(shape), generator=gen)  # (N, T, 3, H, W)
        with torch.no_grad():
            ref = reference_frames(clips).numpy()  # (N, T, K)
        states = initial_states(shape[0])
        outs = []
        for t in range(shape[1]):
            feeds = {input_names[0]: clips[:, t].numpy(), **dict(zip(input_names[1:], states))}
            logits, *states = sess.run(None, feeds)
            outs.append(logits)
        results.append(compare(f"stream {tuple(shape)}", ref, np.stack(outs, axis=1)))
    return results


def enforce(results: Sequence[Parity], tolerance: float, what: str) -> None:
    failing = [r for r in results if not r.within(tolerance)]
    if failing:
        worst = max(failing, key=lambda r: r.max_rel)
        raise EdgefuseError(
            f"{what}: ONNX Runtime departs from PyTorch on {worst.label}: max relative logit error "
            f"{worst.max_rel:.3g} > tolerance {tolerance:g} (max abs {worst.max_abs:.3g}, PyTorch fp32 vs fp64 "
            f"{worst.fp32_noise if worst.fp32_noise is not None else 'not measured'}); "
            "the graph is wrong (report it) or raise --tolerance if the difference is expected"
        )
