"""``edgefuse train``."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("train")
@click.argument("model")
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Benchmark folder (edgefuse synth output): train.txt, val.txt, classes.txt, frames/.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Checkpoint to write (edgefuse format, with the validation figures in its metadata).")
@click.option("--width", default=0.25, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Backbone channel multiplier (0.25: ResNet-18 with base width 16).")
@click.option("--segments", default=8, show_default=True, type=click.IntRange(min=1), help="Segments per clip T.")
@click.option("--size", default=112, show_default=True, type=click.IntRange(min=16),
              help="Input height and width (frames are resized to size*256//224 first).")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=0.01, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Initial learning rate (cosine schedule to 0).")
@click.option("--weight-decay", default=5e-4, show_default=True, type=click.FloatRange(min=0),
              help="On convolution and linear weights (AdamW: decoupled; give it e.g. 0.05).")
@click.option("--optimizer", default="sgd", show_default=True, type=click.Choice(["sgd", "adamw"]),
              help="SGD with momentum 0.9, or AdamW (e.g. --lr 0.001 --weight-decay 0.05: leaves the first "
                   "epochs' plateau sooner when training from scratch).")
@click.option("--efficiency-weight", default=0.5, show_default=True, type=click.FloatRange(min=0),
              help="AdaFuse: weight of expected MACs / dense MACs in the loss (official 0.125 on R50 = 0.51 here).")
@click.option("--tau", default=0.67, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="AdaFuse: Gumbel-softmax temperature.")
@click.option("--keep-bias", default=0.0, show_default=True,
              help="AdaFuse: added to the policy's keep logits at the start (2: keep with p 0.79; official 0).")
@click.option("--policy-hidden", type=click.IntRange(min=1),
              help="AdaFuse: the policy nets' hidden size, the same in every block (default: the official "
                   "hidden_quota / channels, 196608 / channels, which does not shrink with --width). The checkpoint "
                   "records it, as it does --width.")
@click.option("--init", "init", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Start from this checkpoint's matching weights (e.g. a trained TSM for AdaFuse-TSM).")
@click.option("--seed", default=0, show_default=True, help="Seed: same seed, same weights (same thread count).")
@click.option("--threads", type=click.IntRange(min=1), help="Torch threads (default: torch's).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="Decoding processes.")
@click.option("--zoo-name", help="Also add the checkpoint to the pretrained tags under this short name (the "
              "package's weights folder, or $EDGEFUSE_ZOO_DIR).")
@click.option("--zoo-tag", help="With --zoo-name: the tag, as in MODEL.TAG (default: the short name).")
@click.option("--half", is_flag=True, help="Store float16 weights (half the size; loading casts back).")
@click.option("--resume", type=click.Path(path_type=Path, dir_okay=False),
              help="Training state file, written after every epoch; when it exists, training continues from it "
                   "(the same settings required).")
def train_cmd(model: str, data_dir: Path, out: Path, width: float, segments: int, size: int, epochs: int,
              batch_size: int, lr: float, weight_decay: float, optimizer: str, efficiency_weight: float, tau: float, keep_bias: float,
              policy_hidden: int | None, init: Path | None, seed: int, threads: int | None, workers: int, zoo_name: str | None, zoo_tag: str | None,
              half: bool, resume: Path | None) -> None:
    """Train MODEL (e.g. tsm_resnet18, adafuse_tsm_resnet18) from scratch on CPU on a benchmark
    folder and write a checkpoint; a line per epoch shows its figures."""
    from edgefuse.cli.render import render_train
    from edgefuse.lab.train import TrainConfig, train_from_dir
    from edgefuse.models import get_entry

    entry = get_entry(model)  # unknown names fail before any decoding
    options: dict[str, object] = {"width": width}
    if policy_hidden is not None:
        if entry.default.arch != "adafuse":
            raise click.UsageError(f"--policy-hidden sets an AdaFuse policy net's hidden size; {model} has none")
        options.update(hidden_quota=0, hidden=policy_hidden)
    from edgefuse.cli.checks import check_io

    check_io(inputs=[init], outputs={out: "checkpoint", resume: "training state"})
    cfg = TrainConfig(model, options=options, segments=segments, size=size, epochs=epochs,
                      batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                      efficiency_weight=efficiency_weight,
                      tau=tau, keep_bias=keep_bias, init=init, seed=seed, threads=threads, workers=workers, out=out,
                      half=half, resume=resume)
    result = train_from_dir(cfg, data_dir)
    click.echo(render_train(result))
    if zoo_name:
        from edgefuse.lab.zoo import add_checkpoint
        from edgefuse.models.pretrained import get_pretrained, pretrained_dir

        add_checkpoint(zoo_name, out, tag=zoo_tag)
        tag = get_pretrained(zoo_name)
        click.echo(f"train: added {tag.full_name} ({tag.name}) to the pretrained tags in {pretrained_dir()}")
