"""``edgefuse bench``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from edgefuse.cli.checks import check_io
from edgefuse.cli.options import host_specs, json_option, remote_options
from edgefuse.cli.render import render_bench, render_json


@click.command("bench")
@click.argument("engines", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--device", default="auto", show_default=True,
              help="Device profile; jetson or a Jetson profile needs one.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--iterations", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--duration", type=float, help="Seconds per engine instead of --iterations.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(min=0))
@click.option("--eager", type=click.Path(path_type=Path, dir_okay=False),
              help="A checkpoint: add PyTorch eager FP32 as the baseline row.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads for CPU backends (default: physical cores).")
@click.option("--json-out", type=click.Path(path_type=Path, dir_okay=False), help="JSON with every raw timing.")
@click.option("--estimate", is_flag=True,
              help="Roofline estimate per engine on the --device profile (alone when that device is not this machine; "
                   "beside the measurement when it is).")
@click.option("--dla", is_flag=True,
              help="With --estimate: estimate the engines on one DLA core instead of the GPU (estimates only, no "
                   "measurement; an engine built with --dla is estimated on its DLA core without it).")
@click.option("--png", "png_out", type=click.Path(path_type=Path, dir_okay=False), help="Latency distribution plot.")
@remote_options("Bench (an .onnx graph is built there first, or its recorded engine reused)")
@click.option("--timer", type=click.Choice(["auto", "python", "trtexec"]), default="auto", show_default=True,
              help="TensorRT engines: edgefuse's runner (python), trtexec, or auto = the runner where TensorRT's "
                   "Python bindings import, else trtexec.")
@json_option
def bench_cmd(engines: tuple[Path, ...], device: str, batch: int, iterations: int, duration: float | None,
              warmup: int, eager: Path | None, threads: int | None, json_out: Path | None, estimate: bool,
              dla: bool, png_out: Path | None, hosts: tuple[str, ...], hosts_file: Path | None, accept_new_host_key: bool,
              timer: str, as_json: bool) -> None:
    """Latency percentiles, throughput and memory of ENGINES side by side on the same input."""
    from edgefuse.bench import BenchConfig, BenchReport, bench

    check_io(engines=engines, inputs=[eager], outputs={json_out: "JSON report", png_out: "plot"})
    cfg = BenchConfig(engines=engines, device=device, batch=batch, iterations=iterations, duration=duration,
                      warmup=warmup, eager=eager, threads=threads, json_out=json_out, png_out=png_out,
                      estimate=estimate, timer=timer)
    specs = host_specs(hosts, hosts_file)
    if dla:
        if not estimate or specs:
            raise click.UsageError("--dla goes with --estimate (and no --host): it estimates on a DLA core")
        from edgefuse.bench.estimates import estimate_report
        from edgefuse.bench.run import check_device

        est = estimate_report(cfg, check_device(cfg.device, estimate_only_ok=True)[0], dla=True)
        click.echo(render_json(est.to_dict()) if as_json else render_bench(est))
        return
    if specs:
        from edgefuse.backends.remote.build import RemoteOptions
        from edgefuse.bench.remote import bench_remote
        from edgefuse.cli.render import render_fleet

        fleet = bench_remote(cfg, specs, RemoteOptions(accept_new_host_key=accept_new_host_key))
        click.echo(render_json(fleet.to_dict(raw=False)) if as_json else render_fleet(fleet))
        if not fleet.ok:
            sys.exit(1)  # a host failed (its line is in the table); the others' results are kept
        return
    rep = bench(cfg)
    click.echo(render_json(rep.to_dict(raw=False) if isinstance(rep, BenchReport) else rep.to_dict()) if as_json
               else render_bench(rep))
