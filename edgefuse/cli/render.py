"""Plain-text tables: every report a person reads in the terminal goes through here."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the results edgefuse calibrate / build-engine / devices / validate / bench / demo render
    from edgefuse.backends import BuildResult
    from edgefuse.backends.device_io import ClipFolder
    from edgefuse.bench import BenchReport, EstimateReport
    from edgefuse.bench.remote import FleetReport
    from edgefuse.demo import DemoReport
    from edgefuse.estimate import Estimate
    from edgefuse.export.report import ExportReport
    from edgefuse.graph.inspect import GraphInspection
    from edgefuse.lab.train import TrainResult
    from edgefuse.models.listing import ModelRow, PretrainedRow
    from edgefuse.models.report import ModelInspection
    from edgefuse.quantize import CalibrateResult
    from edgefuse.validate import ValidateReport


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return "" if v is None else str(v)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    heads = list(headers or columns)
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(heads)]

    def line(vals: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(vals):
            numeric = v.replace(".", "", 1).replace("-", "", 1).replace(",", "").replace("%", "").isdigit()
            out.append(v.rjust(widths[i]) if numeric else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(heads), sep] + [line(r) for r in cells])


def render_export(report: ExportReport, size_mb: float) -> str:
    """``edgefuse export``'s summary: the graph written, parity against PyTorch, TensorRT verdicts, the fold."""
    lines = [
        (f"wrote {report.path} ({size_mb:.1f} MB): {report.model}, policy {report.policy}, {report.shape} shapes, "
        f"opset {report.opset}, {report.params / 1e6:.2f} M params, {report.macs_per_clip / 1e9:.3f} GMACs per "
        f"{report.per}, {report.seconds.get('total', 0.0):.1f} s"),
        format_table([{"label": p.label, "max_abs": p.max_abs, "max_rel": p.max_rel,
                       "top1_agreement": p.top1_agreement} for p in report.parity],
                     ["label", "max_abs", "max_rel", "top1_agreement"],
                     ["parity (ONNX Runtime vs PyTorch)", "max abs", "max rel", "top-1 agree"]),
        format_table([{"tensorrt": v.version, "verdict": "ok" if v.ok else "NO: " + "; ".join(v.problems)}
                      for v in report.hygiene.verdicts], ["tensorrt", "verdict"]),
    ]
    if report.fold is not None:
        f = report.fold
        errors = [(b.error_before, b.error_after) for b in f.blocks
                  if b.refit_ridge is not None and b.error_before is not None and b.error_after is not None]
        how = (f" and refitted ({len(errors)} blocks; conv2's error against the policy "
               f"{100 * sum(e[0] for e in errors) / len(errors):.1f}% -> "
               f"{100 * sum(e[1] for e in errors) / len(errors):.1f}% on average)" if errors else "")
        lines.append(f"folded at tau {f.tau:.2f}{how}: agreement {100 * f.agreement:.1f}% with the dynamic policy; "
                     f"GMACs per clip dense {f.macs.dense / 1e9:.3f}, dynamic (expected) "
                     f"{f.macs.dynamic_expected / 1e9:.3f}, folded {f.macs.folded / 1e9:.3f}")
    return "\n".join(lines)


def render_estimate(est: Estimate, top: int | None = None) -> str:
    """A roofline estimate: its total with the uncertainty of its device class, then its kernels, slowest first
    (``top`` of them), each in its own precision."""
    rows = [{"name": r.name, "op": "+".join((r.op, *[e.rsplit("/", 1)[-1] for e in r.epilogue])),
             "precision": r.precision, "mmacs": r.macs / 1e6, "kb": r.bytes / 1e3, "us": r.time_ms * 1e3,
             "bound": r.bound} for r in est.slowest(top)]
    span = est.range_ms
    where = f"{est.device}{' (one DLA core)' if est.target == 'dla' else ''}"
    head = (f"{est.label} on {where}: {est.total_ms:.3f} ms"
            + (f" (published latencies of its class put it between {span[0]:.3f} and {span[1]:.3f} ms)" if span else "")
            + (f"; {est.uncertainty}" if est.uncertainty else ""))
    return "\n".join([head, format_table(rows, ["name", "op", "precision", "mmacs", "kb", "us", "bound"],
                                         ["layer", "op", "precision", "MMACs", "kB", "time (us)", "bound"])])


