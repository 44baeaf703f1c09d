"""Benchmark annotation files, read as downloaded: Something-Something V1 / V2, Jester, Kinetics-400/600/700,
UCF101 and HMDB51, with their class names in the order the official checkpoints use.

One small pure parser per format (text in, rows out; errors name the file and line), :func:`detect` (the
format judged by the file's name and content), and :func:`read_annotation`, which returns an
:class:`Annotation`: the clips with their class names and the class list in the benchmark's order.
:func:`locate` then finds the root of the frames or videos beside the annotation (or takes the one given)
and turns the rows into :class:`~edgefuse.clips.sources.Entry` objects, setting aside (counting) the clips
whose files are missing. :func:`edgefuse.clips.sources.discover` calls both.

Class order per benchmark (``tests/data/benchmark_annotations/class_order.json`` holds the evidence):

- Something-Something V1 and Jester: the names of the labels file (``something-something-v1-labels.csv``,
  ``jester-v1-labels.csv``, one name per line) **sorted** (Python string order), as TSM
  (``tools/gen_label_sthv1.py``), GSF (``data_scripts/process_dataset.py``) and TRN (``process_dataset.py``)
  build ``category.txt``; ``class_order="file"`` keeps the file's own order instead, which AdaFuse
  (``data/somethingv1/classInd.txt``, ``data/jester/classInd.txt``) and mmaction2
  (``tools/data/parse_file_list.py``) use: clip 100218 of V1 is class 134 in TSM's lists, 31 in AdaFuse's;
- Something-Something V2: the index in ``something-something-v2-labels.json`` (TSM's ``gen_label_sthv2.py``
  asserts the JSON's order equals it); the label is the clip's template without its brackets;
- Kinetics-400/600/700: the label names sorted (mmaction2 ``parse_kinetics_splits``:
  ``sorted({label})``; its ``label_map_k400/600/700.txt`` are those lists; TSM's ``gen_label_kinetics.py``
  numbers the lines of the sorted ``kinetics_label_map.txt``);
- UCF101: ``classInd.txt``'s number minus one (mmaction2 ``parse_ucf101_splits``; the same in TSN), the class
  of a clip being its folder in the split file;
- HMDB51: the class names (from the ``<class>_test_split<N>.txt`` file names) sorted (mmaction2
  ``parse_hmdb51_split`` numbers ``sorted(os.listdir(videos))``); flag 1 = train, 2 = test, 0 = unused.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefuse.clips.sources import (
    VIDEO_EXTS,
    Entry,
    Source,
    check_source,
    class_list,
    inside_root,
    parse_sthv2_json,
    read_labels,
    read_text,
)
from edgefuse.clips.sources import discover as plain_discover
from edgefuse.errors import EdgefuseError

__all__ = [
    "CLASS_ORDERS", "FORMATS", "Annotation", "Located", "Row", "class_index", "detect", "locate", "parse_class_lines",
    "parse_hmdb_split", "parse_kinetics_csv", "parse_something_csv", "parse_sthv2_json", "parse_ucf_classind",
    "parse_ucf_list", "read_annotation",
]

log = logging.getLogger(__name__)

FORMATS = {"sthv1": "Something-Something V1", "sthv2": "Something-Something V2", "jester": "Jester",
           "kinetics": "Kinetics", "ucf101": "UCF101", "hmdb51": "HMDB51"}
CLASS_ORDERS = ("sorted", "file")
# folders the official archives unpack to, looked for beside the annotation before any other folder
ROOT_NAMES = {"sthv1": ("20bn-something-something-v1", "something-something-v1", "frames", "videos"),
              "sthv2": ("20bn-something-something-v2", "something-something-v2", "videos", "frames"),
              "jester": ("20bn-jester-v1", "jester-v1", "frames", "videos"),
              "kinetics": ("videos", "val", "validate", "test", "train", "frames"),
              "ucf101": ("UCF-101", "UCF101", "ucf101", "videos", "frames"),
              "hmdb51": ("hmdb51_org", "hmdb51", "HMDB51", "videos", "frames")}
PROBES = 8  # rows checked in each candidate root
MAX_CANDIDATES = 64  # candidate roots tried beside an annotation
_LOOKUP_EXTS = (".webm", ".mp4", ".mkv", ".avi", ".mov")  # tried, in this order, for an id without extension
_UCF_LIST = re.compile(r"(train|test)list0?([1-9])\.txt$", re.IGNORECASE)
_HMDB_SPLIT = re.compile(r"^(.+)_test_split([1-9])\.txt$", re.IGNORECASE)
_KINETICS_STEM = re.compile(r".+_\d{6}_\d{6}$")


@dataclass(frozen=True)
class Row:
    """One clip of an annotation: its ``id``, the paths it may have relative to the root (first found wins; a
    path without a video extension is a frame folder or ``<path>.webm`` / ``.mp4`` / ...), its class name
    (None: unlabelled) and the line it came from."""

    id: str
    paths: tuple[str, ...]
    label: str | None
    line: int


@dataclass(frozen=True)
class Annotation:
    """An annotation read: ``format`` (a key of :data:`FORMATS`), ``split`` (e.g. "validation", "test split 1"),
    the clips, and the class names in the benchmark's class order with the rule that made it."""

    format: str
    path: Path
    split: str | None
    rows: tuple[Row, ...]
    class_names: tuple[str, ...] | None
    class_rule: str
    files: tuple[Path, ...] = ()  # the annotation files read (several for HMDB51)

    @property
    def name(self) -> str:
        return FORMATS[self.format]


