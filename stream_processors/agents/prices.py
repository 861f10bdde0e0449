"""The ``prices`` agent: raw.prices -> the latest price of each coin in Redis, or a dead letter.

Before it, nothing wrote ``price:latest``: the API answered ``"price": null`` and the
dashboard's price column stayed empty until the Spark job closed a window. Price ticks are
few (one per coin per poll), so the agent handles them one by one; the write keeps the
newer tick when two race (see ``views.writer``), so a redelivered old tick never overwrites
a fresh one. Like every live view the write is best effort: ticks stay on Kafka and in the
lake, and the next tick rewrites the view after a Redis outage.
"""

from __future__ import annotations

import faust
import structlog
from faust.types import EventT
from pydantic import ValidationError

from schemas.events import PriceTick
from stream_processors import metrics as m
from stream_processors.agents import DeadLetters, origin_of, payload_of
from stream_processors.cleaning import REASON_INVALID_SCHEMA
from stream_processors.live import LivePublisher
from stream_processors.processing import dead_letter, unhandled_error

log = structlog.get_logger(__name__)

COMPONENT_PRICES = "stream.prices"


class PriceAgent:
    """Validates price ticks and keeps ``price:latest`` of each coin current."""

    name = "prices"

    def __init__(self, source: faust.TopicT, dead_letters: DeadLetters, publisher: LivePublisher) -> None:
        self.source = source
        self.dead_letters = dead_letters
        self.publisher = publisher

    def register(self, app: faust.App) -> None:
        app.agent(self.source, name=self.name)(self.run)

    async def run(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            await self.handle(event)

    async def handle(self, event: EventT) -> None:
        """One outcome per tick: the view written (or skipped, Redis away) or a dead letter."""
        m.EVENTS_IN.labels(self.name).inc()
        origin = origin_of(event)
        payload = payload_of(event)
        try:
            tick = PriceTick.model_validate_json(payload)
        except (ValidationError, ValueError) as exc:
            letter = dead_letter(
                payload, origin, reason=REASON_INVALID_SCHEMA, detail=str(exc), component=COMPONENT_PRICES
            )
            await self.dead_letters.send(letter, self.name)
            return
        try:
            await self.publisher.record_price(tick)
            m.EVENTS_OUT.labels(self.name, "price").inc()
        except Exception as exc:
            log.exception("price tick failed", topic=origin.topic, offset=origin.offset)
            letter = unhandled_error(
                payload, origin, exc, component=COMPONENT_PRICES, source_id=tick.source_id
            )
            await self.dead_letters.send(letter, self.name)
