"""Folding AdaFuse's policy into a static dense model: statistics, the rule, exactness, MACs, tau search, ONNX."""
from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
import torch

from edgefuse.errors import EdgefuseError
from edgefuse.export.fold import (
    FoldedFuse,
    FoldPlan,
    FoldReport,
    PolicyStats,
    collect_policy_stats,
    fold,
    fold_model,
    plan_folding,
    predicted_folded_macs,
    refit_folded,
)
from edgefuse.export.fold.plan import overridden
from edgefuse.models import create_model
from edgefuse.models.cost import adafuse_cost, model_cost
from edgefuse.models.layers import AdaFuse, TemporalShift

SIZE, T = 64, 4


def _clips(seed: int, n: int = 2, t: int = T, h: int = SIZE, w: int = SIZE) -> torch.Tensor:
    return torch.randn(n, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _model(name: str = "adafuse_tsn_resnet18", seed: int = 0, **options: float) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(name, num_classes=10, **options).eval()
    torch.nn.init.normal_(model.fc.weight, 0.0, 0.1)  # logits of a visible scale
    return model


def _force(model: torch.nn.Module, action_of_channel=lambda c: c % 3) -> None:
    """Input-independent decisions: channel c of every block always takes ``action_of_channel(c)``."""
    for _, f in model.adafuse_modules():
        with torch.no_grad():
            f.fc1.weight.zero_()
            bias = torch.full((f.width, 3), -50.0)  # (width, 3): skip, reuse, keep logits per channel
            bias[torch.arange(f.width), torch.tensor([action_of_channel(c) for c in range(f.width)])] = 50.0
            f.fc1.bias.copy_(bias.flatten())  # (width*3,)


def _first_segment_then(model: torch.nn.Module, later: int) -> None:
    """Even channels always keep; odd channels skip at the first segment and take ``later`` (1 reuse, 2 keep)
    once a previous segment exists: fc0 reads only the previous segment's pooled input (zeros at t = 0)."""
    for _, f in model.adafuse_modules():
        with torch.no_grad():
            f.fc0.weight.zero_()
            f.fc0.bias.zero_()
            f.fc0.weight[:, : f.in_channels] = 1.0 / f.in_channels  # hidden = mean of the previous pooled input
            f.fc1.weight.zero_()
            weight = f.fc1.weight.view(f.width, 3, -1)  # (width, 3, hidden)
            bias = f.fc1.bias.view(f.width, 3)  # (width, 3)
            bias.fill_(-50.0)
            odd = torch.arange(f.width) % 2 == 1
            bias[~odd, 2] = 50.0
            bias[odd, 0] = 1.0
            weight[odd, later] = 1e4 / weight.shape[-1]


def _similar_clips(*seeds: int) -> list[torch.Tensor]:
    """Batches of 2 clips each, all close to one base clip (so that feature changes outweigh their differences)."""
    base = _clips(0, n=1)
    return [base + 0.1 * _clips(seed) for seed in seeds]


def _tell_clips_apart(model: torch.nn.Module, batches: list[torch.Tensor]) -> None:
    """A classifier with one class per clip (its centred feature): the dynamic model's top-1 is the clip's own
    class, and on similar clips any real feature change moves every clip towards the same class."""
    clips = torch.cat(batches)
    n, t = clips.shape[:2]
    with torch.no_grad():
        feats = model.backbone(clips.flatten(0, 1), t).reshape(n, t, -1).mean(dim=1)  # (n, D)
        centre = feats.mean(dim=0)  # (D,)
        w = feats - centre  # (n, D)
        w = w / w.norm(dim=1, keepdim=True)  # (n, D)
        model.fc = torch.nn.Linear(feats.shape[1], n)
        model.fc.weight.copy_(w)
        model.fc.bias.copy_(-(w @ centre))


def _stats(per_channel: dict[str, list[list[int]]], t: int) -> PolicyStats:
    """Hand-made statistics: per block, per channel, a list of actions (case k goes to segment k % t)."""
    counts = {}
    for block, channels in per_channel.items():
        c = np.zeros((t, len(channels), 3), dtype=np.int64)  # (T, width, 3)
        for ch, actions in enumerate(channels):
            for k, a in enumerate(actions):
                c[k % t, ch, a] += 1
        counts[block] = c
    n_cases = len(next(iter(per_channel.values()))[0])
    return PolicyStats(counts=counts, clips=n_cases // t, segments=t)


# ------------------------------------------------------------------------------ statistics


def test_stats_count_every_recorded_decision() -> None:
    model = _model(seed=1)
    for _, f in model.adafuse_modules():  # a policy that mixes all three actions
        torch.nn.init.normal_(f.fc1.weight, 0.0, 0.5)
    batches = [_clips(1, n=2), _clips(2, n=3)]
    stats = collect_policy_stats(model, batches, progress=False)
    assert stats.clips == 5 and stats.segments == T
    names = [name for name, _ in model.adafuse_modules()]
    assert list(stats.counts) == names

    reference = {name: np.zeros((T, f.width, 3), dtype=np.int64) for name, f in model.adafuse_modules()}
    for _, f in model.adafuse_modules():
        f.record = True
    with torch.no_grad():
        for clips in batches:
            model(clips)
            for name, f in model.adafuse_modules():
                reference[name] += f.last_mask.sum(dim=0).long().numpy()  # (T, width, 3)
    for _, f in model.adafuse_modules():
        f.record, f.last_mask = False, None

    decisions = {d.block: d.fractions for d in adafuse_cost(model, torch.cat(batches)).decisions}
    mixed = 0
    for name, f in model.adafuse_modules():
        c = stats.counts[name]
        assert c.dtype == np.int64 and c.shape == (T, f.width, 3)
        assert (c.sum(axis=2) == stats.clips).all()  # one decision per clip, segment and channel
        assert np.array_equal(c, reference[name])
        assert stats.block_fractions(name) == pytest.approx(decisions[name], abs=1e-6)  # cost.py averages in float32
        mixed += int((c.sum(axis=(0, 1)) > 0).all())
    assert mixed > 0  # the test policy really mixes skip, reuse and keep
    assert all(f.record is False and f.last_mask is None for _, f in model.adafuse_modules())

    again = PolicyStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again.clips == stats.clips and again.segments == stats.segments
    assert all(np.array_equal(again.counts[k], stats.counts[k]) for k in stats.counts)


def test_stats_reject_mismatched_segments_and_bad_input() -> None:
    model = _model()
    with pytest.raises(EdgefuseError, match="same number of segments"):
        collect_policy_stats(model, [_clips(0, n=1, t=4), _clips(1, n=1, t=3)], progress=False)
    assert all(f.record is False for _, f in model.adafuse_modules())
    with pytest.raises(EdgefuseError, match="at least one batch"):
        collect_policy_stats(model, [], progress=False)
    with pytest.raises(EdgefuseError, match=r"\(N, T, 3, H, W\)"):
        collect_policy_stats(model, [torch.randn(2, 3, 64, 64)], progress=False)
    with pytest.raises(EdgefuseError, match="no AdaFuse"):
        collect_policy_stats(create_model("tsn_resnet18", num_classes=10), [_clips(0)], progress=False)
    with pytest.raises(EdgefuseError, match="do not add up"):
        PolicyStats.from_dict({"clips": 3, "segments": 1, "blocks": {"layer1.0": [[[1, 1, 0]]]}})


# ------------------------------------------------------------------------------ the rule


def test_plan_rule_on_hand_made_stats(caplog: pytest.LogCaptureFixture) -> None:
    s, r, k = 0, 1, 2
    stats = _stats({
        "a": [
            [s] * 3 + [k] * 17,  # f_skip 0.15 (not a binary fraction): removed from tau 0.15 down
            [s] * 10 + [r] * 6 + [k] * 4,  # f_skip 0.5: removed at tau 0.5 (edge), else reuse
            [r] * 10 + [k] * 10,  # reuse == keep: keep
            [s] * 9 + [r] * 11,  # f_skip 0.45: reuse above
            [s] * 20,  # always skipped: removed even at tau 1
        ],
        "b": [[s] * 20, [s] * 18 + [r] * 2],  # every channel skipped >= 0.9 of the time
    }, t=4)
    assert stats.clips == 5
    expected_a = {1.0: [k, r, k, r, s], 0.55: [k, r, k, r, s], 0.5: [k, s, k, r, s],
                  0.2: [k, s, k, s, s], 0.15: [s, s, k, s, s]}
    for tau, actions in expected_a.items():
        assert plan_folding(stats, tau).actions["a"].tolist() == actions, tau

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgefuse.export.fold"):
        plan = plan_folding(stats, 0.5)
    assert plan.actions["b"].tolist() == [s, r]  # the least skipped channel survives, by the keep/reuse rule
    assert "every channel of block b" in caplog.text
    assert plan.channels("a") == {"removed": 2, "reused": 1, "kept": 2}
    assert plan_folding(stats, 0.95).actions["b"].tolist() == [s, r]  # 0.9 < 0.95: no warning needed

    again = FoldPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.tau == 0.5 and again.key() == plan.key()
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(EdgefuseError, match=r"in \(0, 1\]"):
            plan_folding(stats, bad)


# ------------------------------------------------------------------------------ exact folding


@pytest.mark.parametrize("name", ["adafuse_tsn_resnet18", "adafuse_tsm_resnet18"])
def test_forced_decisions_fold_exactly(name: str) -> None:
    model = _model(name)
    _force(model)  # channel c: c % 3 = skip / reuse / keep
    batches = [_clips(3)]
    result = fold(model, batches, tau=0.5, progress=False)
    folded = result.model

    assert result.tau == 0.5 and result.report.agreement == 1.0
    assert not any(isinstance(m, AdaFuse) for m in folded.modules())
    assert not hasattr(folded, "policy_fc0s") and not hasattr(folded, "policy_fc1s")
    assert hasattr(model, "policy_fc0s") and isinstance(model.backbone.layer1[0].adafuse, AdaFuse)  # original intact
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in model.parameters())
    assert folded.config.extra["policy"] == "static" and folded.config.extra["fold_tau"] == 0.5
    for (bname, block), (_, orig) in zip(folded.blocks(), model.blocks()):
        w = orig.width
        n_kept, n_reused = len(range(2, w, 3)), len(range(1, w, 3))
        assert result.plan.channels(bname) == {"removed": w - n_kept - n_reused, "reused": n_reused, "kept": n_kept}
        assert isinstance(block.adafuse, FoldedFuse)
        assert (block.adafuse.kept, block.adafuse.reused) == (n_kept, n_reused)
        assert block.conv1.out_channels == block.bn1.num_features == block.conv2.in_channels == n_kept + n_reused
        assert block.conv2.out_channels == orig.conv2.out_channels
        assert isinstance(block.shift, TemporalShift) == name.startswith("adafuse_tsm")
        assert (block.shift is None) == (orig.shift is None)

    for clips in (_clips(4), _clips(5, n=1, t=6)):  # the folded graph does not depend on T
        with torch.no_grad():
            dynamic, static = model(clips), folded(clips)
        torch.testing.assert_close(static, dynamic, rtol=0, atol=1e-5 * float(dynamic.abs().max()))
        assert float(dynamic.abs().max()) > 1e-2  # a scale at which a wrong channel order would show

    cost = model_cost(folded, frames=T, size=SIZE)
    assert cost.macs_per_clip == predicted_folded_macs(model, result.plan, frames=T, size=SIZE)
    dynamic = adafuse_cost(model, torch.cat(batches))  # dense cost and the paper's cost given the decisions
    macs = result.report.macs
    assert macs.dense == dynamic.macs_per_clip and macs.folded == cost.macs_per_clip < dynamic.macs_per_clip
    assert macs.dynamic_expected == pytest.approx(dynamic.macs_given_decisions_per_clip)
    blocks = {b.block: b for b in result.report.blocks}
    assert blocks["layer1.0"].skip == pytest.approx(len(range(0, 64, 3)) / 64)
    assert blocks["layer1.0"].removed == len(range(0, 64, 3))
    assert FoldReport.from_dict(json.loads(json.dumps(result.report.to_dict()))) == result.report  # JSON round trip


def test_fold_model_rejects_a_foreign_plan() -> None:
    model = _model()
    width = {name: f.width for name, f in model.adafuse_modules()}
    with pytest.raises(EdgefuseError, match="does not match"):
        fold_model(model, FoldPlan(0.5, {"layer1.0": np.full(64, 2)}))
    all_removed = {name: np.zeros(w, dtype=np.int64) for name, w in width.items()}
    with pytest.raises(EdgefuseError, match="removes every channel"):
        fold_model(model, FoldPlan(0.5, all_removed))


def test_folded_fuse_is_a_shift_of_the_reused_channels() -> None:
    out = torch.randn(2 * 3, 5, 2, 2)  # (N*T, C, H, W), N=2, T=3
    got = FoldedFuse(2, 3)(out, torch.empty(0), 3).reshape(2, 3, 5, 2, 2)  # (N, T, C, H, W)
    o5 = out.reshape(2, 3, 5, 2, 2)  # (N, T, C, H, W)
    assert torch.equal(got[:, :, :2], o5[:, :, :2])
    assert torch.equal(got[:, 1:, 2:], o5[:, :-1, 2:])
    assert torch.equal(got[:, 0, 2:], torch.zeros_like(got[:, 0, 2:]))
    assert FoldedFuse(5, 0)(out, out, 3) is out


# ------------------------------------------------------------------------------ tau search


def test_auto_tau_takes_the_smallest_when_the_policy_is_static() -> None:
    model = _model()
    _force(model)
    result = fold(model, [_clips(6)], taus=(0.1, 0.5, 1.0), min_agreement=0.99, progress=False)
    assert result.tau == 0.1 and result.plan.tau == 0.1
    assert result.report.agreement == 1.0
    assert [t.tau for t in result.report.taus_tried] == [0.1]  # stops at the first that agrees


def test_auto_tau_skips_taus_that_break_agreement() -> None:
    """Odd channels: skipped at the first segment (f_skip 0.25), reused after: exact as 'reused' (tau > 0.25),
    wrong when removed (tau <= 0.25). The plan's slice, without the refit (which would make up for the removal
    on these crafted clips: tests/test_fold_refit.py)."""
    model = _model()
    _first_segment_then(model, later=1)
    batches = _similar_clips(7, 8)
    _tell_clips_apart(model, batches)
    result = fold(model, batches, taus=(0.2, 0.25, 0.3, 1.0), min_agreement=1.0, progress=False, with_refit=False)
    tried = result.report.taus_tried
    assert [t.tau for t in tried] == [0.2, 0.25, 0.3]
    assert tried[0].agreement < 1.0 and tried[1].agreement < 1.0 and tried[2].agreement == 1.0
    assert tried[0].folded_gmacs < tried[2].folded_gmacs
    assert result.tau == 0.3 and result.report.max_abs_logit_diff < 1e-4
    assert result.plan.channels("layer1.0") == {"removed": 0, "reused": 32, "kept": 32}


def test_auto_tau_below_the_floor_refuses_and_an_explicit_tau_folds(caplog: pytest.LogCaptureFixture) -> None:
    """Odd channels skip at the first segment and keep after: no static structure is exact, so the search
    (tau 1 added last) refuses, naming the best agreement; an explicit tau folds anyway, with a warning. Without
    the refit: the search's refusal is what is tested."""
    model = _model()
    _first_segment_then(model, later=2)
    batches = _similar_clips(9, 10)
    _tell_clips_apart(model, batches)
    with pytest.raises(EdgefuseError, match=r"no tau reaches top-1 agreement 1\.0000 .*best 0\.\d+, at tau"):
        fold(model, batches, taus=(0.5, 0.2), min_agreement=1.0, progress=False, with_refit=False)
    with caplog.at_level(logging.WARNING, logger="edgefuse.export.fold"):
        result = fold(model, batches, tau=1.0, min_agreement=1.0, progress=False, with_refit=False)
    assert result.tau == 1.0 and result.report.agreement < 1.0
    assert result.plan.channels("layer1.0") == {"removed": 0, "reused": 0, "kept": 64}
    assert f"agreement {result.report.agreement:.4f}" in caplog.text


# ------------------------------------------------------------------------------ ONNX


def test_folded_model_exports_to_onnx_and_runs_in_onnxruntime() -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _model("adafuse_tsm_resnet18")
    _force(model)
    folded = fold(model, [_clips(11)], tau=0.5, progress=False).model.eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(folded, (_clips(12, n=1),), buf, dynamo=False, opset_version=17,
                          input_names=["clips"], output_names=["logits"],
                          dynamic_axes={"clips": {0: "N", 1: "T", 3: "H", 4: "W"}, "logits": {0: "N"}})
    graph = onnx.load_from_string(buf.getvalue()).graph
    ops = {node.op_type for node in graph.node}
    assert not ops & {"ScatterND", "ScatterElements", "ArgMax", "OneHot"}  # no scatter, no dynamic policy
    assert "Concat" in ops and "Slice" in ops
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for clips in (_clips(13, n=2, t=T), _clips(14, n=3, t=6, h=96, w=80)):
        with torch.no_grad():
            expected = folded(clips).numpy()
        (got,) = session.run(None, {"clips": clips.numpy()})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * float(np.abs(expected).max()))


