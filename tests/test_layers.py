"""Temporal modules against naive reference formulas written out here."""
from __future__ import annotations

import pytest
import torch

from edgefuse.models.layers import GSF, AdaFuse, TemporalShift, argmax_onehot, gsf_channels


def naive_shift(x: torch.Tensor, t: int, div: int, online: bool) -> torch.Tensor:
    nt, c, h, w = x.shape
    x5 = x.view(nt // t, t, c, h, w)
    out = x5.clone()
    fold = c // div
    for n in range(nt // t):
        for s in range(t):
            if online:
                out[n, s, :fold] = x5[n, s - 1, :fold] if s > 0 else 0
            else:
                out[n, s, :fold] = x5[n, s + 1, :fold] if s + 1 < t else 0
                out[n, s, fold:2 * fold] = x5[n, s - 1, fold:2 * fold] if s > 0 else 0
    return out.view(nt, c, h, w)


@pytest.mark.parametrize("online", [False, True])
@pytest.mark.parametrize("t,c,div", [(8, 16, 8), (3, 24, 4), (1, 8, 8)])
def test_shift_matches_definition(online: bool, t: int, c: int, div: int) -> None:
    x = torch.randn(2 * t, c, 3, 2)
    got = TemporalShift(div, online=online)(x, t)
    assert torch.equal(got, naive_shift(x, t, div, online))


def test_shift_online_never_looks_ahead() -> None:
    x = torch.randn(8, 16, 2, 2)
    y = TemporalShift(8, online=True)(x, 8)
    x2 = x.clone()
    x2[5:] += 1.0  # change the future
    y2 = TemporalShift(8, online=True)(x2, 8)
    assert torch.equal(y[:5], y2[:5])


def test_argmax_onehot_equals_torch_argmax_including_ties() -> None:
    scores = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 3.0, 3.0], [0.0, 0.0, 1.0], [0.1, 0.5, 0.2]])
    scores = torch.cat([scores, torch.randn(1000, 3)])
    expected = torch.nn.functional.one_hot(scores.argmax(-1), 3).float()
    assert torch.equal(argmax_onehot(scores), expected)


def _adafuse(cin: int = 8, width: int = 4, hidden: int = 6, decision: str = "argmax") -> AdaFuse:
    f = AdaFuse(cin, width, torch.nn.Linear(2 * cin, hidden), torch.nn.Linear(hidden, 3 * width), decision=decision)
    return f.eval()


def test_adafuse_fusion_formula() -> None:
    """out*keep + prev*reuse with the policy computed from [pooled prev, pooled cur]."""
    torch.manual_seed(0)
    f = _adafuse()
    t, n = 4, 2
    x = torch.randn(n * t, 8, 5, 5)
    out = torch.randn(n * t, 4, 5, 5)
    got = f(out, x, t)
    pooled = x.mean((2, 3)).view(n, t, 8)
    prev = torch.zeros_like(pooled)
    prev[:, 1:] = pooled[:, :-1]
    with torch.no_grad():
        z = f.fc1(torch.relu(f.bn(f.fc0(torch.cat([prev, pooled], -1).view(n * t, 16))))).view(n * t, 4, 3)
    action = z.argmax(-1)
    o = out.view(n, t, 4, 5, 5)
    h = torch.zeros_like(o)
    h[:, 1:] = o[:, :-1]
    h = h.view(n * t, 4, 5, 5)
    expected = torch.where((action == 2)[..., None, None], out, torch.where((action == 1)[..., None, None], h, 0.0))
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("action", [0, 1, 2])
def test_adafuse_forced_decisions(action: int) -> None:
    f = _adafuse()
    with torch.no_grad():
        f.fc1.bias.copy_(torch.tensor([100.0 if a == action else -100.0 for a in (0, 1, 2)]).repeat(4))
        f.fc1.weight.zero_()
    x, out = torch.randn(8, 8, 3, 3), torch.randn(8, 4, 3, 3)
    got = f(out, x, 4).view(2, 4, 4, 3, 3)
    o = out.view(2, 4, 4, 3, 3)
    if action == 0:
        assert torch.equal(got, torch.zeros_like(got))
    elif action == 1:
        assert torch.equal(got[:, 1:], o[:, :-1]) and torch.equal(got[:, 0], torch.zeros_like(got[:, 0]))
    else:
        assert torch.equal(got, o)


def test_adafuse_gumbel_is_seeded_and_differs_from_argmax() -> None:
    torch.manual_seed(1)
    f = _adafuse(decision="gumbel")
    x, out = torch.randn(16, 8, 3, 3), torch.randn(16, 4, 3, 3)
    f.generator = torch.Generator().manual_seed(7)
    a = f(out, x, 8)
    f.generator = torch.Generator().manual_seed(7)
    b = f(out, x, 8)
    assert torch.equal(a, b)
    f.decision = "argmax"
    assert not torch.equal(a, f(out, x, 8))


def test_gsf_channels_rule() -> None:
    assert gsf_channels(256, 100) == 256
    assert gsf_channels(256, 25) == 64
    assert gsf_channels(100, 25) == 26  # rounded up to even
    with pytest.raises(ValueError, match="multiple of 4"):
        GSF(100, 25)


def test_gsf_zero_gate_is_identity_on_gated_channels() -> None:
    """With a zero gate, y = 0 and r = x; with fusion weight 0 the output is r = x, channel-shuffled per group."""
    g = GSF(16, 50).eval()  # 8 gated channels, two groups of 4
    with torch.no_grad():
        g.conv3d.weight.zero_()
        g.conv3d.bias.zero_()
        for conv in (g.channel_conv1, g.channel_conv2):
            conv.weight.zero_()
            conv.bias.fill_(-50.0)  # sigmoid -> 0
    x = torch.randn(2 * 3, 16, 4, 4)
    y = g(x, 3)
    perm = [0, 2, 1, 3, 4, 6, 5, 7]  # group 1 = channels 0-3: halves [0,1],[2,3] interleave -> 0,2,1,3
    assert torch.allclose(y[:, :8], x[:, perm], atol=1e-6)
    assert torch.equal(y[:, 8:], x[:, 8:])


def test_gsf_gate_one_shifts_in_time() -> None:
    """Gate 1 and fusion weight 1: group 1 comes from t+1, group 2 from t-1."""
    g = GSF(8, 100).eval()
    with torch.no_grad():
        g.conv3d.weight.zero_()
        g.conv3d.bias.fill_(50.0)  # tanh -> 1
        for conv in (g.channel_conv1, g.channel_conv2):
            conv.weight.zero_()
            conv.bias.fill_(50.0)  # sigmoid -> 1
    t = 4
    x = torch.randn(t, 8, 2, 2)
    y = g(x, t)
    perm = [0, 2, 1, 3]
    assert torch.allclose(y[:-1, :4], x[1:, :4][:, perm], atol=1e-5)
    assert torch.allclose(y[-1, :4], torch.zeros(4, 2, 2), atol=1e-5)
    assert torch.allclose(y[1:, 4:], x[:-1, 4:][:, perm], atol=1e-5)
    assert torch.allclose(y[0, 4:], torch.zeros(4, 2, 2), atol=1e-5)
