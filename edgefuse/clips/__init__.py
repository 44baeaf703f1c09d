"""Benchmark clips: one interface over every clip source, sampled and preprocessed exactly as
the official TSN/TSM evaluation loaders do it.

```python
from edgefuse import clips

pre = clips.Preprocess.from_model_config(model.config)       # or .from_metadata(read_metadata("m.onnx"))
clip_set = clips.open("val_videofolder.txt", pre, clips.Sampling(num_segments=8), root="frames/",
                      num_clips=256, seed=0, workers=2)
data, labels, ids = clip_set.stack()                          # (256, 8, 3, 224, 224) float32
print(clip_set.summary())
clip_set.to_npz("val_clips.npz")
```

Sources (:func:`open`): a TSN list file (``path num_frames label`` lines; entries are frame
folders or videos), a folder of frame folders, a folder of videos, a folder of class-named
folders (Kinetics / UCF101 layout) or one video (any container FFmpeg reads, recognised by
content: mp4, mov, m4v, 3gp, webm, mkv, avi, ts, ...; decoded with PyAV, upright as its display
matrix says), a benchmark's annotation file as downloaded (Something-Something V1 / V2, Jester,
Kinetics, UCF101, HMDB51: :mod:`~edgefuse.clips.benchmarks`, with each benchmark's official class order), or an
``.npz`` of preprocessed clips. :class:`ClipSource` carries the reading options (classes, frame template,
time sampling, ...) through code that takes a path; :func:`survey` is ``edgefuse clips``.

Modules: :mod:`~edgefuse.clips.sampling` (which frames: TSN segments, dense, multi-clip),
:mod:`~edgefuse.clips.preprocess` (resize, crops, normalisation), :mod:`~edgefuse.clips.sources`
(what a source lists), :mod:`~edgefuse.clips.decode` (frame folders and videos),
:mod:`~edgefuse.clips.clipset` (parallel decoding, :class:`ClipSet`),
:mod:`~edgefuse.clips.subset` (class-balanced subsets), :mod:`~edgefuse.clips.benchmarks` (benchmark annotations), :mod:`~edgefuse.clips.spec`
(:class:`ClipSource`), :mod:`~edgefuse.clips.survey` (a source summarised, optionally written as an
``.npz``). Each module's docstring names the official function every step matches.
"""
from __future__ import annotations

from edgefuse.clips.clipset import Clip, ClipSet, model_reading
from edgefuse.clips.clipset import open_clips as open
from edgefuse.clips.decode import ClipInfo
from edgefuse.clips.preprocess import Preprocess
from edgefuse.clips.sampling import Sampling, dense_indices, dense_starts, multi_clip_indices, time_indices, tsn_indices
from edgefuse.clips.sources import DEFAULT_TEMPLATE, MIN_FRAMES, VIDEO_EXTS, sniff
from edgefuse.clips.spec import ClipSource, frame_template
from edgefuse.clips.subset import balanced_subset
from edgefuse.clips.survey import ClipsReport, survey

__all__ = [
    "DEFAULT_TEMPLATE", "MIN_FRAMES", "VIDEO_EXTS", "Clip", "ClipInfo", "ClipSet", "ClipSource", "ClipsReport",
    "Preprocess", "Sampling", "balanced_subset", "dense_indices", "dense_starts", "frame_template",
    "model_reading", "multi_clip_indices", "open", "sniff", "survey", "time_indices", "tsn_indices",
]
