"""Reading the alert subscriptions the API stores in Redis (``RedisKeys.alert_subscription``).

Read afresh for each alert (alerts are rare; a subscription made a second ago counts),
in one round trip for the index and one for the records. A record that does not parse
(written by a newer release, or damaged) is skipped and reported, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas.events import AlertSubscription
from schemas.redis_keys import RedisKeys


@dataclass
class Loaded:
    subscriptions: list[AlertSubscription] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


def load_subscriptions(client: Any, keys: RedisKeys) -> Loaded:
    """Every subscription; raises ``redis.RedisError`` when Redis is away."""
    ids = sorted(
        i.decode() if isinstance(i, bytes) else str(i) for i in client.smembers(keys.alert_subscriptions())
    )
    out = Loaded()
    if not ids:
        return out
    for sid, raw in zip(ids, client.mget([keys.alert_subscription(i) for i in ids]), strict=True):
        if raw is None:
            continue  # deleted between the two reads
        try:
            out.subscriptions.append(AlertSubscription.model_validate_json(raw))
        except ValidationError:
            out.invalid.append(sid)
    return out
