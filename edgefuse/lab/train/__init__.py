"""Training on CPU: small TSN, TSM, GSF and AdaFuse models on a benchmark, reproducibly.

```python
from edgefuse.lab.train import TrainConfig, train, train_from_dir

cfg = TrainConfig("tsm_resnet18", options={"width": 0.25}, num_classes=10, segments=8, size=112, out=Path("m.pth"))
result = train(cfg, (train_frames, train_labels), (val_frames, val_labels))   # tensors in memory
result = train_from_dir(cfg, "synth/")                                          # an `edgefuse synth` folder
result.metrics.top1, result.history[-1]
```

Data are tensors: raw frames uint8 ``(N, F, H0, W0, 3)`` RGB, or preprocessed float clips
``(N, T, 3, H, W)`` (used as they are, no augmentation), with labels ``(N,)``. Raw frames are

1. resized once, short side to ``scale_size = size * 256 // 224`` (the research code's rule;
   skipped when they already have it, as frames decoded by :mod:`edgefuse.clips` at that size);
2. sampled: ``segments`` frames per clip, in training a random frame inside each of the
   ``segments`` equal segments (TSN training, ``TSNDataSet._sample_indices``), in evaluation the
   segment centres (``int(tick / 2 + tick * t)``, the rule :mod:`edgefuse.clips` evaluates with);
3. cropped: ``size`` squares, at a random position per clip in training (the same for all its
   frames), at the centre in evaluation (torchvision's offset rule). No horizontal flip: on the
   synthetic benchmark a mirror image turns "moving left" into "moving right" and "rotating
   clockwise" into "anticlockwise", so it would teach wrong labels;
4. normalised as the model's config says, with the float32 operations of
   :func:`edgefuse.clips.preprocess.normalise` (so evaluation here sees the bits deployment sees).

Optimisation: SGD with momentum, weight decay on convolution and linear weights only (not on
biases and BatchNorm, as TSN's optimisation policies), cosine learning rate per iteration,
gradient-norm clipping (TSM's ``--clip-gradient 20``), cross-entropy. AdaFuse models train
their policy with straight-through hard Gumbel-softmax (temperature ``tau``, official
``--init_tau 0.67``; ``tau_decay`` anneals it as ``tau * exp(tau_decay * epoch)``, the official
``--exp_decay_factor`` form) and add ``efficiency_weight * expected MACs / dense MACs`` per clip,
counted as :mod:`edgefuse.models.cost` counts (see :class:`TrainConfig` for how this relates to
the official ``--gate_gflops_loss_weight``). ``init`` warm-starts from a checkpoint (an AdaFuse-TSM
from a trained TSM) and ``keep_bias`` starts the policy close to "keep everything".

Deterministic: the same config and data give the same weights (same machine, same thread
count). Model initialisation, dropout and Gumbel noise come from ``torch.manual_seed(seed)``
inside a forked RNG (the caller's global RNG is left as it was), batch order, frame sampling
and crops from a ``torch.Generator`` seeded with ``seed``; ``torch.use_deterministic_algorithms``
is on (warn-only) while training. The model returned is the one after the last epoch.
"""
from __future__ import annotations

from edgefuse.lab.train.benchmark import load_benchmark, train_from_dir
from edgefuse.lab.train.config import SCHEDULES, Data, EpochStats, TrainConfig, TrainResult
from edgefuse.lab.train.data import normalise, prepare_clips, sample_clip, segment_indices
from edgefuse.lab.train.evaluate import evaluate
from edgefuse.lab.train.loop import train
from edgefuse.lab.train.model import build_model, model_config, save_trained, warm_start

__all__ = [
    "SCHEDULES", "Data", "EpochStats", "TrainConfig", "TrainResult", "build_model", "evaluate", "load_benchmark",
    "model_config", "normalise", "prepare_clips", "sample_clip", "save_trained", "segment_indices", "train",
    "train_from_dir", "warm_start",
]
