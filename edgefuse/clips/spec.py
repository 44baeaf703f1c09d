"""A clip source and how to read it, as one path-like value every stage passes through.

:class:`ClipSource` is a :class:`pathlib.Path` (the clip source's path: a list file, a folder, a
video, a V2 JSON or an ``.npz``) that also carries the reading options the command line takes
(``--classes``, ``--frame-template``, ``--frame-start``, ``--sampling``, ``--min-frames``,
``--allow-outside-root``, ``--format``, ``--split``, ``--class-order``).
Configs and functions that take ``clips: Path`` hand it on unchanged to
:func:`edgefuse.clips.open`, which applies its options; everything else they do with a path
(``stat``, ``str``, ``suffix``, opening it) works as for any path. Paths derived from it
(``resolve()``, ``parent``, ``/``) are plain paths of the same class with the default options.

```python
src = ClipSource.of("kinetics/", classes="kinetics_classes.txt", frame_template="img_%05d.jpg", clock="time")
src = ClipSource.of("ucfTrainTestlist/", split="test2")   # a benchmark's annotation as downloaded
clips.open(src, pre, sampling)        # the options apply; the same as passing them as keywords
```
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path, PosixPath, WindowsPath
from typing import Any

from edgefuse.clips.benchmarks import FORMATS
from edgefuse.clips.sampling import CLOCKS
from edgefuse.clips.sources import DEFAULT_TEMPLATE, MIN_FRAMES, frame_pattern
from edgefuse.errors import EdgefuseError

__all__ = ["ClipSource", "frame_template"]

if sys.platform == "win32":
    class _PlatformPath(WindowsPath):
        __slots__ = ()
else:
    class _PlatformPath(PosixPath):
        __slots__ = ()

_PRINTF = re.compile(r"%(0?\d*)d")


def frame_template(text: str) -> str:
    """A frame file-name template as ``str.format`` takes it: ``img_%05d.jpg`` (printf, as FFmpeg and
    the official extraction scripts write it) becomes ``img_{:05d}.jpg``; ``{:05d}.jpg`` stays."""
    if "%" in text and _PRINTF.search(text):
        escaped = text.replace("{", "{{").replace("}", "}}")
        converted = _PRINTF.sub(lambda m: "{:" + m.group(1) + "d}", escaped).replace("%%", "%")
        if converted.count("{:") != 1:
            raise EdgefuseError(f"frame template {text!r} must have exactly one %d field for the frame number "
                                "(e.g. 'img_%05d.jpg')")
        text = converted
    frame_pattern(text)  # one error naming the template when it cannot name frames
    return text


class ClipSource(_PlatformPath):
    """A clip source's path with its reading options (see the module docstring). Build it with
    :meth:`of`; the options are read-only attributes."""

    classes: Any = None  # class-name file, V2 labels JSON, names, or name -> index mapping
    frame_template: str = DEFAULT_TEMPLATE
    frame_start: int = 1
    clock: str = "index"  # "index" | "time" (presentation timestamps)
    min_frames: int = MIN_FRAMES
    allow_outside_root: bool = False
    format: str | None = None  # None: judged from the file; "tsn" or a benchmark annotation format
    split: str | None = None  # UCF101 / HMDB51 split ("1", "test2", "train3"), Kinetics split column value
    class_order: str | None = None  # Something V1 / Jester: "sorted" (TSM, GSF, TRN) or "file" (AdaFuse)

    @classmethod
    def of(cls, path: str | Path, *, classes: Any = None, frame_template: str = DEFAULT_TEMPLATE,
           frame_start: int = 1, clock: str = "index", min_frames: int = MIN_FRAMES,
           allow_outside_root: bool = False, format: str | None = None, split: str | None = None,
           class_order: str | None = None) -> ClipSource:
        """``path`` with these options, checked (one :class:`EdgefuseError` for a bad one)."""
        src = cls(path)
        src._set(classes=classes, frame_template=frame_template, frame_start=frame_start, clock=clock,
                 min_frames=min_frames, allow_outside_root=allow_outside_root, format=format, split=split,
                 class_order=class_order)
        return src

    def _set(self, **options: Any) -> None:
        if options["clock"] not in CLOCKS:
            raise EdgefuseError(f"sampling clock {options['clock']!r} is unknown: use 'index' or 'time'")
        if int(options["min_frames"]) < 1:
            raise EdgefuseError(f"min_frames must be at least 1, got {options['min_frames']}")
        if int(options["frame_start"]) < 0:
            raise EdgefuseError(f"frame_start must be at least 0, got {options['frame_start']}")
        options["frame_template"] = frame_template(str(options["frame_template"]))
        if options["format"] not in (None, "auto", "tsn", *FORMATS):
            raise EdgefuseError(f"clip format {options['format']!r} is unknown: use auto, tsn or one of "
                                f"{', '.join(FORMATS)}")
        if options["format"] == "auto":
            options["format"] = None
        if options["class_order"] not in (None, "sorted", "file"):
            raise EdgefuseError(f"class order {options['class_order']!r} is unknown: use 'sorted' or 'file'")
        if isinstance(options["classes"], (str, Path)):
            options["classes"] = Path(options["classes"])
        for key, value in options.items():
            object.__setattr__(self, key, value)

    def options(self) -> dict[str, Any]:
        """The reading options, as keywords of :func:`edgefuse.clips.open` would take them."""
        return {"classes": self.classes, "frame_template": self.frame_template, "frame_start": self.frame_start,
                "clock": self.clock, "min_frames": self.min_frames, "allow_outside_root": self.allow_outside_root,
                "format": self.format, "split": self.split, "class_order": self.class_order}

    def with_source(self, path: str | Path) -> ClipSource:
        """Another source (a held-out list, say) read with the same options."""
        return ClipSource.of(path, **self.options())

    def key(self) -> str:
        """The options as stable JSON, for cache keys: two sources read alike have the same key."""
        opts = self.options()
        classes = opts["classes"]
        opts["classes"] = str(classes) if isinstance(classes, Path) else classes
        for key in ("format", "split", "class_order"):  # unset: the same keys as before these options existed
            if opts[key] is None:
                del opts[key]
        return json.dumps(opts, sort_keys=True, default=str)

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (str(self), self.options())


def _rebuild(path: str, options: dict[str, Any]) -> ClipSource:
    return ClipSource.of(path, **options)
