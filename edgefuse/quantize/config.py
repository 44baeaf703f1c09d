"""What ``edgefuse calibrate`` is asked to do: :class:`CalibrateConfig` and the defaults it checks against."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgefuse.errors import EdgefuseError
from edgefuse.quantize.stats import METHODS

PRECISIONS = ("int8", "fp16")
# Policy-aware defaults: AdaFuse's policy nets and decisions, GSF's gate and fusion convolutions,
# and the final classifier stay in higher precision (node names follow the module scopes export
# writes: /backbone/layer1.0/adafuse/fc0/Gemm, /backbone/layer1.0/gsf/..., /fc/Gemm). The Inception
# backbones hold GSF in top-level slots named after the convolution it follows, as the official
# checkpoints name them: /backbone/gsf_inception_3a_1x1/... (BN-Inception),
# /backbone/gsf_mixed_conv_Conv2D/... (InceptionV3): "*/gsf_*/*".
DEFAULT_EXCLUDES = ("*/adafuse/*", "*/gsf/*", "*/gsf_*/*", "/fc/*")
# INT8 only: a non-local block's query and key projections (theta, phi: /backbone/nl/theta_1/Conv,
# /backbone/nl/phi/phi.0_1/Conv from TorchScript, /backbone/layer2.0/nl/phi/0/Conv from dynamo). Their outputs
# multiply into the un-normalised affinities a softmax turns into attention, so their rounding moves the attention:
# measured on a data-initialised tsm_nl_resnet50 at 224 px x 8 segments (benchmarks/inception_cpu.py), INT8 theta /
# phi put 7-15 % relative error into a block's branch where INT8 g / W put 3-5 % and a backbone convolution 3 %. The
# affinity and value products (MatMul of two activations) take no Q/DQ at all: INT8 there measured 10-20 % (the
# softmax's small weights round to zero on a per-tensor grid). docs/export.md, "Inception and non-local models".
INT8_EXCLUDES = ("*/nl/theta*", "*/nl/phi/*")
MIN_CLIPS = 8
SAVE_EVERY = 16  # clips between checkpoints of the statistics (an interrupted run resumes there)
STATS_VERSION = 3  # histograms also for the convolution outputs (the CPU engine's grids)


@dataclass(frozen=True)
class CalibrateConfig:
    model: Path
    clips: Path
    output: Path
    precision: str = "int8"
    method: str = "entropy"
    num_clips: int = 256
    seed: int = 0
    max_drop: float | None = None  # top-1 points (drop with labels, disagreement without)
    min_agreement: float | None = None  # also required by the budget: top-1 agreement with FP32 (0-1)
    exclude: tuple[str, ...] = ()
    default_excludes: bool = True
    holdout: Path | None = None  # held-out clips for the report and the budget (default: spare clips of `clips`)
    num_holdout: int = 100
    percentile: float = 99.99
    cache_dir: Path | None = None
    trt_cache: Path | None = None  # also write a TensorRT calibration cache
    trt_version: str = "8.6.1"
    from_trt_cache: Path | None = None  # take the scales from a TensorRT cache instead of statistics
    root: Path | None = None  # root of the clip list's relative paths
    workers: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EdgefuseError(f"precision {self.precision!r} is not supported by calibrate: use int8 or fp16")
        if self.method not in METHODS:
            raise EdgefuseError(f"unknown calibration method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.num_clips < MIN_CLIPS:
            raise EdgefuseError(f"num_clips {self.num_clips}: calibrate needs at least {MIN_CLIPS} clips "
                                "(256 recommended)")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise EdgefuseError(f"min_agreement {self.min_agreement}: give a fraction in [0, 1], e.g. 0.98")
        if self.max_drop is not None and self.max_drop < 0:
            raise EdgefuseError(f"max_drop {self.max_drop}: give a budget >= 0 top-1 points")
        if not 50.0 < self.percentile <= 100.0:
            raise EdgefuseError(f"percentile {self.percentile}: use a value in (50, 100]")

    @property
    def excludes(self) -> tuple[str, ...]:
        defaults = DEFAULT_EXCLUDES + (INT8_EXCLUDES if self.precision == "int8" else ())
        return (defaults if self.default_excludes else ()) + tuple(self.exclude)
