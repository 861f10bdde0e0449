"""Alerts of the stream monitors: raised once, to Kafka and to Redis."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import faust
import structlog

from schemas.events import Alert
from schemas.topics import ALERTS
from stream_processors import metrics as m
from stream_processors.live import LivePublisher

log = structlog.get_logger(__name__)


async def never_fail(check: Awaitable[Any], what: str) -> None:
    """Monitoring must never stop the stream: a failure is logged and retried next tick."""
    try:
        await check
    except Exception as exc:
        log.error(f"{what} failed", error=f"{type(exc).__name__}: {exc}")


class AlertSender:
    """Sends an alert to the alerts topic and records it in Redis, once per ``source_id``."""

    def __init__(self, topic: faust.TopicT, publisher: LivePublisher) -> None:
        self.topic = topic
        self.publisher = publisher

    async def raise_once(self, alert: Alert) -> bool:
        """Kafka first, then Redis (as the Spark alerts): a crash in between re-sends the alert
        with the same ``source_id`` rather than remembering one never published."""
        if await self.publisher.alert_raised(alert):
            return False
        key = ALERTS.key_of(alert) or alert.source_id
        # awaited here, and not through agents.send: an alert is not an input's output, so a
        # refused one fails this check (logged by the monitor), never the worker
        await (await self.topic.send(key=key.encode(), value=alert.to_json()))
        await self.publisher.record_alert(alert)
        m.ALERTS_RAISED.labels(alert.kind, alert.source_id.split(":")[1]).inc()
        log.warning("alert raised", kind=alert.kind, source_id=alert.source_id, message=alert.message)
        return True