@dataclass(frozen=True)
class Located:
    """The rows found under ``root`` as entries, and the ids of those missing."""

    root: Path
    entries: tuple[Entry, ...]
    missing: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Pure parsers: text in, rows out

def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('""', '"').strip()
    return text


def parse_class_lines(text: str, where: str) -> list[str]:
    """One class name a line, in the file's order (``something-something-v1-labels.csv``, ``jester-v1-labels.csv``,
    a ``--classes`` file); blank lines skipped, a quoted name unquoted. A name listed twice is an error."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        name = _unquote(line)
        if not name:
            continue
        if name in seen:
            raise EdgefuseError(f"{where}:{number}: class {name!r} is listed twice (first on line {seen[name]}); "
                                "one name per class")
        seen[name] = number
        names.append(name)
    if not names:
        raise EdgefuseError(f"{where}: the class file is empty; write one class name per line")
    return names


def parse_something_csv(text: str, where: str) -> list[tuple[str, str | None, int]]:
    """(id, class name or None, line) of a Something-Something V1 / Jester CSV: ``id;label`` lines (train,
    validation) or bare ``id`` lines (test); no header. Ids stay strings (leading zeros kept)."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        vid, sep, label = stripped.partition(";")
        vid = _unquote(vid)
        if number == 1 and vid.lower() in ("id", "video_id", "youtube_id"):
            continue  # a header some re-saved copies have
        if not vid or any(c.isspace() for c in vid) or "/" in vid or "\\" in vid:
            raise EdgefuseError(f"{where}:{number}: expected 'id;label' (Something-Something V1 / Jester CSV), got "
                                f"{stripped!r}; is this the annotation file as downloaded?")
        name = _unquote(label) if sep else None
        if sep and not name:
            raise EdgefuseError(f"{where}:{number}: clip {vid!r} has an empty label after ';'; write 'id;label'")
        rows.append((vid, name, number))
    if not rows:
        raise EdgefuseError(f"{where}: the annotation file has no clips")
    return rows


