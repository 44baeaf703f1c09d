"""Reading checkpoints of every supported source and loading them strictly.

Sources are told apart by marker keys (never by file name). Each registers itself beside its
architecture (:mod:`edgefuse.models.sources`): official AdaFuse (``policy_net.`` / ``gate_fc0s.`` /
``downsample0.`` keys) in adafuse.py, official GSF (``.gsf.conv3D.`` keys or a ``model_state_dict``
container) in gsf.py, official TSM (``base_model.``/``new_fc.`` keys) in tsm.py, and edgefuse's own
(``backbone.``/``fc.`` keys) in sources.py. This module imports no architecture.
"""
from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from edgefuse.errors import EdgefuseError
from edgefuse.models.sources import detect_source, get_source
from edgefuse.utils import sha256_file

if TYPE_CHECKING:
    from edgefuse.models.video import VideoClassifier

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    path: Path
    sha256: str
    source: str
    state_dict: dict[str, torch.Tensor]
    num_classes: int | None
    model_name: str | None = None  # when the checkpoint says (edgefuse checkpoints)
    config_extra: dict[str, Any] = field(default_factory=dict)


def _unpickler_reason(err: BaseException) -> str:
    """The one informative line of torch's weights-only unpickler error."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error:" in ln:
            rest = ln.split("WeightsUnpickler error:", 1)[1].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else "")
    return lines[-1] if lines else type(err).__name__


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _unpickler_reason(e)
        if "Unsupported global" in reason:
            name = reason.split("GLOBAL", 1)[-1].split(" was not")[0].strip()
            raise EdgefuseError(
                f"{path}: not a plain-weights checkpoint (it pickles the Python object {name}); edgefuse loads "
                "with torch.load(weights_only=True): re-save only the tensors, e.g. "
                "torch.save({'state_dict': model.state_dict()}, path), where the checkpoint was made"
            ) from None
        raise EdgefuseError(
            f"{path}: corrupt or not a PyTorch checkpoint ({reason[:120]}); download or copy it again"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgefuseError(
            f"{path}: truncated or corrupt checkpoint ({msg[:160]}); download or copy it again"
        ) from None


def _find_state_dict(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not isinstance(obj, dict):
        raise EdgefuseError(f"{path}: holds a {type(obj).__name__}, not a state dict; save model.state_dict() instead")
    for key in ("state_dict", "model_state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner, {k: v for k, v in obj.items() if k != key}
    if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return obj, {}
    raise EdgefuseError(
        f"{path}: no state dict found (top-level keys: {', '.join(map(str, list(obj)[:8]))}); "
        "expected a dict of tensors or one under 'state_dict' / 'model_state_dict'"
    )


def _classifier_rows(state_dict: dict[str, torch.Tensor]) -> int | None:
    for suffix in ("new_fc.weight",):
        for k, v in state_dict.items():
            if k.endswith(suffix) and v.dim() == 2:
                return int(v.shape[0])
    for k in ("fc.weight", "module.fc.weight", "base_model.fc.weight", "module.base_model.fc.weight",
              "base_model.classifier.weight", "module.base_model.classifier.weight"):
        w = state_dict.get(k)
        if w is not None and w.dim() == 2:
            return int(w.shape[0])
    return None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint file (weights only) and tell its source."""
    p = Path(path)
    if not p.is_file():
        raise EdgefuseError(f"{p}: no such checkpoint file; check the path")
    obj = _torch_load(p)
    state_dict, container = _find_state_dict(obj, p)
    source = detect_source(list(state_dict), container)
    if source is None:
        sample = ", ".join(list(state_dict)[:4])
        raise EdgefuseError(
            f"{p}: unrecognised checkpoint layout (keys like {sample}); edgefuse reads official AdaFuse, GSF "
            "and TSM checkpoints and its own; if this is an ImageNet backbone, it is not a video model checkpoint"
        )
    meta = container.get("edgefuse") if isinstance(container.get("edgefuse"), dict) else {}
    return Checkpoint(
        path=p,
        sha256=sha256_file(p),
        source=source,
        state_dict=state_dict,
        num_classes=_classifier_rows(state_dict),
        model_name=meta.get("model") if meta else None,
        config_extra={k: meta[k] for k in ("class_names",) if meta and k in meta},
    )


