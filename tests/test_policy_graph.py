"""AdaFuse's policy in the graph, made cheap: the policy nets' BatchNorm folded into their first Linear (Gemm), and the
argmax decision read from the logits (no Softmax). Each rewrite keeps the outputs of the graph it replaces (ONNX
Runtime, real graphs)."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgefuse.export.passes import fold_gemm_batchnorm
from edgefuse.graph.runner import OrtRunner


def _gemm_bn_graph(trans_b: int, shared: bool) -> onnx.ModelProto:
    """x (4, 6) -> Gemm -> BatchNormalization -> Relu, twice (the second Gemm reads the same weight when ``shared``,
    as a policy net shared by blocks does), each BN with its own statistics."""
    rng = np.random.default_rng(trans_b + 2 * shared)
    w = rng.standard_normal((5, 6) if trans_b else (6, 5)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w0"), numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b0")]
    nodes = []
    for k in range(2):
        wname = "w0" if shared or k == 0 else f"w{k}"
        if wname not in {i.name for i in inits}:
            inits.append(numpy_helper.from_array(rng.standard_normal(w.shape).astype(np.float32), wname))
        for p, v in (("g", rng.uniform(0.5, 2, 5)), ("be", rng.standard_normal(5)), ("m", rng.standard_normal(5)),
                     ("v", rng.uniform(0.1, 3, 5))):
            inits.append(numpy_helper.from_array(v.astype(np.float32), f"{p}{k}"))
        nodes += [helper.make_node("Gemm", ["x", wname, "b0"], [f"y{k}"], transB=trans_b),
                  helper.make_node("BatchNormalization", [f"y{k}", f"g{k}", f"be{k}", f"m{k}", f"v{k}"], [f"z{k}"],
                                   epsilon=1e-5),
                  helper.make_node("Relu", [f"z{k}"], [f"out{k}"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
                              [helper.make_tensor_value_info(f"out{k}", TensorProto.FLOAT, [4, 5]) for k in range(2)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in s.run(None, {"x": x})]


@pytest.mark.parametrize("trans_b,shared", [(1, False), (0, False), (1, True)])
def test_gemm_batchnorm_fold_keeps_outputs(trans_b: int, shared: bool) -> None:
    model = _gemm_bn_graph(trans_b, shared)
    folded = fold_gemm_batchnorm(model)
    ops = collections.Counter(n.op_type for n in folded.graph.node)
    assert ops["BatchNormalization"] == 0 and ops["Gemm"] == 2
    x = np.random.default_rng(9).standard_normal((4, 6)).astype(np.float32)
    for a, b in zip(_run(model, x), _run(folded, x)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_gemm_batchnorm_fold_leaves_other_readers_alone() -> None:
    """A Gemm output read by something besides the BatchNormalization (or a graph output) is not folded."""
    model = _gemm_bn_graph(1, False)
    model.graph.output.append(helper.make_tensor_value_info("y0", TensorProto.FLOAT, [4, 5]))
    folded = fold_gemm_batchnorm(model)
    assert collections.Counter(n.op_type for n in folded.graph.node)["BatchNormalization"] == 1
    x = np.ones((4, 6), np.float32)
    for a, b in zip(_run(model, x), _run(folded, x)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_argmax_of_logits_is_argmax_of_softmax() -> None:
    from edgefuse.models.layers.adafuse import argmax_onehot

    logits = torch.randn(4096, 3) * 3
    logits[:8] = torch.tensor([1.0, 1.0, 0.0])  # ties: the first of skip / reuse / keep
    assert torch.equal(argmax_onehot(logits), argmax_onehot(torch.softmax(logits, -1)))
    assert torch.equal(argmax_onehot(logits)[:8], torch.tensor([[1.0, 0.0, 0.0]]).repeat(8, 1))


@pytest.mark.slow  # an export with parity at 112 px (~10 s); test_export checks the ops of every model's graph
def test_dynamic_policy_graph_runs_no_batchnorm_or_softmax_and_decides_like_pytorch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The exported dynamic-policy graph of the trained zoo AdaFuse-TSM: no BatchNormalization (the policy nets' is
    in their Gemm; the convolutions' were folded by the exporter) and no Softmax; its decision tensors equal
    PyTorch's decisions on the same clips, and the logits match."""
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.models import create_model
    from edgefuse.quantize.evaluate import decisions_of

    path = export(make_config(None, tmp_path / "a.onnx", model="synth_adafuse_tsm_r18w025", ranges={})).path
    graph = onnx.load(str(path))
    ops = collections.Counter(n.op_type for n in graph.graph.node)
    assert ops["BatchNormalization"] == 0 and ops["Softmax"] == 0
    dec = decisions_of(graph)
    assert len(dec.masks) == 8
    model = create_model("synth_adafuse_tsm_r18w025", pretrained=True).eval()
    blocks = [m for m in model.modules() if type(m).__name__ == "AdaFuse"]
    for b in blocks:
        b.record = True
    clips = torch.from_numpy(np.random.default_rng(0).random((2, 8, 3, 112, 112), dtype=np.float32))
    with torch.no_grad():
        want = model(clips).numpy()
    run = dec.outputs(OrtRunner(graph, extra_outputs=dec.names).run_logits_and(clips.numpy(), dec.names))
    np.testing.assert_allclose(run.logits, want, rtol=1e-4, atol=1e-4)
    got = [v.reshape(2, 8, -1, 3) for v in run.tensors.values()]
    assert len(got) == 8
    for g, b in zip(got, blocks):
        assert b.last_mask is not None and np.array_equal(g, b.last_mask.numpy())


