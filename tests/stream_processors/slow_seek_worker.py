"""The stream worker with a slow post-recovery seek: the kill test's restarted worker.

faust 0.15.3 lost records at a restart when records were fetched between the consumer
thread's seek to the committed offsets and faust's update of its read offsets (see
``stream_processors.faust_ext``). That window is usually a few milliseconds; this wrapper
widens it to ``CRYPTOPULSE_TEST_SEEK_DELAY_S`` seconds (default 2), so the kill test
exercises it on every run instead of about one run in ten under load.

``CRYPTOPULSE_TEST_FAUST_RECOVERY=faust`` puts faust's own ``Recovery`` back, to show the
test catches the loss without the fix (not used by the suite).

Run as ``python -m tests.stream_processors.slow_seek_worker worker -l info``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

from faust.tables.recovery import Recovery
from faust.types import TP

from stream_processors import __main__ as worker_main
from stream_processors import faust_ext


def install() -> None:
    delay = float(os.environ.get("CRYPTOPULSE_TEST_SEEK_DELAY_S", "2"))
    seek = faust_ext.StreamConsumer.seek_to_committed

    async def slow_seek_to_committed(self: faust_ext.StreamConsumer) -> Mapping[TP, int]:
        offsets = await seek(self)  # the consumer thread has moved its positions
        await asyncio.sleep(delay)  # ... faust has not yet reset its read offsets
        return offsets

    faust_ext.StreamConsumer.seek_to_committed = slow_seek_to_committed  # type: ignore[method-assign,assignment]
    if os.environ.get("CRYPTOPULSE_TEST_FAUST_RECOVERY") == "faust":
        faust_ext.StreamTableManager.recovery_class = Recovery


if __name__ == "__main__":
    install()
    worker_main.main()
