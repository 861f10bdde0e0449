"""Changes to faust and aiokafka internals that the worker needs: batched fetches, no loss at
restart, no batch stranded in the producer.

faust-streaming is pinned (requirements/lock.txt); each override names the faust method it
replaces and why, so the next upgrade can check whether upstream has fixed it.

**Records lost after a restart** (faust issue #596, open upstream). After table recovery,
faust's ``Recovery.on_recovery_completed`` makes the stream partitions active *before* it
seeks them to their committed offsets, and clears every agent's queue
(``flow_control.resume()``) *after* the seek. Records fetched in between reach the queues,
count as read, and are then thrown away; the seek resets faust's read offset, so the next
record looks like a jump over the discarded ones, and faust's gap handling
(``Consumer._add_gap``) marks the skipped offsets as done and commits past them. The kill
test (tests/stream_processors/test_integration.py) lost 23-192 of 600 records this way in
about one restart in ten under CPU load. :class:`SeekFirstRecovery` seeks first, while the
stream partitions are still paused, and then clears the queues and resumes them with no
``await`` in between, so nothing fetched before the seek can reach an agent.
:class:`StreamConsumer` also guards aiokafka against faust's live set of active partitions
turning empty while a fetch waits: aiokafka then drains *every* partition, paused ones
included, and faust skips those records although their positions have moved on.

**Records stranded in the producer** (aiokafka): faust's producer is
:class:`core.async_kafka.TopicTrackingProducer` (:class:`StreamProducer`), which the module
notes there explain.

A gap that faust still fills is logged and counted (``cryptopulse_stream_offset_gaps_total``):
with ``at_least_once`` and our non-compacted topics there should be none.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import structlog
from aiokafka import AIOKafkaProducer
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from core.async_kafka import TopicTrackingProducer
from stream_processors import metrics as m

log = structlog.get_logger(__name__)


class StreamConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread with the fetch batching of the ``stream.fetch_*`` settings.

    faust hard-codes ``fetch_max_wait_ms=1500`` and leaves ``fetch_min_bytes`` at 1, so the
    broker answers every fetch as soon as one record is there: at a few hundred events/s
    that is a fetch request and a thread hand-off every few records. Letting the broker
    gather ``fetch_min_bytes`` (or wait ``fetch_max_wait_ms``) costs at most that wait in
    latency and saves CPU on both sides.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        app = self.consumer.app
        # aiokafka reads these when the consumer starts (it builds its Fetcher in start())
        consumer._fetch_min_bytes = getattr(app, "fetch_min_bytes", 1)
        consumer._fetch_max_wait_ms = getattr(app, "fetch_max_wait_ms", 500)
        return consumer


class ActivePartitions:
    """faust's live set of active partitions as the consumer thread's fetch sees it.

    Membership stays live (a partition resumed while a fetch waits is fetched at once), but
    the view is never falsy: aiokafka's ``fetched_records`` reads an empty set as "every
    partition". Membership and truth are all aiokafka asks of it.
    """

    def __init__(self, live: set[TP]) -> None:
        self._live = live

    def __contains__(self, tp: object) -> bool:
        return tp in self._live

    def __bool__(self) -> bool:
        return True


class StreamConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer: tuned fetches, guarded active partitions, gaps counted."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return StreamConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        guarded = ActivePartitions(active_partitions) if active_partitions is not None else None
        return await super()._getmany(cast(Any, guarded), timeout)

    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        """Run the app's ``before_commit`` hooks first (the clean agent's claims reach the
        producer), then faust's commit, which flushes the producer before the offsets: a
        committed offset never passes a claim that is not in its changelog."""
        for hook in getattr(self.app, "before_commit", ()):
            hook()
        return bool(await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction))

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        log.warning(
            "offsets skipped in a source partition; faust treats them as processed",
            topic=tp.topic,
            partition=tp.partition,
            first=offset_from,
            last=offset_to,
            committed=self._committed_offset[tp],
        )
        m.OFFSET_GAPS.labels(tp.topic).inc()
        await super()._add_gap(tp, offset_from, offset_to)


class StreamProducer(faust_aiokafka.Producer):
    """faust's aiokafka producer on :class:`TopicTrackingProducer`."""

    @property
    def _producer_type(self) -> type[AIOKafkaProducer]:
        return TopicTrackingProducer


class StreamTransport(faust_aiokafka.Transport):
    Consumer = StreamConsumer
    Producer = StreamProducer


class SeekFirstRecovery(Recovery):
    """faust's table recovery, ending with the seek before the stream partitions resume."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """faust 0.15.3's ``Recovery.on_recovery_completed`` with the order fixed.

        faust: resume stream partitions, ``await`` the seek, clear queues, resume flow.
        Here: ``await`` the seek (stream partitions paused), then clear the queues and
        resume partitions and flow in one step of the event loop.
        """
        consumer = self.app.consumer
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        assignment = consumer.assignment()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning(
                f"Recovery rebalancing again app id {self.app.consumer_generation_id} param {generation_id}"
            )
            return
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again during the seek")
            return
        # no await from here to resume_flow: nothing fetched before the seek reaches a queue
        self.completed.set()
        self.app.flow_control.resume()  # clears the agents' queues
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        consumer.resume_flow()
        await cast(Any, self.app)._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")


class StreamTableManager(TableManager):
    """faust's table manager with :class:`SeekFirstRecovery` (configured as ``TableManager``)."""

    recovery_class: type[Recovery] = SeekFirstRecovery

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = self.recovery_class(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
