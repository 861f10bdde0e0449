"""Removal of what a test or benchmark run leaves on the shared platform."""

from __future__ import annotations

import redis

from core.kafka import delete_prefixed_topics
from core.settings import Settings
from views import delete_prefixed_keys


def discard_run_data(settings: Settings) -> None:
    """Delete the run's topics (with faust's changelogs) and Redis keys: its throw-away prefixes.

    The platform outlives every run, so without this each run's live counters, views and
    topics stay behind on it for good.
    """
    delete_prefixed_topics(settings)
    client = redis.Redis.from_url(settings.redis.dsn)
    try:
        delete_prefixed_keys(client, settings.redis.key_prefix)
    finally:
        client.close()
