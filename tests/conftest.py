from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
OFFICIAL = HERE / "official"
sys.path.insert(0, str(HERE))

torch.set_num_threads(min(2, torch.get_num_threads()))


def load_fixture(name: str) -> dict:
    return json.loads((OFFICIAL / "fixtures" / f"{name}.json").read_text())


@pytest.fixture
def figures() -> dict:
    return json.loads((OFFICIAL / "figures.json").read_text())
