"""RSS 2.0 / Atom feeds and NewsAPI against a local server serving the real formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from core.settings import Settings
from producers.news import FeedSource, NewsApiSource, entry_keys, load_feeds, plain_text
from producers.runner import Runner
from schemas.events import DeadLetter, NewsArticle
from tests.producers import payloads as p
from tests.producers.conftest import RecordingProducer, make_settings, read_topic
from tests.producers.fakeserver import FakeServer, Reply

RSS_HEADERS = {
    "Content-Type": "application/rss+xml; charset=utf-8",
    "ETag": '"v1"',
    "Last-Modified": "Thu, 28 Nov 2024 08:00:00 GMT",
}


def feeds_run(
    settings: Settings, server: FakeServer, paths: list[str], producer: RecordingProducer
) -> Runner:
    source = FeedSource(settings, feeds=[server.url + path for path in paths])
    runner = Runner(settings, source, producer=producer)
    runner.run(cycles=1)
    return runner


def articles(producer: RecordingProducer) -> list[NewsArticle]:
    return [r for _, _, r in producer.sent if isinstance(r, NewsArticle)]


def test_bundled_feed_list_and_helpers() -> None:
    feeds = load_feeds(None)
    assert len(feeds) == 153 and feeds[0] == "https://cointelegraph.com/feed"
    assert plain_text("<p>Bitcoin &amp; <b>ETH</b></p>\n up") == "Bitcoin & ETH up"
    assert entry_keys("g", "https://x/1", "t")[0].startswith("guid:")
    assert entry_keys(None, "https://x/1", "t")[0].startswith("link:")
    assert entry_keys(None, None, "Title")[0].startswith("text:")


def test_rss_and_atom_feeds_produce_articles_oldest_first(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set(
        "/rss",
        Reply(
            200,
            p.rss(
                [
                    {
                        "title": "Second &amp; newest",
                        "link": "https://ex.com/2",
                        "guid": "g-2",
                        "date": p.rfc822(120),
                        "summary": "ETH <b>rallies</b>",
                    },
                    {"title": "First", "link": "https://ex.com/1", "date": p.rfc822(60)},
                ]
            ),
            RSS_HEADERS,
        ),
    )
    server.set(
        "/atom",
        Reply(
            200,
            p.atom(
                [
                    {
                        "title": "Atom entry",
                        "id": "urn:uuid:1",
                        "link": "https://atom.ex/1",
                        "updated": "2024-11-28T09:00:00Z",
                    },
                ]
            ),
            {"Content-Type": "application/atom+xml"},
        ),
    )
    feeds_run(unit_settings, server, ["/rss", "/atom"], recorder)

    got = articles(recorder)
    assert [a.title for a in got] == ["First", "Second & newest", "Atom entry"]
    first, second, atom = got
    assert first.source_id == entry_keys(None, "https://ex.com/1", None)[0]
    assert second.source_id == entry_keys("g-2", None, None)[0]
    assert (
        second.summary == "ETH rallies" and second.publisher == "Crypto News" and second.author == "Reporter"
    )
    assert second.event_time == datetime.fromtimestamp(p.BASE_TS + 120, UTC)
    assert atom.feed == server.url + "/atom" and atom.link == "https://atom.ex/1"
    assert atom.event_time == datetime(2024, 11, 28, 9, tzinfo=UTC)


def test_conditional_get_and_restart_dedup(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    item1 = {"title": "One", "link": "https://ex.com/1", "guid": "g-1", "date": p.rfc822(1)}
    item2 = {"title": "Two", "link": "https://ex.com/2", "guid": "g-2", "date": p.rfc822(2)}

    def conditional(seen):
        if seen.headers.get("if-none-match") == '"v1"':
            return Reply(304, b"", {"ETag": '"v1"'})
        return Reply(200, p.rss([item1]), RSS_HEADERS)

    server.set("/rss", conditional)
    feeds_run(unit_settings, server, ["/rss"], recorder)
    feeds_run(unit_settings, server, ["/rss"], recorder)  # restart: 304, nothing new
    second = server.hits("/rss")[1]
    assert second.headers["if-none-match"] == '"v1"'
    assert second.headers["if-modified-since"] == "Thu, 28 Nov 2024 08:00:00 GMT"
    assert [a.title for a in articles(recorder)] == ["One"]

    # A server that ignores validators: the seen ids still prevent duplicates after a restart.
    server.set(
        "/rss", Reply(200, p.rss([item2, item1]), {"Content-Type": "application/rss+xml", "ETag": '"v2"'})
    )
    feeds_run(unit_settings, server, ["/rss"], recorder)
    feeds_run(unit_settings, server, ["/rss"], recorder)
    assert [a.title for a in articles(recorder)] == ["One", "Two"]


def test_same_story_in_two_feeds_is_produced_once(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    story = {"title": "Syndicated", "link": "https://ex.com/s", "date": p.rfc822(5)}
    server.set("/a", Reply(200, p.rss([story])))
    server.set("/b", Reply(200, p.rss([{**story, "guid": "other-guid"}])))
    feeds_run(unit_settings, server, ["/a", "/b"], recorder)
    assert [a.title for a in articles(recorder)] == ["Syndicated"]


def test_each_feed_failure_is_isolated(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    good = p.rss([{"title": "Survivor", "link": "https://ex.com/ok", "date": p.rfc822(1)}])
    server.set("/5xx", Reply(502, b"bad gateway"))
    server.set("/timeout", Reply(200, good, stall_s=1.5))
    server.set("/truncated", Reply(200, p.rss([{"title": "Half", "link": "https://ex.com/h"}] * 3)[:-80]))
    server.set("/cut", Reply(200, good, truncate_to=100))
    server.set("/garbage", Reply(200, b"\x00\xff{not xml at all"))
    server.set(
        "/html", Reply(200, b"<html><body>Cloudflare says hi</body></html>", {"Content-Type": "text/html"})
    )
    server.set("/ok", Reply(200, good))
    paths = ["/5xx", "/timeout", "/truncated", "/cut", "/garbage", "/html", "/missing", "/ok"]
    source = FeedSource(
        unit_settings, feeds=[server.url + path for path in paths] + ["http://exa mple.com/\x00"]
    )
    runner = Runner(unit_settings, source, producer=recorder)
    runner.run(cycles=1)

    assert [a.title for a in articles(recorder)] == ["Survivor"]
    assert runner.stats.failed_cycles == 0
    assert REGISTRY.get_sample_value(
        "cryptopulse_producer_failures_total", {"source": "news", "reason": "error"}
    )
    state = json.loads((unit_settings.home / "producers" / "news.json").read_text())
    assert set(state["feeds"]) == {server.url + "/ok"}  # failed feeds keep no validators: refetched next time


def test_non_utf8_feeds_decode_correctly(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set(
        "/latin1",
        Reply(
            200,
            p.rss(
                [{"title": "Café crème: Bitcoin à 100k", "link": "https://ex.fr/1"}],
                title="Le Journal",
                encoding="iso-8859-1",
            ),
            {"Content-Type": "application/rss+xml"},
        ),
    )
    server.set(
        "/cp1252",
        Reply(
            200,
            p.rss([{"title": "Ether’s “rally” — €", "link": "https://ex.com/q"}], encoding="windows-1252"),
            {"Content-Type": "text/xml; charset=windows-1252"},
        ),
    )
    feeds_run(unit_settings, server, ["/latin1", "/cp1252"], recorder)
    assert sorted(a.title for a in articles(recorder)) == [
        "Café crème: Bitcoin à 100k",
        "Ether’s “rally” — €",
    ]


def test_invalid_entry_is_dead_lettered(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set(
        "/rss",
        Reply(
            200,
            p.rss(
                [
                    {"title": "", "link": "https://ex.com/empty"},
                    {"title": "Fine", "link": "https://ex.com/fine"},
                ]
            ),
        ),
    )
    feeds_run(unit_settings, server, ["/rss"], recorder)
    assert [a.title for a in articles(recorder)] == ["Fine"]
    assert [d["reason"] for d in recorder.dead] == ["invalid_schema"]


def test_newsapi_everything(tmp_path: Path, server: FakeServer) -> None:
    settings = make_settings(tmp_path, server, newsapi_key="news-key-123")
    body = p.newsapi([p.newsapi_article(3), p.newsapi_article(2, title="[Removed]"), p.newsapi_article(1)])
    server.set(
        "/v2/everything",
        Reply(
            429,
            json.dumps({"status": "error", "code": "rateLimited", "message": "slow down"}).encode(),
            {"Retry-After": "0.2"},
        ),
        Reply(200, body),
    )
    recorder = RecordingProducer(settings)
    Runner(settings, NewsApiSource(settings), producer=recorder).run(cycles=1)
    got = articles(recorder)
    assert [a.title for a in got] == ["Bitcoin ETF story 1", "Bitcoin ETF story 3"]
    assert got[0].publisher == "CoinDesk" and got[0].feed == "newsapi" and got[0].summary == "Description 1"
    request = server.hits("/v2/everything")[-1]
    assert request.headers["x-api-key"] == "news-key-123"
    assert request.query["sortBy"] == ["publishedAt"] and "from" not in request.query

    Runner(settings, NewsApiSource(settings), producer=recorder).run(cycles=1)  # restart
    assert len(articles(recorder)) == 2
    assert server.hits("/v2/everything")[-1].query["from"] == ["2024-11-28T08:03:00Z"]


def test_newsapi_error_body_fails_cycle(tmp_path: Path, server: FakeServer) -> None:
    settings = make_settings(tmp_path, server, newsapi_key="k")
    server.set("/v2/everything", Reply(200, b'{"status": "error", "code": "apiKeyInvalid", "message": "no"}'))
    recorder = RecordingProducer(settings)
    runner = Runner(settings, NewsApiSource(settings), producer=recorder)
    runner.run(cycles=1)
    assert runner.stats.failed_cycles == 1 and recorder.sent == []


@pytest.mark.integration
def test_feeds_into_kafka_with_dead_letter_and_restart(kafka_settings: Settings, server: FakeServer) -> None:
    server.set(
        "/rss",
        Reply(
            200,
            p.rss(
                [
                    {"title": "Kafka one", "link": "https://ex.com/k1", "date": p.rfc822(1)},
                    {"title": "", "link": "https://ex.com/bad"},
                ]
            ),
        ),
    )
    feeds = [server.url + "/rss"]
    Runner(kafka_settings, FeedSource(kafka_settings, feeds=feeds)).run(cycles=1)
    server.set(
        "/rss",
        Reply(
            200,
            p.rss(
                [
                    {"title": "Kafka two", "link": "https://ex.com/k2", "date": p.rfc822(2)},
                    {"title": "Kafka one", "link": "https://ex.com/k1", "date": p.rfc822(1)},
                ]
            ),
        ),
    )
    Runner(kafka_settings, FeedSource(kafka_settings, feeds=feeds)).run(cycles=1)

    prefix = kafka_settings.kafka.topic_prefix
    news = [NewsArticle.from_json(v) for _, v in read_topic(kafka_settings, f"{prefix}.raw.news")]
    assert sorted(a.title for a in news) == ["Kafka one", "Kafka two"]
    dead = [DeadLetter.from_json(v) for _, v in read_topic(kafka_settings, f"{prefix}.deadletter")]
    assert len(dead) == 1
    assert dead[0].reason == "invalid_schema" and dead[0].component == "producer.news"
    assert json.loads(dead[0].payload)["link"] == "https://ex.com/bad"


def test_news_command_combines_feeds_and_newsapi_when_key_set(tmp_path: Path, server: FakeServer) -> None:
    from producers.runner import MultiSource, build_source

    feeds_file = tmp_path / "feeds.csv"
    feeds_file.write_text(f"Feeds\n{server.url}/rss\n", encoding="utf-8")
    settings = make_settings(tmp_path, server, newsapi_key="k", news_feeds_file=str(feeds_file))
    server.set("/rss", Reply(200, p.rss([{"title": "From RSS", "link": "https://ex.com/r"}])))
    server.set("/v2/everything", Reply(200, p.newsapi([p.newsapi_article(1)])))
    source = build_source("news", settings)
    assert isinstance(source, MultiSource)
    recorder = RecordingProducer(settings)
    Runner(settings, source, producer=recorder).run(cycles=1)
    assert sorted(a.title for a in articles(recorder)) == ["Bitcoin ETF story 1", "From RSS"]
    assert isinstance(build_source("news", make_settings(tmp_path / "nokey", server)), FeedSource)
