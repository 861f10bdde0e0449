"""Replay source: bundled real texts as a live stream, plus random-walk price ticks.

This is what the local platform runs by default (no internet here). Texts come from
``producers/data/replay/texts.jsonl`` (real public data sets, see SOURCES.md there) and
are emitted as the records real connectors would produce: headlines as ``NewsArticle``
(``source_id`` ``replay:<dataset>:<row>``), social posts as ``RedditPost`` (a ``t3_``
fullname derived from a hash of dataset and row). Ids are stable, so replaying the same
rows again is detectable as duplicates downstream; when ``replay_loop`` starts another
pass over the file, the pass number is folded into the id, because a new pass is
deliberately new traffic.

Pacing: ``replay_rate`` records per wall-clock second. Event time: the wall clock at the
start of the run plus elapsed wall time times ``replay_time_compression`` (1.0 = live;
60 = one wall second covers a minute of event time, handy to fill hourly windows fast).
Price ticks for every tracked coin are interleaved every ``replay_price_interval_s`` of
event time from a seeded geometric random walk. The position in the file is
checkpointed after every flushed batch (``flush_every`` records or ``checkpoint_every_s``
seconds, whichever comes first), so a restart continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from core.settings import Settings
from producers.base import Batch, CheckpointedSource, Outgoing
from producers.http import Stopped
from schemas.events import NewsArticle, PriceTick, RedditPost, utc_now
from schemas.market import DAILY_VOLATILITY, REFERENCE_PRICES
from schemas.topics import RAW_NEWS, RAW_PRICES, RAW_REDDIT

log = logging.getLogger(__name__)


def default_replay_file() -> Path:
    return Path(str(resources.files("producers") / "data" / "replay" / "texts.jsonl"))


def load_rows(path: Path | None = None) -> list[dict[str, Any]]:
    source = path / "texts.jsonl" if path is not None and path.is_dir() else path or default_replay_file()
    with source.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def reddit_fullname(dataset: str, row: str, pass_no: int = 0) -> str:
    """A stable ``t3_`` fullname for a dataset row (base 36 of a hash; never a real id)."""
    seed = f"{dataset}:{row}" + (f":p{pass_no}" if pass_no else "")
    value = int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:8], "big")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while value:
        value, rem = divmod(value, 36)
        out = digits[rem] + out
    return "t3_" + (out or "0")


def news_source_id(dataset: str, row: str, pass_no: int = 0) -> str:
    return f"replay:{dataset}:{row}" + (f":p{pass_no}" if pass_no else "")


class ReplaySource(CheckpointedSource):
    """An endless (or one-pass) paced stream over the bundled texts."""

    name = "replay"
    interval_s = 0.0

    def __init__(
        self,
        settings: Settings,
        *,
        stop: threading.Event | None = None,
        limit: int | None = None,
        rows: list[dict[str, Any]] | None = None,
    ) -> None:
        cfg = settings.producer
        self.limit = limit
        self.rows = rows if rows is not None else load_rows(cfg.replay_dir)
        self.topics = {
            "news": RAW_NEWS.name(settings),
            "post": RAW_REDDIT.name(settings),
            "price": RAW_PRICES.name(settings),
        }
        super().__init__(settings, stop=stop, state_defaults={"pass": 0, "position": 0})  # nosec B105 # "pass" counts the replay's passes, no password
        self.rng = random.Random(  # nosec B311 # seeded, reproducible replay timing; no security use
            cfg.replay_seed * 1_000_003 + int(self.state["pass"]) * 10_007 + self.state["position"]
        )
        self.prices: dict[str, float] = {
            coin: float(self.state.get("prices", {}).get(coin) or REFERENCE_PRICES.get(coin, 1.0))
            for coin in cfg.coins
        }
        self.emitted = 0
        self.finished = False
        self._start_wall = utc_now()
        self._start_mono = time.monotonic()
        self._next_price: datetime | None = None

    def event_time(self) -> datetime:
        elapsed = (time.monotonic() - self._start_mono) * self.cfg.replay_time_compression
        return self._start_wall + timedelta(seconds=elapsed)

    def text_record(self, row: dict[str, Any], pass_no: int, at: datetime) -> Outgoing:
        dataset, row_id, text = str(row["dataset"]), str(row["row"]), str(row["text"])
        if row.get("kind") == "post":
            return Outgoing(
                RedditPost,
                {
                    "source_id": reddit_fullname(dataset, row_id, pass_no),
                    "event_time": at,
                    "subreddit": f"replay_{dataset}",
                    "title": text[:300],
                    "selftext": text[300:],
                    "url": row.get("url"),
                },
                self.topics["post"],
            )
        return Outgoing(
            NewsArticle,
            {
                "source_id": news_source_id(dataset, row_id, pass_no),
                "event_time": at,
                "feed": f"replay:{dataset}",
                "publisher": dataset,
                "title": text,
            },
            self.topics["news"],
        )

    def price_records(self, at: datetime) -> list[Outgoing]:
        """One geometric random-walk step per coin for ``replay_price_interval_s`` of event time."""
        step = DAILY_VOLATILITY * math.sqrt(self.cfg.replay_price_interval_s / 86_400)
        out = []
        for coin in self.prices:
            self.prices[coin] *= math.exp(self.rng.gauss(0.0, step))
            out.append(
                Outgoing(
                    PriceTick,
                    {
                        "source_id": PriceTick.make_source_id(coin, at),
                        "event_time": at,
                        "coin": coin,
                        "vs_currency": self.cfg.vs_currency,
                        "price": round(self.prices[coin], 8),
                        "provider": "replay-random-walk",
                    },
                    self.topics["price"],
                    key_field="coin",
                )
            )
        return out

    def _pace(self) -> None:
        """Sleep until the next record is due at ``replay_rate``; skip ahead if far behind."""
        due = self._start_mono + self.emitted / self.cfg.replay_rate
        wait = due - time.monotonic()
        if wait < -1.0:  # we fell behind (slow broker, paused process): do not burst to catch up
            self._start_mono -= wait + 1.0
        elif wait > 0 and self.stop.wait(wait):
            raise Stopped

    def _records(self, positions: list[tuple[int, int]]) -> Iterator[Outgoing]:
        pass_no, position = int(self.state["pass"]), int(self.state["position"])
        # A batch ends at flush_every records or checkpoint_every_s, whichever comes first: a
        # crash re-sends the records since the last checkpoint, and only those younger than the
        # worker's de-duplication window are recognised as the same records.
        deadline = time.monotonic() + self.cfg.checkpoint_every_s
        for n in range(self.cfg.flush_every):
            if n and time.monotonic() >= deadline:
                return
            if self.limit is not None and self.emitted >= self.limit:
                self.finished = True
                return
            if position >= len(self.rows):
                if not self.cfg.replay_loop:
                    self.finished = True
                    return
                pass_no, position = pass_no + 1, 0
                log.info("replay pass complete, starting over", extra={"pass": pass_no})
            self._pace()
            at = self.event_time()
            if self._next_price is None or at >= self._next_price:
                for tick in self.price_records(at):
                    positions.append((pass_no, position))
                    yield tick
                self._next_price = at + timedelta(seconds=self.cfg.replay_price_interval_s)
            position += 1
            positions.append((pass_no, position))
            self.emitted += 1
            yield self.text_record(self.rows[position - 1], pass_no, at)

    def poll(self) -> Iterator[Batch]:
        while not self.finished and not self.stop.is_set():
            positions: list[tuple[int, int]] = []

            def commit(consumed: int, positions: list[tuple[int, int]] = positions) -> None:
                if consumed:
                    self.state["pass"], self.state["position"] = positions[consumed - 1]
                    self.state["prices"] = {coin: round(p, 8) for coin, p in self.prices.items()}
                    self.store.save(self.state)

            yield Batch(self._records(positions), commit, label="replay")
