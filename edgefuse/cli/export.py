"""``edgefuse export``."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import click

from edgefuse.cli.checks import check_io
from edgefuse.cli.options import json_option
from edgefuse.cli.render import render_export, render_json, render_presets
from edgefuse.errors import EdgefuseError


def _parse_ranges(values: tuple[str, ...]) -> dict[str, tuple[int, int, int]]:
    from edgefuse.export.config import DIMS

    out = {}
    for v in values:
        try:
            name, nums = v.split(":", 1)
            lo, opt, hi = (int(x) for x in nums.split(","))
        except ValueError:
            raise EdgefuseError(f"--range {v!r}: write it as NAME:min,opt,max, e.g. T:4,8,16") from None
        if name not in DIMS:
            raise EdgefuseError(f"--range {v!r}: the dynamic dimensions are {', '.join(DIMS[:-1])} and {DIMS[-1]}")
        out[name] = (lo, opt, hi)
    return out


def _parse_options(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values:
        if "=" not in v:
            raise EdgefuseError(f"--option {v!r}: write it as key=value, e.g. ratio=25")
        k, raw = v.split("=", 1)
        try:
            out[k] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[k] = raw
    return out


@click.command("export")
@click.argument("model", required=False)
@click.option("--preset", help="An export preset: a TOML file or the name of an installed one (--list-presets).")
@click.option("--list-presets", is_flag=True, help="List the installed presets and exit.")
@click.option("--checkpoint", "-c", type=click.Path(path_type=Path, dir_okay=False), help="Checkpoint (any supported format).")
@click.option("--num-classes", type=click.IntRange(min=1), help="Classes (default: the checkpoint's).")
@click.option("--segments", type=click.IntRange(min=1), help="Segments T of the example clip [8].")
@click.option("--batch", type=click.IntRange(min=1), help="Batch N of the example clip [1].")
@click.option("--size", type=click.IntRange(min=32), help="Height and width [224].")
@click.option("--shape", type=click.Choice(["static", "dynamic"]), help="Static dimensions, or dynamic N, T, H, W [static].")
@click.option("--range", "ranges", multiple=True, metavar="NAME:MIN,OPT,MAX", help="Range of a dynamic dimension (N, T, H, W).")
@click.option("--policy", type=click.Choice(["dynamic", "static", "stream"]),
              help="AdaFuse policy: in-graph argmax, folded into a static graph, or a per-frame stream graph [dynamic].")
@click.option("--policy-clips", type=click.Path(path_type=Path, dir_okay=False), help="Clips (.npz) to fold the policy on.")
@click.option("--tau", type=click.FloatRange(0, 1, min_open=True),
              help="Folding threshold, folded whatever its agreement (default: the most aggressive keeping "
                   "--min-agreement).")
@click.option("--min-agreement", type=click.FloatRange(0, 1),
              help="Top-1 agreement folded vs dynamic the automatic tau must keep; when no tau does, export writes "
                   "nothing and exits 1 [0.99].")
@click.option("--refit/--no-refit", default=None,
              help="Refit the folded blocks' conv2 by least squares to the dynamic model's output on the policy "
                   "clips, kept where it agrees with the policy better out of fold (same graph) [refit].")
@click.option("--parity-clips", type=click.Path(path_type=Path, dir_okay=False), help="Real clips (.npz) for the parity check.")
@click.option("--tolerance", type=click.FloatRange(min=0), help="Max relative logit error ONNX vs PyTorch [1e-4].")
@click.option("--target", metavar="NAME",
              help="Deployment target: jetpack4.6, jetpack5, jetpack6, jetpack7, trt8.0 ... trt11 (--list-targets); "
                   "exports at the highest opset it reads and checks the graph against its TensorRT release(s).")
@click.option("--list-targets", is_flag=True, help="List the deployment targets and exit.")
@click.option("--opset", type=click.IntRange(7, 25),
              help="ONNX opset [the target's highest; without --target 17: TensorRT 8.4 to 11 read it].")
@click.option("--exporter", type=click.Choice(["auto", "torchscript", "dynamo"]), help="torch.onnx exporter [auto].")
@click.option("--simplify", type=click.Choice(["auto", "onnxsim", "onnxslim", "none"]),
              help="Graph simplifier [auto: onnxsim if installed, else onnxslim].")
@click.option("--option", "-O", "model_options", multiple=True, metavar="KEY=VALUE", help="Model option, e.g. ratio=25.")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="Output .onnx path.")
@json_option
def export_cmd(model: str | None, preset: str | None, list_presets: bool, list_targets: bool, output: Path | None,
               ranges: tuple[str, ...], model_options: tuple[str, ...], as_json: bool, **given: Any) -> None:
    """Trace MODEL (with its checkpoint) into a checked, TensorRT-ready ONNX graph."""
    if list_presets:
        from edgefuse.export.config import list_presets as presets

        click.echo(render_presets(presets()))
        return
    if list_targets:
        from edgefuse.graph.targets import resolve, target_names

        rows = [resolve(n) for n in target_names()]
        click.echo(render_presets([(t.name, f"TensorRT {t.tensorrt}, opset {t.max_opset}: {t.description}") for t in rows]))
        return
    if output is None:
        raise EdgefuseError("no output path: pass -o model.onnx")
    # the paths first: the export package imports torch (seconds)
    check_io(inputs=[given.get(k) for k in ("checkpoint", "policy_clips", "parity_clips")], outputs={output: "graph"})
    from edgefuse.export.api import export
    from edgefuse.export.config import make_config

    cfg = make_config(preset, output, model=model, ranges=_parse_ranges(ranges),
                      options=_parse_options(model_options), **given)
    result = export(cfg)
    if as_json:
        click.echo(render_json(result.to_dict()))
        return
    click.echo(render_export(result, output.stat().st_size / 1e6))
