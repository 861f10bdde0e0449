"""Build ``spark_jobs/data/history/history.jsonl.gz``: the history a first ``up`` loads.

Run by a maintainer (``python -m spark_jobs.build_history [TEXTS_JSONL]``); the output is
committed, so a fresh machine seeds its lake with no network and no data directory
(:mod:`spark_jobs.history` reads it). The build is deterministic: the same input and seed
give the same bytes (gzip without a timestamp), and its sha256 is what the seed marker
records.

What is in it, all relative to an *anchor*, the UTC midnight that ends the bundle (the
seed puts the anchor at the coming midnight and keeps what lies before now, so the
hour-of-day rhythm stays on the UTC clock):

* the text pool: the crypto rows of the bundled replay texts that mention only coins with
  a price walk
  (``producers/data/replay/texts.jsonl``, read as a data file, not imported: the stages
  stay independent), URLs removed and whitespace collapsed as the stream worker's
  cleaning does, each with the catalog coins it tags (rows that tag none are dropped);
* text events over ``DAYS`` days: per minute a Poisson count with a daily rhythm (busiest
  at 15:00 UTC, quietest at 03:00) plus a few news bursts a day (20 to 45 minutes at five
  times the rate, all about one coin), so volume z-scores and trending have something
  real to find; each event is (seconds before the anchor, text index);
* price ticks every ``PRICE_STEP_S`` for each coin of ``END_LEVELS``: a seeded geometric
  random walk with the live replay's daily volatility, generated backwards from the
  level where the live replay's walk starts, so the live price continues the chart.

Texts are not scored here: the seed scores them with the champion it finds.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from schemas.market import DAILY_VOLATILITY, REFERENCE_PRICES
from scoring.coins import CoinCatalog

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEXTS = ROOT / "producers" / "data" / "replay" / "texts.jsonl"
OUT = Path(__file__).parent / "data" / "history" / "history.jsonl.gz"
FORMAT = "cryptopulse-history"
VERSION = 1
DAYS = 8
"""Days before the anchor: at least 7 whole days lie before any moment of the last one."""
SEED = 13
PRICE_STEP_S = 150
"""Two ticks in every 5-minute window, so its price return (close / open) is not zero; the
seed's cost is mostly per event and per window, and ticks are most of the events."""
TEXTS_PER_MINUTE = 2.0
"""Mean text rate (before bursts): about 6 bitcoin mentions in a 5-minute window."""
BURSTS_PER_DAY = 2
BURST_FACTOR = 5.0
END_LEVELS = REFERENCE_PRICES
"""Where the live replay's walk starts: the history ends there."""
MAX_TEXT_CHARS = 1000
"""``CleanPost.text`` limit (the worker truncates to ``model.max_text_chars``, 1000)."""

_URL_RE = re.compile(r"https?://\S+|www\.\S+")