def parse_kinetics_csv(text: str, where: str) -> list[tuple[str, str | None, str | None, int]]:
    """(clip stem ``<youtube_id>_<start:06d>_<end:06d>``, class name or None, split or None, line) of a Kinetics
    CSV: a header row ``label,youtube_id,time_start,time_end,split[,is_cc]`` (or ``youtube_id,time_start,time_end,
    split`` for the test split; columns are found by name), names quoted when they hold commas."""
    reader = csv.reader(io.StringIO(text, newline=""))
    columns: dict[str, int] | None = None
    rows = []
    for fields in reader:
        number = reader.line_num
        if not fields or not any(f.strip() for f in fields):
            continue
        fields = [f.strip() for f in fields]
        if columns is None:
            lowered = [f.lower() for f in fields]
            if "youtube_id" in lowered:
                columns = {name: i for i, name in enumerate(lowered)}
                for need in ("time_start", "time_end"):
                    if need not in columns:
                        raise EdgefuseError(f"{where}:{number}: the header has no {need!r} column; expected "
                                            "'label,youtube_id,time_start,time_end,split'")
                continue
            names = (["youtube_id", "time_start", "time_end", "split"] if len(fields) == 4 else
                     ["label", "youtube_id", "time_start", "time_end", "split", "is_cc"][:len(fields)])
            if len(fields) < 4:
                raise EdgefuseError(f"{where}:{number}: expected 'label,youtube_id,time_start,time_end,split' "
                                    f"(a Kinetics CSV), got {','.join(fields)!r}")
            columns = {name: i for i, name in enumerate(names)}
        if len(fields) < len(columns) - (1 if "is_cc" in columns else 0):
            raise EdgefuseError(f"{where}:{number}: {len(fields)} fields, the header has {len(columns)}; a class name "
                                "with a comma must be quoted (\"name, more\")")
        youtube_id = fields[columns["youtube_id"]]
        times = []
        for key in ("time_start", "time_end"):
            value = fields[columns[key]]
            try:
                seconds = float(value)
            except ValueError:
                raise EdgefuseError(f"{where}:{number}: {key} {value!r} is not a number; expected "
                                    "'label,youtube_id,time_start,time_end,split'") from None
            if not 0 <= seconds < float("inf"):
                raise EdgefuseError(f"{where}:{number}: {key} {value!r} is not a second of the video; write a "
                                    "non-negative number")
            times.append(int(seconds))
        if not youtube_id:
            raise EdgefuseError(f"{where}:{number}: empty youtube_id")
        label = fields[columns["label"]] if "label" in columns else ""
        split = fields[columns["split"]] if "split" in columns and columns["split"] < len(fields) else ""
        rows.append((f"{youtube_id}_{times[0]:06d}_{times[1]:06d}", label or None, split or None, number))
    if not rows:
        raise EdgefuseError(f"{where}: the annotation file has no clips")
    return rows


def parse_ucf_classind(text: str, where: str) -> list[str]:
    """The class names of UCF101's ``classInd.txt`` (``1 ApplyEyeMakeup`` lines) by index: name ``i`` is the line
    numbered ``i + 1``. Numbers must run 1..C without gaps."""
    by_number: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[0].isdigit():
            raise EdgefuseError(f"{where}:{number}: expected 'index ClassName' (UCF101 classInd.txt), got "
                                f"{line.strip()!r}")
        index = int(fields[0])
        if index in by_number:
            raise EdgefuseError(f"{where}:{number}: class number {index} is listed twice")
        by_number[index] = fields[1]
    if sorted(by_number) != list(range(1, len(by_number) + 1)):
        raise EdgefuseError(f"{where}: class numbers are not 1..{len(by_number)} without gaps; use the classInd.txt "
                            "of the download")
    return [by_number[i] for i in range(1, len(by_number) + 1)]


def parse_ucf_list(text: str, where: str) -> list[tuple[str, int | None, int]]:
    """(``Class/v_Class_gNN_cNN.avi``, 1-based class number or None, line) of a UCF101 ``trainlist0N.txt`` (with
    the number) or ``testlist0N.txt`` (without)."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        rel = fields[0].replace("\\", "/")
        if len(fields) > 2 or rel.count("/") != 1 or (len(fields) == 2 and not fields[1].isdigit()):
            raise EdgefuseError(f"{where}:{number}: expected 'Class/v_Class_gNN_cNN.avi [class number]' (a UCF101 "
                                f"split file), got {line.strip()!r}")
        rows.append((rel, int(fields[1]) if len(fields) == 2 else None, number))
    if not rows:
        raise EdgefuseError(f"{where}: the split file has no clips")
    return rows


def parse_hmdb_split(text: str, where: str) -> list[tuple[str, int, int]]:
    """(video file name, flag, line) of an HMDB51 ``<class>_test_split<N>.txt``: flag 1 = train, 2 = test,
    0 = not used in this split."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise EdgefuseError(f"{where}:{number}: expected 'video.avi 0|1|2' (an HMDB51 split file), got "
                                f"{line.strip()!r}")
        rows.append((fields[0], int(fields[1]), number))
    return rows


# ---------------------------------------------------------------------------------------------
# Which format a file holds

def _head(path: Path, lines: int = 5) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    return [line for line in text.splitlines() if line.strip()][:lines]


def _something_kind(path: Path, names_count: int | None = None) -> str:
    """Jester or Something-Something V1, by the file's name, the labels file beside it, or the class count."""
    for candidate in (path.name, *(p.name for p in sorted(path.parent.glob("*-labels.csv")))):
        lowered = candidate.lower()
        if "jester" in lowered:
            return "jester"
        if "something" in lowered:
            return "sthv1"
    return "jester" if names_count == 27 else "sthv1"


