"""Benchmark annotation files as downloaded: Something-Something V1 / V2, Jester, Kinetics, UCF101, HMDB51.

Each test writes the files in the benchmark's exact format (with the odd cases the real downloads have: Windows
line ends, a header row or none, quoted class names with commas, missing videos, ids with leading zeros) and a few
clips beside them (frames as JPEG, videos with PyAV), then reads them through ``clips.open`` and the command line.
The class order of each benchmark is checked against ``tests/data/benchmark_annotations/class_order.json``, which
holds the official class names and says which repository, file and code each order comes from.
"""
from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_clips import make_frames, write_frames, write_video
from test_footage import tiny_graph

from edgefuse import clips
from edgefuse.cli import cli
from edgefuse.clips import benchmarks
from edgefuse.errors import EdgefuseError

ORDER = json.loads((Path(__file__).parent / "data" / "benchmark_annotations" / "class_order.json").read_text())
PRE = clips.Preprocess(input_size=32, scale_size=40)
N = 10  # classes in every written benchmark: the test model's


def _crlf(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


# ---------------------------------------------------------------------------------------------
# Writers: (annotation source, {clip id: class name}, ids missing, class names in the official order)

Written = tuple[Path, dict[str, str], list[str], list[str]]


def write_something(tmp: Path, fmt: str = "sthv1", more: int = 0) -> Written:
    prefix = "something-something-v1" if fmt == "sthv1" else "jester-v1"
    file_order = ORDER[fmt]["labels_file_order"][:N - 1] + (
        ["Putting something, something and something on the table"] if fmt == "sthv1" else ["Doing other things"])
    (tmp / f"{prefix}-labels.csv").write_bytes(_crlf(file_order))  # no header, Windows line ends
    clips_ = {"007": file_order[-1], "123": file_order[0], "0042": file_order[3], "9": file_order[5]}
    clips_.update({str(900 + k): file_order[k % N] for k in range(more)})  # enough for calibrate
    for k, vid in enumerate(v for v in clips_ if v != "9"):  # "9" is missing
        write_frames(tmp / f"20bn-{prefix}" / vid, make_frames(10, phase=k))
    (tmp / f"{prefix}-validation.csv").write_bytes(_crlf([f"{i};{name}" for i, name in clips_.items()]))
    return tmp / f"{prefix}-validation.csv", clips_, ["9"], sorted(file_order)


def write_sthv2(tmp: Path, more: int = 0) -> Written:
    names = ORDER["sthv2"]["official_order"][:N]
    (tmp / "something-something-v2-labels.json").write_text(json.dumps({n: str(i) for i, n in enumerate(names)}))
    templates = {names[1]: "Attaching [something] to [something]", names[4]: "Burying [something] in [something]",
                 names[0]: "Approaching [something] with your camera"}
    assert all(t.replace("[", "").replace("]", "") == n for n, t in templates.items())
    clips_ = {"00017": names[1], "2045": names[4], "311": names[0]}
    clips_.update({str(800 + k): list(templates)[k % 3] for k in range(more)})
    items = [{"id": vid, "label": name.lower(), "template": templates[name], "placeholders": ["pen"]}
             for vid, name in clips_.items()]
    (tmp / "something-something-v2-validation.json").write_text(json.dumps(items))
    for k, vid in enumerate(v for v in clips_ if v != "311"):  # 311 is missing
        write_video(tmp / "20bn-something-something-v2" / f"{vid}.mp4", make_frames(10, phase=k))
    return tmp / "something-something-v2-validation.json", clips_, ["311"], names


KINETICS = ["abseiling", "air drumming", "passing American football (in game)", "massaging person's head",
            "skiing (not slalom or crosscountry)", "skiing crosscountry", "cooking, on campfire", "zumba",
            "dancing \"ballet\"", "yoga"]  # a comma and quotes, as re-saved CSVs hold them


def write_kinetics(tmp: Path, more: int = 0) -> Written:
    rows = [("abseiling", "-0aBc_dE", 0, 10), ("cooking, on campfire", "0012xyz", 14, 24),
            ("skiing crosscountry", "a_b-c", 3, 13), ("zumba", "Zz9", 100, 110)]
    extra = [(KINETICS[k % N], f"x{k}", 0, 10) for k in range(more)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # quotes the names holding commas or quotes
    writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
    for label, yid, start, end in rows + extra:
        writer.writerow([label, yid, start, end, "val", 0])
    for i, name in enumerate(KINETICS):  # every class listed, its clip missing: the class list is the CSV's
        writer.writerow([name, f"miss{i}", 1, 11, "val", 0])
    (tmp / "kinetics_val.csv").write_text(out.getvalue(), newline="")
    write_video(tmp / "videos" / "abseiling" / "-0aBc_dE_000000_000010.mp4", make_frames(10, phase=1))
    write_video(tmp / "videos" / "cooking,_on_campfire" / "0012xyz_000014_000024.mp4", make_frames(10, phase=2))
    write_video(tmp / "videos" / "a_b-c_000003_000013.mp4", make_frames(10, phase=3))  # flat, beside the folders
    for label, yid, _, _ in extra:
        write_video(tmp / "videos" / f"{yid}_000000_000010.mp4", make_frames(10, phase=len(yid)))
    clips_ = {f"{yid}_{s:06d}_{e:06d}": label for label, yid, s, e in rows + extra}
    missing = ["Zz9_000100_000110"] + [f"miss{i}_000001_000011" for i in range(len(KINETICS))]
    return tmp / "kinetics_val.csv", clips_, missing, sorted(KINETICS)


UCF = ORDER["ucf101"]["official_order"][:N]  # ApplyEyeMakeup ... BaseballPitch: classInd's order


def write_ucf101(tmp: Path, more: int = 0) -> Written:
    lists = tmp / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_bytes(_crlf([f"{i + 1} {name}" for i, name in enumerate(UCF)]))
    test = [f"{UCF[c]}/v_{UCF[c]}_g0{g}_c01.avi" for c, g in ((0, 1), (3, 2), (7, 1), (9, 3))]
    test[3:3] = [f"{UCF[k % N]}/v_{UCF[k % N]}_g{10 + k}_c02.avi" for k in range(more)]
    (lists / "testlist01.txt").write_bytes(_crlf(test))
    (lists / "trainlist01.txt").write_bytes(_crlf([f"{UCF[2]}/v_{UCF[2]}_g08_c01.avi 3"]))
    for k, rel in enumerate(test[:-1]):  # the last one is missing
        write_video(tmp / "UCF-101" / rel, make_frames(10, phase=k))
    clips_ = {rel[:-4]: rel.split("/")[0] for rel in test}
    return lists, clips_, [test[-1][:-4]], UCF


HMDB = ORDER["hmdb51"]["official_order"][:N]


def write_hmdb51(tmp: Path, more: int = 0) -> Written:
    splits = tmp / "testTrainMulti_7030_splits"
    splits.mkdir()
    clips_ = {}
    for c, name in enumerate(HMDB):
        flags = ((1, 2, 0) if c % 3 == 0 else (1, 1, 0)) + (2,) * (more // N + (c < more % N))
        lines = [f"{name}_clip_{k}.avi {flag}" for k, flag in enumerate(flags)]
        (splits / f"{name}_test_split1.txt").write_bytes(_crlf(lines))
        (splits / f"{name}_test_split2.txt").write_text(f"{name}_clip_0.avi 2 \n")
        clips_.update({f"{name}/{name}_clip_{k}": name for k, flag in enumerate(flags) if flag == 2})
    for k, cid in enumerate(list(clips_)[:-1]):  # the last one is missing
        write_video(tmp / "hmdb51_org" / f"{cid}.avi", make_frames(10, phase=k))
    return splits, clips_, [list(clips_)[-1]], sorted(HMDB)


WRITERS: dict[str, Callable[..., Written]] = {
    "sthv1": write_something, "jester": lambda t, more=0: write_something(t, "jester", more), "sthv2": write_sthv2,
    "kinetics": write_kinetics, "ucf101": write_ucf101, "hmdb51": write_hmdb51}
KINDS = {"sthv1": "sthv1", "jester": "jester", "sthv2": "ssv2", "kinetics": "kinetics", "ucf101": "ucf101",
         "hmdb51": "hmdb51"}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Written]:
    return {fmt: write(tmp_path_factory.mktemp(fmt)) for fmt, write in WRITERS.items()}


# ---------------------------------------------------------------------------------------------
# Each format reads with the right labels and class names

@pytest.mark.parametrize("fmt", list(WRITERS))
def test_format_detected_and_read_with_its_classes(fmt: str, written: dict[str, Written]) -> None:
    src, labelled, missing, names = written[fmt]
    assert benchmarks.detect(src) == fmt
    got = clips.open(clips.ClipSource.of(src), PRE, clips.Sampling(num_segments=4), workers=1, progress=False)
    assert got.kind == KINDS[fmt] and got.class_names == tuple(names)
    assert got.missing == missing and len(got) == len(set(labelled) - set(missing))
    want = {i: names.index(name) for i, name in labelled.items() if i not in missing}
    assert dict(zip(got.ids, got.labels)) == want
    assert got.split is not None and got.class_order
    forced = clips.open(src, PRE, clips.Sampling(num_segments=4), format=fmt, workers=1, progress=False)
    assert forced.ids == got.ids and forced.labels == got.labels


def test_ids_keep_leading_zeros_and_order_is_the_files(written: dict[str, Written]) -> None:
    got = clips.open(written["sthv1"][0], PRE, clips.Sampling(num_segments=4), workers=1, progress=False)
    assert got.ids == ["007", "123", "0042"]  # the CSV's order, ids as written
    kin = clips.open(written["kinetics"][0], PRE, clips.Sampling(num_segments=4), workers=1, progress=False)
    assert kin.ids == ["-0aBc_dE_000000_000010", "0012xyz_000014_000024", "a_b-c_000003_000013"]
    assert kin.split == "val" and len(kin.missing) == N + 1


def test_class_order_file_is_adafuses(written: dict[str, Written]) -> None:
    src, labelled, _, names = written["sthv1"]
    file_order = (src.parent / "something-something-v1-labels.csv").read_text().splitlines()
    got = clips.open(clips.ClipSource.of(src, class_order="file"), PRE, clips.Sampling(num_segments=4), workers=1,
                     progress=False)
    assert got.class_names == tuple(file_order) != tuple(names)
    assert got.labels == [file_order.index(labelled[i]) for i in got.ids]


def test_split_choice_ucf101_and_hmdb51(written: dict[str, Written]) -> None:
    lists = written["ucf101"][0]
    train = benchmarks.read_annotation(lists, "ucf101", split="train1")
    assert train.split == "train split 1" and [r.id for r in train.rows] == [f"{UCF[2]}/v_{UCF[2]}_g08_c01"]
    one_file = benchmarks.read_annotation(lists / "testlist01.txt", "ucf101")
    assert one_file.split == "test split 1" and len(one_file.rows) == 4
    with pytest.raises(EdgefuseError, match="no testlist02.txt"):
        benchmarks.read_annotation(lists, "ucf101", split="2")
    splits = written["hmdb51"][0]
    test2 = benchmarks.read_annotation(splits, "hmdb51", split="2")
    assert test2.split == "test split 2" and len(test2.rows) == N  # every class's clip_0 is test in split 2
    train1 = benchmarks.read_annotation(splits / f"{HMDB[0]}_test_split1.txt", "hmdb51", split="train")
    assert train1.split == "train split 1" and len(train1.rows) == 4 + 2 * 6  # flag 1: one clip in 4 classes, two in 6


def test_pure_parsers_on_odd_lines() -> None:
    text = 'label,youtube_id,time_start,time_end,split\r\n"a, b",x1,1.0,11.0,train\r\n\r\n' \
           '"say ""hi""",--y,0,10,train\r\n'
    assert benchmarks.parse_kinetics_csv(text, "k.csv") == [("x1_000001_000011", "a, b", "train", 2),
                                                            ("--y_000000_000010", 'say "hi"', "train", 4)]
    assert benchmarks.parse_kinetics_csv("youtube_id,time_start,time_end,split\nq,5,15,test\n", "t.csv") == \
        [("q_000005_000015", None, "test", 2)]  # the test split: no labels
    assert benchmarks.parse_something_csv("01;Holding something\r\n\r\n2;\"Putting a, b\"\r\n", "s.csv") == \
        [("01", "Holding something", 1), ("2", "Putting a, b", 3)]
    assert benchmarks.parse_ucf_classind("2 B\r\n1 A\r\n", "c.txt") == ["A", "B"]
    assert benchmarks.parse_hmdb_split("x.avi 1 \r\ny.avi 0\r\n", "h.txt") == [("x.avi", 1, 1), ("y.avi", 0, 2)]


# ---------------------------------------------------------------------------------------------
# The class order of each benchmark, against the official names

def test_something_v1_and_jester_order_is_sorted_labels_file(tmp_path: Path) -> None:
    for fmt, prefix in (("sthv1", "something-something-v1"), ("jester", "jester-v1")):
        file_order = ORDER[fmt]["labels_file_order"]
        (tmp_path / f"{prefix}-labels.csv").write_bytes(_crlf(file_order))
        (tmp_path / f"{prefix}-train.csv").write_bytes(_crlf([f"{i};{n}" for i, n in enumerate(file_order)]))
        src = tmp_path / f"{prefix}-train.csv"
        assert benchmarks.detect(src) == fmt
        ann = benchmarks.read_annotation(src, fmt)
        assert list(ann.class_names or ()) == sorted(file_order) and ann.split == "train"
        assert list(benchmarks.read_annotation(src, fmt, class_order="file").class_names or ()) == file_order
    v1 = ORDER["sthv1"]["evidence"]  # clip 100218: 134 in TSM's lists, 31 in AdaFuse's
    (tmp_path / "something-something-v1-validation.csv").write_text(f"{v1['clip']};{v1['class']}\n")
    for order, want in ((None, v1["index_sorted"]), ("file", v1["index_file"])):
        ann = benchmarks.read_annotation(tmp_path / "something-something-v1-validation.csv", "sthv1",
                                         class_order=order)
        assert benchmarks.class_index(ann.class_names or ())[ann.rows[0].label or ""] == want
    tsm_jester_demo = sorted(ORDER["jester"]["labels_file_order"])  # online_demo/main.py's list
    assert tsm_jester_demo[0] == "Doing other things" and tsm_jester_demo[26] == "Zooming Out With Two Fingers"


def test_something_v2_order_is_the_labels_json(tmp_path: Path) -> None:
    names = ORDER["sthv2"]["official_order"]
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps({n: str(i) for i, n in enumerate(names)}))
    (tmp_path / "v.json").write_text(json.dumps([{"id": "1", "template": "Pushing [something] from left to right"}]))
    ann = benchmarks.read_annotation(tmp_path / "v.json", "sthv2")
    assert list(ann.class_names or ()) == names
    assert names.index(ann.rows[0].label or "") == 93  # the V2 JSON's index of that template


@pytest.mark.parametrize("version", ["400", "600", "700"])
def test_kinetics_order_is_the_sorted_label_names(tmp_path: Path, version: str) -> None:
    names = ORDER["kinetics"]["official_order"][version]
    shuffled = names[:]
    random.Random(int(version)).shuffle(shuffled)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
    writer.writerows([name, f"id{i:05d}", i, i + 10, "train"] for i, name in enumerate(shuffled))
    (tmp_path / "train.csv").write_text(out.getvalue(), newline="")
    assert benchmarks.detect(tmp_path / "train.csv") == "kinetics"
    ann = benchmarks.read_annotation(tmp_path / "train.csv", "kinetics")
    assert list(ann.class_names or ()) == names and len(names) == int(version)


def test_ucf101_order_is_classind_and_hmdb51_sorted(tmp_path: Path) -> None:
    ucf = ORDER["ucf101"]["official_order"]
    (tmp_path / "classInd.txt").write_bytes(_crlf([f"{i + 1} {n}" for i, n in enumerate(ucf)]))
    (tmp_path / "testlist01.txt").write_bytes(_crlf([f"{n}/v_{n}_g01_c01.avi" for n in reversed(ucf)]))
    ann = benchmarks.read_annotation(tmp_path, "ucf101")
    assert list(ann.class_names or ()) == ucf != sorted(ucf)  # classInd ignores case: HammerThrow / Hammering
    hmdb = ORDER["hmdb51"]["official_order"]
    folder = tmp_path / "splits"
    folder.mkdir()
    for n in reversed(hmdb):
        (folder / f"{n}_test_split1.txt").write_text(f"{n}_a.avi 2\n")
    ann = benchmarks.read_annotation(folder, "hmdb51")
    assert list(ann.class_names or ()) == hmdb and ann.rows[0].id == f"{hmdb[0]}/{hmdb[0]}_a"


# ---------------------------------------------------------------------------------------------
# The command line: edgefuse clips summarises; bad input is one error line

def _edgefuse(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgefuse", *map(str, args)], check=False, capture_output=True,
                          text=True, timeout=120)


def test_clips_command_summarises_a_benchmark(written: dict[str, Written]) -> None:
    src, _, missing, _ = written["kinetics"]
    res = CliRunner().invoke(cli, ["clips", str(src), "--segments", "4", "--size", "32", "--workers", "1"])
    assert res.exit_code == 0, res.output
    text = res.output
    assert "kinetics_val.csv (Kinetics CSV, val): read 3 of 3 clips" in text
    assert f"found     3 of {3 + len(missing)} listed clips under {src.parent / 'videos'}; missing {len(missing)} " \
           "(Zz9_000100_000110, miss0_000001_000011, miss1_000001_000011" in text
    assert "order     the label names sorted" in text and f"classes   {N}: abseiling 1" in text
    res = CliRunner().invoke(cli, ["clips", str(written["hmdb51"][0]), "--split", "test1", "--json", "--segments",
                                   "4", "--size", "32", "--workers", "1"])
    report = json.loads(res.stdout)
    assert report["kind"] == "hmdb51" and report["split"] == "test split 1" and report["class_names"] == sorted(HMDB)
    assert report["missing"] == written["hmdb51"][2] and report["planned"] == 3


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_graph(tmp_path_factory.mktemp("g") / "g3.onnx", segments=4, num_classes=3)


@pytest.mark.parametrize("args, error", [
    (lambda w, g: [w["ucf101"][0], "--model", g], ("the UCF101 annotation has 10 classes (classInd.txt's numbers "
                                                   "minus one (TSN, mmaction2)) but the model has 3")),
    (lambda w, g: [w["sthv1"][0], "--split", "2"], "--split picks a split of UCF101 / HMDB51 split files"),
    (lambda w, g: [w["kinetics"][0], "--class-order", "file"], "Kinetics has no class file to keep the order of"),
    (lambda w, g: [w["ucf101"][0], "--split", "test7"], "no testlist07.txt"),
    (lambda w, g: [w["ucf101"][0], "--split", "x"], "--split 'x': expected a split number"),
])
def test_bad_benchmark_input_is_one_error_line(args, error, written, three_classes) -> None:  # type: ignore[no-untyped-def]
    res = _edgefuse("clips", *args(written, three_classes))
    assert res.returncode == 1 and error in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr


@pytest.mark.parametrize("name, content, error", [
    ("something-something-v1-validation.csv", "1;Holding something\n", "no something-something-v1-labels.csv beside"),
    ("jester-v1-validation.csv", "1;Swiping Left\n2 Swiping Right\n", "jester-v1-validation.csv:2: expected 'id;label'"),
    ("kinetics_val.csv", "label,youtube_id,time_start,time_end,split\nyoga,a,ten,20,val\n",
     "kinetics_val.csv:2: time_start 'ten' is not a number"),
    ("kinetics_val.csv", "label,youtube_id,time_start,time_end,split\nyoga, dance,a,10,20,val\n",
     "kinetics_val.csv:2: time_start 'a' is not a number"),  # an unquoted name with a comma shifts the columns
    ("trainlist01.txt", "A/v_A_g01_c01.avi 2\n", "trainlist01.txt:1: class number 2 but folder 'A' is number 1"),
    ("s_test_split1.txt", "x.avi 3\n", "s_test_split1.txt:1: expected 'video.avi 0|1|2'"),
])
def test_bad_annotation_lines_name_file_and_line(tmp_path: Path, name: str, content: str, error: str) -> None:
    (tmp_path / name).write_text(content)
    (tmp_path / "classInd.txt").write_text("1 A\n2 B\n")
    (tmp_path / "jester-v1-labels.csv").write_text("Swiping Left\nSwiping Right\n")
    fmt = {"trainlist01.txt": "ucf101", "s_test_split1.txt": "hmdb51"}.get(name)
    with pytest.raises(EdgefuseError, match=error.replace("(", r"\(").replace(")", r"\)")):
        clips.open(tmp_path / name, PRE, format=fmt, workers=1, progress=False)


def test_missing_everything_says_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "jester-v1-labels.csv").write_text("Swiping Left\nSwiping Right\n")
    (tmp_path / "jester-v1-validation.csv").write_text("5;Swiping Left\n")
    with pytest.raises(EdgefuseError, match=r"none of its 1 clips were found under .*; pass --root"):
        clips.open(tmp_path / "jester-v1-validation.csv", PRE, workers=1, progress=False)