def clean_text(text: str) -> str:
    """URLs out, whitespace collapsed, cut at a word boundary: what the worker would score."""
    text = " ".join(_URL_RE.sub(" ", text).split())
    if len(text) <= MAX_TEXT_CHARS:
        return text
    cut = text[: MAX_TEXT_CHARS + 1]
    space = cut.rfind(" ", MAX_TEXT_CHARS // 2)
    return (cut[:space] if space > 0 else cut[:MAX_TEXT_CHARS]).rstrip()


def text_pool(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their cleaned text and coins. Kept: rows that tag only tracked coins (the
    ones with a price walk); the long tail of coins mentioned once or twice would multiply
    the windows the seed computes (a one-hour window sliding every five minutes per coin and
    source) without making any chart better."""
    catalog = CoinCatalog.default()
    pool = []
    for row in rows:
        text = clean_text(str(row.get("text") or ""))
        coins = catalog.tag(text) if text else []
        if coins and set(coins) <= END_LEVELS.keys():
            pool.append(
                {
                    "dataset": str(row["dataset"]),
                    "row": str(row["row"]),
                    "kind": "post" if row.get("kind") == "post" else "news",
                    "text": text,
                    "coins": coins,
                    **({"url": str(row["url"])} if row.get("url") else {}),
                }
            )
    return pool


def minute_rates(
    rng: np.random.Generator, pool: list[dict[str, Any]], days: int
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Expected texts per minute (oldest first) and the bursts (first minute, minutes, coin index)."""
    minutes = days * 1440
    hour = (np.arange(minutes) % 1440) / 60.0
    rates = TEXTS_PER_MINUTE * (1.0 + 0.45 * np.cos(2 * math.pi * (hour - 15.0) / 24.0))
    bursts = []
    for _ in range(days * BURSTS_PER_DAY):
        first = int(rng.integers(0, minutes - 60))
        length = int(rng.integers(20, 46))
        bursts.append((first, length, int(rng.integers(0, len(pool)))))
    return rates, bursts


def text_events(pool: list[dict[str, Any]], days: int, seed: int) -> tuple[list[int], list[int]]:
    """(seconds before the anchor, text index) of every text event, oldest first."""
    rng = np.random.default_rng(seed)
    rates, bursts = minute_rates(rng, pool, days)
    by_coin: dict[str, list[int]] = {}
    for index, row in enumerate(pool):
        for coin in row["coins"]:
            by_coin.setdefault(coin, []).append(index)
    burst_texts: dict[int, list[int]] = {}
    for first, length, anchor_text in bursts:
        # A burst is about the first coin of a randomly drawn text: busy coins burst more often.
        texts = by_coin[pool[anchor_text]["coins"][0]]
        for minute in range(first, first + length):
            burst_texts[minute] = texts
    minutes = days * 1440
    offsets: list[int] = []
    indices: list[int] = []
    counts = rng.poisson(rates)
    extra = rng.poisson(TEXTS_PER_MINUTE * (BURST_FACTOR - 1.0), size=minutes)
    for minute in range(minutes):
        chosen = list(rng.integers(0, len(pool), size=int(counts[minute])))
        if minute in burst_texts:
            texts = burst_texts[minute]
            chosen += [texts[i] for i in rng.integers(0, len(texts), size=int(extra[minute]))]
        seconds = sorted(int(s) for s in rng.integers(0, 60, size=len(chosen)))
        for second, index in zip(seconds, chosen, strict=True):
            offsets.append((minutes - minute) * 60 - second)
            indices.append(int(index))
    return offsets, indices


def price_walks(days: int, seed: int) -> dict[str, list[float]]:
    """Per coin, prices every ``PRICE_STEP_S`` from oldest to the anchor, ending at its level."""
    rng = np.random.default_rng(seed + 1)
    steps = days * 86_400 // PRICE_STEP_S
    sigma = DAILY_VOLATILITY * math.sqrt(PRICE_STEP_S / 86_400)
    walks = {}
    for coin, level in END_LEVELS.items():
        log_returns = rng.normal(0.0, sigma, size=steps)
        # walk backwards from the level: p[k-1] = p[k] / exp(r[k])
        back = np.concatenate([[0.0], np.cumsum(log_returns[::-1])])[::-1]
        prices = level * np.exp(-back)
        walks[coin] = [float(f"{p:.6g}") for p in prices]
    return walks


def build_lines(rows: list[dict[str, Any]], days: int = DAYS, seed: int = SEED) -> list[dict[str, Any]]:
    """The bundle as JSON objects: meta, one per text, the events, one per coin's prices."""
    pool = text_pool(rows)
    if not pool:
        raise ValueError("no row of the input tags a catalog coin")
    offsets, indices = text_events(pool, days, seed)
    walks = price_walks(days, seed)
    meta = {
        "t": "meta",
        "format": FORMAT,
        "version": VERSION,
        "days": days,
        "seed": seed,
        "anchor": "the UTC midnight ending the bundle; offsets are seconds before it",
        "texts": len(pool),
        "events": len(offsets),
        "price_step_s": PRICE_STEP_S,
        "texts_per_minute": TEXTS_PER_MINUTE,
    }
    lines: list[dict[str, Any]] = [meta]
    lines += [{"t": "text", "i": i, **row} for i, row in enumerate(pool)]
    lines.append({"t": "events", "offset_s": offsets, "text": indices})
    lines += [
        {
            "t": "prices",
            "coin": coin,
            "step_s": PRICE_STEP_S,
            "first_offset_s": days * 86_400,
            "values": values,
        }
        for coin, values in walks.items()
    ]
    return lines


def encode(lines: list[dict[str, Any]]) -> bytes:
    """Gzipped JSON lines with no timestamp or name in the header: same lines, same bytes."""
    raw = "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as handle:
        handle.write(raw.encode("utf-8"))
    return buffer.getvalue()


def build(texts: Path = DEFAULT_TEXTS, out: Path = OUT, days: int = DAYS, seed: int = SEED) -> dict[str, Any]:
    """Write the bundle; returns its meta line plus size and sha256."""
    with texts.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    lines = build_lines(rows, days, seed)
    payload = encode(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(payload)
    tmp.replace(out)
    return {**lines[0], "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.stderr.write("usage: python -m spark_jobs.build_history [TEXTS_JSONL]\n")
        raise SystemExit(2)
    info = build(Path(sys.argv[1]) if len(sys.argv) == 2 else DEFAULT_TEXTS)
    sys.stdout.write(
        f"{info['texts']} texts, {info['events']} text events over {info['days']} days, "
        f"{len(END_LEVELS)} price walks: {info['bytes']:,} bytes -> {OUT} (sha256 {info['sha256'][:12]})\n"
    )
