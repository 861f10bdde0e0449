"""CoinGecko price connector: ``/coins/markets`` with ``/simple/price`` as the fallback.

Free-tier friendly: all tracked coins go in one request (``ids`` batched up to 250 per
``/coins/markets`` page, 100 per ``/simple/price`` call), 429 waits for ``Retry-After``,
and the poll interval is settings-driven. Each tick's ``event_time`` is CoinGecko's own
``last_updated`` for the coin, and a tick is produced only if that time is newer than
the last one produced for the coin (persisted), so restarts and unchanged quotes do not
duplicate ticks. Ticks are keyed by coin id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from core.settings import Settings
from producers.base import Batch, HttpSource, Outgoing, skip
from producers.http import FetchError
from producers.metrics import FAILED
from schemas.events import PriceTick, utc_now
from schemas.topics import RAW_PRICES

log = logging.getLogger(__name__)

MARKETS_BATCH = 250
SIMPLE_BATCH = 100


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class PriceSource(HttpSource):
    """Poll CoinGecko for every tracked coin and emit one tick per coin per new quote."""

    name = "prices"

    def __init__(
        self,
        settings: Settings,
        *,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        cfg = settings.producer
        headers = {"Accept": "application/json"}
        if cfg.coingecko_api_key is not None:
            headers[cfg.coingecko_key_header] = cfg.coingecko_api_key.get_secret_value()
        super().__init__(
            settings,
            RAW_PRICES,
            interval_s=cfg.price_interval_s,
            stop=stop,
            transport=transport,
            headers=headers,
            state_defaults={"last": {}},
        )
        self.base = cfg.coingecko_base_url.rstrip("/")

    def markets(self, ids: list[str]) -> list[dict[str, Any]]:
        """Ticks from ``/coins/markets`` (price, market cap, volume, 24h change, last_updated)."""
        ticks: list[dict[str, Any]] = []
        for chunk in _chunks(ids, MARKETS_BATCH):
            body = self.fetcher.get_json(
                f"{self.base}/coins/markets",
                endpoint="coins_markets",
                params={
                    "vs_currency": self.cfg.vs_currency,
                    "ids": ",".join(chunk),
                    "per_page": MARKETS_BATCH,
                    "page": 1,
                    "price_change_percentage": "24h",
                },
            )
            if not isinstance(body, list):
                FAILED.labels(self.name, "malformed").inc()
                raise FetchError("/coins/markets did not return a list", reason="malformed")
            for row in body:
                if not isinstance(row, dict):
                    FAILED.labels(self.name, "malformed_item").inc()
                    continue
                ticks.append(
                    {
                        "coin": row.get("id"),
                        "price": row.get("current_price"),
                        "market_cap": _number(row.get("market_cap")),
                        "volume_24h": _number(row.get("total_volume")),
                        "change_24h_pct": _number(row.get("price_change_percentage_24h")),
                        "observed": _parse_time(row.get("last_updated")),
                    }
                )
        return ticks

    def simple(self, ids: list[str]) -> list[dict[str, Any]]:
        """Ticks from ``/simple/price``: lighter, used when ``/coins/markets`` fails."""
        vs = self.cfg.vs_currency
        ticks: list[dict[str, Any]] = []
        for chunk in _chunks(ids, SIMPLE_BATCH):
            body = self.fetcher.get_json(
                f"{self.base}/simple/price",
                endpoint="simple_price",
                params={
                    "ids": ",".join(chunk),
                    "vs_currencies": vs,
                    "include_market_cap": "true",
                    "include_24hr_vol": "true",
                    "include_24hr_change": "true",
                    "include_last_updated_at": "true",
                },
            )
            if not isinstance(body, dict):
                FAILED.labels(self.name, "malformed").inc()
                raise FetchError("/simple/price did not return an object", reason="malformed")
            for coin, quote in body.items():
                if not isinstance(quote, dict):
                    FAILED.labels(self.name, "malformed_item").inc()
                    continue
                ticks.append(
                    {
                        "coin": coin,
                        "price": quote.get(vs),
                        "market_cap": _number(quote.get(f"{vs}_market_cap")),
                        "volume_24h": _number(quote.get(f"{vs}_24h_vol")),
                        "change_24h_pct": _number(quote.get(f"{vs}_24h_change")),
                        "observed": _parse_time(quote.get("last_updated_at")),
                    }
                )
        return ticks

    def fetch(self) -> list[dict[str, Any]]:
        ids = list(dict.fromkeys(self.cfg.coins))
        try:
            return self.markets(ids)
        except FetchError as exc:
            if exc.reason == "rate_limited":
                raise  # the other endpoint shares the same quota
            log.warning("/coins/markets failed, falling back to /simple/price", extra={"reason": exc.reason})
            return self.simple(ids)

    def poll(self) -> Iterator[Batch]:
        ticks = self.fetch()
        last: dict[str, float] = self.state["last"]
        updates: dict[str, float] = {}
        records: list[Outgoing] = []
        for tick in ticks:
            coin = tick.pop("coin")
            observed: datetime = tick.pop("observed") or utc_now()
            stamp = observed.timestamp()
            if not isinstance(coin, str):
                FAILED.labels(self.name, "malformed_item").inc()
                continue
            if coin in last and stamp <= last[coin]:
                skip(self.name, "unchanged")
                continue
            updates[coin] = stamp
            records.append(
                Outgoing(
                    PriceTick,
                    {
                        "source_id": PriceTick.make_source_id(coin, observed),
                        "event_time": observed,
                        "coin": coin,
                        "vs_currency": self.cfg.vs_currency,
                        "provider": "coingecko",
                        **tick,
                    },
                    self.topic,
                    key_field="coin",
                )
            )

        def commit(consumed: int) -> None:
            if updates:
                self.state["last"].update(updates)
                self.store.save(self.state)

        yield Batch(records, commit, label="coingecko")
