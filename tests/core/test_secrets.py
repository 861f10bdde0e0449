from __future__ import annotations

import stat

import pytest

from core.secrets import persistent_secret
from stream_processors.cleaning import CleaningConfig

pytestmark = pytest.mark.unit


def test_secret_created_once_private_and_stable(tmp_path):
    path = tmp_path / "secrets" / "salt"
    first = persistent_secret(path)
    assert len(first) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert persistent_secret(path) == first
    assert persistent_secret(tmp_path / "other") != first


def test_author_salt_defaults_to_installation_secret(tmp_path):
    from core.settings import load_settings

    settings = load_settings(home=tmp_path)
    salt = CleaningConfig.from_settings(settings).author_salt
    assert salt == (tmp_path / "secrets" / "author_salt").read_text()
    configured = load_settings(home=tmp_path, stream={"author_salt": "pepper"})
    assert CleaningConfig.from_settings(configured).author_salt == "pepper"
