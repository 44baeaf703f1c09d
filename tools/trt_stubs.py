"""Make NVIDIA's TensorRT type stubs (the ``tensorrt-stubs`` package) usable by mypy.

The package puts ``tensorrt/__init__.pyi`` and ``tensorrt_bindings/tensorrt.pyi`` into
site-packages without a ``py.typed`` marker (so mypy ignores them), and its generated
``tensorrt.pyi`` has a few lines that are not valid Python (a parameter named ``in``; a parameter
without a default after ones with defaults). This script copies the stubs into a folder for
``MYPYPATH``, repairs those lines without changing any signature's names or types, and adds an
empty stub for ``tensorrt_libs`` (the CUDA library wheel the real package imports).

    pip install --no-deps tensorrt-stubs==10.13.0.35.1     # --no-deps: it requires the real TensorRT
    python tools/trt_stubs.py /tmp/trt-stubs
    MYPYPATH=/tmp/trt-stubs mypy edgefuse/backends/trt/adapter.py
"""
from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

DIST = "tensorrt-stubs"
_KEYWORD_PARAM = re.compile(r"([(,]\s*)(in|is|as|if|or|and|not|for|from|def|class|lambda|with|pass|del)(\s*:)")


def installed_stub_files() -> list[Path]:
    try:
        files = metadata.files(DIST) or []
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{DIST} is not installed: pip install --no-deps {DIST}") from None
    return [Path(str(f.locate())) for f in files if str(f).endswith(".pyi")]


def _fix_defaults(line: str) -> str:
    """Give every parameter after a defaulted one a default (``= ...``), keeping names and types."""
    head, sep, rest = line.partition("(")
    body, close, tail = rest.rpartition(")")
    depth, parts, cur = 0, [], ""
    for ch in body:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    seen_default = False
    fixed = []
    for p in parts:
        if "=" in p:
            seen_default = True
        elif seen_default and p.strip() and not p.strip().startswith("*"):
            p = p + " = ..."
        fixed.append(p)
    return head + sep + ",".join(fixed) + close + tail


def repair(text: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("def "):
            line = _KEYWORD_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}_{m.group(3)}", line)
            try:
                ast.parse(line.strip() + " ...")
            except SyntaxError:
                line = _fix_defaults(line)
            lines[i] = line
    out = "\n".join(lines) + "\n"
    ast.parse(out)  # the repaired stub must be valid Python
    return out


def prepare(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for src in installed_stub_files():
        package = src.parent.name
        target = dest / package / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(repair(src.read_text(encoding="utf-8")), encoding="utf-8")
    (dest / "tensorrt_libs.pyi").write_text("", encoding="utf-8")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", type=Path)
    args = ap.parse_args()
    if args.dest.exists():
        shutil.rmtree(args.dest)
    print(prepare(args.dest), file=sys.stdout)


if __name__ == "__main__":
    main()
