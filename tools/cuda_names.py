"""Write the names (and call signatures) of cuda-python's CUDA runtime module, for the name check of
``edgefuse/backends/trt/cuda.py`` (tests/test_trt_runner.py).

    pip install --no-deps --target /tmp/cp13 cuda-bindings==13.5.0
    PYTHONPATH=/tmp/cp13 python tools/cuda_names.py cuda.bindings.runtime tests/data/cuda_names/cuda-bindings-13.5.0.txt

The module imports without a GPU or a driver (its calls then return cudaErrorInsufficientDriver or raise
"Failed to dlopen libcuda.so.1"); nothing is called here. Each line is one of
``func NAME(SIGNATURE)`` (the first line of the function's docstring, as cuda-python writes it),
``enum CLASS.MEMBER`` or ``attr CLASS.ATTRIBUTE`` (only for the classes edgefuse reads: see ``CLASSES``).
"""
from __future__ import annotations

import enum
import importlib
import sys
from importlib import metadata
from pathlib import Path

# classes whose members or attributes edgefuse uses: the others would only make the lists long
CLASSES = ("cudaError_t", "cudaMemcpyKind", "cudaStreamCaptureMode", "cudaDeviceProp", "cudaStream_t", "cudaEvent_t",
           "cudaGraph_t", "cudaGraphExec_t")


def names(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    out = []
    for name in sorted(dir(module)):
        obj = getattr(module, name)
        if name.startswith("_"):
            continue
        if callable(obj) and not isinstance(obj, type):
            doc = (obj.__doc__ or "").strip().splitlines()
            sig = doc[0] if doc and doc[0].startswith(name + "(") else name + "(?)"
            out.append(f"func {sig}")
        elif isinstance(obj, type) and name in CLASSES:
            if issubclass(obj, enum.Enum):
                out += [f"enum {name}.{m}" for m in obj.__members__]
            else:
                out += [f"attr {name}.{a}" for a in sorted(dir(obj)) if not a.startswith("_")]
    return out


def main(module_name: str, output: str) -> None:
    dists = [d for d in ("cuda-bindings", "cuda-python") if _has(d)]
    source = ", ".join(f"{d} {metadata.version(d)}" for d in dists)
    head = [f"# names of {module_name} from {source} (PyPI wheels), written by tools/cuda_names.py",
            f"module {module_name}"]
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text("\n".join(head + names(module_name)) + "\n")


def _has(dist: str) -> bool:
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
