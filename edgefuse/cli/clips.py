"""``edgefuse clips``: what a clip source holds, and the ``.npz`` the other commands take."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgefuse.cli.checks import check_io
from edgefuse.cli.options import clip_read_options, json_option
from edgefuse.cli.render import format_table, render_json
from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:
    from edgefuse.clips import ClipsReport, Preprocess, Sampling

LISTED = 20  # clips and skips listed without --all


@click.command("clips")
@click.argument("src", type=click.Path(path_type=Path, exists=True))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the clips as an .npz: clips (N, T, 3, H, W) float32, ids, labels (-1 = unknown), "
                   "class_names, meta; what --policy-clips, --parity-clips and every --clips read.")
@click.option("--model", metavar="GRAPH.onnx|NAME",
              help="Sample and preprocess as this model takes clips: a graph from 'edgefuse export' (its metadata) "
                   "or a registry / zoo model name [without: 8 segments, 224 px from 256, ImageNet mean and std].")
@click.option("--segments", type=click.IntRange(min=1), help="Segments per clip [the model's, else 8].")
@click.option("--size", type=click.IntRange(min=32),
              help="Crop size [the model's, else 224]; the short side is resized to size * 256 / 224 first.")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False),
              help="Root of the list file's relative paths (default: the list file's folder; for a benchmark "
                   "annotation, the folder of its frames / videos found beside it).")
@click.option("--num-clips", type=click.IntRange(min=1), help="A class-balanced subset of this size [all clips].")
@click.option("--seed", default=0, show_default=True, help="Seed of the subset (same seed, same clips).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="Decoding processes.")
@click.option("--all", "show_all", is_flag=True, help=f"List every clip and skip (default: the first {LISTED}).")
@clip_read_options("src")
@json_option
def clips_cmd(src: Path, output: Path | None, model: str | None, segments: int | None, size: int | None,
              root: Path | None, num_clips: int | None, seed: int, workers: int, show_all: bool, as_json: bool) -> None:
    """Read the clip source SRC as calibrate, validate and device-clips read it and summarise it: format (and, for a
    benchmark's annotation, its split, class order and the clips found and missing), clips read and skipped (with
    the reason), classes, frame counts, durations, frame rates, rotation. With -o, also write the
    clips, sampled and preprocessed as --model takes them, to an .npz."""
    from edgefuse.clips import survey

    check_io(inputs=[src], outputs={output: ".npz"})
    pre, sampling, reading, origin = _model_inputs(model, segments, size)
    report = survey(src, pre, sampling, output=output, root=root, num_clips=num_clips, seed=seed, workers=workers,
                    preprocessing_from=origin, **reading)
    click.echo(render_json(report.to_dict()) if as_json else render_clips(report, show_all))


def _model_inputs(model: str | None, segments: int | None, size: int | None
                  ) -> tuple[Preprocess | None, Sampling | None, dict[str, Any], str]:
    """(preprocessing, sampling, what the model says about reading clips (class count, class order), where they
    came from) for --model / --segments / --size; None, None for neither (the library's defaults, or an .npz's
    clips as stored)."""
    from edgefuse.clips import Preprocess, Sampling

    if model is None and segments is None and size is None:
        return None, None, {}, "defaults"
    if model is None:
        pre = Preprocess() if size is None else Preprocess(input_size=size, scale_size=size * 256 // 224)
        return pre, Sampling(num_segments=segments or 8), {}, "defaults"
    if model.lower().endswith(".onnx") or Path(model).is_file():
        return _graph_inputs(Path(model), segments, size)
    from edgefuse.models.registry import resolve_config

    cfg = resolve_config(model, num_segments=segments, input_size=size)
    return Preprocess.from_model_config(cfg), Sampling(num_segments=cfg.num_segments), \
        {"num_classes": cfg.num_classes}, f"model {model}"


def _graph_inputs(path: Path, segments: int | None, size: int | None
                  ) -> tuple[Preprocess, Sampling, dict[str, Any], str]:
    from edgefuse.clips import Preprocess, Sampling, model_reading

    if not path.is_file():
        raise EdgefuseError(f"{path}: no such graph; pass the .onnx from 'edgefuse export' or a model name")
    from edgefuse.graph.io import load_onnx
    from edgefuse.graph.metadata import read_metadata

    meta: dict[str, Any] = read_metadata(load_onnx(path))  # one error line for a file that is not ONNX
    if not meta.get("segments") or not meta.get("input_size"):
        raise EdgefuseError(f"{path}: no edgefuse metadata (segments, input size), so the clips' sampling is unknown; "
                            "give the graph 'edgefuse export' wrote, or --segments / --size without --model")
    dynamic = meta.get("shape") == "dynamic"
    for flag, given, own in (("--segments", segments, int(meta["segments"])), ("--size", size,
                                                                                 int(meta["input_size"]))):
        if given is not None and given != own and not dynamic:
            raise EdgefuseError(f"{flag} {given} conflicts with {path}'s {own} (its metadata, a static graph); leave "
                                f"{flag} out, or export the graph with a dynamic shape")
    pre = Preprocess.from_metadata(meta, source=str(path))
    if size is not None and size != pre.input_size:
        pre = Preprocess(input_size=size, scale_size=size * 256 // 224, mean=pre.mean, std=pre.std,
                         channel_order=pre.channel_order, pixel_range=pre.pixel_range)
    return pre, Sampling(num_segments=segments or int(meta["segments"])), model_reading(meta), f"graph {path}"


def _range(values: tuple[float, float, float] | None, unit: str, digits: int) -> str | None:
    if values is None:
        return None
    lo, mid, hi = values
    return f"min {lo:.{digits}f}{unit} / median {mid:.{digits}f}{unit} / max {hi:.{digits}f}{unit}"


def render_clips(report: ClipsReport, show_all: bool = False) -> str:
    """``edgefuse clips``'s summary of a :class:`~edgefuse.clips.ClipsReport`."""
    kinds = {"list": "list file", "ssv2": "Something-Something V2 list", "videos": "folder of videos",
             "class_folders": "folder of class folders", "frame_folders": "folder of frame folders",
             "frames": "frame folder", "video": "video", "npz": ".npz of preprocessed clips",
             "sthv1": "Something-Something V1 CSV", "jester": "Jester CSV", "kinetics": "Kinetics CSV",
             "ucf101": "UCF101 split file", "hmdb51": "HMDB51 split files"}
    skipped = len(report.skipped)
    what = kinds.get(report.kind, report.kind) + (f", {report.split}" if report.split else "")
    head = f"{report.source} ({what}): read {report.read} of {report.planned} clips"
    if skipped:
        short = f", {report.too_short} with fewer than {report.min_frames} frames" if report.too_short else ""
        head += f"; skipped {skipped}{short}"
    lines = [head]
    if report.root is not None:
        listed_total = report.planned + len(report.missing)
        found = f"found     {report.planned} of {listed_total} listed clips under {report.root}"
        if report.missing:
            absent = report.missing if show_all else report.missing[:5]
            more = "" if len(absent) == len(report.missing) else ", ..."
            found += f"; missing {len(report.missing)} ({', '.join(absent)}{more})"
        lines.append(found)
    if report.class_order is not None:
        lines.append(f"order     {report.class_order}")
    counts = report.class_counts()
    if report.class_names is not None or any(name != "(no label)" for name in counts):
        total = len(report.class_names) if report.class_names is not None else len(counts)
        listed = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        lines.append(f"classes   {total}: {listed}")
    else:
        lines.append("classes   none (unlabelled clips)")
    for label, text in (("frames", _range(report.stats("frames"), "", 0)),
                        ("duration", _range(report.stats("duration"), " s", 2)),
                        ("fps", _range(report.stats("fps"), "", 2))):
        if text is not None:
            lines.append(f"{label:<9} {text}")
    notes = [f"{n} {what}" for n, what in ((report.count("rotation"), "rotated upright (display matrix)"),
                                           (report.count("mirrored"), "mirrored (display matrix)"),
                                           (report.count("vfr"), "variable frame rate"),
                                           (report.count("repeats"), "repeat frames (fewer frames than sampled)"))
             if n]
    if notes:
        lines.append("notes     " + "; ".join(notes))
    if report.ignored:
        more = ", ..." if len(report.ignored) > 5 else ""
        lines.append(f"ignored   {len(report.ignored)} files that are neither videos nor frames "
                     f"({', '.join(report.ignored[:5])}{more})")
    if report.sampling is not None and report.preprocess is not None:
        s, p = report.sampling, report.preprocess
        lines.append(f"sampling  {s.num_segments} segments {s.mode} by {s.clock}, {p.input_size} px crop of "
                     f"{p.scale_size}, {p.channel_order} (from {report.preprocessing_from})")
    shape = ", ".join(str(d) for d in report.shape or ())
    lines.append(f"clips     ({shape}) float32 after preprocessing")
    if report.output is not None:
        lines.append(f"wrote     {report.output}: clips, ids, labels (-1 = unknown), class names, meta")
    if report.skipped:
        lines.append("unreadable:")
        shown = report.skipped if show_all else report.skipped[:LISTED]
        lines += [f"  {clip_id}: {reason}" for clip_id, reason in shown]
        if len(shown) < skipped:
            lines.append(f"  ... and {skipped - len(shown)} more (--all lists them)")
    rows = []
    for row in report.clips if show_all else report.clips[:LISTED]:
        info = row.info
        label_text: Any = row.label
        if row.label is not None and report.class_names is not None and 0 <= row.label < len(report.class_names):
            label_text = f"{row.label} {report.class_names[row.label]}"
        rows.append({"id": row.id, "label": label_text, "frames": info.frames if info else None,
                     "duration": f"{info.duration:.2f}" if info and info.duration is not None else None,
                     "fps": f"{info.fps:.2f}" if info and info.fps is not None else None,
                     "size": f"{info.width}x{info.height}" if info and info.width else None,
                     "rotation": (f"{info.rotation}" + (" mirrored" if info.mirrored else "")) if info else None,
                     "container": info.container.split(",")[0] if info and info.container else None})
    if rows and any(row.info is not None for row in report.clips):
        lines.append(format_table(rows, ["id", "label", "frames", "duration", "fps", "size", "rotation", "container"],
                                  ["clip", "label", "frames", "seconds", "fps", "size", "rotation", "container"]))
        if len(rows) < report.read:
            lines.append(f"... and {report.read - len(rows)} more clips (--all lists them)")
    return "\n".join(lines)
