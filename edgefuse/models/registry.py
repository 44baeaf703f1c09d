"""Model registry in the style of timm: ``register_model``, ``create_model``, ``list_models``."""
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
from edgefuse.models.video import VideoClassifier

if TYPE_CHECKING:
    from edgefuse.models.checkpoint import Checkpoint

Builder = Callable[[ModelConfig], VideoClassifier]


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


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "run 'edgefuse models' for the list"
        raise EdgefuseError(f"unknown model {name!r}: {hint}") from None


_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"name", "arch", "backbone", "options", "extra"}


def resolve_config(name: str, **overrides: Any) -> ModelConfig:
    """The model's default config with ``overrides`` applied (config fields or arch options)."""
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
    num_classes: int | None = None,
    num_segments: int | None = None,
    checkpoint: str | Path | Checkpoint | None = None,
    **options: Any,
) -> VideoClassifier:
    """Build a registered model in eval mode, optionally loading a checkpoint strictly.

    ``checkpoint`` (a path, or a :class:`Checkpoint` already read) may be in any supported
    format (official AdaFuse, GSF or TSM releases, or edgefuse's own); ``num_classes``
    defaults to the checkpoint's.
    """
    from edgefuse.models.checkpoint import Checkpoint, load_into, read_checkpoint

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) or checkpoint is None else read_checkpoint(checkpoint)
    if num_classes is None and ckpt is not None:
        num_classes = ckpt.num_classes
    cfg = resolve_config(name, num_classes=num_classes, num_segments=num_segments, **options)
    if ckpt is not None and ckpt.config_extra:
        extra = dict(ckpt.config_extra)
        names = extra.pop("class_names", None)
        if names and cfg.class_names is None and len(names) == cfg.num_classes:
            cfg = dataclasses.replace(cfg, class_names=tuple(names))
        cfg = dataclasses.replace(cfg, extra={**cfg.extra, **extra})
    try:
        model = get_entry(name).builder(cfg)
    except ValueError as e:
        raise EdgefuseError(f"cannot build {name!r}: {e}") from None
    if ckpt is not None:
        load_into(model, ckpt)
    return model.eval()
