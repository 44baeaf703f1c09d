"""Clip sources: turn whatever the user points at into a list of :class:`Entry` (no decoding here).

Supported (see :func:`edgefuse.clips.open`):

- a TSN-style list file, lines ``relative_path num_frames label`` (Something-Something V1,
  Jester, Kinetics lists as TSM's ``tools/`` write them and ``TSNDataSet._parse_list`` reads
  them), paths relative to ``root`` (default: the list's folder); ``path num_frames`` and bare
  ``path`` lines are read too (no label / frame count from the video). Like the official loaders
  (``_parse_list``: ``int(item[1]) >= 3``), entries listing fewer than 3 frames are dropped,
  here as reported skips;
- a folder of frame folders, or a folder of videos, or one frame folder, or one video;
- a Something-Something V2 JSON list (``[{"id", "template", ...}]``) with ``classes`` = the V2
  labels JSON (``{"Approaching something with your camera": "0", ...}``); the label is the
  template with its brackets removed, as TSM's ``tools/gen_label_sthv2.py`` does; videos are
  ``root/<id>.webm`` (or a frame folder ``root/<id>/``).

An entry without a video extension is resolved when it is read: a folder holds frames, else
``<path>.webm`` / ``.mp4`` / ... is the video. Problems found here (bad lines, unknown classes)
are errors naming the file and line; problems with one clip (missing file) are reported when
that clip is read.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import numbers
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefuse.errors import EdgefuseError

__all__ = [
    "DEFAULT_TEMPLATE",
    "VIDEO_EXTS",
    "Entry",
    "Source",
    "discover",
    "frame_pattern",
    "parse_list_file",
    "read_classes",
    "read_labels",
]

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".webm", ".avi", ".mkv")
DEFAULT_TEMPLATE = "{:05d}.jpg"  # Something V1, Jester; Kinetics-style folders use "img_{:05d}.jpg"
MIN_LIST_FRAMES = 3  # the official _parse_list drops shorter entries


@dataclass(frozen=True)
class Entry:
    """One clip to read. ``kind``: "frames" (a folder), "video" or "auto" (decided when read).
    ``problem``: why it cannot be read, when already known."""

    id: str
    path: str
    kind: str
    num_frames: int | None = None
    label: int | None = None
    template: str = DEFAULT_TEMPLATE
    frame_start: int = 1
    problem: str | None = None


@dataclass(frozen=True)
class Source:
    kind: str  # list | ssv2 | frame_folders | frames | videos | video
    entries: tuple[Entry, ...]
    class_names: tuple[str, ...] | None


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS


def frame_pattern(template: str) -> re.Pattern[str]:
    """A regex matching the file names ``template`` produces, group 1 = the frame number."""
    parts = list(string.Formatter().parse(template))
    fields = [p for p in parts if p[1] is not None]
    if len(fields) != 1:
        raise EdgefuseError(f"frame_template {template!r} must have exactly one {{}} field for the frame number "
                            "(e.g. '{:05d}.jpg' or 'img_{:05d}.jpg')")
    try:
        template.format(1)
    except (ValueError, IndexError, KeyError) as e:
        raise EdgefuseError(f"frame_template {template!r} cannot format a frame number ({e}); "
                            "use e.g. '{:05d}.jpg'") from None
    regex = "".join(re.escape(literal) + (r"(\d+)" if field is not None else "")
                    for literal, field, _, _ in parts)
    return re.compile(regex)


# ---------------------------------------------------------------------------------------------
# Classes and labels

def read_classes(classes: Any) -> tuple[tuple[str, ...] | None, dict[str, int]]:
    """(class names by index, name -> index) from a V2 labels JSON, a one-name-per-line file,
    a sequence of names or a name -> index mapping."""
    if classes is None:
        return None, {}
    if isinstance(classes, Mapping):
        return _names_from_mapping({str(k): v for k, v in classes.items()}, "classes"), \
            {str(k): int(v) for k, v in classes.items()}
    if isinstance(classes, (str, Path)):
        path = Path(classes)
        if not path.is_file():
            raise EdgefuseError(f"{path}: class file not found; pass the class-name file (one name per line) or "
                                "the Something-Something V2 labels JSON")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            try:
                mapping = json.loads(text)
            except json.JSONDecodeError as e:
                raise EdgefuseError(f"{path}: not valid JSON ({e}); pass the V2 labels JSON "
                                    "(something-something-v2-labels.json)") from None
            if not isinstance(mapping, dict):
                raise EdgefuseError(f"{path}: expected a JSON object mapping class name -> index (the V2 labels "
                                    f"JSON), got a {type(mapping).__name__}")
            try:
                index = {str(k): int(v) for k, v in mapping.items()}
            except (TypeError, ValueError):
                raise EdgefuseError(f"{path}: class indices must be integers (\"name\": \"0\")") from None
            return _names_from_mapping(index, str(path)), index
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
        return names, {n: i for i, n in enumerate(names)}
    names = tuple(str(n) for n in classes)
    return names, {n: i for i, n in enumerate(names)}


def _names_from_mapping(index: Mapping[str, Any], what: str) -> tuple[str, ...]:
    by_index = {int(v): k for k, v in index.items()}
    if sorted(by_index) != list(range(len(index))):
        raise EdgefuseError(f"{what}: class indices are not 0..{len(index) - 1} without gaps; fix the class list")
    return tuple(by_index[i] for i in range(len(index)))


def _label_value(value: Any, index: Mapping[str, int], where: str) -> int:
    if isinstance(value, numbers.Integral) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        return int(value)
    if str(value) in index:
        return index[str(value)]
    hint = "pass classes= (the class-name file) to map names to indices" if not index else \
        "the class list has no such name; check the spelling"
    raise EdgefuseError(f"{where}: label {value!r} is not a class index; {hint}")


def read_labels(labels: Any, index: Mapping[str, int]) -> dict[str, int]:
    """id -> label from a mapping, or a text file of ``id label`` lines (TSN list lines work:
    the first field is the id, the last the label); names are looked up in the classes."""
    if labels is None:
        return {}
    if isinstance(labels, Mapping):
        return {str(k): _label_value(v, index, "labels") for k, v in labels.items()}
    path = Path(labels)
    if not path.is_file():
        raise EdgefuseError(f"{path}: labels file not found; pass a mapping id -> label or a file of 'id label' lines")
    out: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise EdgefuseError(f"{path}:{number}: expected 'id label', got {line.strip()!r}")
        out[fields[0]] = _label_value(fields[-1], index, f"{path}:{number}")
    return out


# ---------------------------------------------------------------------------------------------
# Sources

def _entry_for(path: Path, id: str, num_frames: int | None, label: int | None, template: str,
               frame_start: int) -> Entry:
    kind = "video" if is_video(path) else "auto"
    return Entry(id=id, path=str(path), kind=kind, num_frames=num_frames, label=label, template=template,
                 frame_start=frame_start)


def parse_list_file(path: str | Path, root: Path | None = None, template: str = DEFAULT_TEMPLATE,
                    frame_start: int = 1) -> list[Entry]:
    """The entries of a TSN list file (``relative_path num_frames label`` lines; the path may hold spaces),
    paths relative to ``root`` (default: the list's folder). The one reader of the format."""
    path = Path(path)
    root = path.parent if root is None else root
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise EdgefuseError(f"{path}: cannot read the list file ({e.strerror}); check the path") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        try:
            if len(fields) >= 3:
                rel, num_frames, label = " ".join(fields[:-2]), int(fields[-2]), int(fields[-1])
            elif len(fields) == 2:
                rel, num_frames, label = fields[0], int(fields[1]), None
            else:
                rel, num_frames, label = fields[0], None, None
        except ValueError:
            raise EdgefuseError(f"{where}: expected 'relative_path num_frames label' with integers, got "
                                f"{line.strip()!r}; is this a TSN list file?") from None
        entry = _entry_for(root / rel, rel, num_frames, label, template, frame_start)
        if num_frames is not None and num_frames < MIN_LIST_FRAMES:
            entry = dataclasses.replace(entry, problem=f"the list gives {num_frames} frames; the official loaders "
                                                       f"drop entries with fewer than {MIN_LIST_FRAMES}")
        entries.append(entry)
    if not entries:
        raise EdgefuseError(f"{path}: the list file has no entries")
    return entries


def parse_ssv2(path: Path, root: Path, index: Mapping[str, int], template: str, frame_start: int) -> list[Entry]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EdgefuseError(f"{path}: not valid JSON ({e})") from None
    if isinstance(items, dict):
        raise EdgefuseError(f"{path}: this is a class-index JSON (name -> index), not a clip list; pass it as "
                            "classes= and the train/validation JSON as the source")
    if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i for i in items):
        raise EdgefuseError(f"{path}: expected a Something-Something V2 list [{{\"id\": ..., \"template\": ...}}]")
    entries = []
    for item in items:
        label = None
        if "template" in item:
            if not index:
                raise EdgefuseError(f"{path}: clips are labelled by template; pass classes= the V2 labels JSON "
                                    "(something-something-v2-labels.json)")
            name = item["template"].replace("[", "").replace("]", "")
            if name not in index:
                raise EdgefuseError(f"{path}: clip {item['id']}: template {name!r} is not in the classes; pass the "
                                    "matching something-something-v2-labels.json")
            label = index[name]
        vid = str(item["id"])
        entries.append(Entry(id=vid, path=str(root / vid), kind="auto", label=label, template=template,
                             frame_start=frame_start))
    if not entries:
        raise EdgefuseError(f"{path}: the clip list is empty")
    return entries


