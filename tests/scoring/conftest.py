"""The scoring tests reuse the session's tiny model (trained once, see tests/model_export/tiny.py)."""

from __future__ import annotations

import pytest

from model_export.train import TrainResult
from tests.model_export.tiny import tiny_model


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return tiny_model(tmp_path_factory)
