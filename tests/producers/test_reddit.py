"""Reddit connector against a local server speaking Reddit's listing and OAuth formats."""

from __future__ import annotations

import base64
import json
import time

import pytest
from prometheus_client import REGISTRY

from core.settings import Settings
from producers.reddit import RedditSource, fullname_value, skip_reason
from producers.runner import Runner
from schemas.events import RedditComment, RedditPost
from tests.producers import payloads as p
from tests.producers.conftest import RecordingProducer, make_settings, read_topic
from tests.producers.fakeserver import FakeServer, Reply, Seen


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def run_once(settings: Settings, producer: RecordingProducer) -> Runner:
    runner = Runner(settings, RedditSource(settings), producer=producer)
    runner.run(cycles=1)
    return runner


def paged(pages: dict[str | None, bytes]):
    """A responder serving one listing page per ``after`` value."""

    def respond(seen: Seen) -> Reply:
        after = seen.query.get("after", [None])[0]
        return Reply(200, pages[after], {"Content-Type": "application/json; charset=UTF-8"})

    return respond


def test_fullname_ordering_and_skip_reasons() -> None:
    assert fullname_value("t3_zz") > fullname_value("t3_10") > fullname_value("t3_z")
    assert skip_reason("post", {"selftext": "[removed]", "title": "x"}) == "removed"
    assert (
        skip_reason("post", {"selftext": "", "title": "x", "removed_by_category": "moderator"}) == "removed"
    )
    assert skip_reason("post", {"selftext": "", "title": "x", "removed_by_category": "deleted"}) == "deleted"
    assert skip_reason("comment", {"body": "[deleted]"}) == "deleted"
    assert skip_reason("comment", {"body": "fine"}) is None


