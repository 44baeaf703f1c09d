"""Clip sources: turn whatever the user points at into a list of :class:`Entry` (no decoding here).

Supported (see :func:`edgefuse.clips.open`):

- a TSN-style list file, lines ``relative_path num_frames label`` (Something-Something V1,
  Jester, Kinetics lists as TSM's ``tools/`` write them and ``TSNDataSet._parse_list`` reads
  them), paths relative to ``root`` (default: the list's folder); ``path num_frames`` and bare
  ``path`` lines are read too (no label / frame count from the video). UTF-8, or any encoding
  with a byte-order mark (UTF-8, UTF-16, UTF-32), LF or CRLF line ends. Labels must be class
  indices ``0 .. C-1`` (checked against the class count when it is known), every line labelled
  or none; paths must stay inside the root unless ``allow_outside_root``;
- a folder of frame folders, a folder of videos, a folder of class-named folders of videos or of
  frame folders (Kinetics / UCF101 layout: the label is the folder's index among the sorted
  class folders, or its index in ``classes``), one frame folder, or one video;
- a Something-Something V2 JSON list (``[{"id", "template", ...}]``) with ``classes`` = the V2
  labels JSON (``{"Approaching something with your camera": "0", ...}``); the label is the
  template with its brackets removed, as TSM's ``tools/gen_label_sthv2.py`` does; videos are
  ``root/<id>.webm`` (or a frame folder ``root/<id>/``);
- each benchmark's annotation as downloaded (Something-Something V1 / V2, Jester, Kinetics, UCF101, HMDB51), read
  by :mod:`edgefuse.clips.benchmarks` with its official class order (``fmt`` forces the format).

Videos are recognised by their content (:func:`sniff`: MP4 / QuickTime ``.mov`` / ``.m4v`` /
``.3gp``, Matroska / WebM, AVI, MPEG transport and program streams, FLV, Ogg, ASF) as well as by
their extension (:data:`VIDEO_EXTS`), so a misnamed file is still read. An entry without a
video extension is resolved when it is read: a folder holds frames, an existing file is a
video, else ``<path>.webm`` / ``.mp4`` / ... is. Problems found here (bad lines, bad labels,
unknown classes) are errors naming the file and line; problems with one clip (missing file) are
reported when that clip is read.
"""
from __future__ import annotations

import codecs
import dataclasses
import json
import logging
import numbers
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefuse.errors import EdgefuseError

__all__ = [
    "DEFAULT_TEMPLATE",
    "MIN_FRAMES",
    "VIDEO_EXTS",
    "Entry",
    "Source",
    "discover",
    "frame_pattern",
    "is_video_file",
    "parse_list_file",
    "read_classes",
    "read_labels",
    "read_text",
    "sniff",
]

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".3gp", ".3g2", ".ts", ".mts", ".m2ts", ".mpg",
              ".mpeg", ".flv", ".ogv", ".wmv", ".asf")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
DEFAULT_TEMPLATE = "{:05d}.jpg"  # Something V1, Jester; Kinetics-style folders use "img_{:05d}.jpg"
MIN_FRAMES = 3  # the official _parse_list drops shorter entries; edgefuse applies it to every source
MIN_LIST_FRAMES = MIN_FRAMES  # the former name
VIDEO_CONTAINERS = ("mp4", "matroska", "avi", "mpegts", "mpeg-ps", "flv", "ogg", "asf")
SNIFF_BYTES = 600  # three 188-byte transport-stream packets and a bit

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))  # UTF-32 LE before UTF-16 LE


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
    kind: str  # list | ssv2 | frame_folders | frames | videos | video | class_folders
    entries: tuple[Entry, ...]
    class_names: tuple[str, ...] | None
    ignored: tuple[str, ...] = field(default=())  # files in a folder source that are neither videos nor frames
    # benchmark annotations (:mod:`edgefuse.clips.benchmarks`): the split, the clips whose files are missing,
    # the root they were looked for under, and the rule that ordered the classes
    split: str | None = None
    missing: tuple[str, ...] = field(default=())
    root: str | None = None
    class_order: str | None = None


# ---------------------------------------------------------------------------------------------
# What a file is

