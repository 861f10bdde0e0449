"""The one home of every write to the materialized Redis views (see :mod:`views.writer`)."""

from views.writer import (
    AsyncRedisViewWriter,
    FlushResult,
    LiveCounter,
    RedisViewWriter,
    delete_prefixed_keys,
)

__all__ = [
    "AsyncRedisViewWriter",
    "FlushResult",
    "LiveCounter",
    "RedisViewWriter",
    "delete_prefixed_keys",
]
