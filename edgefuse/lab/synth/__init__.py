"""``edgefuse synth``: a synthetic temporal benchmark, written like a real one.

Ten classes in five time-reversed pairs: class ``2k + 1`` is a clip of class ``2k`` played
backwards ("moving right" is a "moving left" clip reversed, "shrinking" a reversed "growing",
...). Both classes of a pair therefore show the same frames with the same distribution, only
in the opposite order: a model that averages per-frame predictions (TSN) cannot tell them
apart, a temporal model (TSM, GSF, AdaFuse) can.

``render_clip`` draws one clip in memory; ``generate`` writes a dataset in the
Something-Something V1 / Jester layout (JPEG frame folders and TSN list files) plus video
files, with train / val / calib splits. Every clip's content comes from its own RNG, seeded
by (seed, split, index), and its label from a balanced permutation of its block of ten, so
a clip does not change when the split sizes do.
"""
from __future__ import annotations

from edgefuse.lab.synth.config import (
    CLASS_DESCRIPTIONS,
    CLASSES,
    DEFAULT_CODEC_OPTIONS,
    FORMATS,
    KINDS,
    PAIRS,
    SHAPES,
    SPLITS,
    SynthConfig,
    check_config,
)
from edgefuse.lab.synth.draw import place, render_clip, render_params, shape_mask
from edgefuse.lab.synth.params import ClipParams, Distractor, clip_label, clip_name, clip_rng, sample_params
from edgefuse.lab.synth.write import generate, plan

__all__ = [
    "CLASSES", "CLASS_DESCRIPTIONS", "DEFAULT_CODEC_OPTIONS", "FORMATS", "KINDS", "PAIRS", "SHAPES", "SPLITS",
    "ClipParams", "Distractor", "SynthConfig", "check_config", "clip_label", "clip_name", "clip_rng", "generate",
    "place", "plan", "render_clip", "render_params", "sample_params", "shape_mask",
]