def sniff(path: str | Path) -> str | None:
    """The container a file holds, judged by its first bytes: one of :data:`VIDEO_CONTAINERS`,
    "image", "npz", or None (text, or unknown). Never raises (None when unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return None
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "mp4"  # ISO base media / QuickTime: .mp4 .mov .m4v .3gp .3g2
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # .mkv .webm
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "mpegts"
    if len(head) > 388 and head[4] == head[196] == head[388] == 0x47:
        return "mpegts"  # M2TS: 4-byte timecode before each packet
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpeg-ps"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "asf"
    if head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n" or head[:6] in (b"GIF87a", b"GIF89a"):
        return "image"
    if head[:4] == b"PK\x03\x04":
        return "npz"
    return None


def is_video_file(path: Path) -> bool:
    """A video by its extension, or by its content when the extension is not an image's."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTS:
        return True
    if suffix in IMAGE_EXTS:
        return False
    return sniff(path) in VIDEO_CONTAINERS


def is_video(path: Path) -> bool:
    """A video by its extension alone (no file access)."""
    return path.suffix.lower() in VIDEO_EXTS


def read_text(path: Path, what: str) -> str:
    """A text file as str: UTF-8, or any encoding with a byte-order mark; CR LF is read like LF by
    ``splitlines``. Anything else is one :class:`EdgefuseError` naming the file, the line and the fix."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EdgefuseError(f"{path}: cannot read the {what} ({e.strerror}); check the path") from None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError as e:
                raise EdgefuseError(f"{path}: the {what} starts with a {encoding} byte-order mark but is not valid "
                                    f"{encoding} ({e.reason}); save it again as UTF-8") from None
    if b"\x00" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            error: UnicodeDecodeError | None = e
    else:
        error = None
    kind = sniff(path)
    if kind is not None:
        hint = {"image": "point at the folder holding the frames", "npz": "name it .npz"}.get(
            kind, "name it with its video extension (.mp4, .mov, ...)")
        raise EdgefuseError(f"{path}: expected a {what} (text) but the file holds {_kind_words(kind)}; {hint}")
    if error is None:
        raise EdgefuseError(f"{path}: the {what} holds NUL bytes: UTF-16 without a byte-order mark, or not text; "
                            "save it as UTF-8")
    line = data[:error.start].count(b"\n") + 1
    raise EdgefuseError(f"{path}:{line}: the {what} is not UTF-8 (byte 0x{data[error.start]:02x}); save it as UTF-8 "
                        "(or any encoding with a byte-order mark)")


def _kind_words(kind: str) -> str:
    return {"image": "an image", "npz": "a zip / .npz archive"}.get(kind, f"a video ({kind} container)")


def frame_pattern(template: str) -> re.Pattern[str]:
    """A regex matching the file names ``template`` produces, group 1 = the frame number."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise EdgefuseError(f"frame_template {template!r} is not a format string ({e}); use e.g. '{{:05d}}.jpg' or "
                            "'img_%05d.jpg'") from None
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
        text = read_text(path, "class file")
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
        if not names:
            raise EdgefuseError(f"{path}: the class file is empty; write one class name per line")
        dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if dup is not None:
            raise EdgefuseError(f"{path}: class {dup!r} is listed twice; one name per class")
        return names, {n: i for i, n in enumerate(names)}
    names = tuple(str(n) for n in classes)
    return names, {n: i for i, n in enumerate(names)}


def _names_from_mapping(index: Mapping[str, Any], what: str) -> tuple[str, ...]:
    by_index = {int(v): k for k, v in index.items()}
    if sorted(by_index) != list(range(len(index))):
        raise EdgefuseError(f"{what}: class indices are not 0..{len(index) - 1} without gaps; fix the class list")
    return tuple(by_index[i] for i in range(len(index)))


def check_label(label: int, num_classes: int | None, where: str) -> int:
    """``label`` if it is a class index, else one error naming ``where`` and the fix."""
    if label < 0:
        raise EdgefuseError(f"{where}: label {label} is negative; labels are class indices 0..C-1 (an unknown label "
                            "is written by leaving it out, on every line)")
    if num_classes is not None and label >= num_classes:
        raise EdgefuseError(f"{where}: label {label} is out of range for {num_classes} classes (0..{num_classes - 1}); "
                            "fix the label, or pass the matching class list (--classes)")
    return label


