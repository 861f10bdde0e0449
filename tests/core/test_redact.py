"""URL credentials are masked in messages and in every structlog event."""

from __future__ import annotations

import io
import logging

import pytest
import structlog

from core.redact import mask_url_credentials, redact_credentials

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://default:s3cret@cache.example:6380", "rediss://default:***@cache.example:6380"),
        ("https://ml:p@ss@mlflow.example/api", "https://ml:***@mlflow.example/api"),
        ("https://ghp_token@github.com/x.git", "https://***@github.com/x.git"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("see redis://:a@h1/0 and http://u:b@h2/?q=x@y", "see redis://:***@h1/0 and http://u:***@h2/?q=x@y"),
        ("mail ops@example.com", "mail ops@example.com"),
    ],
)
def test_mask_url_credentials(text: str, masked: str) -> None:
    assert mask_url_credentials(text) == masked


def test_structlog_processor_masks_values_and_messages() -> None:
    class Unreachable(Exception):
        pass

    event = {
        "event": "cannot reach redis://:pw1@h/0",
        "redis": "redis://:pw2@h/0",
        "error": Unreachable("MLflow at https://u:pw3@m failed"),
        "port": 6379,
        "_record": object(),
    }
    out = redact_credentials(None, "info", event)
    assert "pw" not in f"{out['event']} {out['redis']} {out['error']}"
    assert out["port"] == 6379 and not isinstance(out["_record"], str)


def test_configured_logging_masks_stdlib_and_structlog_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import logs
    from core.settings import load_settings

    stream = io.StringIO()
    monkeypatch.setattr(logs, "_configured", False)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.configure_logging(load_settings(log_level="INFO"), stream=stream)
        structlog.get_logger("t").info("api started", redis="redis://:pw1@h:6379/0")
        logging.getLogger("t").warning("MLflow at %s failed", "https://u:pw2@mlflow")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.reset_defaults()
    text = stream.getvalue()
    assert "redis://:***@h:6379/0" in text and "https://u:***@mlflow" in text
    assert "pw1" not in text and "pw2" not in text