# ------------------------------------------------------------------------------ refit


def test_refit_leaves_an_exact_fold_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    """Decisions that never vary: the plan's slice computes what the policy does, so a refit of every block (fold
    refits none of them: nothing is overridden) finds nothing to change. Too few clips to hold half out: no refit,
    with a warning."""
    model = _model(width=0.25)
    _force(model)
    batches = [_clips(3, n=4)]
    stats = collect_policy_stats(model, batches, progress=False)
    plan = plan_folding(stats, 0.5)
    assert set(overridden(stats, plan).values()) == {0.0}
    folded = fold_model(model, plan).eval()
    refitted, blocks = refit_folded(folded, model, batches)
    assert [b.block for b in blocks] == [name for name, _ in model.adafuse_modules()]
    for b in blocks:
        assert b.before < 1e-10 and b.after <= b.before + 1e-12 and b.held_out_before < 1e-10 and b.rows > 0
    for (_, a), (_, b) in zip(folded.blocks(), refitted.blocks()):
        scale = float(a.conv2.weight.detach().abs().max())
        torch.testing.assert_close(b.conv2.weight, a.conv2.weight, rtol=0, atol=1e-5 * scale)
        torch.testing.assert_close(b.bn2.running_mean, a.bn2.running_mean, rtol=0, atol=1e-5)
    result = fold(model, batches, tau=0.5, progress=False)
    assert not result.report.refit  # nothing overridden: nothing to refit
    assert all(b.overridden == 0.0 and b.error_before is None for b in result.report.blocks)
    with caplog.at_level(logging.WARNING, logger="edgefuse.export.fold"):
        few = fold(model, [batches[0][:3]], tau=0.5, progress=False)  # halves of 1 and 2 clips
    assert not few.report.refit and "at least 2 policy clips in each half" in caplog.text


