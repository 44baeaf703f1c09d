"""Data installed with edgefuse: export presets (the repository's export/ folder) and device
profiles (devices/).

A wheel installs them as the packages ``edgefuse.data.<kind>`` (pyproject.toml maps the
folders); an editable install reads them from the repository.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from edgefuse.errors import EdgefuseError


def data_dir(kind: str) -> Path:
    try:
        mod = importlib.import_module(f"edgefuse.data.{kind}")
        paths = list(getattr(mod, "__path__", []))
        if paths:
            return Path(paths[0])
    except ModuleNotFoundError:
        pass
    repo = Path(__file__).resolve().parents[2] / kind
    if repo.is_dir():
        return repo
    raise EdgefuseError(f"edgefuse's {kind}/ data folder is missing from this installation; reinstall edgefuse")
