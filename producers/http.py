"""HTTP fetching shared by the connectors: timeouts, retries, backoff and rate limits.

Upstream APIs fail in a few well-known ways and every connector must survive them the
same way: 429 waits for ``Retry-After`` / ``X-Ratelimit-Reset`` (capped), 5xx, timeouts
and broken connections back off exponentially with jitter, other 4xx fail fast, and a
proactive pause happens when ``X-Ratelimit-Remaining`` reaches zero. Every wait uses the
stop event, so SIGTERM interrupts a long backoff immediately.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from typing import Any

import httpx

from core.settings import Settings
from producers.metrics import FAILED, FETCH_LATENCY

log = logging.getLogger(__name__)

LOW_REMAINING = 10
"""Below this many requests left in the window, requests are spaced evenly until the reset."""


class Stopped(Exception):
    """Shutdown was requested while waiting."""


class FetchError(RuntimeError):
    """An upstream request failed for good (after retries); ``reason`` is a metric label."""

    def __init__(self, message: str, *, reason: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


def _seconds(value: str | None) -> float | None:
    """Parse a delay header: delta-seconds (int/float) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Fetcher:
    """A small, retrying HTTP GET/POST client bound to one source's metrics and stop event."""

    def __init__(
        self,
        settings: Settings,
        source: str,
        *,
        stop: threading.Event | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        cfg = settings.producer
        self.source = source
        self.stop = stop or threading.Event()
        self.max_retries = cfg.max_retries
        self.backoff_base_s = cfg.backoff_base_s
        self.backoff_max_s = cfg.backoff_max_s
        self._not_before = 0.0
        self.client = httpx.Client(
            timeout=httpx.Timeout(cfg.http_timeout_s),
            headers={"User-Agent": cfg.reddit_user_agent, **(headers or {})},
            follow_redirects=True,
            transport=transport,
        )

    def close(self) -> None:
        self.client.close()

    def sleep(self, seconds: float) -> None:
        """Wait, but wake up (and raise :class:`Stopped`) as soon as shutdown is requested."""
        if seconds > 0 and self.stop.wait(seconds):
            raise Stopped
        if self.stop.is_set():
            raise Stopped

    def backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        return delay * random.uniform(0.5, 1.0)  # nosec B311 # retry jitter, no security use

    def _note_rate_limit(self, response: httpx.Response) -> None:
        """Pause proactively when the server says the quota of this window is used up."""
        remaining = _seconds(response.headers.get("X-Ratelimit-Remaining"))
        reset = _seconds(response.headers.get("X-Ratelimit-Reset"))
        if remaining is None or reset is None:
            return
        if remaining < 1:
            wait = min(reset, self.backoff_max_s)
            log.warning("rate limit quota used up", extra={"source": self.source, "reset_s": reset})
        elif remaining < LOW_REMAINING:
            wait = min(reset / remaining, self.backoff_max_s)  # spread what is left over the window
        else:
            return
        self._not_before = max(self._not_before, time.monotonic() + wait)

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        delay = _seconds(response.headers.get("Retry-After"))
        if delay is None:
            delay = _seconds(response.headers.get("X-Ratelimit-Reset"))
        if delay is None:
            delay = self.backoff(attempt)
        return min(max(delay, self.backoff_base_s), self.backoff_max_s)

    def request(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        ok: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; return a response whose status is in ``ok`` or raise FetchError."""
        attempt = 0
        while True:
            self.sleep(self._not_before - time.monotonic())
            started = time.monotonic()
            response: httpx.Response | None = None
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.TimeoutException as exc:
                reason, detail, status = "timeout", f"{type(exc).__name__}: {exc}", None
            except httpx.TransportError as exc:
                reason, detail, status = "connection", f"{type(exc).__name__}: {exc}", None
            else:
                FETCH_LATENCY.labels(self.source, endpoint).observe(time.monotonic() - started)
                self._note_rate_limit(response)
                status = response.status_code
                if status in ok:
                    return response
                if status == 429:
                    reason, detail = "rate_limited", f"HTTP 429 from {endpoint}"
                elif status >= 500:
                    reason, detail = "http_5xx", f"HTTP {status} from {endpoint}"
                else:
                    FAILED.labels(self.source, "http_4xx").inc()
                    raise FetchError(f"HTTP {status} from {url}", reason="http_4xx", status=status)
            FAILED.labels(self.source, reason).inc()
            if attempt >= self.max_retries:
                raise FetchError(f"{detail} after {attempt + 1} attempts", reason=reason, status=status)
            wait = (
                self._retry_after(response, attempt)
                if response is not None and status == 429
                else self.backoff(attempt)
            )
            log.warning(
                "fetch failed, retrying",
                extra={
                    "source": self.source,
                    "endpoint": endpoint,
                    "reason": reason,
                    "wait_s": round(wait, 2),
                },
            )
            self.sleep(wait)
            attempt += 1

    def get_json(self, url: str, *, endpoint: str, **kwargs: Any) -> Any:
        """GET and decode JSON; a truncated or malformed body is a ``malformed`` FetchError."""
        response = self.request("GET", url, endpoint=endpoint, **kwargs)
        return decode_json(response, source=self.source, endpoint=endpoint)


def decode_json(response: httpx.Response, *, source: str, endpoint: str) -> Any:
    try:
        return json.loads(response.content)
    except ValueError as exc:
        FAILED.labels(source, "malformed").inc()
        raise FetchError(f"malformed JSON from {endpoint}: {exc}", reason="malformed") from exc
