"""``--png``: the latency distribution of every row, one box each."""
from __future__ import annotations

from pathlib import Path

from edgefuse.bench.report import BenchReport
from edgefuse.utils import atomic_path


def plot(report: BenchReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.rows
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(rows)), 3.5))
    ax.boxplot([r.raw_ms for r in rows], showfliers=True)
    ax.set_xticks(range(1, len(rows) + 1), [r.name for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("latency per run (ms)")
    ax.set_title(f"edgefuse bench: input {'x'.join(str(d) for d in report.input)}, {report.device}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
