"""Model registry in the style of timm: ``register_model``, ``create_model``, ``list_models``.

A name is a registered model (``tsm_resnet18``) or a pretrained tag of one (``tsm_resnet18.synth_w025``,
or its short name ``synth_tsm_r18w025``; see :mod:`edgefuse.models.pretrained`). Registering and
listing import no torch; building does.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefuse.errors import EdgefuseError
from edgefuse.models.config import ModelConfig
from edgefuse.models.pretrained import Pretrained, default_tag, find_pretrained, get_pretrained, list_pretrained

if TYPE_CHECKING:
    from edgefuse.models.checkpoint import Checkpoint
    from edgefuse.models.video import VideoClassifier

Builder = Callable[[ModelConfig], "VideoClassifier"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    default: ModelConfig
    builder: Builder
    description: str


_MODELS: dict[str, ModelEntry] = {}


def register_model(default: ModelConfig, builder: Builder, description: str) -> ModelEntry:
    if default.name in _MODELS:
        raise ValueError(f"model {default.name!r} registered twice")
    entry = ModelEntry(default.name, default, builder, description)
    _MODELS[default.name] = entry
    return entry


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered models matching the glob ``pattern``; with ``pretrained``, their tags (``model.tag``)."""
    if pretrained:
        return sorted(p.full_name for p in list_pretrained(pattern))
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "run 'edgefuse models' for the list"
        raise EdgefuseError(f"unknown model {name!r}: {hint}") from None


_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"name", "arch", "backbone", "options", "extra"}


def resolve_name(name: str) -> tuple[str, Pretrained | None]:
    """(registry name, pretrained tag or None) of a model name, a ``model.tag`` or a tag's short name."""
    if name in _MODELS:
        return name, None
    tag = find_pretrained(name)
    if tag is not None:
        return tag.model, tag
    if name.partition(".")[0] in _MODELS:
        get_pretrained(name)  # raises, naming the closest tags
    known = [*_MODELS, *(n for p in list_pretrained() for n in (p.full_name, p.name))]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "run 'edgefuse models' for the list"
    raise EdgefuseError(f"unknown model {name!r}: {hint}")


def _tag_defaults(tag: Pretrained | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The tag's config under the overrides given (None = not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if tag is None:
        return given
    merged = {**tag.model_kwargs(), **given}
    if "class_names" not in given and tag.class_names and merged["num_classes"] == len(tag.class_names):
        merged["class_names"] = tag.class_names
    return merged


def resolve_config(name: str, **overrides: Any) -> ModelConfig:
    """The model's default config (a pretrained tag's, for a tag) with ``overrides`` applied (config fields
    or arch options)."""
    model, tag = resolve_name(name)
    return _config(model, **_tag_defaults(tag, overrides))


def _config(name: str, **overrides: Any) -> ModelConfig:
    entry = get_entry(name)
    cfg_changes = {k: v for k, v in overrides.items() if k in _CONFIG_FIELDS and v is not None}
    opt_changes = {k: v for k, v in overrides.items() if k not in _CONFIG_FIELDS and v is not None}
    options = entry.default.options
    if opt_changes:
        allowed = {f.name for f in dataclasses.fields(options)} if options is not None else set()
        unknown = sorted(set(opt_changes) - allowed)
        if unknown:
            raise EdgefuseError(
                f"model {name!r} has no option {', '.join(unknown)}; "
                f"its options are: {', '.join(sorted(allowed | _CONFIG_FIELDS))}"
            )
        if "enabled_stages" in opt_changes:
            opt_changes["enabled_stages"] = tuple(int(s) for s in opt_changes["enabled_stages"])
        options = dataclasses.replace(options, **opt_changes)  # type: ignore[type-var]
    if "input_size" in cfg_changes and "scale_size" not in cfg_changes:
        cfg_changes["scale_size"] = cfg_changes["input_size"] * 256 // 224  # the research code's rule
    if "class_names" in cfg_changes:
        cfg_changes["class_names"] = tuple(cfg_changes["class_names"])
    return dataclasses.replace(entry.default, options=options, **cfg_changes)


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    num_classes: int | None = None,
    num_segments: int | None = None,
    checkpoint: str | Path | Checkpoint | None = None,
    **options: Any,
) -> VideoClassifier:
    """Build a registered model in eval mode, optionally loading a checkpoint strictly.

    ``name``: a registered model, or a pretrained tag (``tsm_resnet18.synth_w025`` or its short name),
    whose classes, segments, input size and options are the defaults. ``pretrained``: load the tag's
    weights (sha256-checked; a plain model name takes its first tag). ``checkpoint`` (a path, or a
    :class:`Checkpoint` already read) may be in any supported format (official AdaFuse, GSF or TSM
    releases, or edgefuse's own); ``num_classes`` defaults to the checkpoint's, and the options to those an
    edgefuse checkpoint of the same model was trained with (``edgefuse train``: width, policy hidden size).
    """
    from edgefuse.models.checkpoint import Checkpoint, load_into, read_checkpoint

    tag: Pretrained | None
    if pretrained and name not in _MODELS:
        tag = get_pretrained(name)  # one error naming the closest tags
        model_name = tag.model
    else:
        model_name, tag = resolve_name(name)
    if pretrained:
        if checkpoint is not None:
            raise EdgefuseError(f"{name}: load either its pretrained weights or a checkpoint, not both")
        tag = tag or default_tag(model_name)
        checkpoint = tag.checked_path()
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) or checkpoint is None else read_checkpoint(checkpoint)
    if num_classes is None and ckpt is not None:
        num_classes = ckpt.num_classes
    # options an edgefuse checkpoint of this model was trained with (width, policy hidden size ...) unless given
    recorded = ckpt.options if ckpt is not None and tag is None and ckpt.model_name == model_name else {}
    given = {**recorded, **{k: v for k, v in options.items() if v is not None}}
    cfg = _config(model_name, **_tag_defaults(tag, dict(given, num_classes=num_classes, num_segments=num_segments)))
    if ckpt is not None and ckpt.config_extra:
        extra = dict(ckpt.config_extra)
        names = extra.pop("class_names", None)
        if names and cfg.class_names is None and len(names) == cfg.num_classes:
            cfg = dataclasses.replace(cfg, class_names=tuple(names))
        cfg = dataclasses.replace(cfg, extra={**cfg.extra, **extra})
    try:
        model = get_entry(model_name).builder(cfg)
    except ValueError as e:
        raise EdgefuseError(f"cannot build {name!r}: {e}") from None
    if ckpt is not None:
        load_into(model, ckpt)
    return model.eval()