def test_fuse_argmax_equals_the_one_hot_fusion_including_ties() -> None:
    """AdaFuse.fuse_argmax (two masks, 12 ops in the graph) against decide + fuse (the one-hot): every pattern of
    ties among three logits from {0, 1, 2}, random logits, and zeros in the feature maps."""
    from edgefuse.models.layers.adafuse import AdaFuse

    width = 27
    fuse = AdaFuse(4, width, torch.nn.Linear(8, 16), torch.nn.Linear(16, 3 * width)).eval()
    grid = torch.cartesian_prod(*[torch.arange(3.0)] * 3)  # (27, 3): all ties
    g = torch.Generator().manual_seed(0)
    for logits in (grid.reshape(1, 3 * width).repeat(6, 1), torch.randn(6, 3 * width, generator=g)):
        out = torch.randn(6, width, 5, 5, generator=g).relu()  # ReLU output: zeros in it
        prev = torch.randn(6, width, 5, 5, generator=g)
        want = fuse.fuse(out, prev, fuse.decide(logits.reshape(-1, width, 3)))
        assert torch.equal(fuse.fuse_argmax(out, prev, logits), want)


@pytest.mark.parametrize("policy", ["dynamic", "stream"])
def test_exported_decision_keeps_the_outputs_of_the_one_hot_graph(policy: str, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The graph export writes (decision and fusion from two masks) against the graph with the one-hot decision it
    replaces (AdaFuse.lean off), same weights: 14 fewer ops per block, logits equal in ONNX Runtime (per frame for the
    stream graph) and, for the clip graph, the decisions read from the masks equal the one-hot tensors."""
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config
    from edgefuse.graph.metadata import read_metadata
    from edgefuse.models import create_model
    from edgefuse.models.checkpoint import save_checkpoint
    from edgefuse.models.layers.adafuse import AdaFuse
    from edgefuse.quantize.evaluate import decisions_of

    model = "adafuse_tsn_resnet18" if policy == "stream" else "adafuse_tsm_resnet18"
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pth"
    save_checkpoint(create_model(model, num_classes=5, num_segments=4, width=0.25), ckpt)
    kw = {"model": model, "checkpoint": ckpt, "size": 48, "segments": 4, "policy": policy, "options": {"width": 0.25}}
    lean = onnx.load(str(export(make_config(None, tmp_path / "lean.onnx", **kw)).path))
    with monkeypatch.context() as m:
        m.setattr(AdaFuse, "lean", lambda self: False)
        onehot = onnx.load(str(export(make_config(None, tmp_path / "onehot.onnx", **kw)).path))
    assert len(onehot.graph.node) - len(lean.graph.node) == 14 * 8
    clips = np.random.default_rng(1).standard_normal((2, 4, 3, 48, 48)).astype(np.float32)
    if policy == "stream":
        states = read_metadata(lean)["stream_states"]
        assert states == read_metadata(onehot)["stream_states"]
        a, b = OrtRunner(lean).run_frames(clips), OrtRunner(onehot).run_frames(clips)  # (N, T, K) each
        assert np.array_equal(a, b)
        return
    dec_lean, dec_onehot = decisions_of(lean), decisions_of(onehot)
    assert len(dec_lean.masks) == 8 and not dec_lean.onehots and len(dec_onehot.onehots) == 8
    a = dec_lean.outputs(OrtRunner(lean, extra_outputs=dec_lean.names).run_logits_and(clips, dec_lean.names))
    b = dec_onehot.outputs(OrtRunner(onehot, extra_outputs=dec_onehot.names).run_logits_and(clips, dec_onehot.names))
    assert np.array_equal(a.logits, b.logits)
    assert len(dec_lean.names) == 16 and len(dec_onehot.names) == 8  # two masks per block against one one-hot ...
    for x, y in zip(a.tensors.values(), b.tensors.values()):  # ... the same decisions, block by block
        assert np.array_equal(x, y)
    assert set(np.concatenate([x.reshape(-1, 3).argmax(1) for x in a.tensors.values()])) == {0, 1, 2}  # all actions
