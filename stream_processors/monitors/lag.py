"""The ``consumer_lag`` timer: lag per source partition, and the stall watchdog.

Every 5 s the lag of each assigned source partition (raw topics for the clean agent,
clean.posts for the score agent) goes to ``CONSUMER_LAG``, and the same backlog feeds a
:class:`~stream_processors.liveness.StallWatch`: when a partition has had records waiting
and made no progress for ``stream.stall_timeout_s``, the worker stops gracefully so that
it can replace itself (:func:`~stream_processors.liveness.restart_if_stalled`, called by
the worker commands once faust has stopped, when :attr:`LagWatch.stalled` is set).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol

import faust
import structlog

from scoring.holder import ModelHolder
from stream_processors import metrics as m
from stream_processors.liveness import StallWatch, stall_restarts

log = structlog.get_logger(__name__)


class Stage(Protocol):
    """An agent as the watchdog sees it: the topic it reads and how many records it took."""

    taken: int

    @property
    def source(self) -> faust.TopicT: ...


class LagWatch:
    """Consumer lag gauges and the stall watchdog over the agents' source partitions."""

    def __init__(
        self,
        app: faust.App,
        stages: Sequence[Stage],
        holder: ModelHolder,
        *,
        stall_timeout_s: float,
        on_stall: Callable[[], None],
        broker_up: Callable[[], bool],
    ) -> None:
        self.app = app
        self.stages = stages
        self.holder = holder
        self.stall_watch: StallWatch[Any] = StallWatch(stall_timeout_s)
        self.on_stall = on_stall
        self.broker_up = broker_up
        self.stalled = False  # set once a stall made this worker stop (see liveness)
        self._reported: set[tuple[str, str]] = set()  # (topic, partition) lag series set here
        m.STALL_RESTARTS.set(stall_restarts())  # the count lives in the environment across restarts

    def register(self, app: faust.App) -> None:
        app.timer(interval=5.0, name="consumer_lag", on_leader=False)(self.update_lag)

    async def update_lag(self) -> None:
        """Consumer lag per assigned source partition; also feeds the stall watchdog."""
        observed = self.source_backlog()
        current = {(tp.topic, str(tp.partition)) for tp in observed}
        for tp, (lag, _) in observed.items():
            m.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        if current:
            # A rebalance moved partitions to another worker: stop reporting their last lag,
            # which would otherwise stay frozen here (and double in a sum over workers).
            for labels in self._reported - current:
                m.CONSUMER_LAG.remove(*labels)
            self._reported = current
        await self.check_stall(observed, time.monotonic())

    def source_backlog(self) -> dict[Any, tuple[int, Hashable]]:
        """``{tp: (lag, progress)}`` of the assigned partitions the agents read.

        Progress is the partition's read offset and the count of records its agent has
        taken: an agent working through a full buffer (reads paused) is slow, not stalled.
        """
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
            read_offsets = getattr(consumer, "_read_offset", {})
        except Exception as exc:  # not started / rebalancing: try again next tick
            log.debug("lag update skipped", error=str(exc))
            return {}
        stage_of = {topic: stage for stage in self.stages for topic in stage.source.topics}
        observed: dict[Any, tuple[int, Hashable]] = {}
        for tp in assignment:
            stage = stage_of.get(tp.topic)
            if stage is None:  # changelogs are written, not read, while active
                continue
            try:
                highwater = consumer.highwater(tp)
            except Exception as exc:  # partition not fetched yet
                log.debug("no highwater yet", topic=tp.topic, partition=tp.partition, error=str(exc))
                continue
            if highwater is None:
                continue
            read = read_offsets.get(tp)
            position = (read + 1) if read is not None else 0
            observed[tp] = (max(0, highwater - position), (read, stage.taken))
        return observed

    async def check_stall(self, observed: Mapping[Any, tuple[int, Hashable]], now: float) -> list[Any]:
        """Stop the worker (to be restarted) when a source partition's backlog has not moved
        for ``stream.stall_timeout_s``. Rebalances, table recovery, a model still loading
        and an unreachable broker are expected pauses (the consumer resumes by itself once
        they end): they restart the clock."""
        if self.app.rebalancing or getattr(self.app, "in_recovery", False) or not self.holder.loaded:
            self.stall_watch.reset()
            return []
        stalled = self.stall_watch.update(observed, now)
        if stalled and not self.stalled and not await asyncio.to_thread(self.broker_up):
            log.warning("source partitions wait while the broker does not answer", timeout_s=3)
            self.stall_watch.reset()
            return []
        if stalled and not self.stalled:
            self.stalled = True
            log.error(
                "stream stalled: a partition has a backlog and made no progress; restarting the worker",
                partitions=[f"{tp.topic}[{tp.partition}] lag={observed[tp][0]}" for tp in stalled],
                timeout_s=self.stall_watch.timeout_s,
                faust_state=self._flow_state(stalled),
            )
            self.on_stall()
        return stalled

    def _flow_state(self, partitions: Sequence[Any]) -> dict[str, Any]:
        """faust's flow-control view of ``partitions``, logged with a stall to help diagnose it."""
        consumer = self.app.consumer
        state: dict[str, Any] = {
            "consumer_flow_active": getattr(consumer, "flow_active", None),
            "app_flow_active": self.app.flow_control.is_active(),
        }
        for name in ("_active_partitions", "_paused_partitions", "_buffered_partitions"):
            tps = getattr(consumer, name, None) or set()
            state[name.strip("_")] = [f"{tp.topic}[{tp.partition}]" for tp in partitions if tp in tps]
        return state
