from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from schemas import jsonschema
from schemas.events import (
    WIRE_MODELS,
    DeadLetter,
    NewsArticle,
    PriceTick,
    RedditComment,
    RedditPost,
    ScoredPost,
    TrendWindow,
    iso_utc,
    parse_raw_text,
)

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def test_json_schema_files_are_current():
    assert jsonschema.stale_files() == [], "run: python -m schemas.jsonschema"


def test_stale_schema_is_detected(tmp_path):
    jsonschema.write_all(tmp_path)
    assert jsonschema.stale_files(tmp_path) == []
    (tmp_path / "price_tick.schema.json").write_text("{}")
    (tmp_path / "obsolete.schema.json").write_text("{}")
    assert jsonschema.stale_files(tmp_path) == ["price_tick.schema.json", "obsolete.schema.json"]


@pytest.mark.parametrize("model", WIRE_MODELS)
def test_every_model_has_envelope_fields(model):
    fields = model.model_fields
    for name in ("schema_version", "source_id", "event_time", "ingest_time"):
        assert name in fields, f"{model.__name__} lacks {name}"


def test_timestamps_are_utc_iso_with_z():
    post = RedditPost(
        source_id="t3_abc",
        event_time=datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
        subreddit="Bitcoin",
        title="BTC to the moon",
    )
    wire = json.loads(post.to_json())
    assert wire["event_time"] == "2024-05-01T12:30:00.000Z"
    assert wire["ingest_time"].endswith("Z")
    assert RedditPost.from_json(post.to_json()) == post