def detect(src: Path) -> str | None:
    """The benchmark format of ``src`` judged by its name and content: a key of :data:`FORMATS`, or None (a TSN
    list file, a folder of clips, a video, ...: the other readers). Never raises."""
    try:
        if src.is_dir():
            files = {p.name.lower() for p in src.iterdir() if p.is_file()}
            if "classind.txt" in files and any(_UCF_LIST.fullmatch(f) for f in files):
                return "ucf101"
            if any(_HMDB_SPLIT.match(f) for f in files):
                return "hmdb51"
            return None
        if not src.is_file():
            return None
    except OSError:
        return None
    name = src.name.lower()
    head = _head(src)
    if name.endswith(".json"):
        return "sthv2"
    if name == "classind.txt" or _UCF_LIST.fullmatch(name):
        return "ucf101"
    if _HMDB_SPLIT.match(name) and head and re.fullmatch(r"\S+\s+[012]\s*", head[0]):
        return "hmdb51"
    if head and re.fullmatch(r"\s*\d+\s*;.+", head[0]):  # judged by the first line: later ones are checked when read
        return _something_kind(src)
    if head and re.fullmatch(r"(jester-v1|something-something-v1)-test\.csv", name) and \
            all(re.fullmatch(r"\s*\d+\s*", line) for line in head):
        return _something_kind(src)
    if head and "youtube_id" in head[0].lower() and "time_start" in head[0].lower():
        return "kinetics"
    if head and name.endswith(".csv") and re.fullmatch(r'("[^"]*"|[^,]*),[^,]+,\d+(\.\d*)?,\d+(\.\d*)?,.*', head[0]):
        return "kinetics"
    return None


# ---------------------------------------------------------------------------------------------
# Reading an annotation with its classes

def _split_choice(split: str | None) -> tuple[str | None, int | None]:
    """(subset "train" / "test" or None, split number or None) of ``--split``: ``1``, ``test2``, ``train3``."""
    if split is None:
        return None, None
    match = re.fullmatch(r"(train|test)?\s*([1-9])?", split.strip().lower())
    if not match or not any(match.groups()):
        raise EdgefuseError(f"--split {split!r}: expected a split number 1, 2 or 3, optionally after train / test "
                            "(e.g. 2, test1, train3)")
    subset, number = match.groups()
    return subset, int(number) if number else None


def checkpoint_class_order(source: str | None) -> str | None:
    """The class order a model's checkpoint numbers Something V1 / Jester classes in, by the checkpoint's source
    (the ``checkpoint_source`` edgefuse records in a graph's metadata): "file" for an official AdaFuse checkpoint
    (its ``classInd.txt`` keeps the labels file's order), None (the benchmark's rule, sorted) for the others."""
    return "file" if source == "adafuse" else None


def class_index(names: Sequence[str]) -> dict[str, int]:
    """class name -> index; each name also reachable with spaces and underscores swapped, in any case."""
    index = {n: i for i, n in enumerate(names)}
    for i, n in enumerate(names):  # also reachable with spaces / underscores swapped, any case
        index.setdefault(_loose(n), i)
    return index


def _loose(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.replace('"', "")).strip().lower()


def _label_index(name: str, index: Mapping[str, int], where: str, classes_from: str) -> int:
    found = index.get(name, index.get(_loose(name)))
    if found is None:
        raise EdgefuseError(f"{where}: class {name!r} is not in {classes_from}; pass the class list of this "
                            "benchmark (--classes)")
    return found


def _ordered(names: Sequence[str], order: str | None, default: str) -> list[str]:
    return sorted(names) if (order or default) == "sorted" else list(names)


def _given_classes(classes: tuple[str, ...] | None) -> list[str] | None:
    return list(classes) if classes is not None else None


def read_annotation(src: Path, fmt: str, *, split: str | None = None, classes: tuple[str, ...] | None = None,
                    class_order: str | None = None) -> Annotation:
    """Read ``src`` (a file, or the folder of UCF101 / HMDB51 split files) as benchmark ``fmt``. ``classes``:
    class names given by the user (``--classes``), used as they are instead of the benchmark's own;
    ``class_order``: "sorted" or "file" (see the module docstring), None for the benchmark's rule."""
    if fmt not in FORMATS:
        raise EdgefuseError(f"--format {fmt!r}: unknown; use one of {', '.join(FORMATS)}")
    if class_order is not None and class_order not in CLASS_ORDERS:
        raise EdgefuseError(f"class order {class_order!r}: use 'sorted' or 'file'")
    reader = {"sthv1": _read_something, "jester": _read_something, "sthv2": _read_sthv2,
              "kinetics": _read_kinetics, "ucf101": _read_ucf101, "hmdb51": _read_hmdb51}[fmt]
    if fmt not in ("ucf101", "hmdb51", "kinetics") and split is not None:
        raise EdgefuseError(f"{src}: --split picks a split of UCF101 / HMDB51 split files (or a Kinetics CSV's split "
                            f"column); a {FORMATS[fmt]} file is one split already")
    return reader(src, fmt, split, _given_classes(classes), class_order)


