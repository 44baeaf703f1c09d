"""What can stream: a causal model with deterministic decisions and hook modules that have stream variants."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from edgefuse.errors import EdgefuseError
from edgefuse.models.layers import GSF, AdaFuse, TemporalShift
from edgefuse.models.video import VideoClassifier

HOOK_SLOTS = ("shift", "adafuse", "gsf")


def _future_lookers(model: nn.Module) -> list[tuple[str, str]]:
    """(module name, what it does) for every module that reads later segments."""
    found = []
    for name, m in model.named_modules():
        if isinstance(m, TemporalShift) and not m.online:
            found.append((name, "bidirectional TemporalShift: channels [0, C/shift_div) come from segment t+1"))
        elif isinstance(m, GSF):
            found.append((name, "GSF: gated channels shift from segment t+1 and its 3x3x3 gate spans t-1..t+1"))
    return found


def _alternatives(model: VideoClassifier) -> str:
    from edgefuse.models import list_models

    bb = model.config.backbone
    causal = [n for n in (f"tsm_online_{bb}", f"adafuse_tsn_{bb}") if n in list_models()] or ["tsm_online_mobilenetv2"]
    kinds = "tsm_online_*: past-only shift; adafuse_tsn_*: AdaFuse without shift"
    return f"use a causal model: {' or '.join(causal)} ({kinds})"


def _names(items: Sequence[tuple[str, str]], limit: int = 2) -> str:
    names = ", ".join(n for n, _ in items[:limit])
    return names + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _check_future(model: VideoClassifier) -> None:
    found = _future_lookers(model)
    if found:
        raise EdgefuseError(
            f"{model.config.name} cannot stream frame by frame: it looks at future segments "
            f"({found[0][1]}; in {_names(found)}), which a live stream does not have yet; "
            f"{_alternatives(model)}, or export the clip model instead"
        )


def _check_deterministic(model: VideoClassifier) -> None:
    sampled = [(n, m.decision) for n, m in model.named_modules() if isinstance(m, AdaFuse) and m.decision != "argmax"]
    if sampled:
        raise EdgefuseError(
            f"{model.config.name}: AdaFuse in {_names(sampled)} uses the {sampled[0][1]!r} decision, which samples "
            "noise every frame; a deployed stream needs the deterministic policy: create the model with "
            "decision='argmax' (--decision argmax)"
        )


def _check_slots(model: VideoClassifier) -> None:
    for block_name, block in model.blocks():
        for slot in HOOK_SLOTS:
            m = getattr(block, slot, None)
            if m is not None and not isinstance(m, (TemporalShift, AdaFuse)):
                raise EdgefuseError(
                    f"{model.config.name}: {block_name}.{slot} is a {type(m).__name__}, which has no stream "
                    f"variant; {_alternatives(model)}"
                )


def check_streamable(model: nn.Module) -> None:
    """Raise EdgefuseError unless ``model`` can run frame by frame with carried state.

    Decided from the modules present, not from the model's name.
    """
    if not isinstance(model, VideoClassifier):
        raise EdgefuseError(
            f"stream export needs a video model from edgefuse.models.create_model, got {type(model).__name__}"
        )
    _check_future(model)
    _check_deterministic(model)
    _check_slots(model)
