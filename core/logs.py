"""Structured logging for every component (structlog over the standard library).

Components call :func:`configure_logging` once at start-up and then use
``structlog.get_logger(__name__)`` or plain ``logging.getLogger``; both end up as
key=value lines (or JSON lines with ``CRYPTOPULSE_LOG_JSON=true``).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from core.redact import redact_credentials
from core.settings import Settings, get_settings

_configured = False


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at emit time, not the one seen at start-up.

    Test runners and CLI runners swap ``sys.stderr`` and close the old one; a handler bound
    to the old stream would then fail every record with "I/O operation on closed file".
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(settings: Settings | None = None, *, stream: TextIO | None = None) -> None:
    """Idempotently route stdlib and structlog records through one renderer."""
    global _configured
    if _configured:
        return
    settings = settings or get_settings()
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Last, so it sees every value: no DSN password reaches a log line.
        redact_credentials,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("kafka", "aiokafka", "urllib3", "httpx", "py4j"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    _configured = True
