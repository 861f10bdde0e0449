"""The ``heartbeat`` timer: a successor started after a crash knows this worker was alive.

See :mod:`stream_processors.liveness` (the crash-restart guard): the heartbeat file is
touched every ``HEARTBEAT_INTERVAL_S`` and removed on a clean shutdown.
"""

from __future__ import annotations

import faust

from core.settings import Settings
from stream_processors.liveness import HEARTBEAT_INTERVAL_S, clear_heartbeat, touch_heartbeat


class Heartbeat:
    """This worker's heartbeat file (one per web port)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def register(self, app: faust.App) -> None:
        app.timer(interval=HEARTBEAT_INTERVAL_S, name="heartbeat", on_leader=False)(self.beat)

    async def beat(self) -> None:
        touch_heartbeat(self.settings)

    def clear(self) -> None:
        """A clean stop leaves the group: no successor needs to wait."""
        clear_heartbeat(self.settings)