def _file_split(name: str) -> str | None:
    match = re.search(r"(train|validation|validate|val|test)", name.lower())
    return match.group(1) if match else None


def _read_something(src: Path, fmt: str, split: str | None, classes: list[str] | None,
                    class_order: str | None) -> Annotation:
    if src.is_dir():
        raise EdgefuseError(f"{src}: a folder; pass the {FORMATS[fmt]} CSV (e.g. "
                            f"{'jester-v1' if fmt == 'jester' else 'something-something-v1'}-validation.csv)")
    rows = parse_something_csv(read_text(src, "annotation file"), str(src))
    prefix = "jester-v1" if fmt == "jester" else "something-something-v1"
    if classes is not None:  # the labels file given elsewhere: the same order rule applies
        names = _ordered(classes, class_order, "sorted")
        rule = ("the given class names sorted (TSM, GSF, TRN)" if (class_order or "sorted") == "sorted"
                else "the given class list's order (AdaFuse, mmaction2)")
    else:
        word = "jester" if fmt == "jester" else "something"
        labels_file = _beside(src, [f"{prefix}-labels.csv", *(p.name for p in sorted(src.parent.glob("*-labels.csv"))
                                                             if p.name != src.name and word in p.name.lower())])
        if labels_file is None:
            raise EdgefuseError(f"{src}: no {prefix}-labels.csv beside it (the class names); put the labels file "
                                "of the download there, or pass --classes FILE")
        file_names = parse_class_lines(read_text(labels_file, "labels file"), str(labels_file))
        names = _ordered(file_names, class_order, "sorted")
        rule = (f"the names of {labels_file.name} sorted (TSM, GSF, TRN)" if (class_order or "sorted") == "sorted"
                else f"the order of {labels_file.name} (AdaFuse, mmaction2)")
    index = class_index(names)
    out = []
    for vid, name, number in rows:
        if name is not None:
            _label_index(name, index, f"{src}:{number}", "the class names")
        out.append(Row(vid, (vid,), name, number))
    return Annotation(fmt, src, _file_split(src.name), tuple(out), tuple(names), rule, (src,))


