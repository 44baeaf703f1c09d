"""Key conversions shared by the official checkpoint formats (pure string functions, no torch).

The research repositories (TSM, GSF, AdaFuse) wrap the backbone as ``base_model`` and the
classifier as ``new_fc`` inside a DataParallel ``module.``; edgefuse names them ``backbone`` and
``fc``. Each source's ``checkpoint_filter_fn`` (beside its architecture) starts from these.
"""
from __future__ import annotations


def strip_module(key: str) -> str:
    """Drop DataParallel's ``module.`` prefix."""
    return key.removeprefix("module.")


def common_prefixes(key: str) -> str:
    """Strip DataParallel's ``module.`` and map the research ``base_model``/``new_fc`` names."""
    key = strip_module(key)
    if key.startswith("base_model."):
        key = "backbone." + key[len("base_model.") :]
    elif key.startswith("new_fc."):
        key = "fc." + key[len("new_fc.") :]
    # dropout == 0 in the research code keeps the backbone's own last layer as classifier
    for last in ("backbone.fc.", "backbone.classifier."):
        if key.startswith(last):
            key = "fc." + key[len(last) :]
    return key


def has_prefix(keys: list[str], *prefixes: str) -> bool:
    """Whether any key starts with one of ``prefixes``, with or without DataParallel's ``module.``."""
    both = tuple(prefixes) + tuple(f"module.{p}" for p in prefixes)
    return any(k.startswith(both) for k in keys)
