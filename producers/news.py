"""News connectors: RSS 2.0 / Atom feeds (feedparser) and NewsAPI ``/v2/everything``.

Feeds are fetched with httpx (so timeouts and retries are ours) using conditional GET:
the stored ``ETag`` and ``Last-Modified`` go back as ``If-None-Match`` and
``If-Modified-Since``, and a 304 costs nothing. Bodies are handed to feedparser with the
response headers, so it honours the declared charset (non-UTF-8 feeds decode right).
Every feed is isolated: one timing out, 404ing or serving garbage is counted and
logged, and the rest of the cycle goes on. A body that fails to parse and does not end
with its root closing tag is treated as truncated and rejected whole (its validators
are not stored, so the next poll fetches it again) rather than half-produced.

De-duplication uses every key an entry has: ``guid:`` + hash of the GUID and
``link:`` + hash of the link; an entry is new only if none of its keys was seen. The
``source_id`` is the GUID key when there is one, else the link key, else a hash of the
title, so the same article always gets the same id.
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import html
import logging
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import feedparser
import httpx

from core.settings import Settings
from producers.base import Batch, HttpSource, Outgoing, skip
from producers.http import FetchError, Stopped
from producers.metrics import FAILED
from schemas.events import NewsArticle, content_hash, utc_now
from schemas.topics import RAW_NEWS

log = logging.getLogger(__name__)

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_CLOSING = re.compile(rb"</(?:[\w-]+:)?(?:rss|feed|RDF)>\s*$")


def default_feeds_file() -> Path:
    return Path(str(resources.files("producers") / "data" / "feeds.csv"))


def load_feeds(path: Path | None) -> list[str]:
    """Feed URLs from a one-column CSV (header ``Feeds``); blank and duplicate rows dropped."""
    source = path or default_feeds_file()
    with source.open(encoding="utf-8-sig", newline="") as handle:
        urls = [row[0].strip() for row in csv.reader(handle) if row and row[0].strip().startswith("http")]
    return list(dict.fromkeys(urls))


def plain_text(value: str | None) -> str:
    """Feed summaries are HTML; downstream wants plain text."""
    if not value:
        return ""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", value))).strip()


def _hash(value: str) -> str:
    return hashlib.sha256(value.strip().encode("utf-8")).hexdigest()[:40]


def entry_keys(guid: str | None, link: str | None, title: str | None) -> list[str]:
    """De-dup keys of an entry, most specific first; the first is its source_id."""
    keys = []
    if guid:
        keys.append("guid:" + _hash(guid))
    if link:
        keys.append("link:" + _hash(link))
    if not keys and title:
        keys.append("text:" + content_hash(title)[:40])
    return keys


def _struct_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _is_benign(exc: BaseException | None) -> bool:
    return exc is None or isinstance(exc, feedparser.ThingsNobodyCaresAboutButMe)


@dataclass
class FeedResult:
    """Outcome of fetching one feed; ``entries`` is None when it was not modified."""

    url: str
    entries: list[dict[str, Any]] | None = None
    publisher: str | None = None
    etag: str | None = None
    modified: str | None = None
    error: str | None = None


class FeedSource(HttpSource):
    """Poll a list of RSS/Atom feeds with conditional GET and per-feed isolation."""

    name = "news"

    def __init__(
        self,
        settings: Settings,
        *,
        feeds: list[str] | None = None,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.feeds = feeds if feeds is not None else load_feeds(settings.producer.news_feeds_file)
        super().__init__(
            settings,
            RAW_NEWS,
            interval_s=settings.producer.news_interval_s,
            stop=stop,
            transport=transport,
            headers={"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.8"},
            state_defaults={"feeds": {}},
        )
        # Keys seen in any feed: the same story syndicated by two feeds is produced once.
        self.seen_anywhere: set[str] = {
            key for feed in self.state["feeds"].values() for key in feed.get("seen", [])
        }

    def fetch(self, url: str) -> FeedResult:
        """Fetch and parse one feed; never raises (errors are returned, per-feed isolation)."""
        try:
            return self._fetch(url)
        except Stopped:
            raise
        except Exception as exc:  # a bad URL in the list, a feedparser surprise: this feed only
            FAILED.labels(self.name, "error").inc()
            log.warning("feed failed", extra={"feed": url, "error": f"{type(exc).__name__}: {exc}"})
            return FeedResult(url, error="error")

    def _fetch(self, url: str) -> FeedResult:
        feed_state = self.state["feeds"].get(url, {})
        headers = {}
        if feed_state.get("etag"):
            headers["If-None-Match"] = feed_state["etag"]
        if feed_state.get("modified"):
            headers["If-Modified-Since"] = feed_state["modified"]
        try:
            response = self.fetcher.request("GET", url, endpoint="feed", headers=headers, ok=(200, 304))
        except FetchError as exc:
            return FeedResult(url, error=exc.reason)
        if response.status_code == 304:
            skip(self.name, "not_modified")
            return FeedResult(url)
        parsed = feedparser.parse(response.content, response_headers=dict(response.headers))
        problem = parsed.get("bozo_exception")
        if not _is_benign(problem) and not _CLOSING.search(response.content.rstrip()[-200:]):
            FAILED.labels(self.name, "malformed").inc()
            log.warning("feed malformed or truncated", extra={"feed": url, "error": str(problem)})
            return FeedResult(url, error="malformed")
        if not parsed.get("version") and not parsed.entries:
            FAILED.labels(self.name, "not_a_feed").inc()
            return FeedResult(url, error="not_a_feed")
        return FeedResult(
            url,
            entries=list(parsed.entries),
            publisher=(parsed.feed.get("title") or None),
            etag=response.headers.get("ETag"),
            modified=response.headers.get("Last-Modified"),
        )

    def to_record(
        self, url: str, publisher: str | None, entry: dict[str, Any], source_id: str
    ) -> dict[str, Any]:
        published = _struct_time(entry.get("published_parsed")) or _struct_time(entry.get("updated_parsed"))
        summary = entry.get("summary") or ""
        if not summary and entry.get("content"):
            summary = entry["content"][0].get("value", "")
        return {
            "source_id": source_id,
            "event_time": published or utc_now(),
            "feed": url,
            "publisher": publisher[:256] if publisher else None,
            "title": plain_text(entry.get("title")),
            "summary": plain_text(summary),
            "link": entry.get("link") or None,
            "author": (entry.get("author") or None),
        }

    def poll(self) -> Iterator[Batch]:
        workers = min(self.cfg.news_fetch_workers, max(1, len(self.feeds)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="feed") as pool:
            for result in pool.map(self.fetch, self.feeds):
                try:
                    batch = self._batch(result)
                except Exception:
                    FAILED.labels(self.name, "error").inc()
                    log.exception("feed entries unusable", extra={"feed": result.url})
                    continue
                if batch is not None:
                    yield batch

    def _batch(self, result: FeedResult) -> Batch | None:
        if result.error:
            log.info("feed skipped this cycle", extra={"feed": result.url, "reason": result.error})
            return None
        if result.entries is None:
            return None
        feed_state = self.state["feeds"].get(result.url, {})
        seen: list[str] = feed_state.get("seen", [])
        seen_set = set(seen) | self.seen_anywhere
        records: list[Outgoing] = []
        new_keys: list[str] = []
        dated = [
            (_struct_time(e.get("published_parsed")) or _struct_time(e.get("updated_parsed")), e)
            for e in result.entries
        ]
        dated.sort(key=lambda pair: pair[0] or datetime.max.replace(tzinfo=UTC))  # oldest first
        for _, entry in dated:
            keys = entry_keys(entry.get("id"), entry.get("link"), entry.get("title"))
            if not keys:
                skip(self.name, "no_identity")
                continue
            if seen_set.intersection(keys):
                skip(self.name, "duplicate")
                continue
            seen_set.update(keys)
            new_keys.extend(keys)
            records.append(
                Outgoing(
                    NewsArticle, self.to_record(result.url, result.publisher, entry, keys[0]), self.topic
                )
            )

        def commit(consumed: int) -> None:
            limit = self.cfg.news_seen_per_feed
            self.state["feeds"][result.url] = {
                "etag": result.etag,
                "modified": result.modified,
                "seen": (seen + new_keys)[-limit:],
                "checked": time.time(),
            }
            self.store.save(self.state)
            self.seen_anywhere.update(new_keys)

        return Batch(records, commit, label=result.url)


class NewsApiSource(HttpSource):
    """NewsAPI ``/v2/everything`` (used only when a key is configured), newest articles first."""

    name = "newsapi"

    def __init__(
        self,
        settings: Settings,
        *,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        key = settings.producer.newsapi_key
        if key is None:
            raise ValueError("NewsAPI needs CRYPTOPULSE_PRODUCER__NEWSAPI_KEY")
        super().__init__(
            settings,
            RAW_NEWS,
            interval_s=settings.producer.newsapi_interval_s,
            stop=stop,
            transport=transport,
            headers={"X-Api-Key": key.get_secret_value()},
        )

    def poll(self) -> Iterator[Batch]:
        params: dict[str, str | int] = {
            "q": self.cfg.newsapi_query,
            "language": "en",
            "sortBy": "publishedAt",
            "pageSize": 100,
        }
        since = self.state.get("since")
        if since:
            params["from"] = since
        body = self.fetcher.get_json(self.cfg.newsapi_url, endpoint="everything", params=params)
        if (
            not isinstance(body, dict)
            or body.get("status") != "ok"
            or not isinstance(body.get("articles"), list)
        ):
            FAILED.labels(self.name, "malformed").inc()
            raise FetchError(f"NewsAPI error: {str(body)[:200]}", reason="malformed")
        seen: list[str] = self.state.get("seen", [])
        seen_set = set(seen)
        records: list[Outgoing] = []
        new_keys: list[str] = []
        newest = since
        for article in reversed(body["articles"]):  # oldest first
            if not isinstance(article, dict):
                FAILED.labels(self.name, "malformed_item").inc()
                continue
            if (article.get("title") or "").strip() == "[Removed]":
                skip(self.name, "removed")
                continue
            keys = entry_keys(None, article.get("url"), article.get("title"))
            if not keys or seen_set.intersection(keys):
                skip(self.name, "duplicate" if keys else "no_identity")
                continue
            seen_set.update(keys)
            new_keys.extend(keys)
            published = article.get("publishedAt")
            if isinstance(published, str) and (newest is None or published > newest):
                newest = published
            source = article.get("source") if isinstance(article.get("source"), dict) else {}
            records.append(
                Outgoing(
                    NewsArticle,
                    {
                        "source_id": keys[0],
                        "event_time": published,
                        "feed": "newsapi",
                        "publisher": (source or {}).get("name"),
                        "title": plain_text(article.get("title")),
                        "summary": plain_text(article.get("description")),
                        "link": article.get("url"),
                        "author": article.get("author"),
                    },
                    self.topic,
                )
            )

        def commit(consumed: int) -> None:
            self.state["seen"] = (seen + new_keys)[-self.cfg.news_seen_per_feed :]
            if newest:
                self.state["since"] = newest
            self.store.save(self.state)

        yield Batch(records, commit, label="newsapi")