def _short(keys: list[str], n: int = 4) -> str:
    head = ", ".join(keys[:n])
    return head + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def _diagnose(model: VideoClassifier, missing: list[str], unexpected: list[str], mismatched: list[str],
              converted: dict[str, torch.Tensor]) -> str:
    cfg = model.config
    hints = []
    fc = converted.get("fc.weight")
    if fc is not None and fc.dim() == 2 and fc.shape[0] != cfg.num_classes:
        hints.append(f"the checkpoint has {fc.shape[0]} classes, the model {cfg.num_classes}: "
                     f"pass --num-classes {fc.shape[0]}")
    if any(".gsf." in k for k in mismatched + missing + unexpected):
        hints.append("the GSF channel ratio differs (try --ratio 25 or 100)")
    if any(".adafuse." in k or k.startswith("policy_fc") for k in missing + unexpected + mismatched):
        hints.append("the AdaFuse variant differs (policy stages, shared policy nets or hidden size: "
                     "try adafuse_tsn_*, adafuse_tsm_* or adafuse_tsm_last_*)")
    blocks = {".".join(k.split(".")[1:3]) for k in unexpected if k.startswith("backbone.layer")}
    if (blocks or any(k.startswith("backbone.layer") for k in missing)) and not hints:
        hints.append(f"the backbone differs from {cfg.backbone} (another depth or width)")
    if not hints:
        hints.append("the checkpoint is of another architecture or options")
    return "; ".join(hints)


def load_into(model: VideoClassifier, ckpt: Checkpoint) -> None:
    """Convert ``ckpt`` to ``model``'s names and load it strictly, or raise one clear error."""
    cfg = model.config
    source = get_source(ckpt.source)
    if source.archs is not None and cfg.arch not in source.archs:
        raise EdgefuseError(
            f"{ckpt.path}: a {source.label} checkpoint cannot load into {cfg.name} ({cfg.arch}); "
            f"use a {' or '.join(sorted(source.archs))} model"
        )
    if ckpt.model_name and ckpt.model_name != cfg.name:
        raise EdgefuseError(f"{ckpt.path}: saved from {ckpt.model_name}, not {cfg.name}; use {ckpt.model_name}")
    converted = source.filter_fn(ckpt.state_dict, model)
    expected = model.state_dict()
    # Old research checkpoints (PyTorch < 0.4) have no BN batch counters: those are not weights.
    for k in expected:
        if k.endswith("num_batches_tracked") and k not in converted:
            converted[k] = torch.zeros((), dtype=torch.long)
    missing = sorted(k for k in expected if k not in converted)
    unexpected = sorted(k for k in converted if k not in expected)
    mismatched = sorted(k for k in converted if k in expected and converted[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            k = mismatched[0]
            parts.append(f"{len(mismatched)} with other shapes ({k}: checkpoint {tuple(converted[k].shape)} "
                         f"vs model {tuple(expected[k].shape)})")
        if missing:
            parts.append(f"{len(missing)} missing ({_short(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_short(unexpected)})")
        raise EdgefuseError(
            f"{ckpt.path}: does not fit {cfg.name}: {'; '.join(parts)}. Likely cause: "
            f"{_diagnose(model, missing, unexpected, mismatched, converted)}"
        )
    model.load_state_dict(converted, strict=True)
    log.debug("loaded %s checkpoint %s into %s", ckpt.source, ckpt.path, cfg.name)


def save_checkpoint(model: VideoClassifier, path: str | Path, **meta: Any) -> Path:
    """Save an edgefuse checkpoint (weights + the model name), atomically."""
    from edgefuse.utils import atomic_path

    cfg = model.config
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "edgefuse": {"model": cfg.name, "num_classes": cfg.num_classes, "num_segments": cfg.num_segments, **meta},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


_CLASSIFIER_PREFIXES = ("fc.", "classifier.")
_TEMPORAL_PARTS = (".shift.", ".adafuse.", ".gsf.")


def load_imagenet_backbone(model: VideoClassifier, path: str | Path) -> None:
    """Initialise ``model.backbone`` from torchvision ImageNet weights (e.g. resnet50-0676ba61.pth).

    The ImageNet classifier is dropped and temporal modules keep their
    initialisation; every other backbone weight must be present with its shape.
    """
    p = Path(path)
    if not p.is_file():
        raise EdgefuseError(f"{p}: no such weights file; check the path")
    state_dict, _ = _find_state_dict(_torch_load(p), p)
    weights = {k: v for k, v in state_dict.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    backbone = model.backbone
    expected = {k: v for k, v in backbone.state_dict().items() if not any(t in f".{k}" for t in _TEMPORAL_PARTS)}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    mismatched = sorted(k for k in set(weights) & set(expected) if weights[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        cfg = model.config
        raise EdgefuseError(
            f"{p}: not torchvision ImageNet weights of {cfg.backbone} (width {cfg.width}): "
            f"{len(missing)} missing ({_short(missing)}), {len(unexpected)} unexpected ({_short(unexpected)}), "
            f"{len(mismatched)} with other shapes ({_short(mismatched)}); use the weights of the same backbone"
        )
    merged = {**backbone.state_dict(), **weights}
    backbone.load_state_dict(merged, strict=True)
