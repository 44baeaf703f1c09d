"""``--html``: the validate report as one self-contained page (tables and base64 PNG plots)."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.utils import atomic_path
from edgefuse.validate.report import ValidateReport


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(report: ValidateReport) -> dict[str, str]:
    """Base64 PNGs: per-class accuracy (with labels) and the distribution of per-clip logit error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    res = report.result
    errors = [e for e in res.per_clip.max_abs_error if np.isfinite(e)]  # non-finite clips are listed apart
    if errors:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist(errors, bins=30)
        ax.set_xlabel("max |logit error| per clip")
        ax.set_ylabel("clips")
        out["logit_error"] = _png(fig)
        plt.close(fig)
    if res.per_class is not None:
        classes = sorted(res.per_class, key=lambda c: c.name)
        fig, ax = plt.subplots(figsize=(max(6, len(classes) * 0.5), 3))
        x = np.arange(len(classes))
        ax.bar(x - 0.2, [c.reference for c in classes], 0.4, label="reference")
        ax.bar(x + 0.2, [c.engine for c in classes], 0.4, label="engine")
        ax.set_xticks(x, [c.name for c in classes], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("top-1")
        ax.legend()
        out["per_class"] = _png(fig)
        plt.close(fig)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


SUMMARY = ("clips", "top1_agreement", "top1_reference", "top1_engine", "top5_reference", "top5_engine", "cosine_mean",
           "max_abs_error", "kl_mean")


def write_html(report: ValidateReport, path: Path) -> Path:
    res = report.result
    figures = res.to_dict(per_clip=False)
    summary = [{"figure": k, "value": figures[k]} for k in SUMMARY if k in figures]
    gate = (f"drop {report.drop_points:.2f} points, budget {report.max_drop}"
            + (f"; top-1 agreement {res.top1_agreement:.4f}, minimum {report.min_agreement}"
               if report.min_agreement is not None else ""))
    intro = (f"<h1>edgefuse validate</h1><p>engine <code>{html.escape(report.engine)}</code> vs reference "
             f"<code>{html.escape(report.reference)}</code> on {res.clips} clips of "
             f"<code>{html.escape(report.clips)}</code>; verdict: <b>{report.verdict.upper()}</b> "
             f"({html.escape(gate)})</p>")
    parts = [intro]
    if report.failures:
        parts.append("<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in report.failures) + "</ul>")
    parts.append(_table(summary, ["figure", "value"]))
    disagree = report.disagreements()
    parts += [f"<h2>Clips that disagree ({len(disagree)} of {res.clips})</h2>",
              _table([d.to_dict() for d in disagree], ["id", "label", "reference_class", "engine_class",
                                                       "max_abs_error", "nonfinite"])
              if disagree else "<p>none: the engine's top-1 is the reference's on every clip</p>"]
    parts += [f"<h2>Clips skipped ({len(report.skipped)})</h2>",
              _table([{"id": i, "reason": why} for i, why in report.skipped], ["id", "reason"])
              if report.skipped else "<p>none: every clip of the source could be read</p>"]
    if res.per_class is not None:
        parts += ["<h2>Classes that moved most</h2>", _table([c.to_dict() for c in res.per_class[:10]],
                                                             ["class", "clips", "reference", "engine", "delta"])]
    if report.policy:
        parts += ["<h2>AdaFuse decisions</h2>", _table([p.to_dict() for p in report.policy],
                                                       ["block", "flip_rate", "engine_skip", "engine_reuse",
                                                        "engine_keep"])]
    if report.per_layer is not None:
        parts += ["<h2>First departing tensor</h2>",
                  f"<pre>{html.escape(json.dumps(report.per_layer.to_dict(), indent=1))}</pre>"]
    for name, png in plots(report).items():
        parts.append(f"<h2>{name.replace('_', ' ')}</h2><img src='data:image/png;base64,{png}'>")
    page = ("<!doctype html><meta charset='utf-8'><title>edgefuse validate</title><style>body{font-family:sans-serif;"
            "max-width:60em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
            + "".join(parts))
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
