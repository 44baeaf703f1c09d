"""Training: AdaFuse's differentiable decisions and efficiency loss, the trainer on a toy temporal
task (a blob moving left vs right: the two classes are time-reversed copies, so only a temporal
model tells them apart), checkpoints, the shipped-zoo helpers and ``edgefuse train``."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgefuse.errors import EdgefuseError
from edgefuse.lab.train import TrainConfig, build_model, evaluate, normalise, prepare_clips, segment_indices, train
from edgefuse.lab.zoo import add_to_zoo, zoo_entry
from edgefuse.models import create_model, list_pretrained, read_checkpoint
from edgefuse.models.cost import FusePricing, adafuse_cost, adafuse_macs, decision_savings, savings_tensor
from edgefuse.models.layers import AdaFuse, argmax_onehot
from edgefuse.models.layers.adafuse import KEEP

FRAMES, SIDE, SIZE, SEGMENTS = 16, 32, 28, 8  # 28 * 256 // 224 == 32: frames are already at the scale size


def toy_videos(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 16, 32, 32, 3): a bright blob moving left (label 0) on noise; label 1 clips are
    label-0 clips played backwards, so both classes have the same frames."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIDE).float(), torch.arange(SIDE).float(), indexing="ij")
    videos = torch.zeros(n, FRAMES, SIDE, SIDE, 3, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    for i in range(n):
        x0 = SIDE - 4 - 4 * float(torch.rand(1, generator=g))
        y0 = 6 + (SIDE - 12) * float(torch.rand(1, generator=g))
        speed = 1.4 + 0.3 * float(torch.rand(1, generator=g))
        noise = torch.rand(FRAMES, SIDE, SIDE, generator=g) * 40
        for f in range(FRAMES):
            blob = 215 * torch.exp(-((xx - (x0 - speed * f)) ** 2 + (yy - y0) ** 2) / 4.0)
            videos[i, f] = (blob + noise[f]).clamp(0, 255).to(torch.uint8)[..., None].expand(SIDE, SIDE, 3)
        if labels[i] == 1:
            videos[i] = videos[i].flip(0)
    return videos, labels


@pytest.fixture(scope="module")
def toy() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    return toy_videos(64, 0), toy_videos(64, 1)


def toy_cfg(model: str, **changes: object) -> TrainConfig:
    options: dict[str, object] = {"width": 0.125}
    if model.startswith("adafuse"):
        options.update(hidden_quota=0, hidden=64)  # a small fixed policy hidden size (the quota rule gives 24576)
    base = {"options": options, "num_classes": 2, "segments": SEGMENTS, "size": SIZE, "epochs": 6, "batch_size": 8, "lr": 0.05,
                "threads": 1, "class_names": ("moving left", "moving right")}
    return TrainConfig(model, **{**base, **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tsm_runs(toy):  # type: ignore[no-untyped-def]
    train_data, val_data = toy
    return [train(toy_cfg("tsm_resnet18"), train_data, val_data, progress=False) for _ in range(2)]


# ---------------------------------------------------------------------------------------------
# AdaFuse in training mode


def _fuse(cin: int = 8, width: int = 4, hidden: int = 6) -> AdaFuse:
    torch.manual_seed(0)
    fc0, fc1 = torch.nn.Linear(2 * cin, hidden), torch.nn.Linear(hidden, 3 * width)
    torch.nn.init.normal_(fc1.weight, 0, 0.5)
    return AdaFuse(cin, width, fc0, fc1)


def test_adafuse_training_decisions_are_one_hot_with_straight_through_gradients() -> None:
    f = _fuse().train()
    f.record = True
    x, out = torch.randn(16, 8, 3, 3), torch.rand(16, 4, 3, 3)
    y = f(out, x, 8)
    mask = f.last_mask  # (2, 8, 4, 3)
    assert mask is not None and mask.requires_grad  # the graph is kept for the efficiency loss
    hard = argmax_onehot(mask.detach())
    assert torch.allclose(mask.detach(), hard, atol=1e-6) and torch.equal(hard.sum(-1), torch.ones(2, 8, 4))
    (y.sum() + mask[..., KEEP].sum()).backward()
    for p in (f.fc0.weight, f.fc1.weight, f.fc1.bias, f.bn.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    f.eval()
    f(out, x, 8)
    assert not f.last_mask.requires_grad  # type: ignore[union-attr]


def test_adafuse_eval_mode_is_the_deterministic_argmax() -> None:
    f = _fuse().eval()
    logits = torch.randn(64, 4, 3)
    assert torch.equal(f.decide(logits), argmax_onehot(torch.softmax(logits, -1)))
    model = create_model("adafuse_tsm_resnet18", num_classes=3, width=0.125, hidden_quota=0, hidden=16,
                         input_size=32)
    model.train()
    clips = torch.randn(2, 4, 3, 32, 32)
    model(clips)  # a training-mode pass (Gumbel noise, BN statistics) ...
    model.eval()
    a, b = model(clips), model(clips)  # ... then evaluation is deterministic
    assert torch.equal(a, b)


@pytest.mark.parametrize("training", [False, True])
def test_gumbel_samples_follow_the_policy_probabilities(training: bool) -> None:
    """Hard Gumbel-softmax samples the softmax distribution (eval 'gumbel' decision and training)."""
    f = _fuse()
    f.decision = "gumbel"
    f.train(training)
    f.generator = torch.Generator().manual_seed(3)
    probs = torch.tensor([0.2, 0.3, 0.5])
    masks = f.decide(probs.log().expand(40000, 3))
    assert torch.equal(masks.detach().sum(-1), torch.ones(40000))
    assert torch.allclose(masks.detach().mean(0), probs, atol=0.01)


# ---------------------------------------------------------------------------------------------
# Differentiable savings


def test_savings_tensor_equals_decision_savings_and_has_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    hard = torch.nn.functional.one_hot(torch.randint(3, (3, 8, 16), generator=g), 3).float()
    assert savings_tensor(hard, FusePricing.uniform(16, 5000, 7000)).item() == pytest.approx(decision_savings(hard, FusePricing.uniform(16, 5000, 7000)), rel=1e-6)
    logits = torch.randn(3, 8, 16, 3, generator=g, requires_grad=True)
    soft = torch.softmax(logits, -1)
    saved = savings_tensor(soft, FusePricing.uniform(16, 5000, 7000))
    saved.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert saved.item() == pytest.approx(decision_savings(soft, FusePricing.uniform(16, 5000, 7000)), rel=1e-6)


def test_expected_macs_and_evaluate_match_adafuse_cost() -> None:
    torch.manual_seed(0)
    model = create_model("adafuse_tsn_resnet18", num_classes=4, width=0.125, hidden_quota=0, hidden=16,
                         input_size=32)
    for _, f in model.adafuse_modules():
        torch.nn.init.normal_(f.fc1.weight, 0, 0.3)  # decisions that are not all ties
    clips, labels = torch.randn(6, 4, 3, 32, 32), torch.tensor([0, 1, 2, 3, 0, 1])
    reference = adafuse_cost(model, clips)
    report = evaluate(model, clips, labels, batch_size=4)
    assert 0 < reference.saving < 1
    assert report.saving_pct == pytest.approx(100 * reference.saving, rel=1e-5)
    assert report.dense_gmacs_clip * 1e9 == reference.macs_per_clip
    for block, got in zip(reference.decisions, report.blocks or []):
        assert got.block == block.block and got.skip == pytest.approx(block.fractions["skip"], abs=1e-6)
    macs = adafuse_macs(model, 4, 32)
    with torch.no_grad():
        for _, f in model.adafuse_modules():
            f.record = True
        model(clips)
        masks = {name: f.last_mask for name, f in model.adafuse_modules()}
    expected = macs.expected_macs(masks)  # type: ignore[arg-type]
    assert expected.item() == pytest.approx(reference.macs_given_decisions_per_clip, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Data preparation


def test_sampling_and_normalisation_match_edgefuse_clips() -> None:
    from edgefuse.clips.preprocess import Preprocess
    from edgefuse.clips.preprocess import normalise as clips_normalise
    from edgefuse.clips.sampling import tsn_indices

    for n in (5, 8, 16, 30):
        assert segment_indices(n, 8).tolist() == tsn_indices(n, 8).tolist()
        g = torch.Generator().manual_seed(n)
        idx = segment_indices(n, 8, g)
        avg = n // 8
        if avg:
            assert all(t * avg <= int(i) < (t + 1) * avg for t, i in enumerate(idx))
    frames = torch.randint(0, 256, (2, 3, 5, 5, 3), dtype=torch.uint8)
    cfg = create_model("tsn_resnet18", num_classes=2, width=0.125).config
    got = normalise(frames, cfg)
    assert torch.equal(got, clips_normalise(frames.numpy(), Preprocess.from_model_config(cfg)))


def test_prepare_clips_crops_without_flipping() -> None:
    videos, _ = toy_videos(2, 5)
    cfg = create_model("tsn_resnet18", num_classes=2, width=0.125, input_size=SIZE).config
    centre = prepare_clips(videos, SEGMENTS, SIZE, cfg)
    assert centre.shape == (2, SEGMENTS, 3, SIZE, SIZE)
    idx = segment_indices(FRAMES, SEGMENTS)
    assert torch.equal(centre, normalise(videos[:, idx, 2:2 + SIZE, 2:2 + SIZE], cfg))
    g = torch.Generator().manual_seed(0)
    random = prepare_clips(videos, SEGMENTS, SIZE, cfg, g)
    assert random.shape == centre.shape and not torch.equal(random, centre)


# ---------------------------------------------------------------------------------------------
# Training


def test_tsm_learns_the_direction_deterministically(tsm_runs) -> None:  # type: ignore[no-untyped-def]
    first, second = tsm_runs
    assert first.metrics.top1 >= 0.9 and first.metrics.within_pair >= 0.9
    assert len(first.history) == 6 and first.history[-1].val_top1 == first.metrics.top1
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert first.model.config.class_names == ("moving left", "moving right")


def test_tsn_cannot_tell_time_reversed_classes(toy) -> None:  # type: ignore[no-untyped-def]
    train_data, val_data = toy
    result = train(toy_cfg("tsn_resnet18"), train_data, val_data, progress=False)
    assert result.metrics.top1 <= 0.7


def test_adafuse_efficiency_loss_saves_macs(toy) -> None:  # type: ignore[no-untyped-def]
    train_data, val_data = toy
    small = (train_data[0][:32], train_data[1][:32]), (val_data[0][:32], val_data[1][:32])
    plain = train(toy_cfg("adafuse_tsn_resnet18", epochs=3, efficiency_weight=0.0), *small, progress=False)
    frugal = train(toy_cfg("adafuse_tsn_resnet18", epochs=3, efficiency_weight=5.0), *small, progress=False)
    assert frugal.metrics.saving_pct > 0
    assert frugal.metrics.saving_pct > plain.metrics.saving_pct + 10
    assert frugal.history[-1].loss > frugal.history[-1].cross_entropy  # the efficiency term is in the loss
    assert plain.history[-1].loss == plain.history[-1].cross_entropy
    assert 0 < frugal.metrics.gmacs_clip_given_decisions < frugal.metrics.dense_gmacs_clip


def test_bad_configs_and_data_fail_with_the_fix(toy) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EdgefuseError, match="schedule 'step' is unknown"):
        toy_cfg("tsm_resnet18", schedule="step")
    with pytest.raises(EdgefuseError, match="class names for"):
        toy_cfg("tsm_resnet18", class_names=("a",))
    train_data, val_data = toy
    with pytest.raises(EdgefuseError, match="set num_classes"):
        train(toy_cfg("tsm_resnet18", class_names=None, num_classes=1), train_data, val_data, progress=False)
    with pytest.raises(EdgefuseError, match="pass uint8 frames"):
        train(toy_cfg("tsm_resnet18"), (torch.zeros(4, 3, 3, 28, 28), torch.zeros(4)), val_data, progress=False)


def test_warm_start_from_tsm_and_keep_bias(tmp_path: Path) -> None:
    """AdaFuse-TSM starts from a TSM's weights; a large keep bias makes it start dense."""
    from edgefuse.models import save_checkpoint

    tsm = create_model("tsm_resnet18", num_classes=2, width=0.125, input_size=SIZE)
    path = save_checkpoint(tsm, tmp_path / "tsm.pth")
    cfg = toy_cfg("adafuse_tsm_resnet18", init=path, keep_bias=20.0)
    model = build_model(cfg)
    theirs = tsm.state_dict()
    for key, value in model.state_dict().items():
        if ".adafuse." in key or key.startswith("policy_"):
            continue
        assert torch.equal(value, theirs[key]), key
    report = evaluate(model, torch.randn(2, SEGMENTS, 3, SIZE, SIZE), torch.tensor([0, 1]))
    assert report.fractions is not None and report.fractions["keep"] == 1.0 and report.saving_pct == 0.0
    assert type(report).from_dict(report.to_dict()) == report
    other = save_checkpoint(create_model("tsm_resnet18", num_classes=2, width=0.25), tmp_path / "wide.pth")
    with pytest.raises(EdgefuseError, match="same backbone and width"):
        build_model(toy_cfg("adafuse_tsm_resnet18", init=other))


