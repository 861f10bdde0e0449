"""Wire and table value types of the stream app.

Records travel as the pydantic models of :mod:`schemas.events` serialized to JSON
bytes (faust ``raw`` serializer), not as ``faust.Record``: one schema definition is
shared with producers, Spark and the API. Table values are JSON-friendly scalars
and lists, listed here so their shape is documented in one place.
"""

from __future__ import annotations

from schemas.events import CleanPost, DeadLetter, RawText, ScoredPost

ALL_COINS = "all"
"""Counter key that aggregates every scored post, whatever coins it mentions."""

CounterValue = list[float]
"""Value of a counter table window: ``[volume, score_sum]``; ``[]`` means empty."""

DedupValue = str
"""Value of the dedup tables: origin marker ``topic:partition:offset`` ("" when unseen)."""

__all__ = ["ALL_COINS", "CleanPost", "CounterValue", "DeadLetter", "DedupValue", "RawText", "ScoredPost"]
