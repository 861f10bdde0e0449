"""Every raw payload ends as exactly one CleanPost or one DeadLetter (faust-free core)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from schemas.events import CleanPost, DeadLetter, NewsArticle, RedditComment, RedditPost
from stream_processors import cleaning as c
from stream_processors.processing import DictDedup, Origin, process_raw

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = c.CleaningConfig(author_salt="s")


class Tagger:
    def tag(self, text: str) -> list[str]:
        return ["bitcoin"] if "bitcoin" in text.lower() or "btc" in text.lower() else []


def run(payload: bytes, offset: int = 0, dedup: DictDedup | None = None) -> CleanPost | DeadLetter:
    return process_raw(
        payload,
        Origin("raw.reddit", 0, offset, "k"),
        config=CONFIG,
        tagger=Tagger(),
        dedup=dedup or DictDedup(),
    )


def reddit(text: str, sid: str = "t3_a1") -> bytes:
    return RedditPost(source_id=sid, event_time=T0, subreddit="Bitcoin", title=text, author="bob").to_json()


def assert_dead(result: CleanPost | DeadLetter, reason: str, payload: bytes) -> DeadLetter:
    assert isinstance(result, DeadLetter), result
    assert result.reason == reason
    assert result.component == "stream.clean"
    assert result.payload == payload.decode("utf-8", "replace")
    assert result.original_topic == "raw.reddit" and result.original_partition == 0
    assert result.original_offset is not None and result.event_time is not None
    return result


def test_malformed_json() -> None:
    payload = b'{"kind": "post", "source_id": '
    dead = assert_dead(run(payload), c.REASON_MALFORMED_JSON, payload)
    assert dead.source_id.startswith("sha256:")


def test_wrong_schema() -> None:
    payload = json.dumps({"kind": "post", "source_id": "t3_x", "title": "hi"}).encode()
    assert_dead(run(payload), c.REASON_INVALID_SCHEMA, payload)


def test_unknown_coin() -> None:
    payload = reddit("$QQQZ is going to flip everything this year, mark my words")
    dead = assert_dead(run(payload), c.REASON_UNKNOWN_COIN, payload)
    assert dead.source_id == "t3_a1"


def test_non_english() -> None:
    payload = reddit("Je pense que le bitcoin va beaucoup monter cette semaine, les amis")
    assert_dead(run(payload), c.REASON_NON_ENGLISH, payload)


def test_empty_text() -> None:
    payload = RedditComment(
        source_id="t1_z", event_time=T0, subreddit="Bitcoin", body="   ", link_id="t3_a1"
    ).to_json()
    assert_dead(run(payload), c.REASON_EMPTY_TEXT, payload)


def test_too_short() -> None:
    payload = reddit("btc up")
    assert_dead(run(payload), c.REASON_TOO_SHORT, payload)


def test_clean_english_news() -> None:
    payload = NewsArticle(
        source_id="n-1", event_time=T0, feed="f", title="Bitcoin rallies as ETF inflows hit record highs"
    ).to_json()
    result = run(payload)
    assert isinstance(result, CleanPost) and result.coins == ["bitcoin"]


def test_duplicate_source_id_and_content_but_redelivery_passes() -> None:
    dedup = DictDedup()
    first = run(reddit("Bitcoin looks strong today, holding my position"), offset=1, dedup=dedup)
    assert isinstance(first, CleanPost)
    # at-least-once redelivery of the same record (same origin) is processed again
    again = run(reddit("Bitcoin looks strong today, holding my position"), offset=1, dedup=dedup)
    assert isinstance(again, CleanPost) and again.source_id == first.source_id
    # the same id produced twice is a real duplicate
    payload = reddit("Bitcoin looks strong today, holding my position")
    assert_dead(run(payload, offset=2, dedup=dedup), c.REASON_DUPLICATE_ID, payload)
    # another id with the same cleaned text is a content duplicate
    copy = reddit("bitcoin LOOKS strong   today, holding my position", sid="t3_b2")
    assert_dead(run(copy, offset=3, dedup=dedup), c.REASON_DUPLICATE_CONTENT, copy)


def test_every_payload_has_exactly_one_outcome() -> None:
    payloads = [
        b"",
        b"null",
        b"[]",
        b"\x00\xff",
        b'{"kind": "news"}',
        reddit("Bitcoin is fine", sid="t3_c1"),
        reddit("ok", sid="t3_c2"),
        reddit("Bitcoin ist heute wirklich sehr stark gestiegen, unglaublich", sid="t3_c3"),
    ]
    dedup = DictDedup()
    outcomes = [run(p, offset=i, dedup=dedup) for i, p in enumerate(payloads)]
    assert len(outcomes) == len(payloads)
    assert all(isinstance(o, CleanPost | DeadLetter) for o in outcomes)


# -- poison records: each fails alone with a reason, never an exception ------------------

NESTED = b"[" * 100_000 + b"]" * 100_000  # 200 KB deeply nested array


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(NESTED, c.REASON_MALFORMED_JSON, id="deeply-nested"),
        pytest.param(
            b'{"kind": "post", "title": "\xff\xfe bad utf-8"}', c.REASON_MALFORMED_JSON, id="invalid-utf8"
        ),
        pytest.param(b'{"kind": "post", "title": "a\x00b"}', c.REASON_MALFORMED_JSON, id="raw-nul-byte"),
        pytest.param(b"\x00" * 64, c.REASON_MALFORMED_JSON, id="only-nul-bytes"),
        pytest.param(b"[1, 2, 3]", c.REASON_INVALID_SCHEMA, id="array"),
        pytest.param(b'"a string"', c.REASON_INVALID_SCHEMA, id="string"),
        pytest.param(b"null", c.REASON_INVALID_SCHEMA, id="null"),
        pytest.param(b"42", c.REASON_INVALID_SCHEMA, id="number"),
    ],
)
def test_poison_payloads_are_dead_lettered(payload: bytes, reason: str) -> None:
    dead = run(payload)
    assert isinstance(dead, DeadLetter) and dead.reason == reason, dead
    assert dead.payload_size == len(payload) and dead.payload_sha256 == hashlib.sha256(payload).hexdigest()


def test_deeply_nested_json_names_the_recursion() -> None:
    dead = run(NESTED)
    assert isinstance(dead, DeadLetter) and "RecursionError" in dead.detail
    assert dead.payload == NESTED[: len(dead.payload)].decode() and len(dead.payload) == 64 * 1024
    assert len(dead.to_json()) < 100_000  # the dead letter itself fits on its topic


def test_two_megabyte_message_is_dead_lettered_capped() -> None:
    payload = json.dumps(
        {
            "kind": "post",
            "source_id": "t3_big",
            "event_time": "2026-01-01T00:00:00Z",
            "subreddit": "Bitcoin",
            "title": "bitcoin",
            "selftext": "x" * 2_000_000,
        }
    ).encode()
    dead = run(payload)
    assert isinstance(dead, DeadLetter) and dead.reason == c.REASON_INVALID_SCHEMA
    assert "selftext" in dead.detail and dead.payload_size == len(payload)
    assert len(dead.to_json()) < 100_000


def test_escaped_nul_characters_are_cleaned_away() -> None:
    payload = reddit("Bitcoin\u0000 looks\u0007 strong into the weekly close")
    post = run(payload)
    assert isinstance(post, CleanPost), post
    assert post.text == "Bitcoin looks strong into the weekly close"