def _beside(src: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        path = src.parent / name
        if path.is_file():
            return path
    return None


def _read_sthv2(src: Path, fmt: str, split: str | None, classes: list[str] | None,
                class_order: str | None) -> Annotation:
    rows = parse_sthv2_json(read_text(src, "Something-Something V2 JSON"), str(src))
    names: list[str] | None = classes
    rule = "the given class list's order (--classes)"
    if names is None:
        labels = _beside(src, ["something-something-v2-labels.json"])
        if labels is not None:
            from edgefuse.clips.sources import read_classes

            found, _ = read_classes(labels)
            assert found is not None
            names, rule = list(found), f"the indices of {labels.name} (TSM's gen_label_sthv2.py)"
            if class_order == "sorted":
                names, rule = sorted(names), f"the names of {labels.name} sorted"
    if names is None and any(label is not None for _, label, _ in rows):
        raise EdgefuseError(f"{src}: clips are labelled by template; pass --classes FILE, the V2 labels JSON "
                            "(something-something-v2-labels.json), or put it beside the list")
    index = class_index(names or [])
    out = []
    for vid, name, number in rows:
        if name is not None and name not in index:
            raise EdgefuseError(f"{src}: clip {vid}: template {name!r} is not in the classes; pass the matching "
                                "something-something-v2-labels.json")
        out.append(Row(vid, (vid,), name, number))
    return Annotation(fmt, src, _file_split(src.name), tuple(out), tuple(names) if names is not None else None,
                      rule if names is not None else "no class names", (src,))


def _read_kinetics(src: Path, fmt: str, split: str | None, classes: list[str] | None,
                   class_order: str | None) -> Annotation:
    if class_order == "file":
        raise EdgefuseError(f"{src}: Kinetics has no class file to keep the order of; its classes are the label "
                            "names sorted (leave --class-order out, or pass --classes with the model's list)")
    rows = parse_kinetics_csv(read_text(src, "annotation file"), str(src))
    splits = sorted({s for _, _, s, _ in rows if s})
    if split is not None:
        chosen = [r for r in rows if r[2] == split]
        if not chosen:
            raise EdgefuseError(f"{src}: no clip has split {split!r} (the CSV has {', '.join(splits) or 'none'})")
        rows, splits = chosen, [split]
    labels = sorted({label for _, label, _, _ in rows if label is not None})
    if classes is not None:
        names, rule = classes, "the given class list's order (--classes)"
    else:
        names, rule = labels, "the label names sorted (mmaction2 label_map_k400/600/700.txt, TSM's label map)"
    index = class_index(names)
    out = []
    for stem, label, _, number in rows:
        if label is not None:
            _label_index(label, index, f"{src}:{number}", "the class list")
        variants = dict.fromkeys([stem] + ([] if label is None else
                                           [f"{v}/{stem}" for v in (label, label.replace(" ", "_"), _tsm_dir(label))]))
        out.append(Row(stem, tuple(variants), label, number))
    return Annotation(fmt, src, "/".join(splits) or _file_split(src.name), tuple(out),
                      tuple(names) if names else None, rule if names else "no class names", (src,))


def _tsm_dir(label: str) -> str:
    """The class folder name TSM's ``gen_label_kinetics.py`` expects: spaces to ``_``, quotes and brackets dropped."""
    for ch in "\"()'":
        label = label.replace(ch, "")
    return label.replace(" ", "_")


def _read_ucf101(src: Path, fmt: str, split: str | None, classes: list[str] | None,
                 class_order: str | None) -> Annotation:
    folder = src if src.is_dir() else src.parent
    subset, number = _split_choice(split)
    match = _UCF_LIST.fullmatch(src.name) if src.is_file() else None
    if match:
        file_subset, file_number = match.group(1).lower(), int(match.group(2))
        if (subset and subset != file_subset) or (number and number != file_number):
            raise EdgefuseError(f"{src}: --split {split} asks for another split than this file's ({file_subset} "
                                f"{file_number}); pass that split's file or the folder of split files")
        list_file = src
    else:
        want = f"{subset or 'test'}list{number or 1:02d}.txt"
        found = next((p for p in sorted(folder.iterdir()) if p.name.lower() == want.lower()), None)
        if found is None:
            raise EdgefuseError(f"{folder}: no {want} (the UCF101 split file); pass the folder of the download's "
                                "ucfTrainTestlist, or the split file")
        list_file = found
    match = _UCF_LIST.fullmatch(list_file.name)
    assert match
    split_name = f"{match.group(1).lower()} split {int(match.group(2))}"
    class_file = next((p for p in sorted(folder.iterdir()) if p.name.lower() == "classind.txt"), None)
    if classes is not None:
        names, rule = classes, "the given class list's order (--classes)"
    elif class_file is None:
        raise EdgefuseError(f"{list_file}: no classInd.txt beside it (the class numbers); put the download's "
                            "classInd.txt there, or pass --classes FILE")
    else:
        numbered = parse_ucf_classind(read_text(class_file, "class file"), str(class_file))
        names = _ordered(numbered, class_order, "file")
        rule = ("classInd.txt's numbers minus one (TSN, mmaction2)" if (class_order or "file") == "file"
                else "classInd.txt's names sorted")
    index = class_index(names)
    out = []
    for rel, given, line in parse_ucf_list(read_text(list_file, "split file"), str(list_file)):
        where = f"{list_file}:{line}"
        name = rel.split("/")[0]
        label = _label_index(name, index, where, "the class list")
        if given is not None and classes is None and class_file is not None and (class_order or "file") == "file" \
                and given - 1 != label:
            raise EdgefuseError(f"{where}: class number {given} but folder {name!r} is number {label + 1} in "
                                f"{class_file.name}; use the split files and classInd.txt of one download")
        stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
        base = rel.split("/")[-1]
        out.append(Row(stem, tuple(dict.fromkeys([rel, stem, base, base.rsplit(".", 1)[0]])), names[label], line))
    return Annotation(fmt, list_file, split_name, tuple(out), tuple(names), rule,
                      (list_file,) + ((class_file,) if class_file else ()))


def _read_hmdb51(src: Path, fmt: str, split: str | None, classes: list[str] | None,
                 class_order: str | None) -> Annotation:
    if class_order == "file":
        raise EdgefuseError(f"{src}: HMDB51 has no class file to keep the order of; its classes are the class names "
                            "sorted (leave --class-order out, or pass --classes with the model's list)")
    folder = src if src.is_dir() else src.parent
    subset, number = _split_choice(split)
    match = _HMDB_SPLIT.match(src.name) if src.is_file() else None
    if match:
        file_number = int(match.group(2))
        if number and number != file_number:
            raise EdgefuseError(f"{src}: --split {split} asks for split {number} but this file is split {file_number}; "
                                "pass the folder of split files")
        number = file_number
    number = number or 1
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        m = _HMDB_SPLIT.match(path.name)
        if m and int(m.group(2)) == number and path.is_file():
            files[m.group(1)] = path
    if not files:
        raise EdgefuseError(f"{folder}: no <class>_test_split{number}.txt files (HMDB51 splits); pass the folder of "
                            "the download's testTrainMulti_7030_splits")
    if classes is not None:
        names, rule = classes, "the given class list's order (--classes)"
    else:
        names, rule = sorted(files), "the class names sorted (mmaction2)"
    index = class_index(names)
    flag = 1 if subset == "train" else 2
    out = []
    for name, path in sorted(files.items()):
        label = _label_index(name, index, str(path), "the class list")
        for video, mark, line in parse_hmdb_split(read_text(path, "split file"), str(path)):
            if mark != flag:
                continue
            stem = video.rsplit(".", 1)[0]
            out.append(Row(f"{name}/{stem}", tuple(dict.fromkeys([f"{name}/{video}", f"{name}/{stem}", video, stem])),
                           names[label], line))
    if not out:
        raise EdgefuseError(f"{folder}: split {number} marks no clip {flag} ({subset or 'test'}); check the files")
    return Annotation(fmt, src, f"{subset or 'test'} split {number}", tuple(out), tuple(names), rule,
                      tuple(files.values()))


# ---------------------------------------------------------------------------------------------
# Where the clips are

def _find(root: Path, rel: str) -> tuple[Path, str] | None:
    """(path, "frames" | "video") of ``root / rel``: a folder of frames, the video itself, or ``<rel><ext>``."""
    path = root / rel
    try:
        if path.is_dir():
            return path, "frames"
        if path.suffix.lower() in VIDEO_EXTS and path.is_file():
            return path, "video"
        for ext in _LOOKUP_EXTS:
            video = path.with_name(path.name + ext)
            if video.is_file():
                return video, "video"
    except OSError:
        return None
    return None


def _find_row(root: Path, row: Row) -> tuple[Path, str] | None:
    for rel in row.paths:
        found = _find(root, rel)
        if found is not None:
            return found
    return None


def _candidates(ann: Annotation) -> list[Path]:
    """Roots to try: folders named as the archives unpack, the annotation's folder and its parent, their folders."""
    here = ann.path if ann.path.is_dir() else ann.path.parent
    out: list[Path] = []
    for base in (here, here.parent):
        out += [base / name for name in ROOT_NAMES[ann.format]]
        out.append(base)
    for base in (here, here.parent):
        try:
            out += sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
    unique = [p for p in dict.fromkeys(out) if p.is_dir()]
    return unique[:MAX_CANDIDATES]


def _find_root(ann: Annotation) -> Path:
    probes = ann.rows[:PROBES]
    best, hits = None, 0
    for root in _candidates(ann):
        n = sum(_find_row(root, row) is not None for row in probes)
        if n > hits:
            best, hits = root, n
        if n == len(probes):
            break
    if best is None:
        return ann.path if ann.path.is_dir() else ann.path.parent
    log.info("%s: clips found under %s", ann.path, best)
    return best


def _kinetics_index(root: Path) -> dict[str, tuple[Path, str]]:
    """stem -> (path, kind) of the trimmed clips under ``root``, flat or one class folder deep."""
    index: dict[str, tuple[Path, str]] = {}

    def scan(folder: Path, depth: int) -> None:
        try:
            items = list(os.scandir(folder))
        except OSError:
            return
        for item in items:
            if item.name.startswith("."):
                continue
            path = Path(item.path)
            if item.is_dir():
                if _KINETICS_STEM.fullmatch(item.name):
                    index.setdefault(item.name, (path, "frames"))
                elif depth == 0:
                    scan(path, 1)
            elif path.suffix.lower() in VIDEO_EXTS:
                index.setdefault(path.stem, (path, "video"))

    scan(root, 0)
    return index


def locate(ann: Annotation, root: Path | None, *, template: str, frame_start: int, labels: Mapping[str, int],
           allow_outside_root: bool = False) -> Located:
    """The rows of ``ann`` as entries under ``root`` (None: found beside the annotation) labelled through
    ``labels`` (class name -> index); rows whose clip is not there are counted as missing."""
    root = root if root is not None else _find_root(ann)
    index = _kinetics_index(root) if ann.format == "kinetics" else None
    entries, missing = [], []
    for row in ann.rows:
        for rel in row.paths:
            inside_root(rel, root, f"{ann.path}:{row.line}", allow_outside_root)
        if index is not None:
            found = index.get(row.id) or _find_row(root, row)
        else:
            found = _find_row(root, row)
        if found is None:
            missing.append(row.id)
            continue
        path, kind = found
        label = None if row.label is None else labels.get(row.label, labels.get(_loose(row.label)))
        entries.append(Entry(id=row.id, path=str(path), kind=kind, label=label, template=template,
                             frame_start=frame_start))
    if not entries:
        example = ann.rows[0].paths[0]
        raise EdgefuseError(f"{ann.path}: none of its {len(ann.rows)} clips were found under {root} (looked for e.g. "
                            f"{root / example}); pass --root, the folder holding the {ann.name} "
                            f"{'videos' if ann.format in ('kinetics', 'ucf101', 'hmdb51') else 'frame folders'}")
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        log.warning("%s: %d of %d clips are missing under %s and skipped (%s)", ann.path, len(missing),
                    len(ann.rows), root, shown)
    return Located(root, tuple(entries), tuple(missing))


def discover(src: Path, *, root: Path | None, labels: Any, classes: Any, template: str, frame_start: int,
             num_classes: int | None = None, allow_outside_root: bool = False, fmt: str | None = None,
             split: str | None = None, class_order: str | None = None) -> Source:
    """The entries of any clip source but an .npz: a benchmark annotation file (``fmt``: None or "auto" to judge
    it by its name and content, or one of :data:`FORMATS`, read with ``split`` and ``class_order``), else what
    :func:`edgefuse.clips.sources.discover` reads ("tsn" forces a TSN list file)."""
    check_source(src, template)
    bench = detect(src) if fmt in (None, "auto") else None if fmt == "tsn" else fmt
    if bench is None:
        if split is not None or class_order is not None:
            raise EdgefuseError(f"{src}: --split and --class-order apply to benchmark annotation files (Something-"
                                "Something, Jester, Kinetics, UCF101, HMDB51); leave them out for this source")
        return plain_discover(src, root=root, labels=labels, classes=classes, template=template,
                              frame_start=frame_start, num_classes=num_classes, allow_outside_root=allow_outside_root)
    class_names, _, num_classes = class_list(classes, num_classes)
    return _annotation_source(src, bench, root=root, labels=labels, class_names=class_names,
                              num_classes=num_classes, template=template, frame_start=frame_start, split=split,
                              class_order=class_order, allow_outside_root=allow_outside_root)


def _annotation_source(src: Path, fmt: str, *, root: Path | None, labels: Any, class_names: tuple[str, ...] | None,
                       num_classes: int | None, template: str, frame_start: int, split: str | None,
                       class_order: str | None, allow_outside_root: bool) -> Source:
    """A benchmark annotation file as a source: its clips found under
    ``root`` (or beside it), labelled in the benchmark's class order, checked against the model's class count."""
    ann = read_annotation(src, fmt, split=split, classes=class_names, class_order=class_order)
    names = ann.class_names
    if names is not None and num_classes is not None and len(names) != num_classes:
        raise EdgefuseError(f"{ann.path}: the {ann.name} annotation has {len(names)} classes ({ann.class_rule}) but "
                            f"the model has {num_classes}; use a checkpoint trained on {ann.name}, or pass --classes "
                            "with the model's class list")
    index = class_index(names or ())
    found = locate(ann, root, template=template, frame_start=frame_start, labels=index,
                               allow_outside_root=allow_outside_root)
    entries = list(found.entries)
    given = read_labels(labels, index, len(names) if names is not None else num_classes)
    if given:
        entries = [dataclasses.replace(e, label=given.get(e.id, e.label)) for e in entries]
    log.info("%s: %s annotation, %s, %d clips (%d missing), classes: %s", src, ann.name, ann.split or "one split",
             len(ann.rows), len(found.missing), ann.class_rule)
    return Source(kind="ssv2" if fmt == "sthv2" else fmt, entries=tuple(entries), class_names=names,
                  split=ann.split, missing=found.missing, root=str(found.root), class_order=ann.class_rule)
