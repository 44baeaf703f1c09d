"""Folding for latency: zero channels pad folded blocks to a multiple of ONNX Runtime's NCHWc block without
changing any output (docs/fold.md)."""
from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import torch

from edgefuse.errors import EdgefuseError
from edgefuse.export.fold import (
    ENGINE_CHANNEL_MULTIPLE,
    FoldedFuse,
    FoldPlan,
    fold,
    fold_model,
    padded_channels,
    plan_folding,
    predicted_folded_macs,
)
from edgefuse.export.fold.plan import KEPT, REMOVED, REUSED
from edgefuse.models import create_model
from edgefuse.models.cost import model_cost

SIZE, T = 32, 4


def _clips(seed: int, n: int = 2, t: int = T, h: int = SIZE, w: int = SIZE) -> torch.Tensor:
    return torch.randn(n, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _model(name: str = "adafuse_tsm_resnet18", width: float = 0.25, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(name, num_classes=10, width=width).eval()
    torch.nn.init.normal_(model.fc.weight, 0.0, 0.1)  # logits of a visible scale
    for m in model.modules():  # BN statistics that are not the identity: padding must survive BN folding
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    return model


def _plan(model: torch.nn.Module, multiple: int, seed: int = 0) -> FoldPlan:
    """A random plan of every block, odd counts of kept + reused channels (some below ``multiple``)."""
    rng = np.random.default_rng(seed)
    actions = {}
    for name, f in model.adafuse_modules():
        a = rng.choice([REMOVED, REUSED, KEPT], size=f.width, p=[0.4, 0.3, 0.3])
        if int((a != REMOVED).sum()) % 2 == 0:  # make kept + reused odd: never a multiple of 8
            a[int(np.flatnonzero(a != REMOVED)[0])] = REMOVED
        actions[name] = a.astype(np.int64)
    return FoldPlan(tau=0.5, actions=actions, channel_multiple=multiple)


def test_padded_channels_rounds_up_above_one_block_only() -> None:
    assert [padded_channels(c, 8) for c in (1, 4, 7, 8, 9, 15, 16, 17, 31, 39)] == [1, 4, 7, 8, 16, 16, 16, 24, 32, 40]
    assert [padded_channels(c, 1) for c in (1, 9, 31)] == [1, 9, 31]
    assert padded_channels(17, 16) == 32 and padded_channels(12, 16) == 12
    assert ENGINE_CHANNEL_MULTIPLE == 8


def test_padding_changes_no_output_and_is_priced() -> None:
    model = _model()
    plain, padded = _plan(model, 1), _plan(model, 8)
    a, b = fold_model(model, plain).eval(), fold_model(model, padded).eval()
    assert b.config.extra["fold_channel_multiple"] == 8 and "fold_channel_multiple" not in a.config.extra
    some_padding = False
    for (name, blk_a), (_, blk_b) in zip(a.blocks(), b.blocks()):
        computed = plain.channels(name)["kept"] + plain.channels(name)["reused"]
        assert blk_a.conv1.out_channels == computed
        assert blk_b.conv1.out_channels == blk_b.bn1.num_features == blk_b.conv2.in_channels == padded_channels(computed, 8)
        assert padded.padding(name) == blk_b.conv1.out_channels - computed
        some_padding |= padded.padding(name) > 0
        assert isinstance(blk_b.adafuse, FoldedFuse) and blk_b.adafuse.reused == plain.channels(name)["reused"]
    assert some_padding
    for clips in (_clips(1), _clips(2, n=1, t=6)):
        with torch.no_grad():
            ya, yb = a(clips), b(clips)
        torch.testing.assert_close(yb, ya, rtol=0, atol=1e-5 * float(ya.abs().max()))
        assert float(ya.abs().max()) > 1e-2
    predicted = [predicted_folded_macs(model, plan, T, SIZE) for plan in (plain, padded)]
    assert [model_cost(m, frames=T, size=SIZE).macs_per_clip for m in (a, b)] == predicted
    assert predicted[1] > predicted[0]  # the zero channels' MACs are counted: they are computed


def test_plan_keeps_its_channel_multiple_through_json() -> None:
    model = _model()
    plan = _plan(model, 8)
    back = FoldPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert back.channel_multiple == 8 and back.key() == plan.key()
    assert FoldPlan.from_dict({k: v for k, v in plan.to_dict().items() if k != "channel_multiple"}).channel_multiple == 1
    assert dataclasses.replace(plan, channel_multiple=1).key() != plan.key()
    with pytest.raises(EdgefuseError, match="channel multiple must be a positive integer"):
        FoldPlan.from_dict({**plan.to_dict(), "channel_multiple": 0})


def test_fold_pads_when_asked_and_agrees_exactly() -> None:
    model = _model("adafuse_tsn_resnet18")
    with torch.no_grad():  # forced decisions: channel c skip / reuse / keep by c % 3 (exact folding)
        for _, f in model.adafuse_modules():
            f.fc1.weight.zero_()
            bias = torch.full((f.width, 3), -50.0)  # (width, 3)
            bias[torch.arange(f.width), torch.arange(f.width) % 3] = 50.0
            f.fc1.bias.copy_(bias.flatten())  # (width*3,)
    batches = [_clips(3)]
    padded = fold(model, batches, tau=0.5, progress=False, channel_multiple=8)
    assert padded.plan.channel_multiple == 8 and padded.report.agreement == 1.0
    with torch.no_grad():
        scale = float(torch.cat([model(b) for b in batches]).abs().max())
    assert padded.report.max_abs_logit_diff < 1e-4 * scale
    assert padded.report.macs.folded == predicted_folded_macs(model, padded.plan, T, SIZE)
    plain = dataclasses.replace(padded.plan, channel_multiple=1)
    assert padded.report.macs.folded > predicted_folded_macs(model, plain, T, SIZE)  # layer1: 10 -> 16 channels
    with pytest.raises(EdgefuseError, match="channel multiple"):
        fold(model, batches, tau=0.5, progress=False, channel_multiple=0)
    assert plan_folding(padded.stats, 0.5, 8).key() == padded.plan.key()


def _ort_optimized_ops(payload: bytes, tmp_path) -> list[str]:  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from edgefuse.graph.ort import session_options

    opts = session_options(1)
    out = tmp_path / "optimized.onnx"
    opts.optimized_model_filepath = str(out)
    ort.InferenceSession(payload, opts, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(out)).graph.node]


def test_padded_graph_runs_in_onnxruntime_and_keeps_blocked_convolutions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime")
    model = _model()
    x = _clips(5, n=1)
    payloads, outputs = {}, {}
    for multiple in (1, 8):
        folded = fold_model(model, _plan(model, multiple)).eval()
        buf = io.BytesIO()
        with torch.no_grad():
            torch.onnx.export(folded, (x,), buf, dynamo=False, opset_version=17, input_names=["clips"],
                              output_names=["logits"])
            outputs[multiple] = folded(x).numpy()
        payloads[multiple] = buf.getvalue()
        session = ort.InferenceSession(payloads[multiple], providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"clips": x.numpy()})
        np.testing.assert_allclose(got, outputs[1], rtol=0, atol=1e-5 * float(np.abs(outputs[1]).max()))
    plain_ops = _ort_optimized_ops(payloads[1], tmp_path)
    if "ReorderInput" not in plain_ops:
        pytest.skip("this CPU's ONNX Runtime runs no NCHWc (blocked) convolutions")
    padded_ops = _ort_optimized_ops(payloads[8], tmp_path)
    # odd channel counts: conv2 falls back to im2col + GEMM (FusedConv in NCHW); padded: every conv is blocked
    assert plain_ops.count("FusedConv") > 0
    assert padded_ops.count("FusedConv") < plain_ops.count("FusedConv")
