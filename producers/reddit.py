"""Reddit connector: new posts and new comments of configured subreddits.

Authentication is app-only OAuth2 (``grant_type=client_credentials`` with HTTP Basic
client id/secret against ``/api/v1/access_token``), then listings from
``oauth.reddit.com`` with ``Authorization: bearer``. Without credentials it falls back
to the public ``.json`` listings on www.reddit.com with a descriptive User-Agent.

Listings are newest first and paged with ``after`` fullnames. Reddit fullnames carry
base-36 ids that grow monotonically, so the persisted cursor per (subreddit, kind) is
the highest id already produced: a poll pages back with ``after`` until it reaches an
id at or below the cursor (robust even when the cursor item itself was deleted, which
breaks ``before=`` paging), then produces the new items oldest first. A listing whose
paging failed midway is not produced at all that cycle, so a cursor never jumps a gap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from core.settings import Settings
from producers.base import Batch, HttpSource, Outgoing, skip
from producers.http import FetchError, Stopped, decode_json
from producers.metrics import FAILED
from schemas.events import RedditComment, RedditPost
from schemas.topics import RAW_REDDIT

log = logging.getLogger(__name__)

KINDS = {"post": ("new", "t3"), "comment": ("comments", "t1")}
REMOVED_MARKERS = {"[removed]": "removed", "[deleted]": "deleted"}


def fullname_value(fullname: str) -> int:
    """Numeric value of a fullname (``t3_1abc``) or bare base-36 id, for ordering."""
    return int(fullname.split("_", 1)[-1], 36)


def skip_reason(kind: str, data: dict[str, Any]) -> str | None:
    """Why a listed item must not be produced, or None to produce it."""
    text = data.get("selftext" if kind == "post" else "body") or ""
    if text.strip() in REMOVED_MARKERS:
        return REMOVED_MARKERS[text.strip()]
    category = data.get("removed_by_category")
    if kind == "post" and category:
        return "deleted" if category in ("deleted", "author") else "removed"
    if kind == "post" and data.get("title", "").strip() in REMOVED_MARKERS:
        return REMOVED_MARKERS[data["title"].strip()]
    return None


def _author(data: dict[str, Any]) -> str | None:
    author = data.get("author")
    return None if not author or author == "[deleted]" else str(author)


def _permalink(data: dict[str, Any]) -> str | None:
    link = data.get("permalink")
    if not link:
        return None
    return link if str(link).startswith("http") else "https://www.reddit.com" + str(link)


def _created(data: dict[str, Any]) -> datetime | Any:
    created = data.get("created_utc")
    if isinstance(created, int | float):
        return datetime.fromtimestamp(created, UTC)
    return created  # let validation reject it with a reason


def to_record(kind: str, data: dict[str, Any], subreddit: str) -> dict[str, Any]:
    """Map a listing child's ``data`` to the wire model's fields (validated later)."""
    common = {
        "source_id": data.get("name"),
        "event_time": _created(data),
        "subreddit": data.get("subreddit") or subreddit,
        "author": _author(data),
        "score": data.get("score", 0),
        "permalink": _permalink(data),
    }
    if kind == "post":
        return {
            **common,
            "title": data.get("title"),
            "selftext": data.get("selftext") or "",
            "num_comments": data.get("num_comments", 0),
            "url": data.get("url"),
        }
    return {
        **common,
        "body": data.get("body"),
        "link_id": data.get("link_id"),
        "parent_id": data.get("parent_id"),
    }


class RedditSource(HttpSource):
    """Poll every configured subreddit's new posts and comments, with a persisted cursor."""

    name = "reddit"

    def __init__(
        self,
        settings: Settings,
        *,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            settings,
            RAW_REDDIT,
            interval_s=settings.producer.reddit_interval_s,
            stop=stop,
            transport=transport,
            state_defaults={"cursors": {}},
        )
        self.oauth = self.cfg.reddit_client_id is not None and self.cfg.reddit_client_secret is not None
        self._token: str | None = None
        self._token_expires = 0.0
        if not self.oauth:
            log.info("no Reddit credentials: using public .json listings")

    # -- auth ---------------------------------------------------------------------------

    def _access_token(self, *, force: bool = False) -> str:
        """Client-credentials token, cached until a minute before it expires."""
        if self._token and not force and time.monotonic() < self._token_expires:
            return self._token
        assert self.cfg.reddit_client_id is not None and self.cfg.reddit_client_secret is not None  # nosec B101 # narrows types for mypy; only called with self.oauth, which __init__ sets when both are set
        response = self.fetcher.request(
            "POST",
            self.cfg.reddit_auth_url,
            endpoint="access_token",
            auth=(
                self.cfg.reddit_client_id.get_secret_value(),
                self.cfg.reddit_client_secret.get_secret_value(),
            ),
            data={"grant_type": "client_credentials"},
        )
        try:
            body = response.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            FAILED.labels(self.name, "auth").inc()
            raise FetchError("access_token response without a token", reason="auth") from exc
        self._token = token
        self._token_expires = time.monotonic() + max(expires_in - 60, expires_in / 2)
        log.info("reddit token acquired", extra={"expires_in": expires_in})
        return token

    def _listing(self, subreddit: str, kind: str, after: str | None) -> dict[str, Any]:
        path, _ = KINDS[kind]
        params: dict[str, str | int] = {"limit": self.cfg.reddit_page_limit, "raw_json": 1}
        if after:
            params["after"] = after
        endpoint = f"listing_{kind}"
        if not self.oauth:
            url = f"{self.cfg.reddit_public_base.rstrip('/')}/r/{subreddit}/{path}.json"
            return self._check_listing(self.fetcher.get_json(url, endpoint=endpoint, params=params))
        url = f"{self.cfg.reddit_api_base.rstrip('/')}/r/{subreddit}/{path}"
        for attempt in range(2):
            headers = {"Authorization": f"bearer {self._access_token(force=attempt > 0)}"}
            response = self.fetcher.request(
                "GET", url, endpoint=endpoint, params=params, headers=headers, ok=(200, 401)
            )
            if response.status_code == 200:
                return self._check_listing(decode_json(response, source=self.name, endpoint=endpoint))
            log.warning("reddit token rejected, refreshing")
        raise FetchError("Reddit rejected a fresh token (401)", reason="auth", status=401)

    def _check_listing(self, body: Any) -> dict[str, Any]:
        if (
            not isinstance(body, dict)
            or body.get("kind") != "Listing"
            or not isinstance(body.get("data"), dict)
        ):
            FAILED.labels(self.name, "malformed").inc()
            raise FetchError("response is not a Reddit Listing", reason="malformed")
        children = body["data"].get("children")
        if not isinstance(children, list):
            FAILED.labels(self.name, "malformed").inc()
            raise FetchError("Listing without children", reason="malformed")
        return body["data"]

    # -- polling ------------------------------------------------------------------------

    def collect(self, subreddit: str, kind: str) -> tuple[list[dict[str, Any]], int | None]:
        """Page back from the newest item to the cursor; return new items (newest first)."""
        prefix = KINDS[kind][1]
        cursor: int | None = self.state["cursors"].get(f"{subreddit}/{kind}")
        max_pages = self.cfg.reddit_max_pages if cursor is not None else self.cfg.reddit_initial_pages
        items: list[dict[str, Any]] = []
        after: str | None = None
        reached = False
        for _ in range(max_pages):
            page = self._listing(subreddit, kind, after)
            for child in page["children"]:
                data = child.get("data") if isinstance(child, dict) else None
                if not isinstance(data, dict) or child.get("kind") != prefix or not data.get("name"):
                    FAILED.labels(self.name, "malformed_item").inc()
                    continue
                try:
                    value = fullname_value(str(data["name"]))
                except ValueError:
                    FAILED.labels(self.name, "malformed_item").inc()
                    continue
                if cursor is not None and value <= cursor:
                    reached = True
                    break
                items.append(data)
            after = page.get("after")
            if reached or not after or not page["children"]:
                break
        if cursor is not None and not reached and after:
            FAILED.labels(self.name, "gap").inc()
            log.warning(
                "listing window exceeded, items may be missing", extra={"subreddit": subreddit, "kind": kind}
            )
        return items, cursor

    def poll(self) -> Iterator[Batch]:
        for subreddit in self.cfg.subreddits:
            for kind in KINDS:
                try:
                    items, cursor = self.collect(subreddit, kind)
                except FetchError as exc:
                    # One bad subreddit (private, banned, down) must not stop the others.
                    log.error(
                        "listing failed", extra={"subreddit": subreddit, "kind": kind, "reason": exc.reason}
                    )
                    continue
                except Stopped:
                    raise
                except Exception:
                    FAILED.labels(self.name, "error").inc()
                    log.exception("listing unusable", extra={"subreddit": subreddit, "kind": kind})
                    continue
                yield self._batch(subreddit, kind, items, cursor)

    def _batch(self, subreddit: str, kind: str, items: list[dict[str, Any]], cursor: int | None) -> Batch:
        model = RedditPost if kind == "post" else RedditComment
        records: list[Outgoing] = []
        seen: set[str] = set()
        newest = cursor
        for data in sorted(items, key=lambda d: fullname_value(str(d["name"]))):
            name = str(data["name"])
            value = fullname_value(name)
            newest = value if newest is None else max(newest, value)
            if name in seen:  # listings shift while paging: the same item can appear twice
                skip(self.name, "duplicate")
                continue
            seen.add(name)
            reason = skip_reason(kind, data)
            if reason:
                skip(self.name, reason)
                continue
            records.append(Outgoing(model, to_record(kind, data, subreddit), self.topic))

        def commit(consumed: int) -> None:
            if newest is not None and newest != cursor:
                self.state["cursors"][f"{subreddit}/{kind}"] = newest
                self.store.save(self.state)

        return Batch(records, commit, label=f"{subreddit}/{kind}")