@pytest.mark.parametrize(
    ("given", "stored", "wire"),
    [
        # already normal (UTC, whole milliseconds): kept as it is
        (datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=UTC), None, "2024-05-01T12:30:00.123Z"),
        # sub-millisecond digits are cut, in UTC as in any other zone
        (
            datetime(2024, 5, 1, 12, 30, 0, 123999, tzinfo=UTC),
            datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=UTC),
            "2024-05-01T12:30:00.123Z",
        ),
        (
            datetime(2024, 5, 1, 18, 0, 0, 999999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            datetime(2024, 5, 1, 12, 30, 0, 999000, tzinfo=UTC),
            "2024-05-01T12:30:00.999Z",
        ),
        # a zone at offset zero that is not the UTC singleton is still normalized
        (
            datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(0), "GMT")),
            datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
            "2024-05-01T12:30:00.000Z",
        ),
    ],
)
def test_timestamps_are_stored_in_utc_at_millisecond_precision(given, stored, wire):
    tick = PriceTick(source_id="bitcoin:x", event_time=given, coin="bitcoin", price=1.0)
    assert tick.event_time == (stored or given) and tick.event_time.tzinfo is UTC
    assert tick.event_time.microsecond % 1000 == 0
    assert json.loads(tick.to_json())["event_time"] == wire
    assert iso_utc(given.replace(microsecond=given.microsecond // 1000 * 1000)) == wire


def test_cached_wire_form_is_right_for_every_zone_and_millisecond():
    """``iso_utc`` is cached by value: an instant first met in UTC and again in another zone
    (equal datetimes) must give the same text, and instants a millisecond apart must not."""
    moment = datetime(2024, 5, 1, 12, 30, 0, 5000, tzinfo=UTC)
    assert iso_utc(moment) == "2024-05-01T12:30:00.005Z"
    assert iso_utc(moment.astimezone(timezone(timedelta(hours=-7)))) == "2024-05-01T12:30:00.005Z"
    assert iso_utc(moment + timedelta(milliseconds=1)) == "2024-05-01T12:30:00.006Z"
    assert iso_utc(moment.astimezone(timezone(timedelta(hours=3))) + timedelta(milliseconds=1)) == (
        "2024-05-01T12:30:00.006Z"
    )


def test_naive_timestamp_rejected():
    with pytest.raises(ValidationError, match="timezone"):
        PriceTick(source_id="bitcoin:x", event_time=datetime(2024, 1, 1), coin="bitcoin", price=1.0)


def test_raw_text_dispatch_on_kind():
    comment = RedditComment(
        source_id="t1_xyz", event_time=T0, subreddit="ethereum", body="gm", link_id="t3_abc"
    )
    article = NewsArticle(source_id="guid-1", event_time=T0, feed="https://x/rss", title="ETF approved")
    assert isinstance(parse_raw_text(comment.to_json()), RedditComment)
    assert isinstance(parse_raw_text(article.to_json()), NewsArticle)
    with pytest.raises(ValidationError):
        parse_raw_text(b'{"kind": "tweet"}')
    with pytest.raises(ValidationError):
        parse_raw_text(b"not json")


def test_reddit_ids_must_be_fullnames():
    with pytest.raises(ValidationError):
        RedditPost(source_id="abc", event_time=T0, subreddit="Bitcoin", title="x")


def test_unknown_fields_and_versions_rejected():
    post = json.loads(RedditPost(source_id="t3_a", event_time=T0, subreddit="Bitcoin", title="x").to_json())
    with pytest.raises(ValidationError):
        RedditPost.model_validate({**post, "extra": 1})
    with pytest.raises(ValidationError):
        RedditPost.model_validate({**post, "schema_version": 2})


def test_scored_post_bounds():
    base = dict(
        source_id="t3_a",
        event_time=T0,
        source="reddit",
        text="btc pumping hard",
        original_length=16,
        content_hash="0" * 64,
        label="positive",
        confidence=0.9,
        p_negative=0.05,
        p_neutral=0.05,
        p_positive=0.9,
        model_version="3",
    )
    assert ScoredPost(**base, score=0.85).score == 0.85
    with pytest.raises(ValidationError):
        ScoredPost(**base, score=1.5)


def test_dead_letter_keeps_undecodable_payload_and_is_idempotent():
    payload = b"\xff\xfe{broken"
    first = DeadLetter.for_payload(payload, reason="malformed_json", detail="x", component="test")
    second = DeadLetter.for_payload(payload, reason="malformed_json", detail="x", component="test")
    assert first.source_id == second.source_id
    assert first.payload.endswith("{broken")
    with pytest.raises(ValidationError):
        DeadLetter.for_payload(payload, reason="Bad Reason", detail="x", component="test")


def test_trend_window_id_is_stable():
    sid = TrendWindow.make_source_id("bitcoin", "5m", "all", T0)
    assert sid == "bitcoin:5m:all:2024-05-01T12:30:00.000Z"


def test_topic_keys_follow_the_catalog_contract():
    from schemas.topics import ALERTS, SCORED_POSTS, TRENDS
    from tests.spark_jobs.windows import window

    trend = window("solana", size="1h", source="reddit")
    assert TRENDS.key_of(trend) == "solana:1h:reddit"
    assert SCORED_POSTS.key_of(trend) == trend.source_id
    assert ALERTS.key_of(trend) == "solana"


def _unbounded_strings(node: object, defs: dict, path: str = "") -> list[str]:
    """Paths of string schemas without a maxLength (enums, constants and timestamps are bounded)."""
    if isinstance(node, list):
        return [p for i, item in enumerate(node) for p in _unbounded_strings(item, defs, f"{path}[{i}]")]
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        return _unbounded_strings(defs[node["$ref"].rsplit("/", 1)[-1]], defs, path)
    found = []
    if node.get("type") == "string" and not {"maxLength", "enum", "const", "format"} & node.keys():
        found.append(path or "<root>")
    for key, value in node.items():
        if key != "$defs":
            found += _unbounded_strings(value, defs, f"{path}/{key}")
    return found


@pytest.mark.parametrize("mode", ["validation", "serialization"])
@pytest.mark.parametrize("model", WIRE_MODELS)
def test_every_string_on_the_wire_has_a_maximum_length(model, mode):
    schema = model.model_json_schema(mode=mode)
    assert _unbounded_strings(schema, schema.get("$defs", {})) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "https://x.example/" + "a" * 2048),
        ("permalink", "/r/" + "a" * 2048),
        ("selftext", "a" * 40_001),
    ],
)
def test_over_long_strings_are_rejected(field, value):
    with pytest.raises(ValidationError, match="string_too_long"):
        RedditPost(source_id="t3_a", event_time=T0, subreddit="Bitcoin", title="t", **{field: value})


def test_dead_letter_caps_the_payload_and_keeps_its_size_and_hash():
    payload = b'{"selftext": "' + b"x" * 2_000_000 + b'"}'
    letter = DeadLetter.for_payload(
        payload, reason="invalid_schema", detail="d" * 10_000, component="test", original_key="k" * 10_000
    )
    assert letter.payload == payload[: 64 * 1024].decode()
    assert letter.payload_size == len(payload)
    assert letter.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert letter.source_id == "sha256:" + letter.payload_sha256
    assert len(letter.detail) == 4000 and len(letter.original_key or "") == 256
    assert len(letter.to_json()) < 80_000
    assert DeadLetter.from_json(letter.to_json()) == letter


def test_dead_letters_written_before_the_cap_still_read():
    old = {
        "source_id": "sha256:" + "0" * 64,
        "event_time": "2026-01-01T00:00:00.000Z",
        "reason": "malformed_json",
        "detail": "x",
        "component": "stream.clean",
        "payload": "{broken",
    }
    letter = DeadLetter.model_validate(old)
    assert letter.payload_size is None and letter.payload_sha256 is None