def _folder_entries(folder: Path, template: str, frame_start: int) -> tuple[str, list[Entry]]:
    children = sorted(folder.iterdir(), key=lambda p: p.name)
    videos = [p for p in children if p.is_file() and is_video(p)]
    if videos:
        return "videos", [Entry(id=p.stem, path=str(p), kind="video", template=template, frame_start=frame_start)
                          for p in videos]
    subdirs = [p for p in children if p.is_dir() and not p.name.startswith(".")]
    if subdirs:
        return "frame_folders", [Entry(id=p.name, path=str(p), kind="frames", template=template,
                                       frame_start=frame_start) for p in subdirs]
    pattern = frame_pattern(template)
    if any(pattern.fullmatch(p.name) for p in children):
        return "frames", [Entry(id=folder.name, path=str(folder), kind="frames", template=template,
                                frame_start=frame_start)]
    raise EdgefuseError(f"{folder}: no videos ({', '.join(VIDEO_EXTS)}), frame folders or frames named like "
                        f"{template.format(frame_start)!r}; point at a clip folder, or set frame_template=")


def discover(src: Path, *, root: Path | None, labels: Any, classes: Any, template: str,
             frame_start: int) -> Source:
    """The entries of ``src`` with their labels (not for .npz, which :mod:`clipset` reads)."""
    frame_pattern(template)
    class_names, index = read_classes(classes)
    if not src.exists():
        raise EdgefuseError(f"{src}: not found; pass a list file, a folder of videos or frame folders, a video, "
                            "a Something-Something V2 JSON or an .npz")
    if src.is_dir():
        kind, entries = _folder_entries(src, template, frame_start)
    elif is_video(src):
        kind, entries = "video", [Entry(id=src.stem, path=str(src), kind="video", template=template,
                                        frame_start=frame_start)]
    elif src.suffix.lower() == ".json":
        kind, entries = "ssv2", parse_ssv2(src, root or src.parent, index, template, frame_start)
    else:
        kind, entries = "list", parse_list_file(src, root or src.parent, template, frame_start)
    given = read_labels(labels, index)
    if given:
        entries = [dataclasses.replace(e, label=given.get(e.id, e.label)) for e in entries]
        unlabelled = sum(e.label is None for e in entries)
        if unlabelled:
            log.warning("%s: %d of %d clips have no label in the given labels", src, unlabelled, len(entries))
    return Source(kind=kind, entries=tuple(entries), class_names=class_names)