# ---------------------------------------------------------------------------------------------
# Checkpoints and the zoo


def test_zoo_round_trip_with_half_checkpoint(tmp_path: Path, toy, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from edgefuse.lab.train import save_trained
    from edgefuse.utils import sha256_file

    train_data, val_data = toy
    cfg = toy_cfg("tsm_resnet18", epochs=1, out=tmp_path / "zoo" / "toy_tsm.pth", half=True)
    result = train(cfg, train_data, val_data, progress=False)
    assert result.checkpoint == cfg.out and result.sha256 == sha256_file(cfg.out)
    full = save_trained(result, tmp_path / "full.pth")
    assert cfg.out.stat().st_size < 0.7 * full.stat().st_size
    ckpt = read_checkpoint(cfg.out)
    assert all(v.dtype == torch.float16 for v in ckpt.state_dict.values() if v.is_floating_point())

    zoo = tmp_path / "zoo"
    assert list_pretrained(directory=zoo) == []
    entry = zoo_entry("toy_tsm", result, cfg.command("toy/"))
    add_to_zoo(entry, zoo)
    monkeypatch.setenv("EDGEFUSE_ZOO_DIR", str(zoo))
    (listed,) = list_pretrained()
    assert listed.name == "toy_tsm" and listed.checkpoint == "toy_tsm.pth"
    assert listed.val_top1 == result.metrics.top1 and listed.trained_with.startswith("edgefuse train")
    json.dumps(listed.to_dict())

    model = create_model("toy_tsm", pretrained=True)
    assert not model.training and model.config.class_names == ("moving left", "moving right")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    reference = copy.deepcopy(result.model).half().float()  # the weights as stored
    clips = prepare_clips(val_data[0][:4], SEGMENTS, SIZE, model.config)
    with torch.no_grad():
        assert torch.equal(model(clips), reference(clips))

    with pytest.raises(EdgefuseError, match="unknown zoo model 'toy_tms': did you mean toy_tsm"):
        create_model("toy_tms", pretrained=True)
    data = bytearray(cfg.out.read_bytes())
    data[-100] ^= 0xFF
    cfg.out.write_bytes(bytes(data))
    with pytest.raises(EdgefuseError, match="sha256.*reinstall"):
        create_model("toy_tsm", pretrained=True)


def test_zoo_records_every_stage_of_a_warm_started_model(tmp_path: Path, toy) -> None:  # type: ignore[no-untyped-def]
    """A model trained in stages (--init from a checkpoint edgefuse train wrote, itself warm-started) goes into the zoo
    with every stage's command in order, each naming the file the next starts from, and the seconds of all."""
    from edgefuse.lab.zoo import add_checkpoint

    train_data, val_data = toy
    small = (train_data[0][:16], train_data[1][:16]), (val_data[0][:16], val_data[1][:16])
    runs = []
    for i, init in enumerate([None, tmp_path / "s0.pth", tmp_path / "s1.pth"]):
        cfg = toy_cfg("tsm_resnet18", epochs=1, lr=0.05 / (i + 1), init=init, out=tmp_path / f"w{i}.pth")
        runs.append(train(cfg, *small, progress=False))
        (tmp_path / f"w{i}.pth").rename(tmp_path / f"s{i}.pth")  # renamed after writing: recorded by the new name
    entry = add_checkpoint("staged", tmp_path / "s2.pth", tmp_path / "zoo")
    stages = entry["trained_with"].split(" && ")
    assert len(stages) == 3 and all(c.startswith("edgefuse train tsm_resnet18 --data DATA ") for c in stages)
    assert stages[0].endswith("-o s0.pth") and "--init" not in stages[0] and "--lr 0.05 " in stages[0]
    assert "--init s0.pth" in stages[1] and stages[1].endswith("-o s1.pth") and "--lr 0.025 " in stages[1]
    assert "--init s1.pth" in stages[2] and " -o " not in stages[2]
    assert entry["train_seconds"] == pytest.approx(sum(r.train_seconds for r in runs), abs=0.1)
    single = add_checkpoint("single", tmp_path / "s0.pth", tmp_path / "zoo")
    assert " && " not in single["trained_with"] and single["train_seconds"] == round(runs[0].train_seconds, 1)


# ---------------------------------------------------------------------------------------------
# edgefuse train on a benchmark folder


def _write_benchmark(root: Path) -> None:
    from PIL import Image

    root.mkdir()
    (root / "classes.txt").write_text("moving left\nmoving right\n")
    for split, n, seed in (("train", 8, 0), ("val", 4, 1)):
        videos, labels = toy_videos(n, seed)
        lines = []
        for i in range(n):
            folder = root / "frames" / f"{split}_{i:05d}"
            folder.mkdir(parents=True)
            for f in range(FRAMES):
                Image.fromarray(videos[i, f].numpy()).save(folder / f"{f + 1:05d}.jpg", quality=95)
            lines.append(f"frames/{split}_{i:05d} {FRAMES} {int(labels[i])}\n")
        (root / f"{split}.txt").write_text("".join(lines))


def test_train_command_on_a_benchmark_folder(tmp_path: Path) -> None:
    from edgefuse.cli.train import train_cmd

    data = tmp_path / "bench"
    _write_benchmark(data)
    out = tmp_path / "m.pth"
    args = ["tsm_resnet18", "--data", str(data), "--width", "0.125", "--size", str(SIZE), "--epochs", "1",
            "--batch-size", "4", "--threads", "1", "--workers", "1", "-o", str(out)]
    res = CliRunner().invoke(train_cmd, args)
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output and "val top1" in res.output
    ckpt = read_checkpoint(out)
    assert ckpt.model_name == "tsm_resnet18" and ckpt.num_classes == 2
    assert ckpt.config_extra["class_names"] == ["moving left", "moving right"]
    model = create_model("tsm_resnet18", checkpoint=out, width=0.125, input_size=SIZE)
    assert model.config.class_names == ("moving left", "moving right")

    res = CliRunner().invoke(train_cmd, ["tsm_resnet18", "--data", str(tmp_path), "-o", str(out)])
    assert res.exit_code != 0 and "edgefuse synth" in str(res.exception)


def test_policy_hidden_sets_every_block_and_is_recorded(tmp_path: Path) -> None:
    """--policy-hidden: one hidden size for every AdaFuse block (not hidden_quota / channels); the checkpoint records
    it with the width, so it loads strictly without options, and the recorded command has it; refused for a model
    without a policy."""
    from edgefuse.cli.train import train_cmd
    from edgefuse.lab.train import TrainConfig

    data = tmp_path / "bench"
    _write_benchmark(data)
    out = tmp_path / "a.pth"
    args = ["adafuse_tsm_resnet18", "--data", str(data), "--width", "0.125", "--size", str(SIZE), "--epochs", "1",
            "--batch-size", "4", "--threads", "1", "--workers", "1", "--policy-hidden", "8", "-o", str(out)]
    res = CliRunner().invoke(train_cmd, args)
    assert res.exit_code == 0, res.output
    model = create_model("adafuse_tsm_resnet18", checkpoint=out, input_size=SIZE)  # width and hidden: recorded
    assert model.config.width == 0.125
    fuses = [f for _, f in model.adafuse_modules()]
    assert fuses and {f.fc0.out_features for f in fuses} == {8}
    default = create_model("adafuse_tsm_resnet18", num_classes=2, width=0.125)
    assert {f.fc0.out_features for _, f in default.adafuse_modules()} != {8}  # the quota's sizes otherwise
    cfg = TrainConfig("adafuse_tsm_resnet18", options={"width": 0.125, "hidden_quota": 0, "hidden": 8}, out=out)
    assert "--policy-hidden 8" in cfg.command("DATA")
    assert "--policy-hidden" not in TrainConfig("adafuse_tsm_resnet18", options={"width": 0.125}, out=out).command("D")
    res = CliRunner().invoke(train_cmd, ["tsm_resnet18", "--data", str(data), "--policy-hidden", "8", "-o", str(out)])
    assert res.exit_code != 0 and "has none" in res.output


def test_frame_sampling_uses_every_segment() -> None:
    """With as many frames as segments, training sampling is the identity."""
    g = torch.Generator().manual_seed(0)
    assert segment_indices(8, 8, g).tolist() == list(range(8))
    assert np.array_equal(segment_indices(4, 8, g).numpy(), segment_indices(4, 8).numpy())


def test_resume_continues_an_interrupted_run_to_the_same_weights(toy, tsm_runs, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                 monkeypatch) -> None:
    """A run stopped after 3 of 6 epochs (a real KeyboardInterrupt raised where Ctrl-C would land) and started again
    with the same --resume file ends with the weights and history of the uninterrupted run; a state saved with other
    settings is refused with one line."""
    import edgefuse.lab.train.loop as loop_mod
    from edgefuse.errors import EdgefuseError

    train_data, val_data = toy
    state = tmp_path / "state.pth"
    real_epoch = loop_mod._epoch

    def stop_at_fourth(loop, epoch, *a):  # type: ignore[no-untyped-def]
        if epoch == 3:
            raise KeyboardInterrupt
        return real_epoch(loop, epoch, *a)

    monkeypatch.setattr(loop_mod, "_epoch", stop_at_fourth)
    with pytest.raises(KeyboardInterrupt):
        train(toy_cfg("tsm_resnet18", resume=state), train_data, val_data, progress=False)
    monkeypatch.setattr(loop_mod, "_epoch", real_epoch)
    saved = torch.load(state, weights_only=True)
    assert len(saved["history"]) == 3 and saved["step"] == 3 * 8
    resumed = train(toy_cfg("tsm_resnet18", resume=state), train_data, val_data, progress=False)
    reference = tsm_runs[0]
    a, b = reference.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h.val_top1 for h in resumed.history] == [h.val_top1 for h in reference.history]
    with pytest.raises(EdgefuseError, match="other settings \\(lr\\)"):
        train(toy_cfg("tsm_resnet18", resume=state, lr=0.02), train_data, val_data, progress=False)
    with pytest.raises(EdgefuseError, match="other settings \\(optimizer\\)"):
        train(toy_cfg("tsm_resnet18", resume=state, optimizer="adamw"), train_data, val_data, progress=False)