def test_root_given_and_tsn_forced(written: dict[str, Written], tmp_path: Path) -> None:
    src = written["sthv1"][0]
    got = clips.open(src, PRE, clips.Sampling(num_segments=4), root=src.parent / "20bn-something-something-v1",
                     workers=1, progress=False)
    assert got.root == str(src.parent / "20bn-something-something-v1") and len(got) == 3
    (tmp_path / "list.txt").write_text("a 12 0\n")
    with pytest.raises(EdgefuseError, match="--split and --class-order apply to benchmark annotation files"):
        clips.open(tmp_path / "list.txt", PRE, split="1", workers=1, progress=False)


# ---------------------------------------------------------------------------------------------
# calibrate and validate on each family, from the command line

@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgefuse.export.api import export
    from edgefuse.export.config import ExportConfig

    out = tmp_path_factory.mktemp("model") / "tsm.onnx"
    return export(ExportConfig(model="tsm_resnet18", output=out, num_classes=N, size=56, segments=4,
                               options={"width": 0.25})).path


@pytest.mark.parametrize("fmt", ["sthv1", "jester", "sthv2", "kinetics", "ucf101", "hmdb51"])
def test_calibrate_and_validate_read_each_family(fmt: str, model: Path, tmp_path: Path) -> None:
    src, labelled, missing, names = WRITERS[fmt](tmp_path, more=8)  # calibrate needs 8 clips
    runner = CliRunner()
    res = runner.invoke(cli, ["calibrate", str(model), "--clips", str(src), "--workers", "1", "--num-holdout", "2",
                              "--method", "minmax",
                              "-o", str(tmp_path / "q.onnx"), "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "q.onnx").is_file()
    res = runner.invoke(cli, ["validate", str(model), "--reference", str(model), "--clips", str(src), "--workers",
                              "1", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["verdict"] == "pass" and report["result"]["clips"] == len(set(labelled) - set(missing))
    assert report["class_names"] == names  # the annotation's names, in the official order
    assert {row["class"] for row in report["result"]["per_class"]} == {labelled[i] for i in labelled
                                                                       if i not in missing}


def test_adafuse_checkpoint_graph_reads_something_in_file_order(written: dict[str, Written], model: Path,
                                                                  tmp_path: Path) -> None:
    """A graph exported from an official AdaFuse checkpoint (its metadata's checkpoint_source) reads Something V1
    in the labels file's order, as AdaFuse's classInd.txt numbers it, without --class-order; the graph of any other
    checkpoint reads the sorted order; an explicit --class-order wins over the graph's."""
    import onnx

    from edgefuse.graph.metadata import read_metadata, set_metadata

    src, labelled, _, names = written["sthv1"]
    file_order = (src.parent / "something-something-v1-labels.csv").read_text().splitlines()
    graph = onnx.load(str(model))
    ada = tmp_path / "adafuse.onnx"
    onnx.save(set_metadata(graph, {**read_metadata(graph), "checkpoint_source": "adafuse"}), str(ada))

    def read(g: Path, *extra: str) -> dict:  # type: ignore[type-arg]
        res = CliRunner().invoke(cli, ["clips", str(src), "--model", str(g), "--json", "--workers", "1", *extra])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    assert read(ada)["class_names"] == file_order != names
    assert read(model)["class_names"] == names
    assert read(ada, "--class-order", "sorted")["class_names"] == names
    assert clips.model_reading({"num_classes": 10, "checkpoint_source": "adafuse"}) == {
        "num_classes": 10, "default_class_order": "file"}
    assert clips.model_reading({"checkpoint_source": "tsm"})["default_class_order"] is None


def test_command_line_format_choices_are_the_readers() -> None:
    """--format's choices are written out in the CLI (so --help imports no decoder): they must be the formats read."""
    from edgefuse.cli.options import CLIP_FORMATS

    assert CLIP_FORMATS == ("auto", "tsn", *benchmarks.FORMATS)