def _label_value(value: Any, index: Mapping[str, int], where: str, num_classes: int | None = None) -> int:
    if isinstance(value, numbers.Integral) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        return check_label(int(value), num_classes, where)
    if str(value) in index:
        return index[str(value)]
    hint = "pass --classes FILE (the class-name file) to map names to indices" if not index else \
        "the class list has no such name; check the spelling"
    raise EdgefuseError(f"{where}: label {value!r} is not a class index; {hint}")


def read_labels(labels: Any, index: Mapping[str, int], num_classes: int | None = None) -> dict[str, int]:
    """id -> label from a mapping, or a text file of ``id label`` lines (TSN list lines work:
    the first field is the id, the last the label); names are looked up in the classes."""
    if labels is None:
        return {}
    if isinstance(labels, Mapping):
        return {str(k): _label_value(v, index, f"labels[{k!r}]", num_classes) for k, v in labels.items()}
    path = Path(labels)
    if not path.is_file():
        raise EdgefuseError(f"{path}: labels file not found; pass a mapping id -> label or a file of 'id label' lines")
    out: dict[str, int] = {}
    for number, line in enumerate(read_text(path, "labels file").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise EdgefuseError(f"{path}:{number}: expected 'id label', got {line.strip()!r}")
        out[fields[0]] = _label_value(fields[-1], index, f"{path}:{number}", num_classes)
    return out


# ---------------------------------------------------------------------------------------------
# Sources

def _entry_for(path: Path, id: str, num_frames: int | None, label: int | None, template: str,
               frame_start: int) -> Entry:
    kind = "video" if is_video(path) else "auto"
    return Entry(id=id, path=str(path), kind=kind, num_frames=num_frames, label=label, template=template,
                 frame_start=frame_start)


def inside_root(rel: str, root: Path, where: str, allow_outside_root: bool) -> Path:
    """``root / rel``, refusing a path that leaves ``root`` (absolute, or ``..`` past it) unless allowed."""
    if not allow_outside_root:
        normal = os.path.normpath(rel)
        if os.path.isabs(rel) or normal == os.pardir or normal.startswith((os.pardir + os.sep, os.pardir + "/")):
            raise EdgefuseError(f"{where}: {rel!r} leaves the root {root}; put the clip under the root (--root), or "
                                "pass --allow-outside-root (allow_outside_root=True) if the list is trusted")
    return root / rel


def parse_list_file(path: str | Path, root: Path | None = None, template: str = DEFAULT_TEMPLATE,
                    frame_start: int = 1, *, num_classes: int | None = None,
                    allow_outside_root: bool = False) -> list[Entry]:
    """The entries of a TSN list file (``relative_path num_frames label`` lines; the path may hold spaces),
    paths relative to ``root`` (default: the list's folder). The one reader of the format.

    Refused, each with one error naming the file and line: a line that is not ``path [num_frames
    [label]]`` with integers, a negative frame count, a negative label or one out of range for
    ``num_classes``, a list where some lines have a label and others do not, a path leaving the
    root (unless ``allow_outside_root``)."""
    path = Path(path)
    root = path.parent if root is None else root
    text = read_text(path, "list file")
    entries = []
    labelled: int | None = None  # first line with a label
    unlabelled: int | None = None  # first line without one
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
        if num_frames is not None and num_frames < 0:
            raise EdgefuseError(f"{where}: frame count {num_frames} is negative; write the number of frames")
        if label is None:
            unlabelled = unlabelled or number
        else:
            labelled = labelled or number
            check_label(label, num_classes, where)
        if labelled is not None and unlabelled is not None:
            missing = unlabelled if label is not None else number
            raise EdgefuseError(f"{path}:{missing}: no label, but line {labelled} has one; give every line a label "
                                "('relative_path num_frames label') or none")
        entries.append(_entry_for(inside_root(rel, root, where, allow_outside_root), rel, num_frames, label,
                                  template, frame_start))
    if not entries:
        raise EdgefuseError(f"{path}: the list file has no entries")
    return entries


def parse_sthv2_json(text: str, where: str) -> list[tuple[str, str | None, int]]:
    """(id, class name or None, item index) of a Something-Something V2 list ``[{"id", "template", ...}]``: the
    class name is the template without its brackets (TSM's ``gen_label_sthv2.py``); test items have no template."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise EdgefuseError(f"{where}: not valid JSON ({e})") from None
    if isinstance(items, dict):
        raise EdgefuseError(f"{where}: this is a class-index JSON (name -> index), not a clip list; pass it as "
                            "classes= (--classes) and the train/validation JSON as the source")
    if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i for i in items):
        raise EdgefuseError(f"{where}: expected a Something-Something V2 list [{{\"id\": ..., \"template\": ...}}]")
    if not items:
        raise EdgefuseError(f"{where}: the clip list is empty")
    return [(str(item["id"]), str(item["template"]).replace("[", "").replace("]", "") if "template" in item else None,
             number) for number, item in enumerate(items)]


def parse_ssv2(path: Path, root: Path, index: Mapping[str, int], template: str, frame_start: int,
               allow_outside_root: bool = False) -> list[Entry]:
    """The entries of a Something-Something V2 list read as a plain source (``--format tsn`` or an undetected
    JSON): labels from the templates through ``index``."""
    entries = []
    for vid, name, number in parse_sthv2_json(read_text(path, "Something-Something V2 JSON"), str(path)):
        label = None
        if name is not None:
            if not index:
                raise EdgefuseError(f"{path}: clips are labelled by template; pass --classes FILE, the V2 labels "
                                    "JSON (something-something-v2-labels.json)")
            if name not in index:
                raise EdgefuseError(f"{path}: clip {vid}: template {name!r} is not in the classes; pass the "
                                    "matching something-something-v2-labels.json")
            label = index[name]
        clip = inside_root(vid, root, f"{path}: item {number} (id {vid!r})", allow_outside_root)
        entries.append(Entry(id=vid, path=str(clip), kind="auto", label=label, template=template,
                             frame_start=frame_start))
    return entries


def _visible(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def _holds(folder: Path, pattern: re.Pattern[str]) -> str | None:
    """What a subfolder holds, judged by its first telling entry: "frames" (files named like the
    template, or other images), "videos", "folders", or None (nothing telling)."""
    try:
        with os.scandir(folder) as it:
            for item in it:
                if item.name.startswith("."):
                    continue
                if item.is_dir():
                    return "folders"
                if pattern.fullmatch(item.name) or Path(item.name).suffix.lower() in IMAGE_EXTS:
                    return "frames"
                if is_video_file(Path(item.path)):
                    return "videos"
    except OSError:
        return None
    return None


def _class_folder_entries(folder: Path, subdirs: list[Path], index: Mapping[str, int], template: str,
                          frame_start: int) -> tuple[tuple[str, ...] | None, list[Entry], list[str]]:
    """Kinetics / UCF101 layout: ``folder/<class>/<video>`` or ``folder/<class>/<clip>/<frames>``."""
    if index:
        unknown = [p.name for p in subdirs if p.name not in index]
        if unknown:
            raise EdgefuseError(f"{folder}: class folder {unknown[0]!r} is not in the class list "
                                f"({len(unknown)} such folders); pass the matching --classes, or rename the folder")
        names = None
        labels = {p.name: index[p.name] for p in subdirs}
    else:
        names = tuple(p.name for p in subdirs)
        labels = {name: i for i, name in enumerate(names)}
    entries, ignored = [], []
    for class_dir in subdirs:
        for item in _visible(class_dir):
            rel = f"{class_dir.name}/{item.name}"
            if item.is_dir():
                entries.append(Entry(id=rel, path=str(item), kind="frames", label=labels[class_dir.name],
                                     template=template, frame_start=frame_start))
            elif is_video_file(item):
                entries.append(Entry(id=f"{class_dir.name}/{item.stem}", path=str(item), kind="video",
                                     label=labels[class_dir.name], template=template, frame_start=frame_start))
            else:
                ignored.append(rel)
    if not entries:
        raise EdgefuseError(f"{folder}: the class folders hold no videos or frame folders")
    return names, entries, ignored


def _folder_entries(folder: Path, template: str, frame_start: int, index: Mapping[str, int]
                    ) -> tuple[str, list[Entry], tuple[str, ...] | None, list[str]]:
    """(kind, entries, class names from the folder names or None, ignored files)."""
    children = _visible(folder)
    files = [p for p in children if p.is_file()]
    subdirs = [p for p in children if p.is_dir()]
    pattern = frame_pattern(template)
    if any(pattern.fullmatch(p.name) for p in files):
        return "frames", [Entry(id=folder.name, path=str(folder), kind="frames", template=template,
                                frame_start=frame_start)], None, []
    videos = [p for p in files if is_video_file(p)]
    ignored = [p.name for p in files if p not in videos]
    if videos:
        if subdirs:
            log.info("%s: reading its %d videos; its %d subfolders are not read", folder, len(videos), len(subdirs))
        return "videos", [Entry(id=p.stem, path=str(p), kind="video", template=template, frame_start=frame_start)
                          for p in videos], None, ignored
    if subdirs:
        held = {_holds(p, pattern) for p in subdirs}
        if "frames" not in held and held & {"videos", "folders"}:
            names, entries, more = _class_folder_entries(folder, subdirs, index, template, frame_start)
            return "class_folders", entries, names, ignored + more
        return "frame_folders", [Entry(id=p.name, path=str(p), kind="frames", template=template,
                                       frame_start=frame_start) for p in subdirs], None, ignored
    example = next((p.name for p in files if p.suffix.lower() in IMAGE_EXTS), None)
    seen = f"; it holds e.g. {example!r}: set the frame template (--frame-template)" if example else \
        "; point at a clip folder, or set the frame template (--frame-template)"
    raise EdgefuseError(f"{folder}: no videos, class folders, frame folders or frames named like "
                        f"{template.format(frame_start)!r}{seen}")


def check_source(src: Path, template: str) -> None:
    """The checks every source passes first: a valid frame template and a path that exists."""
    frame_pattern(template)
    if not src.exists():
        raise EdgefuseError(f"{src}: not found; pass a list file, a folder of videos or frame folders, a video, "
                            "a benchmark's annotation file, a Something-Something V2 JSON or an .npz")


def class_list(classes: Any, num_classes: int | None) -> tuple[tuple[str, ...] | None, dict[str, int], int | None]:
    """(class names, name -> index, the class count labels are checked against) of ``classes`` given with a model
    of ``num_classes`` classes (both given must agree)."""
    class_names, index = read_classes(classes)
    if class_names is not None:
        if num_classes is not None and num_classes != len(class_names):
            raise EdgefuseError(f"the class list has {len(class_names)} classes but the model has {num_classes}; "
                                "pass the model's class list")
        num_classes = len(class_names)
    return class_names, index, num_classes


def discover(src: Path, *, root: Path | None, labels: Any, classes: Any, template: str,
             frame_start: int, num_classes: int | None = None, allow_outside_root: bool = False) -> Source:
    """The entries of ``src`` with their labels (not for .npz, which :mod:`clipset` reads, nor benchmark
    annotation files, which :func:`edgefuse.clips.benchmarks.discover` reads before calling this).

    ``num_classes``: the class count labels are checked against (the class list's length when
    ``classes`` is given; both given must agree)."""
    check_source(src, template)
    class_names, index, num_classes = class_list(classes, num_classes)
    ignored: list[str] = []
    if src.is_dir():
        kind, entries, folder_names, ignored = _folder_entries(src, template, frame_start, index)
        if folder_names is not None:
            class_names = folder_names
            if num_classes is not None and len(folder_names) > num_classes:
                raise EdgefuseError(f"{src}: {len(folder_names)} class folders but the model has {num_classes} "
                                    "classes; pass the class list (--classes) that maps folder names to its classes")
        if ignored:
            log.info("%s: ignored %d file(s) that are neither videos nor frame folders (%s)", src, len(ignored),
                     ", ".join(ignored[:5]) + (", ..." if len(ignored) > 5 else ""))
    elif src.suffix.lower() in VIDEO_EXTS or sniff(src) in VIDEO_CONTAINERS:
        kind, entries = "video", [Entry(id=src.stem, path=str(src), kind="video", template=template,
                                        frame_start=frame_start)]
    elif src.suffix.lower() == ".json":
        kind, entries = "ssv2", parse_ssv2(src, root or src.parent, index, template, frame_start, allow_outside_root)
    else:
        kind, entries = "list", parse_list_file(src, root or src.parent, template, frame_start,
                                                num_classes=num_classes, allow_outside_root=allow_outside_root)
    given = read_labels(labels, index, num_classes)
    if given:
        entries = [dataclasses.replace(e, label=given.get(e.id, e.label)) for e in entries]
        unlabelled = sum(e.label is None for e in entries)
        if unlabelled:
            log.warning("%s: %d of %d clips have no label in the given labels", src, unlabelled, len(entries))
    return Source(kind=kind, entries=tuple(entries), class_names=class_names, ignored=tuple(ignored))