def test_adamw_trains_with_decoupled_decay_and_is_recorded(toy, tsm_runs) -> None:  # type: ignore[no-untyped-def]
    """--optimizer adamw: the toy TSM learns the direction; the optimizer is AdamW with weight decay on conv and linear
    weights only, its moments differ from SGD's momentum, and the recorded command names it."""
    from edgefuse.lab.train.loop import make_optimizer

    train_data, val_data = toy
    cfg = toy_cfg("tsm_resnet18", optimizer="adamw", lr=0.003, weight_decay=0.05)
    result = train(cfg, train_data, val_data, progress=False)
    assert result.metrics.top1 >= 0.9
    sgd = tsm_runs[0].model.state_dict()
    assert any(not torch.equal(v, sgd[k]) for k, v in result.model.state_dict().items() if v.is_floating_point())
    opt = make_optimizer(result.model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    decays = {g["weight_decay"]: {p.dim() for p in g["params"]} for g in opt.param_groups}
    assert decays[0.05] == {2, 4} and decays[0.0] == {1}
    assert "--optimizer adamw" in cfg.command("DATA") and "--optimizer" not in toy_cfg("tsm_resnet18").command("D")
    with pytest.raises(EdgefuseError, match="optimizer 'adam' is unknown: use sgd or adamw"):
        toy_cfg("tsm_resnet18", optimizer="adam")
