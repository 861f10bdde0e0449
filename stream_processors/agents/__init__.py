"""The stream worker's agents, one module each, and the delivery contract they share.

The agents, each a faust consumer of one stage:

* ``clean`` (:mod:`.clean`): raw.reddit + raw.news -> clean.posts or deadletter, one
  outcome per record, de-duplicated by source id and content hash in a windowed table;
* ``score`` (:mod:`.score`): clean.posts -> scored.posts in micro-batches
  (``stream.take_events``), with the shared :class:`scoring.runtime.SentimentRuntime`,
  one count record per coin to the internal counts topic (keyed by coin), live pub/sub and
  the review queue;
* ``count`` (:mod:`.counts`): counts topic -> per-coin tumbling-window counters (1 and 5
  minutes) mirrored to Redis, each coin owned by one worker, each post counted once;
* ``shadow`` and ``shadow_feedback`` (:mod:`.shadow`): scored.posts -> scored.shadow, the
  challenger's verdicts on a share of the champion's posts, off the champion's path, and
  their agreement and accuracy on feedback labels.

Delivery is at-least-once (see docs/stream-processing.md): an input event is acked only
after its outputs were handed to the producer (see :func:`send`), and faust flushes the
producer (waits for the broker's acks) before it commits offsets, so a crash replays,
never skips (faust's own recovery could skip at a restart: see ``faust_ext``). The score
agent waits for the broker's ack of a batch's scored records before it records their ids
in the ``scored`` table, so a replayed id found there is known to be delivered already and
is skipped: no second scoring and no double counting.

A record an agent cannot pass on goes to the dead-letter topic (:class:`DeadLetters`),
under the same contract: bad input never crashes an agent and is never dropped.

faust's commit flushes the producer but does not look at what each record's delivery came to,
so a record the broker refused (after the producer's retries) would have its input committed
all the same. Every record sent with :func:`send` is therefore watched: a refused one makes
the worker exit at once (:func:`exit_for_supervisor`), before a commit can pass its input, and
the restarted worker handles that input again. A refusal is never one record's own fault (which
would make that a restart loop rather than a dead letter): the wire schemas cap every text and
dead letters cap their payload at 64 KB, far below the broker's message size limit, so what is
left is the cluster (the delivery timeout passed, too few in-sync replicas, authorization).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
import structlog
from faust.types import EventT

from core.kafka import decode_key
from schemas.events import DeadLetter
from stream_processors import metrics as m
from stream_processors.processing import Origin, dead_letter, unhandled_error

log = structlog.get_logger(__name__)


EXIT_OUTPUT_FAILED = 70  # EX_SOFTWARE; the supervisor restarts a worker on any exit code but 0


def exit_for_supervisor(error: BaseException) -> None:
    """Leave now, as a crash would: what failed is never acked, so nothing is committed past
    it and the restarted worker handles it again (the delivery contract survives SIGKILL)."""
    log.critical(
        "a batch failed as a whole or the broker refused a record; exiting for the supervisor to restart "
        "the worker",
        error=f"{type(error).__name__}: {error}",
        exit_code=EXIT_OUTPUT_FAILED,
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_OUTPUT_FAILED)


on_refused_delivery: Callable[[BaseException], None] = exit_for_supervisor
"""Called with the error of a record the broker refused (tests replace it)."""


def _exit_if_refused(delivery: asyncio.Future[Any]) -> None:
    error = None if delivery.cancelled() else delivery.exception()
    if error is not None:
        on_refused_delivery(error)


async def send(topic: faust.TopicT, key: str, value: bytes) -> Awaitable[Any]:
    """Hand a record to the producer now; the returned future resolves on the broker's ack.

    Sent at once (faust's ``stream_publish_on_commit`` is off, so nothing is held back as
    an attachment). The agents call this before they ack the input event, and faust's
    commit flushes the producer first, so a committed offset never passes an output the
    broker has not acknowledged; one the broker refused stops the worker first (see above).
    """
    # typed as an Awaitable by faust; it is aiokafka's asyncio future for the message
    delivery = cast(asyncio.Future[Any], await topic.send(key=key.encode(), value=value))
    delivery.add_done_callback(_exit_if_refused)
    return delivery


def origin_of(event: EventT) -> Origin:
    """Where an input record was read (named in its dead letter)."""
    msg = event.message
    return Origin(msg.topic, msg.partition, msg.offset, decode_key(msg.key))


def payload_of(event: EventT) -> bytes:
    """An input record's value as bytes (the topics use the ``raw`` serializer)."""
    return event.value if isinstance(event.value, bytes) else str(event.value).encode()


class DeadLetters:
    """The dead-letter topic: each record sent there is counted and logged with its origin."""

    def __init__(self, topic: faust.TopicT) -> None:
        self.topic = topic

    async def send(self, record: DeadLetter, agent: str) -> Awaitable[Any]:
        """Hand ``record`` to the producer; the returned future resolves on the broker's ack."""
        m.DEAD_LETTERS.labels(record.component, record.reason).inc()
        m.EVENTS_OUT.labels(agent, "dead_letter").inc()
        log.info(
            "dead letter",
            reason=record.reason,
            component=record.component,
            source_id=record.source_id,
            topic=record.original_topic,
            partition=record.original_partition,
            offset=record.original_offset,
        )
        return await send(self.topic, record.source_id, record.to_json())


def unreadable(event: EventT, error: Exception, *, component: str) -> DeadLetter:
    """The dead letter of a record an agent could not read: ``invalid_schema`` when it does not
    validate, ``unhandled_error`` (with the exception type) for anything else."""
    from pydantic import ValidationError

    from stream_processors.cleaning import REASON_INVALID_SCHEMA

    payload, origin = payload_of(event), origin_of(event)
    if isinstance(error, ValidationError):
        return dead_letter(
            payload, origin, reason=REASON_INVALID_SCHEMA, detail=str(error), component=component
        )
    return unhandled_error(payload, origin, error, component=component)
