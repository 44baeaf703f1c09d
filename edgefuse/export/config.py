"""What an export is: a frozen config, from CLI options or a preset TOML (``export/*.toml``)."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefuse.data import data_dir
from edgefuse.errors import EdgefuseError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6's): the same parser from PyPI
    import tomli as tomllib

SHAPES = ("static", "dynamic")
DEFAULT_OPSET = 17  # without --target: TensorRT 8.4 to 11 read it (8.0 and 8.2 read up to 13: --target jetpack4.6)
POLICIES = ("dynamic", "static", "stream")
DIMS = ("N", "T", "H", "W")


@dataclass(frozen=True)
class ExportConfig:
    model: str
    output: Path
    checkpoint: Path | None = None
    checkpoint_format: str | None = None  # expected source (adafuse | gsf | tsm | edgefuse); checked when given
    num_classes: int | None = None
    segments: int = 8
    batch: int = 1
    size: int = 224
    shape: str = "static"
    policy: str = "dynamic"
    opset: int = 0  # 0: the highest the target's parsers read (--target), else DEFAULT_OPSET
    exporter: str = "auto"
    simplify: str = "auto"
    ranges: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # dynamic dims: name -> (min, opt, max)
    policy_clips: Path | None = None  # .npz of preprocessed clips for folding
    tau: float | None = None  # folding threshold; None = most aggressive keeping min_agreement
    min_agreement: float = 0.99
    refit: bool = True  # refit the folded blocks' conv2 to the dynamic model (edgefuse.export.fold.refit)
    parity_clips: Path | None = None
    tolerance: float = 1e-4
    options: dict[str, Any] = field(default_factory=dict)  # model options (ratio, shift_div, ...)
    preset: str | None = None
    target: str | None = None  # a deployment target (jetpack4.6, trt8.6, ...: edgefuse.graph.targets)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise EdgefuseError(f"export shape must be one of {', '.join(SHAPES)}, not {self.shape!r}")
        if self.policy not in POLICIES:
            raise EdgefuseError(f"AdaFuse policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")
        self._resolve_opset()
        if not 7 <= self.opset <= 25:
            raise EdgefuseError(f"opset {self.opset} is outside 7-25 (TensorRT 8.0 and 8.2 read up to 13, 8.4-8.6 17, "
                                "10.x up to 24, 11.x 25); choose an opset in that range or pass --target")
        for name, (lo, opt, hi) in self.resolved_ranges().items():
            if not 1 <= lo <= opt <= hi:
                raise EdgefuseError(f"dynamic range of {name} must satisfy 1 <= min <= opt <= max, got {lo},{opt},{hi}")

    def _resolve_opset(self) -> None:
        """Picks the opset (the target's highest the exporter writes) and checks a given one against the target."""
        if self.target is None:
            if self.opset == 0:
                object.__setattr__(self, "opset", DEFAULT_OPSET)
            return
        from edgefuse.graph.targets import export_opset, resolve

        t = resolve(self.target)
        if self.opset == 0:
            object.__setattr__(self, "opset", export_opset(t, exporter_max_opset(self.exporter)))
        elif not t.min_opset <= self.opset <= t.max_opset:
            raise EdgefuseError(f"opset {self.opset} is outside {t.min_opset}-{t.max_opset}, what TensorRT {t.tensorrt} "
                                f"({t.name}) reads; drop --opset to export at {t.max_opset}")

    def resolved_ranges(self) -> dict[str, tuple[int, int, int]]:
        """min/opt/max of each dynamic dimension (defaults around the static shape)."""
        small = max(32, self.size // 2 // 32 * 32)
        defaults = {
            "N": (1, self.batch, max(4, self.batch)),
            "T": (1, self.segments, 2 * self.segments),
            "H": (min(small, self.size), self.size, self.size * 3 // 2),
            "W": (min(small, self.size), self.size, self.size * 3 // 2),
        }
        return {k: tuple(self.ranges.get(k, v)) for k, v in defaults.items()}  # type: ignore[misc]

    def replace(self, **changes: Any) -> ExportConfig:
        return dataclasses.replace(self, **changes)


def exporter_max_opset(exporter: str) -> int:
    """The highest opset ``exporter`` writes (auto: the dynamo exporter's, which it picks above 17)."""
    try:
        from torch.onnx import _constants
        torchscript, newest = _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET, _constants.ONNX_MAX_OPSET
    except (ImportError, AttributeError):  # private names; torch 2.x values
        torchscript, newest = 20, 23
    return int(torchscript if exporter == "torchscript" else newest)


def preset_path(name: str) -> Path:
    """A preset by path, or by name among the presets installed with edgefuse."""
    p = Path(name)
    if p.suffix == ".toml" and p.is_file():
        return p
    stem = p.stem if p.suffix == ".toml" else name
    candidate = data_dir("export") / f"{stem}.toml"
    if candidate.is_file():
        return candidate
    raise EdgefuseError(f"{name}: no such preset file or installed preset; name a .toml file or one of "
                        f"{', '.join(n for n, _ in list_presets())}")


def list_presets() -> list[tuple[str, str]]:
    out = []
    for entry in sorted(data_dir("export").glob("*.toml")):
        lines = entry.read_text().splitlines()
        out.append((entry.stem, lines[0].lstrip("# ").strip() if lines else ""))
    return out


_PRESET_KEYS = {f.name for f in dataclasses.fields(ExportConfig)} - {"output", "preset", "ranges", "options"}


def load_preset(name: str) -> dict[str, Any]:
    path = preset_path(name)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise EdgefuseError(f"{path}: not valid TOML ({e}); fix the preset") from None
    unknown = sorted(set(data) - _PRESET_KEYS - {"ranges", "options", "description"})
    if unknown:
        raise EdgefuseError(f"{path}: unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(_PRESET_KEYS))}")
    if "model" not in data:
        raise EdgefuseError(f"{path}: a preset needs 'model'")
    out = {k: v for k, v in data.items() if k in _PRESET_KEYS}
    for key in ("checkpoint", "policy_clips", "parity_clips"):
        if key in out:
            out[key] = (path.parent / out[key]).resolve() if not Path(out[key]).is_absolute() else Path(out[key])
    if "ranges" in data:
        out["ranges"] = {k: tuple(v) for k, v in data["ranges"].items()}
    out["options"] = dict(data.get("options", {}))
    out["preset"] = str(path)
    return out


def make_config(preset: str | None, output: Path, **given: Any) -> ExportConfig:
    """Preset values, overridden by the options given explicitly (None = not given)."""
    base: dict[str, Any] = load_preset(preset) if preset else {}
    if given.get("target") is not None and given.get("opset") is None and base.get("target") is None:
        base.pop("opset", None)  # a preset's opset (17 in the shipped ones) yields to a target given here
    for k, v in given.items():
        if v is None or (k in ("ranges", "options") and not v):
            continue
        if k == "options":
            base["options"] = {**base.get("options", {}), **v}
        elif k == "ranges":
            base["ranges"] = {**base.get("ranges", {}), **v}
        else:
            base[k] = v
    if "model" not in base:
        raise EdgefuseError("no model given: name a model or a preset that names one")
    base = _with_pretrained(base)
    if "size" not in base:  # the model's own input size (GSF's InceptionV3: 229), else the default
        from edgefuse.models.registry import get_entry

        try:
            base["size"] = get_entry(base["model"]).default.input_size
        except (KeyError, EdgefuseError):
            pass  # an unknown model: its own error comes when it is built
    return ExportConfig(output=output, **base)


def _with_pretrained(base: dict[str, Any]) -> dict[str, Any]:
    """A pretrained tag (``tsm_resnet18.synth_w025`` or its short name) stands for its registry model,
    checkpoint (sha256-checked), options, segments, size and classes; values given explicitly still win."""
    from edgefuse.models.registry import resolve_name

    model, tag = resolve_name(base["model"])
    if tag is None:
        return base
    out = {"segments": tag.segments, "size": tag.size, "num_classes": tag.num_classes, **base}
    out.setdefault("checkpoint", tag.checked_path())
    out["model"] = model
    out["options"] = {**tag.options, **base.get("options", {})}
    return out
