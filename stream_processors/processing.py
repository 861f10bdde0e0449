"""The clean step as one function over a payload: raw bytes in, exactly one outcome out.

Faust-free so the "nothing lost" rule is unit-testable: :func:`process_raw` returns
either a :class:`CleanPost` or a :class:`DeadLetter` for every payload, whatever it
holds. De-duplication state is behind the small :class:`DedupStore` protocol (a
windowed Faust table in the worker, a dict in tests).

Duplicate detection must survive at-least-once redelivery: after a crash the worker
re-reads records whose offsets were not committed, and their ids are already in the
(changelog-restored) dedup table. Each remembered key therefore stores the *origin*
(topic:partition:offset) of the record that claimed it; seeing the same key again
from the same origin is a redelivery and is processed again (downstream writes are
idempotent by ``source_id``), while the same key from another origin is a true
duplicate and is dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from schemas.events import CleanPost, DeadLetter
from stream_processors.cleaning import (
    REASON_DUPLICATE_CONTENT,
    REASON_DUPLICATE_ID,
    REASON_UNHANDLED_ERROR,
    CleaningConfig,
    LanguageDetector,
    Rejection,
    TextTagger,
    clean_record,
    parse_payload,
)

COMPONENT_CLEAN = "stream.clean"
COMPONENT_SCORE = "stream.score"


class DedupStore(Protocol):
    """Remembers which origin first claimed a key within the de-duplication window."""

    def claimed_by(self, key: str) -> str | None: ...

    def claim(self, key: str, origin: str) -> None: ...


class DictDedup:
    """In-memory :class:`DedupStore` for tests and tools (no window, no expiry)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def claimed_by(self, key: str) -> str | None:
        return self.data.get(key)

    def claim(self, key: str, origin: str) -> None:
        self.data[key] = origin


@dataclass(frozen=True)
class Origin:
    """Where a record came from; also the identity of one delivery for duplicate checks."""

    topic: str
    partition: int
    offset: int
    key: str | None = None

    @property
    def marker(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    def as_dead_letter_fields(self) -> dict[str, Any]:
        return {
            "original_topic": self.topic,
            "original_partition": self.partition,
            "original_offset": self.offset,
            "original_key": self.key,
        }


def dead_letter(
    payload: bytes, origin: Origin, *, reason: str, detail: str, component: str, source_id: str | None = None
) -> DeadLetter:
    return DeadLetter.for_payload(
        payload,
        reason=reason,
        detail=detail,
        component=component,
        source_id=source_id,
        **origin.as_dead_letter_fields(),
    )


def unhandled_error(
    payload: bytes, origin: Origin, error: Exception, *, component: str, source_id: str | None = None
) -> DeadLetter:
    """The dead letter of a record whose handling raised: the record fails alone, never silently.

    The reason is ``unhandled_error``; the detail names the exception type, which is what an
    operator needs to tell a bug (a new kind of bad input) from an outage.
    """
    return dead_letter(
        payload,
        origin,
        reason=REASON_UNHANDLED_ERROR,
        detail=f"{type(error).__name__}: {error}",
        component=component,
        source_id=source_id,
    )


def _claim(dedup: DedupStore, key: str, origin: Origin) -> str | None:
    """Claim ``key`` for this record's position; the earlier claimant's marker when another
    record holds it. A record re-delivered after a crash finds its own marker and passes."""
    claimed = dedup.claimed_by(key)
    if claimed and claimed != origin.marker:
        return str(claimed)
    dedup.claim(key, origin.marker)
    return None


def process_raw(
    payload: bytes,
    origin: Origin,
    *,
    config: CleaningConfig,
    tagger: TextTagger,
    dedup: DedupStore,
    detector: LanguageDetector | None = None,
) -> CleanPost | DeadLetter:
    """Parse, clean, validate and de-duplicate one raw payload; never raises on content."""
    parsed = parse_payload(payload)
    if isinstance(parsed, Rejection):
        return dead_letter(
            payload, origin, reason=parsed.reason, detail=parsed.detail, component=COMPONENT_CLEAN
        )
    claimed = _claim(dedup, f"id:{parsed.source_id}", origin)
    if claimed:
        return dead_letter(
            payload,
            origin,
            reason=REASON_DUPLICATE_ID,
            detail=f"source_id already seen at {claimed}",
            component=COMPONENT_CLEAN,
            source_id=parsed.source_id,
        )
    result = clean_record(parsed, config=config, tagger=tagger, detector=detector)
    if isinstance(result, Rejection):
        return dead_letter(
            payload,
            origin,
            reason=result.reason,
            detail=result.detail,
            component=COMPONENT_CLEAN,
            source_id=parsed.source_id,
        )
    claimed = _claim(dedup, f"hash:{result.content_hash}", origin)
    if claimed:
        return dead_letter(
            payload,
            origin,
            reason=REASON_DUPLICATE_CONTENT,
            detail=f"same cleaned text already seen at {claimed}",
            component=COMPONENT_CLEAN,
            source_id=parsed.source_id,
        )
    return result