def test_overridden_counts_the_decisions_the_plan_computes_otherwise() -> None:
    """Segment 0 of channel 0 is skipped, then kept; channel 1 is skipped, then reused; channel 2 kept throughout."""
    s, r, k = 0, 1, 2
    stats = _stats({"b": [[s, k, k, k], [s, r, r, r], [k, k, k, k]]}, t=4)
    plan = plan_folding(stats, 0.5)
    assert plan.actions["b"].tolist() == [k, r, k]
    assert overridden(stats, plan) == {"b": pytest.approx(1 / 12)}  # channel 0 at t = 0; reuse == skip there
    removed = FoldPlan(0.2, {"b": np.array([s, s, k])})
    assert overridden(stats, removed) == {"b": pytest.approx(6 / 12)}  # channel 0's keeps, channel 1's later reuses


def test_refit_brings_an_inexact_fold_closer_to_the_policy_on_other_clips() -> None:
    """Odd channels skip at the first segment and keep after: no static structure is exact, and at tau 1 the fold
    keeps them throughout. The refit lowers conv2's error on the folding clips (it cannot raise it: no change is
    one of its candidates; how far depends on the ridge cross-validation picks), keeps the structure and MACs, and
    brings the logits closer to the policy's on clips it did not see."""
    model = _model(width=0.25)
    _first_segment_then(model, later=2)
    batches = [_clips(seed) for seed in (11, 12, 13)]
    unseen = _clips(14, n=4)
    plain = fold(model, batches, tau=1.0, progress=False, with_refit=False)
    result = fold(model, batches, tau=1.0, progress=False)
    assert result.report.refit and not plain.report.refit
    blocks = result.report.blocks
    assert all(b.overridden == pytest.approx(0.5 * 0.25) for b in blocks)  # odd channels, first of 4 segments
    errors = [(b.error_before, b.error_after) for b in blocks]
    assert all(e0 is not None and e1 is not None and e1 <= e0 + 1e-12 for e0, e1 in errors), errors
    assert sum(e1 for _, e1 in errors) < 0.9 * sum(e0 for e0, _ in errors), errors  # type: ignore[misc]
    for (_, a), (_, b) in zip(plain.model.blocks(), result.model.blocks()):
        assert a.conv2.weight.shape == b.conv2.weight.shape and not torch.equal(a.conv2.weight, b.conv2.weight)
    assert result.report.macs.folded == plain.report.macs.folded
    with torch.no_grad():
        ref = model(unseen)
        before, after = (plain.model(unseen) - ref).abs().mean(), (result.model(unseen) - ref).abs().mean()
    assert after < 0.9 * before, (float(before), float(after))
    again = fold(model, batches, tau=1.0, progress=False).model
    assert all(torch.equal(a.conv2.weight, b.conv2.weight) for (_, a), (_, b) in zip(again.blocks(),
                                                                                      result.model.blocks()))


def test_refit_agreement_is_judged_on_clips_the_refit_did_not_see() -> None:
    """The agreement a refitted fold reports (what the tau search compares with --min-agreement) is out of fold:
    alternate batches through the fold refitted on the other batches, not the final refit judged on its own clips."""
    model = _model(width=0.25)
    _first_segment_then(model, later=2)
    batches = _similar_clips(21, 22, 23, 24)
    _tell_clips_apart(model, batches)
    result = fold(model, batches, tau=1.0, progress=False)
    plain = fold_model(model, result.plan).eval()
    blocks = [b.block for b in result.report.blocks if (b.overridden or 0.0) > 0]
    agree = 0
    with torch.no_grad():
        for k in range(2):
            judge = refit_folded(plain, model, batches[1 - k::2], blocks=blocks)[0]
            for clips in batches[k::2]:
                agree += int((judge(clips).argmax(1) == model(clips).argmax(1)).sum())
        in_sample = float((result.model(torch.cat(batches)).argmax(1) == model(torch.cat(batches)).argmax(1))
                          .float().mean())
    assert result.report.agreement == agree / 8
    assert result.report.agreement < in_sample, (result.report.agreement, in_sample)  # a flattering judge otherwise
