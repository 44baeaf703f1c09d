"""Reading checkpoints of every supported source and loading them strictly.

Sources are told apart by marker keys (never by file name). Each registers itself beside its
architecture (:mod:`edgefuse.models.sources`): official AdaFuse (``policy_net.`` / ``gate_fc0s.`` /
``downsample0.`` keys) in adafuse.py, official GSF (gate keys ``.gsf.conv3D.`` / ``gsf_inception_3a_1x1.conv3D.``,
or a ``model_state_dict`` container) in gsf.py, official TSM (``base_model.``/``new_fc.`` keys) in tsm.py, and
edgefuse's own (``backbone.``/``fc.`` keys) in sources.py. Detection sees the file's top level as read. This module
imports no architecture.

A checkpoint that does not fit is told apart from its (converted) key names where they say what it is (backbone,
GSF modules, classes), so the one-line error names the model to use: ``a GSF BN-Inception checkpoint (10 GSF
modules, 174 classes) does not fit gsf_inceptionv3: the backbone differs from inceptionv3; use gsf_bninception``.
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
from edgefuse.models.config import BACKBONES, INCEPTIONS, RESNETS, ModelConfig, backbones_for
from edgefuse.models.sources import detect_source, get_source
from edgefuse.utils import sha256_file

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

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
    options: dict[str, Any] = field(default_factory=dict)  # the model options it was trained with (edgefuse train)


def _unpickler_reason(err: BaseException) -> str:
    """The one informative line of torch's weights-only unpickler error."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error:" in ln:
            rest = ln.split("WeightsUnpickler error:", 1)[1].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else "")
    return lines[-1] if lines else type(err).__name__


def _is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (torch.jit.save: a zip with code/ and constants.pkl)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/__torch__/" in n for n in names)


def _torch_load(path: Path) -> Any:
    if path.is_file() and path.stat().st_size == 0:
        raise EdgefuseError(f"{path}: empty file (0 bytes), not a checkpoint; download or copy it again")
    if _is_torchscript(path):
        raise EdgefuseError(
            f"{path}: a TorchScript archive (torch.jit.save), not a state dict; edgefuse reads weights only: save them "
            f"with torch.save(torch.jit.load({str(path)!r}).state_dict(), 'weights.pth') and pass that file"
        )
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
    except Exception as e:  # noqa: BLE001 - the unpickler fails on arbitrary bytes with any error (KeyError ...)
        raise EdgefuseError(
            f"{path}: not a PyTorch checkpoint (torch.load fails: {type(e).__name__}); pass the .pth / .pth.tar file "
            "the model was saved to"
        ) from None


