"""The ONNX metadata contract: facts written by export (and later stages), read by every stage after it.

Each fact is one ``metadata_props`` entry ``edgefuse.<key>`` whose value is JSON, so
lists and dicts survive; ``read_metadata`` returns them decoded.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

PREFIX = "edgefuse."

def set_metadata(model: onnx.ModelProto, facts: dict[str, Any]) -> onnx.ModelProto:
    """A copy of ``model`` with ``facts`` added (replacing same-named entries)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [p for p in out.metadata_props if not (p.key.startswith(PREFIX) and p.key[len(PREFIX):] in facts)]
    del out.metadata_props[:]
    out.metadata_props.extend(keep)
    for key, value in facts.items():
        entry = out.metadata_props.add()
        entry.key = PREFIX + key
        entry.value = json.dumps(value, sort_keys=True)
    return out


def read_metadata(model: onnx.ModelProto | str | Path) -> dict[str, Any]:
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    facts: dict[str, Any] = {}
    for p in model.metadata_props:
        if p.key.startswith(PREFIX):
            try:
                facts[p.key[len(PREFIX):]] = json.loads(p.value)
            except json.JSONDecodeError:
                facts[p.key[len(PREFIX):]] = p.value
    return facts
