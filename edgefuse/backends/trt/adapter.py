"""Importing TensorRT: the one place ``tensorrt`` is imported (lazily, with an install hint) and its version checked.

The TensorRT package is split by job: :mod:`.versions` (which API each version has, pure), :mod:`.build`
(building, one function per API difference), :mod:`.cuda` (CUDA through cuda-python or pycuda) and :mod:`.runner`
(running). Every decision is made beforehand by pure, tested code (:mod:`edgefuse.backends.plan`); code for some
versions only sits in functions whose name ends with the versions it serves (``_trt80_84``, ``_trt85plus``,
``_trt10plus``, ...), and ``tests/test_trt_versions.py`` checks every TensorRT name each function uses against the
names of those versions (NVIDIA's bindings wheels, or the bindings source at each release tag); mypy checks the
package against the ``tensorrt-stubs`` type stubs. Nothing here has run in edgefuse's CI: no GPU there.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from edgefuse.errors import EdgefuseError

if TYPE_CHECKING:  # mypy checks this module against NVIDIA's type stubs (tensorrt-stubs)
    import tensorrt as trt
else:
    trt = None  # bound by import_tensorrt(): importing edgefuse never imports TensorRT

log = logging.getLogger(__name__)

INSTALL_HINT = ("TensorRT's Python package is not installed: on a Jetson it comes with JetPack "
                "(sudo apt install python3-libnvinfer; check with 'dpkg -l | grep nvinfer'), on a desktop GPU "
                "'pip install edgefuse[tensorrt]'")


def import_tensorrt() -> Any:
    """Bind the module-level ``trt`` to the real TensorRT package (an install hint when it is absent;
    type stubs alone, which install an empty ``tensorrt`` namespace, count as absent)."""
    global trt
    try:
        import tensorrt as module
    except ImportError:
        raise EdgefuseError(INSTALL_HINT) from None
    if not hasattr(module, "Builder"):
        raise EdgefuseError(INSTALL_HINT + " (only type stubs are installed here)")
    trt = module
    return module


def bindings_available() -> bool:
    """Whether TensorRT's Python bindings import here (else trtexec builds and times, where it exists)."""
    try:
        import_tensorrt()
    except EdgefuseError:
        return False
    return True


def tensorrt_version() -> str:
    """The running TensorRT's version, checked: an unsupported one is one error naming the supported ones."""
    from edgefuse.backends.trt.versions import parse_version

    import_tensorrt()
    version = str(trt.__version__)
    parse_version(version)
    return version