THREADS_DEFAULT = "ONNX Runtime's default: one per physical core, pinned"


def render_threads(saved: object) -> str:
    """An engine sidecar's ``intra_op_num_threads`` in words: a count, or None for the backend's default (sidecars
    written before it was typed hold that sentence itself)."""
    if saved is None:
        return THREADS_DEFAULT
    return str(saved)


def render_json(data: Any) -> str:
    """JSON as every ``--json`` prints it (a typed result's ``to_dict()``)."""
    import json

    return json.dumps(data, indent=2, default=str)


def _pct(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def render_calibrate(result: CalibrateResult) -> str:
    """``edgefuse calibrate``'s summary: the candidate against FP32 on the held-out clips (or, said so, on the
    calibration clips when there is no held-out set), MACs, the budget, the clips skipped."""
    rep, r = result.report, result.report.result
    p = rep.precision.upper()
    rows = [{"figure": "top-1 agreement with FP32", "value": _pct(r.top1_agreement, 2)},
            {"figure": "logit max |error| / mean |error|",
             "value": f"{r.max_abs_logit_error:.4f} / {r.mean_abs_logit_error:.4f}"},
            {"figure": "logit cosine similarity", "value": f"{r.cosine:.5f}"}]
    if r.top1_reference is not None:
        rows.append({"figure": f"top-1 FP32 -> {p}",
                     "value": f"{_pct(r.top1_reference, 2)} -> {_pct(r.top1_candidate, 2)}"})
    if r.mean_flip_rate is not None:
        rows.append({"figure": "policy decision flips (mean over blocks)", "value": _pct(r.mean_flip_rate, 3)})
    m = rep.macs
    rows.append({"figure": f"MACs in {p}", "value": f"{100 * m.low / max(m.total, 1):.1f}% "
                 f"({m.low / 1e9:.3f} of {m.total / 1e9:.3f} G)"})
    if rep.budget_layers:
        rows.append({"figure": "layers returned to FP32 by the budget",
                     "value": f"{len(rep.budget_layers)} ({m.budget_layers_macs / 1e9:.3f} GMACs)"})
    on = (f"{rep.holdout.clips} held-out clips" if rep.holdout.held_out
          else f"the {rep.holdout.clips} calibration clips (no held-out set)")
    lines = [format_table(rows, ["figure", "value"], ["", f"{p} vs FP32 on {on}"])]
    if not rep.holdout.held_out:
        lines.append("no held-out set: these figures are on the clips calibration saw; give --holdout (e.g. the val "
                     "list) for unbiased ones")
    skipped = rep.skipped
    if skipped:
        lines.append(f"skipped {len(skipped)} unreadable clip(s): "
                     + "; ".join(f"{d['id']}: {d['reason']}" for d in skipped[:3])
                     + (f"; ... ({len(skipped) - 3} more in {result.report_path})" if len(skipped) > 3 else ""))
    lines += [f"  flips {block}: {_pct(rate, 3)}" for block, rate in r.flip_rate.items()]
    if rep.budget_layers:
        lines.append("FP32 by budget: " + ", ".join(rep.budget_layers))
    lines.append(f"wrote {result.path} (report {result.report_path}"
                 + (f", TensorRT cache {result.trt_cache}" if result.trt_cache else "") + ")")
    return "\n".join(lines)


def render_over_budget(result: CalibrateResult) -> str | None:
    """The warning line when calibrate could not hold its budget, else None."""
    rep = result.report
    if rep.within_budget is not False:
        return None
    return (f"warning: over the budget (drop {rep.drop_points:.2f} points, agreement "
            f"{_pct(rep.result.top1_agreement, 2)})")


def render_build(result: BuildResult) -> str:
    """``edgefuse build-engine``'s summary: the engine written, for what, and the choices made."""
    s = result.sidecar
    size = result.path.stat().st_size / 1e6
    lines = [(f"wrote {result.path} ({size:.1f} MB) and {result.sidecar_path.name}: {s.backend} {s.backend_version} "
              f"for {s.device} ({s.hardware_name}), {s.precision.upper()}, {s.build_seconds:.1f} s")]
    lines += [f"note: {note}" for note in s.notes]
    if s.backend_choice:
        lines.append(f"backend: {s.backend_choice}")
    if s.int8_rewrite:
        lines.append(f"int8: {s.int8_rewrite}")
    if s.gpu_fallback_layers:
        lines.append("layers on the GPU instead of DLA: " + ", ".join(s.gpu_fallback_layers))
    return "\n".join(lines)


def render_validate(rep: ValidateReport) -> str:
    """``edgefuse validate``'s summary: the figures, the classes that moved, AdaFuse, the first departure and
    the verdict."""
    from pathlib import Path

    r = rep.result
    rows: list[dict[str, Any]] = [{"figure": "clips", "value": r.clips},
                                  {"figure": "top-1 agreement", "value": _pct(r.top1_agreement, 2)}]
    if r.top1_reference is not None:
        rows += [{"figure": "top-1 reference / engine",
                  "value": f"{_pct(r.top1_reference, 2)} / {_pct(r.top1_engine, 2)}"},
                 {"figure": "top-5 reference / engine",
                  "value": f"{_pct(r.top5_reference, 2)} / {_pct(r.top5_engine, 2)}"}]
    rows += [{"figure": "logit cosine (mean / min)", "value": f"{r.cosine_mean:.5f} / {r.cosine_min:.5f}"},
             {"figure": "max |logit error|", "value": f"{r.max_abs_error:.4f}"},
             {"figure": "KL divergence (mean / max)", "value": f"{r.kl_mean:.2e} / {r.kl_max:.2e}"}]
    if rep.skipped:
        rows.append({"figure": "clips skipped (unreadable)", "value": len(rep.skipped)})
    lines = [format_table(rows, ["figure", "value"], ["", f"{Path(rep.engine).name} vs {Path(rep.reference).name}"])]
    if rep.skipped:
        lines.append(f"skipped {len(rep.skipped)} clip(s) of the source: "
                     + "; ".join(f"{i}: {why}" for i, why in rep.skipped[:3])
                     + (f"; ... ({len(rep.skipped) - 3} more in the JSON / HTML report)" if len(rep.skipped) > 3
                        else ""))
    disagree = rep.disagreements()
    if disagree:
        lines.append(f"clips that disagree: {len(disagree)} of {r.clips}; worst by logit error:")
        names = rep.class_names or []
        for d in disagree[:5]:
            what = f"reference {d.reference_class} / engine {d.engine_class}"
            label = "" if d.label is None else f", label {names[d.label] if 0 <= d.label < len(names) else d.label}"
            lines.append(f"  {d.id}: {what}, max |logit error| {d.max_abs_error:.4g}{label}"
                         + (f" (non-finite {d.nonfinite} logits)" if d.nonfinite else ""))
        if len(disagree) > 5:
            lines.append(f"  ... and {len(disagree) - 5} more (all in the JSON / HTML report)")
    if r.per_class:
        lines.append("classes that moved most: " + ", ".join(f"{c.name} {100 * c.delta:+.1f}" for c in r.per_class[:3]))
    for p in rep.policy or []:
        lines.append(f"  AdaFuse {p.block}: flips {_pct(p.flip_rate, 3)}, skip/reuse/keep "
                     f"{p.engine_skip or 0:.2f}/{p.engine_reuse or 0:.2f}/{p.engine_keep or 0:.2f}")
    if rep.realized is not None:
        eng, ref = rep.realized.engine, rep.realized.reference
        lines.append(f"  AdaFuse MACs per clip given the decisions: engine {sum(eng) / len(eng):.4f} G, reference "
                     f"{sum(ref) / len(ref):.4f} G, dense {rep.realized.dense:.4f} G")
    pl = rep.per_layer
    if pl is not None and pl.tensor is not None:
        lines.append(f"first departure: {pl.tensor} ({pl.op}), relative error {pl.relative_error:.3g} > "
                     f"{pl.tolerance} after {pl.tensors_checked - 1} matching tensors")
        others = f" (then {', '.join(pl.suspects[1:])})" if len(pl.suspects) > 1 else ""
        lines.append(f"departing layer: {pl.layer}{others}")
    elif pl is not None:
        lines.append(f"no tensor departs by more than {pl.tolerance} ({pl.tensors_checked} checked)")
    failures = rep.failures
    if failures:
        lines.append("verdict: FAIL: " + "; ".join(failures))
    else:
        lines.append(f"verdict: pass (drop {rep.drop_points:.2f} points, budget {rep.max_drop}"
                     + (f"; agreement {_pct(r.top1_agreement, 2)} >= {_pct(rep.min_agreement, 2)}"
                        if rep.min_agreement is not None else "") + ")")
    return "\n".join(lines)


def render_bench(rep: BenchReport | EstimateReport) -> str:
    """``edgefuse bench``'s table: measured rows (with estimates and Jetson energy when present), or the
    roofline estimates alone for a device that is not this machine."""
    from edgefuse.bench.report import EstimateReport

    if isinstance(rep, EstimateReport):
        return "\n".join([rep.note, format_table([{"name": r.name, "estimate_ms": r.estimate_ms} for r in rep.rows],
                                                 ["name", "estimate_ms"], ["engine", "estimated ms (roofline)"]),
                          *[f"{r.name}: {r.summary}" for r in rep.rows]])
    rows = [{"name": r.name, "backend": r.backend, "precision": r.precision, "median_ms": r.latency.median_ms,
             "p90_ms": r.latency.p90_ms, "p99_ms": r.latency.p99_ms, "cov_pct": f"{100 * r.latency.cov:.1f}%",
             "clips_per_s": r.latency.clips_per_s, "frames_per_s": r.latency.frames_per_s, "rss_mb": r.rss_mb,
             "speedup": f"{r.speedup_vs_first:.2f}x" if r.speedup_vs_first is not None else "-"} for r in rep.rows]
    lines = [format_table(rows, ["name", "backend", "precision", "median_ms", "p90_ms", "p99_ms", "cov_pct",
                                 "clips_per_s", "frames_per_s", "rss_mb", "speedup"],
                          ["engine", "backend", "precision", "p50 ms", "p90 ms", "p99 ms", "CoV", "clips/s",
                           "frames/s", "RSS MB", "vs first"])]
    unc = None
    for r in rep.rows:
        if r.estimate_ms is not None and r.estimate_error_pct is not None:
            if unc is None:
                unc = _estimate_uncertainty(rep.device)
            lines.append(f"estimate (roofline) {r.name}: {r.estimate_ms:.2f} ms vs measured "
                         f"{r.latency.median_ms:.2f} ms ({r.estimate_error_pct:+.0f}%){unc}")
    for r in rep.rows:
        w = r.power
        if w is not None and w.energy_mj_per_clip is not None and w.mean_power_mw is not None:
            lines.append(f"energy {r.name}: {w.energy_mj_per_clip:.1f} mJ/clip at {w.mean_power_mw / 1000:.2f} W "
                         f"(power mode {w.power_mode}, clocks pinned: {w.clocks_pinned}"
                         f"{f'; {w.power_source}' if w.power_source else ''})")
    lines.append(f"input {'x'.join(str(d) for d in rep.input)} on {rep.device}, {rep.rows[0].latency.iterations} runs "
                 f"each, round robin after {rep.warmup} warm-up; peak RSS {rep.peak_rss_mb} MB")
    return "\n".join(lines)


def _estimate_uncertainty(device: str) -> str:
    """ "; the class's held-out error ..." for the estimate lines of render_bench ("" where it is not known)."""
    from edgefuse.errors import EdgefuseError

    try:
        from edgefuse.devices import get_device
        from edgefuse.estimate import uncertainty
        from edgefuse.estimate.device import device_class
        from edgefuse.estimate.model import load_fitted

        profile = get_device(device)
        if profile.kind == "cpu":
            return ""
        cls = device_class(profile)
        return f"; estimate uncertainty {uncertainty(load_fitted().constants.get(cls), cls)[1]}"
    except EdgefuseError:
        return ""


def render_demo(rep: DemoReport) -> str:
    """``edgefuse demo``'s summary table."""
    rows = [{"model": r.model, "precision": r.precision, "top1": _pct(r.top1), "agreement": _pct(r.agreement),
             "gmacs": r.gmacs, "p50_ms": f"{r.p50_ms:.1f}", "p99_ms": f"{r.p99_ms:.1f}", "speedup": f"{r.speedup:.2f}x"}
            for r in rep.rows]
    table = format_table(rows, ["model", "precision", "top1", "agreement", "gmacs", "p50_ms", "p99_ms", "speedup"],
                         ["model", "runs as", f"top-1 ({rep.val_clips} val clips)", "agrees with FP32", "GMACs/clip",
                          "p50 ms", "p99 ms", "vs eager"])
    return f"{table}\nedgefuse demo: {rep.seconds:.0f} s; graphs, engines and clips in {rep.work}/"


def render_model_inspection(r: ModelInspection) -> str:
    """``edgefuse inspect MODEL``: config, params, dense MACs; AdaFuse's decisions per block."""
    cfg = r.config
    lines = [f"model       {cfg.name}  ({cfg.arch} on {cfg.backbone})"]
    if r.checkpoint:
        lines.append(f"checkpoint  {r.checkpoint}")
    lines.append(f"input       ({cfg.num_segments}, 3, {cfg.input_size}, {cfg.input_size}) {cfg.channel_order}, "
                 f"mean {cfg.mean}, std {cfg.std}, resize short side {cfg.scale_size}")
    lines.append(f"classes     {cfg.num_classes}")
    if cfg.options is not None:
        lines.append(f"options     {dataclasses.asdict(cfg.options)}")
    lines.append(f"params      {r.params / 1e6:.3f} M")
    lines.append(f"MACs        {r.gmacs_frame:.4f} G per frame, {r.gmacs_clip:.3f} G per clip of {r.frames} frames (dense)")
    dec = r.decisions
    if dec:
        lines.append(f"AdaFuse     on {dec.input}: {dec.gmacs_clip_given_decisions:.3f} G per clip given the "
                     f"decisions, {dec.saving_pct:.1f}% saved")
        lines.append(format_table([b.__dict__ for b in dec.blocks], ["block", "skip", "reuse", "keep", "saved_gmacs_clip"],
                                  ["block", "skip", "reuse", "keep", "saved GMACs/clip"]))
    return "\n".join(lines)


def render_graph_inspection(r: GraphInspection) -> str:
    """``edgefuse inspect model.onnx``: inputs, outputs, dynamic ranges, MACs, ops, metadata, TensorRT verdicts."""
    import json

    head = f"graph       {r.path}  opset {r.opset}, {r.nodes} nodes, {r.params / 1e6:.3f} M params, "
    lines = [head + f"producer {r.producer}"]
    lines += [f"input       {t.name} {t.dims}" for t in r.inputs]
    lines += [f"output      {t.name} {t.dims}" for t in r.outputs]
    lines += [f"dynamic     {d}: min/opt/max {rng}" for d, rng in r.dynamic_dims.items()]
    if r.macs is not None:
        lines.append(f"MACs        {r.macs.total / 1e9:.4f} G at the {r.macs.at} "
                     f"({', '.join(f'{k} {v / 1e9:.3f} G' for k, v in r.macs.by_op.items())})")
    lines.append("ops         " + ", ".join(f"{k} {v}" for k, v in r.ops.items()))
    lines += [f"meta        {k} = {json.dumps(r.metadata[k])}" for k in sorted(r.metadata) if k != "class_names"]
    h = r.hygiene
    lines.append("hygiene     " + ("ok" if h.ok else "; ".join(h.problems)))
    rows = [{"tensorrt": v.version, "verdict": "ok" if v.ok else "NO: " + "; ".join(v.problems), "notes": len(v.notes)}
            for v in h.verdicts]
    lines.append(format_table(rows, ["tensorrt", "verdict", "notes"], ["TensorRT", "verdict", "restriction notes"]))
    return "\n".join(lines)


def render_train(result: TrainResult) -> str:
    """``edgefuse train``: the checkpoint written and its validation figures."""
    m = result.metrics
    pair = "" if m.within_pair is None else f", within-pair {m.within_pair:.3f}"
    cost = f"{m.dense_gmacs_clip:.3f} GMACs/clip"
    if m.saving_pct is not None:
        cost = f"{m.gmacs_clip_given_decisions:.3f} of {cost} given the decisions ({m.saving_pct:.1f}% saved)"
    return (f"train: wrote {result.checkpoint} (sha256 {result.sha256}): val top1 {m.top1:.3f}{pair}, {cost}, "
            f"{result.train_seconds:.0f} s")


def render_models(rows: Sequence[ModelRow], trained: Sequence[PretrainedRow], frames: int, size: int | None) -> str:
    """``edgefuse models``: the registered models, then the pretrained tags."""
    parts = []
    if rows:
        parts.append(format_table(
            [r.to_dict() for r in rows], ["name", "params_m", "size", "gmacs_frame", "gmacs_clip", "description"],
            ["model", "params (M)", "px", "GMACs/frame", f"GMACs/clip ({frames} frames)", "description"]))
    if trained:
        parts.append("\nPretrained (ship with edgefuse: create_model(NAME, pretrained=True) or the short name anywhere "
                     "a model name goes;\nval split of 'edgefuse synth', 10 classes in 5 time-reversed pairs):")
        parts.append(format_table(
            [t.to_dict() for t in trained], ["pretrained", "name", "top1", "within_pair", "gmacs_clip", "saving", "mb"],
            ["pretrained", "short name", "val top-1", "within pair", "GMACs/clip", "MACs saved", "MB"]))
    return "\n".join(parts)


def render_presets(presets: Sequence[tuple[str, str]]) -> str:
    """``edgefuse export --list-presets``."""
    return format_table([{"name": n, "description": d} for n, d in presets], ["name", "description"])


def render_clip_folder(folder: ClipFolder) -> str:
    """``edgefuse device-clips``: what was written and the commands that use it on the device and back here."""
    shape = "x".join(str(d) for d in folder.clip_shape)
    labelled = ", labelled" if folder.labelled else ""
    wrote = f"wrote {folder.clips} clips of {shape} ({folder.input_name}{labelled}) to {folder.path}"
    if folder.skipped:
        wrote += f"; {folder.skipped} clip(s) of the source skipped (listed in manifest.json, and in validate's report)"
    device = f"on the device:  python3 device_runner.py model.engine {folder.path.name}/ -o logits/"
    return "\n".join([wrote, f"{device}   (the runner: {folder.runner})",
                      f"back here:      edgefuse validate logits/ --reference MODEL.onnx --clips {folder.path}"])



def render_fleet(rep: FleetReport) -> str:
    """``edgefuse bench --host ...``: one row per host x engine, each host's device, and each failed host's line."""
    rows = [{"host": h.host, "name": r.name, "backend": r.backend, "precision": r.precision,
             "median_ms": r.latency.median_ms, "p90_ms": r.latency.p90_ms, "p99_ms": r.latency.p99_ms,
             "cov_pct": f"{100 * r.latency.cov:.1f}%", "clips_per_s": r.latency.clips_per_s,
             "frames_per_s": r.latency.frames_per_s, "rss_mb": r.rss_mb,
             "energy": f"{r.power.energy_mj_per_clip:.1f}" if r.power and r.power.energy_mj_per_clip else "-"}
            for h in rep.hosts if h.report is not None for r in h.report.rows]
    lines = [format_table(rows, ["host", "name", "backend", "precision", "median_ms", "p90_ms", "p99_ms", "cov_pct",
                                 "clips_per_s", "frames_per_s", "rss_mb", "energy"],
                          ["host", "engine", "backend", "precision", "p50 ms", "p90 ms", "p99 ms", "CoV", "clips/s",
                           "frames/s", "RSS MB", "mJ/clip"])] if rows else []
    for h in rep.hosts:
        if h.report is not None:
            lines.append(f"{h.host}: {h.device or 'device unknown'}; profile {h.report.device}, input "
                         f"{'x'.join(str(d) for d in h.report.input)}, {h.report.rows[0].latency.iterations} runs each "
                         f"after {h.report.warmup} warm-up")
    for h in rep.hosts:
        if h.report is None:
            lines.append(f"FAILED {h.error}")
    lines.append(f"{len(rep.hosts) - len(rep.failed)} of {len(rep.hosts)} host{'s' if len(rep.hosts) != 1 else ''} "
                 "benched")
    return "\n".join(lines)


if TYPE_CHECKING:  # edgefuse infer's result
    from edgefuse.backends.infer import InferResult


def render_infer(result: InferResult) -> str:
    """``edgefuse infer``: what ran, how fast, where the logits are and the command that compares them."""
    ran = (f"ran {result.engine} ({result.backend} {result.backend_version}) on {result.clips} clips, {result.batch} "
           f"per run: {result.runs} runs, {result.mean_compute_ms:.2f} ms per run on average")
    return "\n".join([ran, f"wrote {result.out_dir}/logits.npy and logits.json",
                      f"compare:  edgefuse validate {result.out_dir} --reference MODEL.onnx --clips CLIPS_DIR"])
