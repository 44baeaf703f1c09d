"""What a synthetic benchmark is: its classes, splits and formats, the frozen :class:`SynthConfig`, and
the checks a config passes before anything is written."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edgefuse.errors import EdgefuseError

CLASSES: tuple[str, ...] = (
    "moving left", "moving right", "moving up", "moving down",
    "rotating clockwise", "rotating anticlockwise", "growing", "shrinking",
    "appearing", "disappearing",
)
PAIRS: tuple[tuple[int, int], ...] = tuple((k, k + 1) for k in range(0, len(CLASSES), 2))
CLASS_DESCRIPTIONS: dict[str, str] = {
    "moving left": "the object translates from right to left (slight vertical drift)",
    "moving right": "a 'moving left' clip played backwards",
    "moving up": "the object translates from bottom to top (slight horizontal drift)",
    "moving down": "a 'moving up' clip played backwards",
    "rotating clockwise": "the object turns clockwise by 90-180 degrees about its centre (never a circle)",
    "rotating anticlockwise": "a 'rotating clockwise' clip played backwards",
    "growing": "the object's size grows 2.2-3.5 times",
    "shrinking": "a 'growing' clip played backwards",
    "appearing": "the object fades in from fully transparent",
    "disappearing": "an 'appearing' clip played backwards",
}
SPLITS: tuple[str, ...] = ("train", "val", "calib")
FORMATS: tuple[str, ...] = ("frames", "videos")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "digit", "bar", "cross")
# the motion each pair's first class is rendered with; the second class is its reverse
KINDS: tuple[str, ...] = ("move_left", "move_up", "rotate_cw", "grow", "appear")
DEFAULT_CODEC_OPTIONS: dict[str, dict[str, str]] = {
    # mbtree off: with it, x264 (core 165, AVX-512 on) gave different bytes from run to run for one input
    "libx264": {"crf": "12", "preset": "medium", "x264-params": "mbtree=0"},
    "mpeg4": {"b": "4M"},
    "libvpx": {"crf": "10", "b": "4M"},
    "libvpx-vp9": {"crf": "15", "b": "0"},
}
DEFAULT_EXT: dict[str, str] = {"libvpx": "webm", "libvpx-vp9": "webm"}
PROGRESS_DESC = "synth: rendering clips"
MARKER = "synth.json"
SPLIT_ID = {s: i for i, s in enumerate(SPLITS)}
ROTATABLE = tuple(s for s in SHAPES if s != "circle")  # a turning circle looks still
SUPERSAMPLE = 2  # the object is placed on a 2x canvas, then box-filtered down: smooth edges
_MAX_CLIPS = 100_000  # five-digit clip names
_MAX_FRAMES = 10_000


@dataclass(frozen=True)
class SynthConfig:
    """What ``generate`` writes. ``codec_options`` override ``DEFAULT_CODEC_OPTIONS[codec]``;
    ``ext`` defaults to mp4 (webm for libvpx). ``workers`` and ``force`` do not change the content."""

    out: Path
    frames: int = 16
    size: int = 128
    train: int = 1000
    val: int = 250
    calib: int = 256
    seed: int = 0
    formats: tuple[str, ...] = FORMATS
    codec: str = "libx264"
    ext: str | None = None
    pix_fmt: str = "yuv420p"
    codec_options: tuple[tuple[str, str], ...] = ()
    fps: int = 12
    jpeg_quality: int = 95
    workers: int = 2
    force: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        formats = self.formats.split(",") if isinstance(self.formats, str) else self.formats
        object.__setattr__(self, "formats", tuple(formats))
        object.__setattr__(self, "codec_options", tuple((str(k), str(v)) for k, v in self.codec_options))

    def counts(self) -> dict[str, int]:
        return {"train": self.train, "val": self.val, "calib": self.calib}

    def video_ext(self) -> str:
        return self.ext or DEFAULT_EXT.get(self.codec, "mp4")

    def video_options(self) -> dict[str, str]:
        return {**DEFAULT_CODEC_OPTIONS.get(self.codec, {}), **dict(self.codec_options)}

    def content(self) -> dict:
        """The settings the dataset's bytes depend on (what synth.json records)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("out", "workers", "force", "codec_options")}
        d["formats"] = list(self.formats)
        d["ext"] = self.video_ext()
        d["codec_options"] = self.video_options()
        return d



def check_config(cfg: SynthConfig) -> None:
    """Raise ``EdgefuseError`` for a config that cannot be generated (before anything is written)."""
    def bad(what: str) -> EdgefuseError:
        return EdgefuseError(f"synth: {what}")

    if not 2 <= cfg.frames <= _MAX_FRAMES:
        raise bad(f"--frames {cfg.frames}: a clip needs 2 to {_MAX_FRAMES} frames")
    if not 32 <= cfg.size <= 4096:
        raise bad(f"--size {cfg.size}: use 32 to 4096 pixels")
    for split, n in cfg.counts().items():
        if not 0 <= n < _MAX_CLIPS:
            raise bad(f"--{split} {n}: use 0 to {_MAX_CLIPS - 1} clips")
    if sum(cfg.counts().values()) == 0:
        raise bad("all splits are empty: pass --train/--val/--calib counts above 0")
    if cfg.seed < 0:
        raise bad(f"--seed {cfg.seed}: use a seed >= 0")
    if not cfg.formats or len(set(cfg.formats)) != len(cfg.formats) or not set(cfg.formats) <= set(FORMATS):
        raise bad(f"--formats {','.join(cfg.formats)}: use frames, videos or frames,videos")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise bad(f"JPEG quality {cfg.jpeg_quality}: use 1 to 100")
    if cfg.workers < 1:
        raise bad(f"--workers {cfg.workers}: use 1 or more worker processes")
    if "videos" in cfg.formats:
        _check_video(cfg)


def _check_video(cfg: SynthConfig) -> None:
    try:
        import av
    except ImportError:
        raise EdgefuseError("synth: writing videos needs PyAV: pip install av, or pass --formats frames") from None
    try:
        codec = av.codec.Codec(cfg.codec, "w")
    except Exception:  # noqa: BLE001 - PyAV raises its own UnknownCodecError
        raise EdgefuseError(f"synth: this FFmpeg has no {cfg.codec!r} encoder; use --codec libx264, mpeg4 or libvpx")
    formats = [f.name for f in (codec.video_formats or [])]
    if formats and cfg.pix_fmt not in formats:
        raise EdgefuseError(f"synth: {cfg.codec} cannot encode {cfg.pix_fmt}; use --pix-fmt {' or '.join(formats[:4])}")
    if cfg.pix_fmt.startswith(("yuv420", "yuv422", "nv")) and cfg.size % 2:
        raise EdgefuseError(f"synth: --size {cfg.size} is odd but {cfg.pix_fmt} needs even sizes; "
                            f"use --size {cfg.size + 1}")
    if cfg.fps < 1:
        raise EdgefuseError(f"synth: --fps {cfg.fps}: use 1 or more")
    if not cfg.video_ext().isalnum():
        raise EdgefuseError(f"synth: video extension {cfg.video_ext()!r}: give it without the dot, e.g. mp4")