def test_public_listing_first_run_produces_oldest_first_and_skips_removed(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    posts = [
        p.reddit_post("1a5", offset=50),
        p.reddit_post("1a4", offset=40, selftext="[removed]"),
        p.reddit_post("1a3", offset=30, removed_by_category="deleted", author="[deleted]"),
        p.reddit_post("1a2", offset=20, author="[deleted]", title="Author gone, post kept"),
        p.reddit_post("1a1", offset=10),
    ]
    comments = [p.reddit_comment("c2", offset=60), p.reddit_comment("c1", offset=55, body="[removed]")]
    server.set("/r/Bitcoin/new.json", Reply(200, p.listing(posts, after="t3_1a1")))
    server.set("/r/Bitcoin/comments.json", Reply(200, p.listing(comments)))
    removed_before = metric("cryptopulse_producer_skipped_total", source="reddit", reason="removed")

    run_once(unit_settings, recorder)

    assert recorder.ids() == ["t3_1a1", "t3_1a2", "t3_1a5", "t1_c2"]
    post = recorder.sent[1][2]
    assert isinstance(post, RedditPost) and post.author is None and post.title == "Author gone, post kept"
    assert post.permalink == "https://www.reddit.com/r/Bitcoin/comments/1a2/some_title/"
    comment = recorder.sent[3][2]
    assert isinstance(comment, RedditComment) and comment.link_id == "t3_1abc"
    assert [k for _, k, _ in recorder.sent] == recorder.ids()  # keyed by source id
    assert (
        metric("cryptopulse_producer_skipped_total", source="reddit", reason="removed") == removed_before + 2
    )
    first = server.hits("/r/Bitcoin/new.json")[0]
    assert first.query["limit"] == ["100"] and first.query["raw_json"] == ["1"]
    assert first.headers["user-agent"].startswith("cryptopulse/")
    assert "authorization" not in first.headers
    assert len(server.hits("/r/Bitcoin/new.json")) == 1  # first run: one page only


def test_restart_resumes_from_cursor_across_pages(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set("/r/Bitcoin/comments.json", Reply(200, p.listing([])))
    server.set("/r/Bitcoin/new.json", Reply(200, p.listing([p.reddit_post("100"), p.reddit_post("0zz")])))
    run_once(unit_settings, recorder)
    assert recorder.ids() == ["t3_0zz", "t3_100"]

    # Five new posts since, over two pages; the cursor item itself has been deleted meanwhile.
    page1 = p.listing([p.reddit_post(i) for i in ("105", "104", "103")], after="t3_103")
    page2 = p.listing([p.reddit_post(i) for i in ("102", "101", "0zz", "0zy")], after="t3_0zy")
    server.set("/r/Bitcoin/new.json", paged({None: page1, "t3_103": page2}))
    recorder.sent.clear()
    run_once(unit_settings, recorder)  # a fresh RedditSource: state comes from disk
    assert recorder.ids() == ["t3_101", "t3_102", "t3_103", "t3_104", "t3_105"]
    assert [r.query.get("after") for r in server.hits("/r/Bitcoin/new.json")][-2:] == [None, ["t3_103"]]

    recorder.sent.clear()
    run_once(unit_settings, recorder)  # nothing new: nothing produced
    assert recorder.ids() == []
    state = json.loads((unit_settings.home / "producers" / "reddit.json").read_text())
    assert state["cursors"]["Bitcoin/post"] == int("105", 36)


def test_oauth_client_credentials_and_token_refresh(tmp_path, server: FakeServer) -> None:
    settings = make_settings(tmp_path, server, reddit_client_id="my-id", reddit_client_secret="s3cret")
    server.set("/api/v1/access_token", Reply(200, p.token()))
    server.set(
        "/r/Bitcoin/new",
        Reply(401, b'{"message": "Unauthorized", "error": 401}'),
        Reply(
            200,
            p.listing([p.reddit_post("a1")]),
            {"X-Ratelimit-Remaining": "99.0", "X-Ratelimit-Reset": "300"},
        ),
    )
    server.set("/r/Bitcoin/comments", Reply(200, p.listing([p.reddit_comment("b1")])))
    recorder = RecordingProducer(settings)
    run_once(settings, recorder)

    assert recorder.ids() == ["t3_a1", "t1_b1"]
    tokens = server.hits("/api/v1/access_token")
    assert len(tokens) == 2  # first token rejected once, refreshed
    assert tokens[0].method == "POST" and tokens[0].body == b"grant_type=client_credentials"
    assert tokens[0].headers["authorization"] == "Basic " + base64.b64encode(b"my-id:s3cret").decode()
    assert server.hits("/r/Bitcoin/new")[-1].headers["authorization"] == "bearer tok-123"
    assert server.hits("/r/Bitcoin/new.json") == []


def test_429_waits_for_reset_then_succeeds(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set(
        "/r/Bitcoin/new.json",
        Reply(
            429,
            b'{"message": "Too Many Requests", "error": 429}',
            {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "0.3", "X-Ratelimit-Used": "100"},
        ),
        Reply(200, p.listing([p.reddit_post("z1")])),
    )
    server.set("/r/Bitcoin/comments.json", Reply(200, p.listing([])))
    started = time.monotonic()
    run_once(unit_settings, recorder)
    assert time.monotonic() - started >= 0.3
    assert recorder.ids() == ["t3_z1"]


def test_remaining_zero_pauses_next_request(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set(
        "/r/Bitcoin/new.json",
        Reply(
            200, p.listing([p.reddit_post("z1")]), {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "0.4"}
        ),
    )
    server.set("/r/Bitcoin/comments.json", Reply(200, p.listing([])))
    started = time.monotonic()
    run_once(unit_settings, recorder)
    assert time.monotonic() - started >= 0.4  # waited out the reset before the comments request
    assert recorder.ids() == ["t3_z1"]


@pytest.mark.parametrize(
    "failure",
    [
        Reply(503, b"<html>upstream down</html>"),
        Reply(200, b"", stall_s=1.5),  # longer than the 1 s client timeout
        Reply(200, p.listing([p.reddit_post("x9")]), truncate_to=40),  # cut mid-body, connection closed
        Reply(200, p.listing([p.reddit_post("x9")])[:-30]),  # complete response, truncated JSON
        Reply(200, b"<!doctype html><title>reddit</title>"),  # HTML instead of JSON
        Reply(200, json.dumps({"kind": "t3", "data": {}}).encode()),  # JSON but not a Listing
        Reply(200, p.listing([p.reddit_post("x9", title="caf\u00e9")]).replace(b"caf\\u00e9", b"caf\xe9")),
    ],
    ids=["5xx", "timeout", "truncated-connection", "truncated-json", "html", "not-a-listing", "latin1-bytes"],
)
def test_failures_do_not_advance_cursor_and_next_cycle_has_no_gap(
    failure: Reply, unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set("/r/Bitcoin/comments.json", Reply(200, p.listing([])))
    server.set("/r/Bitcoin/new.json", Reply(200, p.listing([p.reddit_post("x1")])))
    run_once(unit_settings, recorder)
    server.set("/r/Bitcoin/new.json", failure)
    run_once(unit_settings, recorder)
    assert recorder.ids() == ["t3_x1"]
    server.set("/r/Bitcoin/new.json", Reply(200, p.listing([p.reddit_post(i) for i in ("x3", "x2", "x1")])))
    run_once(unit_settings, recorder)
    assert recorder.ids() == ["t3_x1", "t3_x2", "t3_x3"]


def test_delivery_failure_keeps_cursor_so_items_are_reproduced(
    unit_settings: Settings, server: FakeServer
) -> None:
    server.set("/r/Bitcoin/comments.json", Reply(200, p.listing([])))
    server.set("/r/Bitcoin/new.json", Reply(200, p.listing([p.reddit_post("d1")])))
    failing = RecordingProducer(unit_settings, fail_flush=True)
    runner = run_once(unit_settings, failing)
    assert failing.sent == [] and runner.stats.failed_cycles == 1
    assert not (unit_settings.home / "producers" / "reddit.json").exists()
    healthy = RecordingProducer(unit_settings)
    run_once(unit_settings, healthy)
    assert healthy.ids() == ["t3_d1"]


def test_invalid_item_goes_to_dead_letter(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set("/r/Bitcoin/comments.json", Reply(200, p.listing([])))
    server.set(
        "/r/Bitcoin/new.json",
        Reply(
            200,
            p.listing(
                [
                    p.reddit_post("v2", title="t" * 1200),  # longer than RedditPost allows
                    p.reddit_post("v1"),
                ]
            ),
        ),
    )
    run_once(unit_settings, recorder)
    assert recorder.ids() == ["t3_v1"]
    assert len(recorder.dead) == 1
    dead = recorder.dead[0]
    assert dead["reason"] == "invalid_schema" and dead["source_id"] == "t3_v2"
    assert "title" in dead["detail"] and dead["original_topic"].endswith(".raw.reddit")


def test_one_failing_subreddit_does_not_stop_others(tmp_path, server: FakeServer) -> None:
    settings = make_settings(tmp_path, server, subreddits=["private_sub", "Bitcoin"])
    server.set("/r/private_sub/new.json", Reply(403, b'{"reason": "private", "error": 403}'))
    server.set("/r/private_sub/comments.json", Reply(403, b'{"reason": "private", "error": 403}'))
    server.set("/r/Bitcoin/new.json", Reply(200, p.listing([p.reddit_post("ok1")])))
    server.set("/r/Bitcoin/comments.json", Reply(200, p.listing([])))
    recorder = RecordingProducer(settings)
    run_once(settings, recorder)
    assert recorder.ids() == ["t3_ok1"]


@pytest.mark.integration
def test_reddit_into_kafka_restart_no_duplicates(kafka_settings: Settings, server: FakeServer) -> None:
    server.set("/r/Bitcoin/comments.json", Reply(200, p.listing([p.reddit_comment("k1")])))
    server.set(
        "/r/Bitcoin/new.json",
        Reply(200, p.listing([p.reddit_post("k2"), p.reddit_post("k1", selftext="[deleted]")])),
    )
    Runner(kafka_settings, RedditSource(kafka_settings)).run(cycles=1)
    server.set(
        "/r/Bitcoin/new.json", Reply(200, p.listing([p.reddit_post(i) for i in ("k4", "k3", "k2", "k1")]))
    )
    server.set(
        "/r/Bitcoin/comments.json", Reply(200, p.listing([p.reddit_comment("k2"), p.reddit_comment("k1")]))
    )
    Runner(kafka_settings, RedditSource(kafka_settings)).run(cycles=1)  # a restart: new producer and source

    records = read_topic(kafka_settings, f"{kafka_settings.kafka.topic_prefix}.raw.reddit")
    keys = sorted(k or "" for k, _ in records)
    assert keys == ["t1_k1", "t1_k2", "t3_k2", "t3_k3", "t3_k4"]
    for key, value in records:
        body = json.loads(value)
        assert body["source_id"] == key and body["schema_version"] == 1
