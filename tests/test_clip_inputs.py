"""Clip inputs users actually hand over: list files in any encoding with a byte-order mark and CRLF ends,
bad labels, paths leaving the root, broken .npz archives, and the clip-reading options reaching the
library through every command that reads clips.

Every bad input goes through the command line (``python -m edgefuse clips SRC -o OUT``, in a subprocess):
exit code 1, exactly one stderr line starting with ``error: ``, no traceback, and no output file left.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_clips import PRE, make_frames, write_frames
from test_footage import tiny_graph

from edgefuse import clips
from edgefuse.cli import cli
from edgefuse.errors import EdgefuseError

LIST = "a 12 0\nb 12 1\nc 12 2\n"


def _npz(path: Path, clips_: np.ndarray | None = None, **arrays: np.ndarray) -> Path:
    data = np.zeros((3, 8, 3, 32, 32), np.float32) if clips_ is None else clips_
    np.savez(path, clips=data, **arrays)
    return path


def _nan(d: Path) -> list[str]:
    c = np.zeros((3, 8, 3, 32, 32), np.float32)
    c[2, 5, 1, 7, 7] = np.nan
    return [str(_npz(d / "nan.npz", c, ids=np.array(["c0", "c1", "c2"])))]


def _inf(d: Path) -> list[str]:
    c = np.zeros((3, 8, 3, 32, 32), np.float32)
    c[0, 0, 0, 0, 0], c[2, 1, 1, 1, 1] = np.inf, -np.inf
    return [str(_npz(d / "inf.npz", c))]


def _text(name: str, content: bytes | str, *extra: str) -> Callable[[Path], list[str]]:
    def build(d: Path) -> list[str]:
        path = d / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return [str(path), *(e.format(d=d) for e in extra)]
    return build


def _with_classes(name: str, content: str, classes: str, *extra: str) -> Callable[[Path], list[str]]:
    def build(d: Path) -> list[str]:
        (d / f"{name}.classes").write_text(classes)
        return _text(name, content, "--classes", str(d / f"{name}.classes"), *extra)(d)
    return build


def _graph(d: Path) -> list[str]:
    (d / "g.txt").write_text("a 12 0\nb 12 3\n")
    return [str(d / "g.txt"), "--model", str(tiny_graph(d / "g.onnx", num_classes=3))]


# name -> (what builds the input and returns the arguments after 'edgefuse clips', the error's text)
BAD: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    # list files
    "latin1": (_text("latin1.txt", b"caf\xe9 12 0\n"), "latin1.txt:1: the list file is not UTF-8 (byte 0xe9)"),
    "utf16_no_bom": (_text("u16.txt", LIST.encode("utf-16-le")), "u16.txt: the list file holds NUL bytes"),
    "bad_after_bom": (_text("bom.txt", b"\xef\xbb\xbfa 12 0\n\xff\xfe\n"), "starts with a utf-8 byte-order mark but"),
    "negative_label": (_text("neg.txt", "a 12 0\nb 12 -1\n"), "neg.txt:2: label -1 is negative"),
    "label_over_classes": (_with_classes("over.txt", "a 12 0\nb 12 3\n", "x\ny\nz\n"),
                           "over.txt:2: label 3 is out of range for 3 classes (0..2)"),
    "label_over_model": (_graph, "g.txt:2: label 3 is out of range for 3 classes (0..2)"),
    "missing_label": (_text("miss.txt", "a 12 0\nb 12\n"), "miss.txt:2: no label, but line 1 has one"),
    "missing_first_label": (_text("miss1.txt", "a 12\nb 12 1\n"), "miss1.txt:1: no label, but line 2 has one"),
    "parent_path": (_text("up.txt", "a 12 0\n../../etc/x 12 1\n"), "up.txt:2: '../../etc/x' leaves the root"),
    "absolute_path": (_text("abs.txt", "/data/x.mp4 12 0\n"), "abs.txt:1: '/data/x.mp4' leaves the root"),
    "text_frame_count": (_text("count.txt", "a twelve 0\n"), "count.txt:1: expected 'relative_path num_frames label'"),
    "negative_frame_count": (_text("negc.txt", "a -5 0\n"), "negc.txt:1: frame count -5 is negative"),
    "empty_list": (_text("empty.txt", "\r\n\n"), "empty.txt: the list file has no entries"),
    "empty_classes": (_with_classes("ec.txt", LIST, "\n"), "the class file is empty"),
    "duplicate_class": (_with_classes("dc.txt", LIST, "x\ny\nx\n"), "class 'x' is listed twice"),
    "image_as_list": (_text("frame.png", b"\x89PNG\r\n\x1a\n" + bytes(64)), "frame.png: expected a list file (text)"),
    "ssv2_without_classes": (_text("v2.json", json.dumps([{"id": "1", "template": "Pushing [something]"}])),
                             "clips are labelled by template; pass --classes FILE"),
    "ssv2_labels_as_source": (_text("labels.json", json.dumps({"Pushing something": "0"})),
                              "this is a class-index JSON"),
    "frame_template": (_text("ft.txt", LIST, "--frame-template", "frame.jpg"), "must have exactly one"),
    # .npz archives
    "npz_nan": (_nan, "nan.npz: clip 2 (id 'c2') holds NaN or infinite values; re-create the .npz"),
    "npz_inf": (_inf, "inf.npz: clip 0 (id '0') holds NaN or infinite values (2 of 3 clips do)"),
    "npz_negative_label": (lambda d: [str(_npz(d / "nl.npz", labels=np.array([0, -3, 1])))],
                           "nl.npz: clip 1 (id '1'): label -3 is negative"),
    "npz_label_over_names": (lambda d: [str(_npz(d / "ol.npz", labels=np.array([0, 5, 1]),
                                                 class_names=np.array(["x", "y"])))],
                             "ol.npz: clip 1 (id '1'): label 5 is out of range for 2 classes"),
    "npz_float_labels": (lambda d: [str(_npz(d / "fl.npz", labels=np.array([0.0, np.nan, 1.0])))],
                         "fl.npz: labels are float64"),
    "npz_no_clips": (lambda d: [str(np.savez(d / "nc.npz", x=np.zeros(3)) or d / "nc.npz")], "no 'clips' array"),
    "npz_not_zip": (_text("junk.npz", b"not a zip"), "junk.npz: not a readable .npz archive"),
    "npz_ids_mismatch": (lambda d: [str(_npz(d / "ids.npz", ids=np.array(["a", "b"])))], "3 clips but 2 ids"),
    "npz_text_clips": (lambda d: [str(_npz(d / "tc.npz", np.array([["x"]])))], "clips are <U1, not numbers"),
    "npz_empty": (lambda d: [str(_npz(d / "e.npz", np.zeros((0, 8, 3, 32, 32), np.float32)))], "holds no clips"),
    # the output
    "output_not_npz": (_text("out.txt", LIST, "-o", "{d}/clips.txt"), "clips.txt: the output is an .npz archive"),
}


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgefuse", "clips", *args], check=False, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """Every bad input through the command line, several at a time (each is its own process)."""
    jobs = {}
    for name, (build, _) in BAD.items():
        d = tmp_path_factory.mktemp(name)
        for k in "abc":
            write_frames(d / k, make_frames(12))
        args = build(d)
        jobs[name] = (d, args if "-o" in args else [*args, "-o", str(d / "out.npz")])
    with ThreadPoolExecutor(4) as pool:
        done = dict(zip(jobs, pool.map(lambda job: _run(job[1]), jobs.values())))
    return {name: (jobs[name][0], done[name]) for name in jobs}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_error_line(name: str, bad_runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]]
                                     ) -> None:
    folder, proc = bad_runs[name]
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert BAD[name][1] in lines[0], lines[0]
    assert not list(folder.glob("*.npz.*")) and not (folder / "out.npz").exists()  # nothing written, no temp file
    assert not (folder / "clips.txt").exists()


# ---------------------------------------------------------------------------------------------
# Encodings and line ends

@pytest.mark.parametrize("encoding,bom", [("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"),
                                          ("utf-16-be", b"\xfe\xff"), ("utf-32-le", b"\xff\xfe\x00\x00"),
                                          ("utf-32-be", b"\x00\x00\xfe\xff"), ("utf-8", b"")])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_list_and_class_files_in_any_encoding_with_bom(tmp_path: Path, encoding: str, bom: bytes,
                                                       newline: str) -> None:
    for k in ("clip a", "clip é"):  # a space and a non-ASCII letter in the paths
        write_frames(tmp_path / k, make_frames(12, phase=len(k)))
    lines = ["clip a 12 0", "clip é 12 1"]
    (tmp_path / "list.txt").write_bytes(bom + newline.join(lines).encode(encoding) + newline.encode(encoding))
    (tmp_path / "classes.txt").write_bytes(bom + newline.join(["pushing", "pulling"]).encode(encoding))
    s = clips.open(tmp_path / "list.txt", PRE, classes=tmp_path / "classes.txt", workers=1, progress=False)
    assert s.ids == ["clip a", "clip é"] and s.labels == [0, 1] and not s.skipped
    assert s.class_names == ("pushing", "pulling")


def test_outside_root_allowed_by_flag(tmp_path: Path) -> None:
    write_frames(tmp_path / "shared" / "x", make_frames(12))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "l.txt").write_text(f"../shared/x 12 0\n{tmp_path / 'shared' / 'x'} 12 1\n")
    with pytest.raises(EdgefuseError, match="l.txt:1: '../shared/x' leaves the root"):
        clips.open(tmp_path / "lists" / "l.txt", PRE, workers=1, progress=False)
    s = clips.open(tmp_path / "lists" / "l.txt", PRE, workers=1, progress=False, allow_outside_root=True)
    assert len(s) == 2 and not s.skipped and torch.equal(s.stack()[0][0], s.stack()[0][1])
    res = CliRunner().invoke(cli, ["clips", str(tmp_path / "lists" / "l.txt"), "--allow-outside-root", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["read"] == 2


def test_labels_checked_against_classes(tmp_path: Path) -> None:
    for k in "ab":
        write_frames(tmp_path / k, make_frames(12))
    (tmp_path / "ok.txt").write_text("a 12 0\nb 12 2\n")
    s = clips.open(tmp_path / "ok.txt", PRE, classes=["x", "y", "z"], workers=1, progress=False)
    assert s.labels == [0, 2]  # the last class is fine
    with pytest.raises(EdgefuseError, match="ok.txt:2: label 2 is out of range for 2 classes"):
        clips.open(tmp_path / "ok.txt", PRE, num_classes=2, workers=1, progress=False)
    with pytest.raises(EdgefuseError, match="the class list has 3 classes but the model has 4"):
        clips.open(tmp_path / "ok.txt", PRE, classes=["x", "y", "z"], num_classes=4, workers=1, progress=False)
    (tmp_path / "none.txt").write_text("a 12\nb 12\n")  # no labels at all: fine
    assert clips.open(tmp_path / "none.txt", PRE, workers=1, progress=False).labels == [None, None]


# ---------------------------------------------------------------------------------------------
# The clip-reading options reach the library from every command that reads clips

@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    for k in "abc":
        write_frames(tmp_path / "frames" / k, make_frames(12, phase=ord(k)), template="img_{:05d}.jpg")
    (tmp_path / "frames" / "list.txt").write_text("a 12 0\nb 12 1\nc 12 3\n")  # 3 is out of range for 3 classes
    (tmp_path / "frames" / "good.txt").write_text("a 12 0\nb 12 1\nc 12 2\n")
    (tmp_path / "classes.txt").write_text("x\ny\nz\n")
    return tmp_path


def test_commands_pass_clip_options_through(labelled: Path) -> None:
    graph = str(tiny_graph(labelled / "g.onnx", num_classes=3))  # the class list's count: the model's is checked too
    lst, classes = str(labelled / "frames" / "list.txt"), str(labelled / "classes.txt")
    opts = ["--classes", classes, "--frame-template", "img_%05d.jpg"]
    runner = CliRunner()
    want = "list.txt:3: label 3 is out of range for 3 classes"  # only with --classes: the option arrived
    for args in (["calibrate", graph, "--clips", lst, *opts, "-o", str(labelled / "q.onnx"),
                  "--cache-dir", str(labelled / "cache")],
                 ["validate", graph, "--reference", graph, "--clips", lst, *opts],
                 ["device-clips", graph, "--clips", lst, *opts, "-o", str(labelled / "dev")]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 1 and want in res.output, (args[0], res.output)
    good = str(labelled / "frames" / "good.txt")  # calibrate's --holdout is read like --clips
    res = runner.invoke(cli, ["calibrate", graph, "--clips", good, "--holdout", lst, *opts, "-o",
                              str(labelled / "q.onnx"), "--cache-dir", str(labelled / "cache")])
    assert res.exit_code == 1 and want in res.output, res.output
    res = runner.invoke(cli, ["device-clips", graph, "--clips", good, *opts, "--sampling", "time",
                              "-o", str(labelled / "dev")])  # frame template passed through: every clip read
    assert res.exit_code == 0, res.output
    facts = json.loads((labelled / "dev" / "manifest.json").read_text())["edgefuse"]
    assert facts["labels"] == [0, 1, 2] and facts["source_class_names"] == ["x", "y", "z"]  # --classes arrived
