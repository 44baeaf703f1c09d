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
folders or videos), a folder of frame folders, a folder of videos or one video (mp4, webm,
avi, mkv, decoded with PyAV), a Something-Something V2 JSON with its labels JSON as
``classes``, or an ``.npz`` of preprocessed clips.

Modules: :mod:`~edgefuse.clips.sampling` (which frames: TSN segments, dense, multi-clip),
:mod:`~edgefuse.clips.preprocess` (resize, crops, normalisation), :mod:`~edgefuse.clips.sources`
(what a source lists), :mod:`~edgefuse.clips.decode` (frame folders and videos),
:mod:`~edgefuse.clips.clipset` (parallel decoding, :class:`ClipSet`),
:mod:`~edgefuse.clips.subset` (class-balanced subsets). Each module's docstring names the
official function every step matches.
"""
from __future__ import annotations

from edgefuse.clips.clipset import Clip, ClipSet
from edgefuse.clips.clipset import open_clips as open
from edgefuse.clips.preprocess import Preprocess
from edgefuse.clips.sampling import Sampling, dense_indices, dense_starts, multi_clip_indices, tsn_indices
from edgefuse.clips.sources import DEFAULT_TEMPLATE, VIDEO_EXTS
from edgefuse.clips.subset import balanced_subset

__all__ = [
    "DEFAULT_TEMPLATE", "VIDEO_EXTS", "Clip", "ClipSet", "Preprocess", "Sampling", "balanced_subset",
    "dense_indices", "dense_starts", "multi_clip_indices", "open", "tsn_indices",
]
