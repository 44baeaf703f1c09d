"""List the Python names of TensorRT's bindings, per TensorRT version, without importing them.

The ``tensorrt`` extension module cannot be imported without CUDA and libnvinfer, so this script
downloads each version's *bindings* wheel from PyPI (``pip download --no-deps``), opens the
``tensorrt*.so`` inside it and reads the names out of the ELF file:

* pybind11 takes every Python name as a C string literal (``class_<T>(m, "Builder")``,
  ``.def("build_serialized_network", ...)``, ``.value("FP16", ...)``, ``py::arg("network")``), which
  the compiler puts in ``.rodata`` and the code loads with a RIP-relative ``lea``. The linker merges
  string literals by suffix, so ``"Builder"`` may live only as the tail of ``"IBuilder\\0"``: a plain
  ``strings`` scan misses it. So the names are (1) every string that an x86-64 ``lea reg,
  [rip+disp32]`` in ``.text`` or an ``R_X86_64_RELATIVE`` relocation points at, read up to its NUL,
  plus (2) every whole NUL-delimited string in ``.rodata`` (names that the code builds into a
  ``std::string`` from immediates, such as ``bind_vector(m, "PluginFieldCollection")``, keep only
  an unreferenced copy there). Of these only identifier-like strings (``[A-Za-z_][A-Za-z0-9_]*``,
  2 characters or more) are kept, less C++ type-info names (the ``_ZTS*`` symbols' strings).
* The public top-level functions and assignments of the wheel's ``tensorrt/__init__.py``
  (``volume``, ``nptype``, ...) are added, read with ``ast``.

Docstrings are not read: they go stale (11.4's ICudaEngine docstring still lists ``:ivar max_workspace_size:``,
an attribute removed in 10.0), and a name mentioned in prose is no evidence that it exists.

The result is a superset of the Python API (argument names and a few internal strings come along),
good for "does version X have name Y" checks, not for listing one class's members. Checked against
``tensorrt-stubs`` 10.13.0.35.1 (pybind11-stubgen output of the imported module): of its 1005 names
the 10.13.0.35 list has all but ``PluginFieldCollection``, which 10.13's ``py::bind_vector`` builds
into a ``std::string`` from immediates, leaving no C string behind.

Versions with no bindings wheel on PyPI (8.0, 8.2, 8.4, 8.5: JetPack 4.6 and 5.x ship them as Debian
packages; 10.0) are read from the *source* of the bindings instead: ``python/src/**/*.cpp`` of
github.com/NVIDIA/TensorRT at the release tag, the pybind11 registrations in it (``class_<...>(m, "Builder")``,
``enum_<...>(m, "BuilderFlag")``, ``.def("build_engine"``, ``.def_property("max_workspace_size"``,
``.def_static``, ``.value("FP16"``, ``.attr("...")``, ``bind_vector``), plus the bindings package's
``tensorrt/__init__.py``. Argument names (``"network"_a``) and docstrings are left out, so a source list
is a subset of what the same version's wheel gives. Checked when the lists were written: for 8.6.1 and
10.3.0, which have both, every name of the source list (tags v8.6.1, v10.3.0) is in the wheel list, and of the
wheel names that tensorrt-stubs 10.13 declares only container methods of ``bind_vector`` types (append, pop,
...) and argument names are missing from the source list. JetPack's ``python3-libnvinfer`` holds the same
bindings (NVIDIA publishes each release's Python bindings source there).

Each list goes to ``<out>/<version>.txt``: a header naming the wheel and its sha256 (or the repository,
tag and commit), then one name a line, sorted. Only x86-64 Linux wheels are supported.

    python tools/trt_names.py                      # the pinned versions below
    python tools/trt_names.py --newest             # also resolve the newest 10.x and 11.x on PyPI
    python tools/trt_names.py --wheel some.whl     # a wheel already on disk
    python tools/trt_names.py --source MIRROR      # the SOURCE_TAGS below, from a git clone of NVIDIA/TensorRT
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import logging
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger("trt_names")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "data" / "trt_names"

# TensorRT 8.6 has one bindings package; 10.x and 11.x have one per CUDA major (the names are the same).
PINNED = (
    "tensorrt-bindings==8.6.1",
    "tensorrt-cu12-bindings==10.3.0",  # JetPack 6.x ships TensorRT 10.3
    "tensorrt-cu12-bindings==10.16.1.11",  # newest 10.x when this was written
    "tensorrt-cu12-bindings==11.4.0.106",  # newest 11.x when this was written
)
# version -> release tag of github.com/NVIDIA/TensorRT, for the versions without a bindings wheel
SOURCE_TAGS = {
    "8.0.1": "8.0.1",  # JetPack 4.6
    "8.2.1": "8.2.1",  # JetPack 4.6.1 - 4.6.x
    "8.4.1": "8.4.1",  # JetPack 5.0.2
    "8.5.2": "8.5.2",  # JetPack 5.1.x
    "10.0.1": "v10.0.1",  # 10.0.x (10.0.0 was an early-access release)
}
SOURCE_URL = "https://github.com/NVIDIA/TensorRT"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64")  # 10.x from 10.8 on is 2_28 only
PYTHON_VERSION = "3.10"

IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]+")
# lea r64, [rip+disp32]: REX.W (0x48-0x4f), 0x8d, ModRM with mod=00 and rm=101
LEA_RIP = re.compile(rb"[\x48-\x4f]\x8d[\x05\x0d\x15\x1d\x25\x2d\x35\x3d]")
R_X86_64_RELATIVE = 8
EM_X86_64 = 62


class ElfError(ValueError):
    pass


def _sections(data: bytes) -> dict[str, tuple[int, int, int]]:
    """Section name -> (address, file offset, size) of a little-endian ELF64 file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ElfError("not a little-endian 64-bit ELF file")
    if struct.unpack_from("<H", data, 0x12)[0] != EM_X86_64:
        raise ElfError("not an x86-64 ELF file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_off = headers[shstrndx][4]
    out = {}
    for name, _type, _flags, addr, offset, size, *_ in headers:
        start = names_off + name
        out[data[start : data.index(b"\0", start)].decode()] = (addr, offset, size)
    return out


def _typeinfo_name_addresses(data: bytes, sections: dict[str, tuple[int, int, int]]) -> set[int]:
    """Addresses of C++ type-info name strings (symbols _ZTS...), when the file has a symbol table."""
    if ".symtab" not in sections or ".strtab" not in sections:
        return set()
    _, sym_off, sym_size = sections[".symtab"]
    _, str_off, _ = sections[".strtab"]
    found = set()
    for k in range(sym_size // 24):
        name, _info, _other, _shndx, value, _size = struct.unpack_from("<IBBHQQ", data, sym_off + 24 * k)
        if data[str_off + name : str_off + name + 4] == b"_ZTS":
            found.add(value)
    return found


def so_names(data: bytes, min_len: int = 2) -> set[str]:
    """Identifier-like C strings of an x86-64 extension module (see the module docstring)."""
    sections = _sections(data)
    ro_addr, ro_off, ro_size = sections[".rodata"]
    rodata = data[ro_off : ro_off + ro_size]
    starts: set[int] = set()  # offsets into .rodata where a C string starts

    tx_addr, tx_off, tx_size = sections[".text"]
    text = data[tx_off : tx_off + tx_size]
    for m in LEA_RIP.finditer(text):
        i = m.start()
        target = tx_addr + i + 7 + struct.unpack_from("<i", text, i + 3)[0]
        if ro_addr <= target < ro_addr + ro_size:
            starts.add(target - ro_addr)
    if ".rela.dyn" in sections:
        _, rel_off, rel_size = sections[".rela.dyn"]
        for k in range(rel_size // 24):
            _where, info, addend = struct.unpack_from("<QQq", data, rel_off + 24 * k)
            if info & 0xFFFFFFFF == R_X86_64_RELATIVE and ro_addr <= addend < ro_addr + ro_size:
                starts.add(addend - ro_addr)
    # whole strings: the byte after each NUL
    starts.add(0)
    starts.update(m.end() for m in re.finditer(rb"\0", rodata) if m.end() < len(rodata))

    typeinfo = {a - ro_addr for a in _typeinfo_name_addresses(data, sections)}
    names = set()
    for start in starts - typeinfo:
        end = rodata.find(b"\0", start)
        if end - start < min_len:
            continue
        m = IDENT.fullmatch(rodata, start, end)
        if m:
            names.add(m.group().decode("ascii"))
    return names


def _module_level(body: list[ast.stmt]):
    """Statements run at import: the module's, and those inside its if/try/for/with blocks."""
    for node in body:
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    yield from _module_level([n for n in inner if isinstance(n, (ast.stmt, ast.excepthandler))])


def init_names(source: str) -> set[str]:
    """Public names a Python module defines at import, and attributes it sets on classes
    (``DataType.itemsize = property(...)``)."""
    names = set()
    for node in _module_level(ast.parse(source).body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    names.add(t.id)
                elif isinstance(t, ast.Attribute):
                    names.add(t.attr)
    return {n for n in names if not n.startswith("_") and n.isidentifier()}


def wheel_names(wheel: Path) -> tuple[str, set[str]]:
    """(extension module's path inside the wheel, its names plus tensorrt/__init__.py's public names)."""
    with zipfile.ZipFile(wheel) as zf:
        sos = [n for n in zf.namelist() if re.search(r"/tensorrt[^/]*\.so$", n)]
        if len(sos) != 1:
            raise SystemExit(f"{wheel.name}: expected one tensorrt*.so, found {sos or 'none'}")
        names = so_names(zf.read(sos[0]))
        init = sos[0].rsplit("/", 1)[0] + "/__init__.py"
        if init in zf.namelist():
            names |= init_names(zf.read(init).decode("utf-8"))
    return sos[0], names


def wheel_version(wheel: Path) -> str:
    # name-version-pythontag-abitag-platform.whl
    return wheel.name.split("-")[1]


def download(spec: str, dest: Path) -> Path:
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", PYTHON_VERSION, "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    cmd.append(spec)
    log.info("%s", " ".join(cmd))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    name, _, version = spec.partition("==")
    prefix = f"{name.replace('-', '_')}-{version}-"
    matches = [p for p in dest.glob("*.whl") if p.name.startswith(prefix)]
    if not matches:
        new = sorted(p.name for p in set(dest.glob("*.whl")) - before)
        raise SystemExit(f"pip download {spec} left no {prefix}*.whl in {dest} (new wheels: {new or 'none'})")
    return max(matches)


def newest(package: str) -> dict[int, str]:
    """Newest version of each major on the index, from `pip index versions`."""
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", package], check=True, capture_output=True,
                         text=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("Available versions:")), "")
    best: dict[int, tuple[tuple[int, ...], str]] = {}
    for v in line.split(":", 1)[-1].split(","):
        v = v.strip()
        if not re.fullmatch(r"[0-9.]+", v):  # skip .postN, rc
            continue
        key = tuple(int(x) for x in v.split("."))
        if key[0] not in best or key > best[key[0]][0]:
            best[key[0]] = (key, v)
    return {major: v for major, (_, v) in best.items()}


def write_list(wheel: Path, out_dir: Path) -> Path:
    so_path, names = wheel_names(wheel)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    out = out_dir / f"{wheel_version(wheel)}.txt"
    out_dir.mkdir(parents=True, exist_ok=True)
    header = [
        f"# Python names in TensorRT {wheel_version(wheel)}'s bindings, written by tools/trt_names.py",
        f"# wheel: {wheel.name}",
        f"# sha256: {sha}",
        f"# from: {so_path} (referenced and whole identifier strings of .rodata) and tensorrt/__init__.py",
    ]
    out.write_text("\n".join(header + sorted(names)) + "\n")
    log.info("%s: %d names -> %s", wheel.name, len(names), out)
    return out


# pybind11 registrations whose first string argument is a Python name
_REGISTERED = re.compile(r'\.(?:def\w*|value|attr)\(\s*"([A-Za-z_][A-Za-z0-9_]*)"')
_CLASSES = re.compile(r'\b(?:class_|enum_|bind_vector|bind_map)\s*<[^;{"]*?>\s*\w*\s*[({]\s*\w+\s*,\s*'
                      r'"([A-Za-z_][A-Za-z0-9_]*)"')
# methods a Python subclass overrides (IOutputAllocator.reallocate_output, IGpuAllocator.allocate, ...)
_OVERRIDES = re.compile(r'(?:PYBIND11_OVERLOAD\w*_NAME|PYBIND11_OVERRIDE\w*_NAME)\(\s*[^,]+,\s*[^,]+,\s*"(\w+)"'
                        r'|getOverride\([^;"]*?,\s*"(\w+)"')
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)


def source_names(sources: dict[str, str]) -> set[str]:
    """Python names registered by pybind11 bindings sources (path -> text: ``*.cpp`` and the package's
    ``__init__.py``); comments are dropped first (an old binding left in a comment is not the API)."""
    names: set[str] = set()
    for path, text in sources.items():
        if path.endswith(".py"):  # a template: the build fills in ##TENSORRT_MODULE## and the like
            names |= init_names(re.sub(r"##(\w+)##", r"\1", text))
            continue
        code = _COMMENTS.sub("", text)
        names |= set(_REGISTERED.findall(code)) | set(_CLASSES.findall(code))
        names |= {a or b for a, b in _OVERRIDES.findall(code)}
    return {n for n in names if len(n) >= 2 and not (n.startswith("__") and n.endswith("__"))}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def tag_sources(repo: Path, tag: str) -> dict[str, str]:
    """The bindings sources at ``tag`` of a clone of NVIDIA/TensorRT: python/src/**/*.cpp and the bindings
    package's __init__.py (python/packaging/tensorrt/ up to 8.5, python/packaging/bindings_wheel/tensorrt/ since)."""
    paths = _git(repo, "ls-tree", "-r", "--name-only", tag, "--", "python/src", "python/packaging").splitlines()
    wanted = [p for p in paths if p.startswith("python/src/") and p.endswith(".cpp")]
    wanted += [p for p in paths if p in ("python/packaging/tensorrt/__init__.py",
                                         "python/packaging/bindings_wheel/tensorrt/__init__.py")]
    return {p: _git(repo, "show", f"{tag}:{p}") for p in wanted}


def write_source_list(repo: Path, version: str, tag: str, out_dir: Path) -> Path:
    names = source_names(tag_sources(repo, tag))
    commit = _git(repo, "rev-list", "-n", "1", tag).strip()
    out = out_dir / f"{version}.txt"
    out_dir.mkdir(parents=True, exist_ok=True)
    header = [
        f"# Python names in TensorRT {version}'s bindings, written by tools/trt_names.py",
        f"# source: {SOURCE_URL}@{tag} (commit {commit})",
        ("# from: python/src/**/*.cpp (pybind11 class_/enum_/def*/value/attr and override names; no argument "
         "names) and the bindings package's tensorrt/__init__.py"),
    ]
    out.write_text("\n".join(header + sorted(names)) + "\n")
    log.info("%s@%s: %d names -> %s", SOURCE_URL, tag, len(names), out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("specs", nargs="*", help="pip requirement specs (default: the pinned versions)")
    p.add_argument("--newest", action="store_true", help="also the newest 10.x and 11.x tensorrt-cu12-bindings")
    p.add_argument("--wheel", action="append", type=Path, default=[], help="a bindings wheel on disk (repeatable)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--source", type=Path, metavar="CLONE",
                   help="a git clone of NVIDIA/TensorRT: write the lists of SOURCE_TAGS (or of --tag) from it")
    p.add_argument("--tag", action="append", default=[], metavar="VERSION=TAG",
                   help="with --source: a version and its release tag instead of SOURCE_TAGS (repeatable)")
    p.add_argument("--cache", type=Path, help="keep downloaded wheels here (default: a temporary folder)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.source:
        tags = dict(t.split("=", 1) for t in args.tag) if args.tag else SOURCE_TAGS
        for version, tag in tags.items():
            write_source_list(args.source, version, tag, args.out)
        if not (args.specs or args.wheel or args.newest):
            return 0
    specs = list(args.specs) or ([] if args.wheel else list(PINNED))
    if args.newest:
        for major, v in sorted(newest("tensorrt-cu12-bindings").items()):
            if major >= 10:
                specs.append(f"tensorrt-cu12-bindings=={v}")
    specs = list(dict.fromkeys(specs))
    with tempfile.TemporaryDirectory() as tmp:
        dest = args.cache or Path(tmp)
        dest.mkdir(parents=True, exist_ok=True)
        wheels = list(args.wheel) + [download(s, dest) for s in specs]
        for w in wheels:
            write_list(w, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
