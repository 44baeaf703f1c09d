"""MACs accounting, dense and given AdaFuse's decisions (counted as the paper does)."""
from __future__ import annotations

import pytest
import torch

from edgefuse.models import create_model
from edgefuse.models.cost import FusePricing, adafuse_cost, decision_savings, model_cost


def onehot(actions: list[list[int]]) -> torch.Tensor:
    """actions[t][c] in {0 skip, 1 reuse, 2 keep} -> mask (1, T, C, 3)."""
    return torch.nn.functional.one_hot(torch.tensor(actions), 3).float().unsqueeze(0)


def test_savings_rules() -> None:
    c1, c2 = 1000, 3000  # dense MACs per frame of conv1 and conv2, 2 channels
    price = FusePricing.uniform(2, c1, c2)
    keep = onehot([[2, 2]] * 4)
    assert decision_savings(keep, price) == 0
    skip = onehot([[0, 0]] * 4)
    assert decision_savings(skip, price) == 4 * (c1 + c2)
    reuse = onehot([[1, 1]] * 4)  # conv1 at t is needed for t+1, except the last segment's
    assert decision_savings(reuse, price) == c1
    # one channel over 3 segments: skip, reuse, keep -> t0 output reused at t1: computed; t1 not kept,
    # not reused at t2: saved; t2 kept. conv2 input saved at t0 (skip).
    mixed = onehot([[0, 2], [1, 2], [2, 2]])
    assert decision_savings(mixed, price) == pytest.approx(c1 / 2 + c2 / 2)


def test_savings_priced_per_channel() -> None:
    """Channels priced apart (BN-Inception: each branch's last conv makes its channels): a run of 1 channel at
    100 MACs and 2 at 10, readers at 7 per channel; graphs exported before per-channel pricing read as uniform."""
    price = FusePricing(((1, 100.0), (2, 10.0)), 7.0)
    assert price.channels == 3
    first_skipped = onehot([[0, 2, 2]] * 2)  # channel 0 skipped on both segments
    assert decision_savings(first_skipped, price) == 2 * (100 + 7)
    last_reused = onehot([[2, 2, 1]] * 2)  # channel 2 reused: computed at t0 for t1, not at t1
    assert decision_savings(last_reused, price) == 10
    assert FusePricing.from_meta(price.to_meta(), 3) == price
    assert FusePricing.from_meta([30, 60], 3) == FusePricing.uniform(3, 30, 60)
    with pytest.raises(ValueError, match="4 channels priced for 3"):
        decision_savings(onehot([[0, 0, 0, 0]]), price)


def test_dense_macs_by_layer_sum_up() -> None:
    cost = model_cost(create_model("tsn_resnet18", num_classes=10), frames=2, size=64)
    assert sum(lc.macs for lc in cost.layers) == cost.macs_per_clip
    assert cost.macs_of("backbone.layer1.0.conv1") == 2 * 64 * 64 * 9 * 16 * 16  # 2 frames, 16x16 map


def _force(model, action: int) -> None:
    for _, f in model.adafuse_modules():
        with torch.no_grad():
            f.fc1.weight.zero_()
            f.fc1.bias.copy_(torch.tensor([50.0 if a == action else -50.0 for a in range(3)]).repeat(f.width))


def test_forced_skip_saves_exactly_conv1_and_conv2() -> None:
    model = create_model("adafuse_tsn_resnet18", num_classes=10)
    _force(model, 0)
    clips = torch.randn(2, 4, 3, 64, 64)
    cost = adafuse_cost(model, clips)
    expected = sum(cost.macs_of(f"backbone.{b}.conv1") + cost.macs_of(f"backbone.{b}.conv2")
                   for b, _ in model.blocks())
    assert cost.saved_macs_per_clip == pytest.approx(expected)
    assert all(d.fractions["skip"] == 1.0 for d in cost.decisions)


def test_forced_keep_is_tsn() -> None:
    """AdaFuse with every channel kept computes exactly its TSN backbone, at no saving."""
    torch.manual_seed(0)
    ada = create_model("adafuse_tsn_resnet18", num_classes=10)
    _force(ada, 2)
    tsn = create_model("tsn_resnet18", num_classes=10)
    tsn.load_state_dict({k: v for k, v in ada.state_dict().items() if k in tsn.state_dict()})
    clips = torch.randn(1, 4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ada(clips), tsn(clips))
    assert adafuse_cost(ada, clips).saving == 0.0