def _find_state_dict(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str | None]:
    """(state dict, the file's other top-level entries, the key the state dict was found under: None for a
    bare state dict)."""
    if not isinstance(obj, dict):
        raise EdgefuseError(f"{path}: holds a {type(obj).__name__}, not a state dict; save model.state_dict() instead")
    for key in ("state_dict", "model_state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner, {k: v for k, v in obj.items() if k != key}, key
    if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return obj, {}, None
    raise EdgefuseError(
        f"{path}: no state dict found (top-level keys: {', '.join(map(str, list(obj)[:8]))}); "
        "expected a dict of tensors or one under 'state_dict' / 'model_state_dict'"
    )


def _check_finite(state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse weights holding NaN or infinity: every output of the model would be NaN (one line: how many
    tensors, the first key)."""
    bad = [k for k, v in state_dict.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise EdgefuseError(
            f"{path}: {len(bad)} of {len(state_dict)} weight tensors hold NaN or infinite values (first: {bad[0]}); "
            "the training run diverged or the file is damaged: use an earlier checkpoint of the run, or copy it again"
        )


def _classifier_rows(state_dict: dict[str, torch.Tensor]) -> int | None:
    for suffix in ("new_fc.weight",):
        for k, v in state_dict.items():
            if k.endswith(suffix) and v.dim() == 2:
                return int(v.shape[0])
    for k in ("fc.weight", "module.fc.weight", "base_model.fc.weight", "module.base_model.fc.weight",
              "base_model.classifier.weight", "module.base_model.classifier.weight",
              "base_model.top_cls_fc.weight", "module.base_model.top_cls_fc.weight",  # GSF InceptionV3, dropout 0
              "classifier.weight"):  # TSM's online demo (a bare MobileNetV2 state dict)
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
    state_dict, container, found_under = _find_state_dict(obj, p)
    _check_finite(state_dict, p)
    # Detection sees the container as read: which key held the weights is a marker too (GSF's model_state_dict).
    source = detect_source(list(state_dict), obj if found_under is not None else {})
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
        options=dict(meta.get("options") or {}) if meta else {},
    )


def _short(keys: list[str], n: int = 4) -> str:
    head = ", ".join(keys[:n])
    return head + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def _misfit_parts(theirs: str, mismatched: list[str], missing: list[str], unexpected: list[str],
                  shapes: Callable[[str], tuple[tuple[int, ...], tuple[int, ...]]]) -> list[str]:
    """'N with other shapes (first: <theirs> (..) vs model (..))', 'N missing (...)', 'N unexpected (...)'."""
    parts = []
    if mismatched:
        got, want = shapes(mismatched[0])
        parts.append(f"{len(mismatched)} with other shapes ({mismatched[0]}: {theirs} {got} vs model {want})")
    if missing:
        parts.append(f"{len(missing)} missing ({_short(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_short(unexpected)})")
    return parts


def _gsf_module(key: str) -> str | None:
    """The GSF module a key belongs to (``backbone.layer1.0.gsf``, ``backbone.gsf_mixed_conv_Conv2D``), else None."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "gsf" or part.startswith("gsf_"):
            return ".".join(parts[: i + 1])
    return None


_BACKBONE_LABELS = {"resnet18": "ResNet-18", "resnet34": "ResNet-34", "resnet50": "ResNet-50",
                    "resnet101": "ResNet-101", "mobilenetv2": "MobileNetV2", "bninception": "BN-Inception",
                    "inceptionv3": "InceptionV3"}
_ARCH_LABELS = {"gsf": "GSF", "tsn": "TSN", "tsm": "TSM", "adafuse": "AdaFuse"}
_RESNETS = {(2, False): "resnet18", (6, False): "resnet34", (6, True): "resnet50", (23, True): "resnet101"}


def _backbone_of(keys: list[str]) -> str | None:
    """The backbone an edgefuse-named state dict holds, from its key names (None: not one edgefuse builds)."""
    names = [k[len("backbone."):] for k in keys if k.startswith("backbone.")]
    if any(n.startswith("mixed_10_") for n in names):  # GSF's InceptionV3 graph
        return "inceptionv3"
    if any(n.startswith("inception_5b_") for n in names):  # BN-Inception (GSF, TSM and AdaFuse alike)
        return "bninception"
    if any(n.startswith("features.") for n in names):
        return "mobilenetv2"
    stage3 = {n.split(".")[1] for n in names if n.startswith("layer3.")}
    return _RESNETS.get((len(stage3), any(".conv3." in n for n in names))) if stage3 else None


@dataclass(frozen=True)
class _Identity:
    """What a checkpoint holds, told from its converted keys: for one-line near-miss errors."""

    arch: str | None  # None where the source does not tell (TSM-repository checkpoints are TSM or TSN alike)
    backbone: str
    gsf_modules: frozenset[str]
    classes: int | None
    source_label: str  # "GSF", "TSM", "AdaFuse", "edgefuse"
    source_archs: frozenset[str]  # the architectures the source's checkpoints load into

    def describe(self) -> str:
        """E.g. 'a GSF BN-Inception checkpoint (10 GSF modules, 174 classes)'."""
        bb = _BACKBONE_LABELS[self.backbone]
        classes = f"{self.classes} classes" if self.classes is not None else "no classifier"
        if self.arch in ("gsf", "tsn") and self.source_label == "GSF":
            gsf = f"{len(self.gsf_modules)} GSF modules" if self.gsf_modules else "no GSF modules"
            of = "" if self.gsf_modules else " of the GSF repository"
            return f"a {_ARCH_LABELS[self.arch]} {bb} checkpoint{of} ({gsf}, {classes})"
        who = self.source_label + ("-repository" if self.arch is None and len(self.source_archs) > 1 else "")
        article = "an" if who[0].lower() in "aeiou" else "a"
        return f"{article} {who} {bb} checkpoint ({classes})"


def _identify(ckpt: Checkpoint, converted: dict[str, torch.Tensor]) -> _Identity | None:
    """From the checkpoint's own (converted) keys: before any key of the model is filled in."""
    keys = list(converted)
    backbone = _backbone_of(keys)
    if backbone is None:
        return None
    source = get_source(ckpt.source)
    archs = set(source.archs) if source.archs is not None else set(_ARCH_LABELS)
    gsf = frozenset(m for m in map(_gsf_module, keys) if m is not None)
    others = archs - {"gsf"}
    arch = "gsf" if gsf else (next(iter(others)) if len(others) == 1 else None)
    fc = converted.get("fc.weight")
    classes = int(fc.shape[0]) if fc is not None and fc.dim() == 2 else ckpt.num_classes
    label = source.label.split(" (")[0].removeprefix("official ")
    return _Identity(arch, backbone, gsf, classes, label, frozenset(archs))


def _registered(prefix: str, backbone: str) -> bool:
    """Whether ``<prefix><backbone>`` is a registered model, by the rules the architectures register by (the
    registry itself is not imported here: it imports this module)."""
    if prefix.startswith("adafuse_"):  # every variant on the ResNets; AdaFuse-TSN on BN-Inception too
        return backbone in RESNETS or (prefix == "adafuse_tsn_" and backbone in INCEPTIONS
                                       and backbone in backbones_for("adafuse"))
    if prefix.startswith("tsm_online_"):
        return backbone in BACKBONES
    return backbone in backbones_for(prefix.split("_")[0])


def _instead(cfg: ModelConfig, ident: _Identity) -> str:
    """'use <model>' for what the checkpoint holds (another backbone or GSF/TSN)."""
    if ident.arch == "adafuse" and cfg.arch != "adafuse":  # AdaFuse names carry their variant
        prefixes = ["adafuse_tsn_", "adafuse_tsm_", "adafuse_tsm_last_"]
    elif ident.arch is not None and ident.arch != cfg.arch:
        prefixes = [f"{ident.arch}_"]
    elif cfg.arch not in ident.source_archs:  # e.g. a TSM-repository checkpoint (TSM or TSN) for an AdaFuse model
        prefixes = [f"{arch}_" for arch in sorted(ident.source_archs)]
    else:  # keep the variant (adafuse_tsm_last_*, tsm_online_*): every registered name ends in its backbone
        prefixes = [cfg.name.removesuffix(cfg.backbone)]
    known = [p + ident.backbone for p in prefixes if _registered(p, ident.backbone)]
    if not known:
        return f"edgefuse has no {' or '.join(p + ident.backbone for p in prefixes)} model"
    return f"use {' or '.join(known)}"


def _near_miss(cfg: ModelConfig, ident: _Identity, expected: list[str]) -> str | None:
    """Why the checkpoint is another model than ``cfg``'s and which one to use, where its keys tell."""
    mine = frozenset(m for m in map(_gsf_module, expected) if m is not None)
    if ident.backbone != cfg.backbone:
        return f"the backbone differs from {cfg.backbone}; {_instead(cfg, ident)}"
    if ident.arch is not None and ident.arch != cfg.arch:
        if ident.gsf_modules and not mine:
            return f"it has GSF modules, {cfg.name} has none; {_instead(cfg, ident)}"
        if mine and not ident.gsf_modules:
            return f"it has no GSF modules, {cfg.name} has {len(mine)}; {_instead(cfg, ident)}"
    if ident.gsf_modules and mine and ident.gsf_modules != mine:
        theirs = sorted(m.removeprefix("backbone.") for m in ident.gsf_modules - mine)
        ours = sorted(m.removeprefix("backbone.") for m in mine - ident.gsf_modules)
        return (f"its GSF modules sit elsewhere ({_short(theirs, 2) or 'none'} only in the checkpoint, "
                f"{_short(ours, 2) or 'none'} only in {cfg.name}): edgefuse places GSF where the official "
                f"{_BACKBONE_LABELS[cfg.backbone]} does, so no edgefuse model takes this checkpoint")
    return None


def _gsf_ratio_hint(model: VideoClassifier, converted: dict[str, torch.Tensor]) -> str:
    """The GSF ratio that gives the checkpoint's gated channels at every GSF module, when one does."""
    from edgefuse.models.layers import gsf_channels

    pairs = []
    for name, module in model.named_modules():
        bn = converted.get(f"{name}.bn.weight")
        channels = getattr(module, "channels", None)
        if _gsf_module(f"{name}.x") == name and bn is not None and isinstance(channels, int):
            pairs.append((channels, int(bn.shape[0])))
    for ratio in (100.0, 75.0, 50.0, 25.0, 12.5):
        if pairs and all(gsf_channels(c, ratio) == f for c, f in pairs) and ratio != getattr(
                model.config.options, "ratio", None):
            return f"the GSF channel ratio differs: the checkpoint's is {ratio:g} (pass --ratio {ratio:g})"
    return "the GSF channel ratio differs (try --ratio 25 or 100)"


def _diagnose(model: VideoClassifier, missing: list[str], unexpected: list[str], mismatched: list[str],
              converted: dict[str, torch.Tensor]) -> str:
    cfg = model.config
    hints = []
    fc = converted.get("fc.weight")
    if fc is not None and fc.dim() == 2 and fc.shape[0] != cfg.num_classes:
        hints.append(f"the checkpoint has {fc.shape[0]} classes, the model {cfg.num_classes}: "
                     f"pass --num-classes {fc.shape[0]}")
    if any(_gsf_module(k) for k in mismatched + missing + unexpected):
        hints.append(_gsf_ratio_hint(model, converted))
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
        try:  # the filter is pure; its checks are for models of the source's architectures
            ident = _identify(ckpt, source.filter_fn(ckpt.state_dict, model))
        except EdgefuseError:
            ident = None
        use = (f"it is {ident.describe()}; {_instead(cfg, ident)}" if ident is not None
               else f"use a {' or '.join(sorted(source.archs))} model")
        raise EdgefuseError(f"{ckpt.path}: an {source.label} checkpoint cannot load into {cfg.name} ({cfg.arch}): {use}")
    if ckpt.model_name and ckpt.model_name != cfg.name:
        raise EdgefuseError(f"{ckpt.path}: saved from {ckpt.model_name}, not {cfg.name}; use {ckpt.model_name}")
    converted = source.filter_fn(ckpt.state_dict, model)
    expected = model.state_dict()
    own = dict(converted)  # the checkpoint's own keys, before the counters below: what it is told from
    # Old research checkpoints (PyTorch < 0.4) have no BN batch counters: those are not weights.
    for k in expected:
        if k.endswith("num_batches_tracked") and k not in converted:
            converted[k] = torch.zeros((), dtype=torch.long)
    missing = sorted(k for k in expected if k not in converted)
    unexpected = sorted(k for k in converted if k not in expected)
    mismatched = sorted(k for k in converted if k in expected and converted[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        ident = _identify(ckpt, own)
        what = f"{ident.describe()} " if ident is not None else ""
        near = _near_miss(cfg, ident, list(expected)) if ident is not None else None
        if near is not None:  # another model's checkpoint: say which, not which keys
            raise EdgefuseError(f"{ckpt.path}: {what}does not fit {cfg.name}: {near}")
        parts = _misfit_parts("checkpoint", mismatched, missing, unexpected,
                              lambda k: (tuple(converted[k].shape), tuple(expected[k].shape)))
        raise EdgefuseError(
            f"{ckpt.path}: {what}does not fit {cfg.name}: {'; '.join(parts)}. Likely cause: "
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


_CLASSIFIER_PREFIXES = ("fc.", "classifier.")  # torchvision's ResNet / MobileNetV2
_TEMPORAL_PARTS = (".shift.", ".adafuse.", ".gsf.", ".gsf_", ".nl.")  # gsf_*: the Inception networks' GSF
# The classifier of the Inception ImageNet files: GSF's models.py sets last_layer_name 'fc' (BN-Inception) and
# 'top_cls_fc' (InceptionV3), the InnerProduct ids of its YAML networks; TSM's and AdaFuse's BNInception has ``fc``.
_INCEPTION_CLASSIFIERS = {"bninception": ("fc.",), "inceptionv3": ("top_cls_fc.",)}
_INCEPTION_FILES = {
    "bninception": "bn_inception-9f5701afb96c8044.pth (GSF, TSN) or BNInception-9baff57459f5a1744.pth (TSM, AdaFuse)",
    "inceptionv3": "inceptionv3-cuhk-0e09b300b493bc74c.pth (GSF)",
}


def imagenet_filter_fn(state_dict: Mapping[str, torch.Tensor], backbone: str,
                       expected: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    """An ImageNet file's state dict for ``backbone`` (a name of :data:`BACKBONES`) whose own tensors have the
    shapes ``expected`` (its state dict less the temporal modules): the ImageNet classifier dropped and, on the
    Inception networks, a leading dimension of 1 squeezed where ``expected`` has the shape without it (the (1, C)
    BatchNorm tensors of the Caffe-converted files). Everything else as it is; pure: the input is not modified."""
    classifier = _INCEPTION_CLASSIFIERS.get(backbone, _CLASSIFIER_PREFIXES)
    out: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        if k.startswith(classifier):
            continue
        want = expected.get(k)
        if (backbone in INCEPTIONS and want is not None and v.dim() == len(want) + 1 and v.shape[0] == 1
                and v.shape[1:] == want):
            v = v.squeeze(0)  # (1, C) -> (C,)
        out[k] = v
    return out


def _imagenet_misfit(p: Path, cfg: ModelConfig, state_dict: Mapping[str, torch.Tensor],
                     weights: dict[str, torch.Tensor], expected: Mapping[str, torch.Size], missing: list[str],
                     unexpected: list[str], mismatched: list[str]) -> str:
    """The one-line error for an ImageNet file that does not fit ``cfg``'s backbone."""
    inception = cfg.backbone in INCEPTIONS
    what = (f"not the published {_BACKBONE_LABELS[cfg.backbone]} ImageNet weights" if inception
            else f"not torchvision ImageNet weights of {cfg.backbone} (width {cfg.width})")
    wanted = _INCEPTION_FILES[cfg.backbone] if inception else f"torchvision's {cfg.backbone} weights"
    held = _backbone_of([f"backbone.{k}" for k in state_dict])  # the backbone the file is of, by its key names
    if held is not None and held != cfg.backbone:  # a near miss: another backbone's ImageNet weights
        prefix = cfg.name.removesuffix(cfg.backbone)
        use = f"use {prefix}{held}" if _registered(prefix, held) else f"edgefuse has no {prefix}{held} model"
        return (f"{p}: {what}: it holds {_BACKBONE_LABELS[held]} weights ({use} for them); "
                f"{cfg.name} takes {wanted}")
    parts = _misfit_parts("file", mismatched, missing, unexpected,
                          lambda k: (tuple(weights[k].shape), tuple(expected[k])))
    if any(k.startswith(("module.", "base_model.", "backbone.")) for k in state_dict):
        fix = "it is a video model checkpoint: load it with create_model(name, checkpoint=path)"
    else:
        fix = f"use {wanted}, as published" if inception else "use the weights of the same backbone"
    return f"{p}: {what}: {'; '.join(parts)}; {fix}"


def load_imagenet_backbone(model: VideoClassifier, path: str | Path) -> None:
    """Initialise ``model.backbone`` from ImageNet weights as published: torchvision's for ResNet and MobileNetV2
    (e.g. resnet50-0676ba61.pth), the files the research code downloads for BN-Inception and InceptionV3.

    The file loads with ``torch.load(weights_only=True)`` (legacy and zip containers alike) and goes through
    :func:`imagenet_filter_fn`: the ImageNet classifier is dropped, the Inception files' (1, C) BatchNorm tensors
    are squeezed. Temporal modules (shift, GSF, AdaFuse, non-local) keep their initialisation, BN batch counters
    (``num_batches_tracked``) that a file lacks keep the model's own values, and every other backbone tensor must
    be in the file with its shape (then loaded strictly). A file of another backbone fails in one line naming the
    file, what it holds and what to use; any other misfit names the keys.

    The Inception files as the research code uses them (the hosts are unreachable from here: established from the
    code and from load errors quoted in GitHub issues, not from the files; the digits in each file name are the
    start of its SHA-256, torch.utils.model_zoo's rule, checked on download by PyTorch <= 1.0):

    - BN-Inception ``bn_inception-9f5701afb96c8044.pth`` (yjxiong.blob.core.windows.net; GSF
      ``backbones/pytorch_load.py``, also yjxiong/tsn-pytorch and zhoubolei/TRN-pytorch): a bare state dict of 416
      tensors under the Caffe layer names: 69 convolutions ``<conv>.weight`` (C_out, C_in, k, k) and
      ``<conv>.bias`` (C_out,); 69 BatchNorms ``<conv>_bn.weight`` / ``.bias`` / ``.running_mean`` /
      ``.running_var``, each (1, C); the classifier ``fc.weight`` (1000, 1024) and ``fc.bias``; no
      ``num_batches_tracked``. Sources: GSF squeezes dim 0 of every tensor, then loads strictly into the network of
      ``backbones/bn_inception.yaml`` (biased convolutions, classifier id ``fc``, 1000 outputs): the key set. The
      (1, C) shapes of all four BN tensors are quoted in load errors under PyTorch >= 0.4 (yjxiong/tsn-pytorch
      #62, #74, #104; zhoubolei/TRN-pytorch #7, #89; okankop/MFF-pytorch #2; Cadene/pretrained-models.pytorch
      #70); each list starts at ``conv1_7x7_s2_bn.weight``, after ``conv1_7x7_s2.bias`` in load order, so the conv
      biases are 1-D. The file predates PyTorch 0.4.1, which added ``num_batches_tracked`` (reported under
      PyTorch 0.2/0.3 in Cadene/pretrained-models.pytorch #70, June 2018), and PyTorch 0.3.1, which rejects
      unexpected keys, loads it strictly (the workaround given in tsn-pytorch #74, #104). Not found anywhere: whether ``fc.bias`` is (1000,) or (1, 1000);
      dropped either way.
    - InceptionV3 ``inceptionv3-cuhk-0e09b300b493bc74c.pth`` (same host; GSF, tsn-pytorch, TRN-pytorch): the same
      converter's layout for ``backbones/inceptionv3.yaml``: 566 tensors, 94 convolutions ``<id>_Conv2D.weight``
      / ``.bias``, 94 BatchNorms ``<id>_batchnorm.*`` and the classifier ``top_cls_fc.weight`` (1000, 2048) and
      ``top_cls_fc.bias`` (GSF ``models.py``: ``last_layer_name = 'top_cls_fc'``; it loads strictly). Quoted:
      ``conv_batchnorm.weight`` (1, 32), the first error (TRN-pytorch #89 under PyTorch 1.4, #43, #10), so the
      conv biases are 1-D. Inferred, not quoted: the other BN tensors are (1, C) too (one converter; GSF squeezes
      them all), and no ``num_batches_tracked`` (in use under PyTorch 0.4.0, TRN-pytorch #10, May 2018).
    - BN-Inception ``BNInception-9baff57459f5a1744.pth`` (Dropbox; TSM ``archs/bn_inception.py``, AdaFuse
      ``bn_archs/bn_inception.py``): TSM's converted copy (mit-han-lab/temporal-shift-module #73), loaded strictly
      and unreshaped into a module with the same layer names and ``fc = nn.Linear(1024, 1000)``: the same 416
      names with every BN tensor (C,) (PyTorch >= 0.4 refuses (1, C) there), ``fc.weight`` (1000, 1024),
      ``fc.bias`` (1000,). Not established: whether it holds ``num_batches_tracked`` (a strict load passes
      either way); both are accepted. TSM's Kinetics BNInceptionKinetics-47f0695e.pth (400-way ``fc``) fits too.

    The files of 2017 are legacy (pre-1.6) pickles written under Python 2 (Cadene's note); the weights-only
    unpickler reads them. The edgefuse networks use the official names (``conv1_7x7_s2``, ``conv_Conv2D``), so no
    key is renamed.
    """
    p = Path(path)
    if not p.is_file():
        raise EdgefuseError(f"{p}: no such weights file; check the path")
    state_dict, _, _ = _find_state_dict(_torch_load(p), p)
    _check_finite(state_dict, p)
    cfg = model.config
    backbone = model.backbone
    own = backbone.state_dict()
    expected = {k: v.shape for k, v in own.items() if not any(t in f".{k}" for t in _TEMPORAL_PARTS)}
    weights = imagenet_filter_fn(state_dict, cfg.backbone, expected)
    # Files older than PyTorch 0.4.1 (yjxiong's, torchvision's first ResNets) have no BN batch counters: not weights
    missing = sorted(k for k in expected if k not in weights and not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(weights) - set(expected))
    mismatched = sorted(k for k in set(weights) & set(expected) if weights[k].shape != expected[k])
    if missing or unexpected or mismatched:
        raise EdgefuseError(_imagenet_misfit(p, cfg, state_dict, weights, expected, missing, unexpected, mismatched))
    backbone.load_state_dict({**own, **weights}, strict=True)
    log.debug("initialised the %s backbone of %s from %s (%d tensors)", cfg.backbone, cfg.name, p, len(weights))
