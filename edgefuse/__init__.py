"""edgefuse: deploy adaptive temporal video models (AdaFuse, GSF, TSM, TSN) to edge GPUs and CPUs."""
from __future__ import annotations

import logging

from edgefuse.errors import EdgefuseError

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["EdgefuseError", "__version__"]
