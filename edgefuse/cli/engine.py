"""``edgefuse build-engine`` and ``edgefuse devices``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from edgefuse.cli.checks import check_io
from edgefuse.cli.options import host_specs, json_option, remote_options
from edgefuse.cli.render import render_build, render_json
from edgefuse.cli.render_devices import device_rows, render_detection, render_devices


@click.command("devices")
@click.option("--detect", "detect_here", is_flag=True,
              help="Detect this machine instead: print what was read (device-tree model and compatible, L4T release, "
                   "memory, nvidia-smi) and which profile was chosen by which rule.")
@json_option
def devices_cmd(detect_here: bool, as_json: bool) -> None:
    """List the device profiles build-engine and bench know (installed with edgefuse), with their dense peaks."""
    from edgefuse.devices import list_devices, tensorrt_versions

    if detect_here:
        from edgefuse.devices import detect

        found = detect()
        click.echo(render_json(found.to_dict()) if as_json else render_detection(found))
        return
    rows = device_rows([(d, tensorrt_versions(d)) for d in list_devices()])
    click.echo(render_json(rows) if as_json else render_devices(rows))


@click.command("build-engine")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--device", default="auto", show_default=True,
              help="Device profile ('edgefuse devices'); auto detects a Jetson, an NVIDIA GPU, else cpu; jetson: "
                   "this Jetson (an error elsewhere).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8", "bf16"]), default="auto",
              show_default=True,
              help="auto: the graph's (INT8 needs a graph from 'edgefuse calibrate').")
@click.option("--shapes", multiple=True, metavar="NAME:MIN,OPT,MAX",
              help="Optimization profile of a dynamic input, e.g. clips:1x8x3x224x224,1x8x3x224x224,4x8x3x224x224 "
                   "(default: the ranges in the graph's metadata).")
@click.option("--workspace", type=click.IntRange(min=1), help="TensorRT workspace limit in MiB.")
@click.option("--dla", type=click.IntRange(min=0), help="TensorRT: run on this DLA core (Jetson Xavier / AGX Orin).")
@click.option("--gpu-fallback", is_flag=True, help="TensorRT with --dla: layers DLA cannot run go to the GPU (listed).")
@click.option("--timing-cache", type=click.Path(path_type=Path, dir_okay=False),
              help="TensorRT timing cache to reuse and update (faster rebuilds).")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads (default: one per physical core, pinned to it; an explicit count runs unpinned).")
@click.option("--cpu-int8", type=click.Choice(["auto", "exact", "qdq"]), default="auto", show_default=True,
              help="ONNX Runtime INT8: auto = the calibrated grid on the fast u8 x s8 kernels, residual convolutions "
                   "and GSF's gating quantized on their calibrated grids; exact = no rounding beyond the Q/DQ graph's; qdq = the "
                   "graph as it is.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "openvino", "tensorrt", "trtexec"]), default="auto",
              show_default=True,
              help="CPU: auto = build with ONNX Runtime and, when edgefuse[openvino] is installed, OpenVINO, "
                   "time both here and keep the faster (OpenVINO only if >= 10% faster); openvino computes FP32 "
                   "unless --precision bf16 (OpenVINO's own default on CPUs with bf16). GPU / Jetson: auto = "
                   "TensorRT's Python bindings where they import, else trtexec (the exact command goes into the "
                   "sidecar).")
@click.option("--calibration-cache", type=click.Path(path_type=Path, dir_okay=False),
              help="DLA INT8 on TensorRT 8.x / 10.x: the cache 'edgefuse calibrate ... --trt-cache' wrote; build "
                   "from the FP32 graph.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Engine file (a <engine>.json sidecar is written beside it). With --host: optional, one host "
                   "only, fetches the device's engine and sidecar here.")
@remote_options("Build")
@click.option("--rebuild", is_flag=True, help="With --host: build again even when the device holds the engine.")
@json_option
def build_engine_cmd(model: Path, device: str, precision: str, shapes: tuple[str, ...], workspace: int | None,
                     dla: int | None, gpu_fallback: bool, timing_cache: Path | None, threads: int | None,
                     cpu_int8: str, backend: str, calibration_cache: Path | None, output: Path | None,
                     hosts: tuple[str, ...], hosts_file: Path | None, accept_new_host_key: bool, rebuild: bool,
                     as_json: bool) -> None:
    """Build an engine from MODEL (an ONNX graph from export or calibrate) for a device: ONNX Runtime
    for cpu, TensorRT for Jetsons and NVIDIA GPUs.

    With --host the engine is built on each device over SSH (edgefuse there, else trtexec) and stays there;
    its sidecar is recorded here, so bench and validate on that device reuse it."""
    from edgefuse.backends.plan import parse_shapes
    from edgefuse.errors import EdgefuseError

    check_io(graphs=[model])  # one line for a file that is not an edgefuse video graph, before any work
    specs = host_specs(hosts, hosts_file)
    if specs:
        from edgefuse.backends.remote.build import RemoteBuildOptions, RemoteOptions, build_remote
        from edgefuse.cli.render_remote import render_fleet_build

        for flag, value in (("--timing-cache", timing_cache), ("--threads", threads),
                            ("--calibration-cache", calibration_cache)):
            if value is not None:
                raise EdgefuseError(f"{flag} is not sent to devices yet: build without it, or on the device itself")
        opts = RemoteBuildOptions(device=device, precision=precision, shapes=parse_shapes(shapes),
                                  workspace_mb=workspace, dla=dla, gpu_fallback=gpu_fallback, backend=backend,
                                  cpu_int8=cpu_int8)
        fleet = build_remote(model, specs, opts, RemoteOptions(accept_new_host_key=accept_new_host_key),
                             rebuild=rebuild, output=output)
        click.echo(render_json(fleet.to_dict()) if as_json else render_fleet_build(fleet))
        if not fleet.ok:
            sys.exit(1)
        return
    if output is None:
        raise EdgefuseError("build-engine needs -o ENGINE (the file to write), or --host to build on a device")
    if rebuild:
        raise EdgefuseError("--rebuild is for --host (a local build always builds)")
    from edgefuse.backends import BuildConfig, build_engine
    from edgefuse.backends.sidecar import sidecar_path

    check_io(inputs=[model, calibration_cache, timing_cache], outputs={output: "engine", sidecar_path(output): "sidecar"})
    cfg = BuildConfig(model=model, output=output, device=device, precision=precision, shapes=parse_shapes(shapes),
                      workspace_mb=workspace, dla=dla, gpu_fallback=gpu_fallback, timing_cache=timing_cache,
                      threads=threads, cpu_int8=cpu_int8, backend=backend, calibration_cache=calibration_cache)
    result = build_engine(cfg)  # the engine and its sidecar appear together or not at all
    click.echo(render_json(result.sidecar.to_dict()) if as_json else render_build(result))
