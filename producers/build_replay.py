"""Build ``producers/data/replay/texts.jsonl`` from the bundled public data sets.

Run once by a maintainer (``python -m producers.build_replay DATA_DIR``, the folder of the
labelled sets as published, laid out like ``data/``); the
output is committed so the replay works with no network and no data directory. Only
sets whose terms allow redistribution with attribution are used; labels are dropped
(the replay is a text stream, not a training set). Rows are shuffled with a fixed seed
so the stream interleaves headlines and tweets, and each keeps its dataset row id.

Only crypto texts are kept. The stream worker dead-letters a text with a cashtag but no
catalog coin (``unknown_coin``) and a text without a coin adds nothing to any trend, so a
row must tag at least one catalog coin (:meth:`scoring.coins.CoinCatalog.tag`, on the
text as the worker's cleaning tags it: URLs out, cut at 1,000 characters). CryptoLin is a crypto news corpus,
so a tag is enough there; the finance sets also carry stock tickers that collide with
coin symbols ("$SOL - ReneSola beats on revenue"), so their rows must also use a crypto
word (``scoring.coins.CRYPTO_WORDS``). Nothing is relabelled.
"""

from __future__ import annotations

import csv
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scoring.coins import CRYPTO_WORDS, CoinCatalog

OUT = Path(__file__).parent / "data" / "replay" / "texts.jsonl"
CRYPTO_CORPORA = frozenset({"cryptolin"})
"""Data sets that are crypto by construction: a coin tag alone qualifies a row."""
_URL_RE = re.compile(r"https?://\S+|www\.\S+")
_WORD_RE = re.compile(r"[A-Za-z0-9$][A-Za-z0-9\-]*")
MAX_TAGGED_CHARS = 1000
"""The worker tags the cleaned text cut at ``model.max_text_chars`` (1,000 by default)."""


def tagged_text(text: str) -> str:
    """The part of a text the worker's coin tagger sees: URLs out, whitespace collapsed, cut
    at a word boundary before ``MAX_TAGGED_CHARS``."""
    text = " ".join(_URL_RE.sub(" ", text).split())
    if len(text) <= MAX_TAGGED_CHARS:
        return text
    cut = text[: MAX_TAGGED_CHARS + 1]
    space = cut.rfind(" ", MAX_TAGGED_CHARS // 2)
    return cut[:space] if space > 0 else cut[:MAX_TAGGED_CHARS]


def _cryptolin(root: Path) -> list[dict[str, Any]]:
    with (root / "cryptolin" / "early.csv").open(encoding="utf-8", newline="") as handle:
        return [
            {
                "dataset": "cryptolin",
                "row": str(r["id"]),
                "kind": "news",
                "text": r["text"],
                "date": r["date"],
            }
            for r in csv.DictReader(handle)
        ]


def _financial_news(root: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for split in ("train", "valid"):
        with (root / "twitter_financial_news" / f"{split}.csv").open(encoding="utf-8", newline="") as handle:
            rows += [
                {
                    "dataset": "twitter_financial_news",
                    "row": f"{split}-{i}",
                    "kind": "news",
                    "text": r["text"],
                }
                for i, r in enumerate(csv.DictReader(handle))
            ]
    return rows


def _stock_tweets(root: Path) -> list[dict[str, Any]]:
    with (root / "stock_tweets" / "sentiment.csv").open(encoding="utf-8", newline="") as handle:
        return [
            {
                "dataset": "stock_tweets",
                "row": str(i),
                "kind": "post",
                "text": r["Tweet Text"],
                "url": r["Tweet URL"],
            }
            for i, r in enumerate(csv.DictReader(handle))
        ]


def crypto_coins(row: dict[str, Any], catalog: CoinCatalog | None = None) -> list[str]:
    """The coins a row is about, or ``[]`` when it is not a crypto text (see the module doc)."""
    catalog = catalog or CoinCatalog.default()
    text = tagged_text(str(row.get("text") or ""))
    coins = catalog.tag(text)
    if not coins or row.get("dataset") in CRYPTO_CORPORA:
        return coins
    words = {w.lower() for w in _WORD_RE.findall(text)}
    return coins if words & CRYPTO_WORDS else []


def crypto_rows(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The crypto rows, plus how many rows of each data set were read (for SOURCES.md)."""
    catalog = CoinCatalog.default()
    read: Counter[str] = Counter()
    kept = []
    for row in rows:
        read[str(row["dataset"])] += 1
        if str(row["text"]).strip() and crypto_coins(row, catalog):
            kept.append(row)
    return kept, read


def build(root: Path, out: Path = OUT, seed: int = 13) -> dict[str, tuple[int, int]]:
    """Write the crypto rows, shuffled; returns data set -> (rows read, rows kept)."""
    rows, read = crypto_rows(_cryptolin(root) + _financial_news(root) + _stock_tweets(root))
    random.Random(seed).shuffle(rows)  # nosec B311 # reproducible order, no security use
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    kept = Counter(str(r["dataset"]) for r in rows)
    return {name: (read[name], kept[name]) for name in sorted(read)}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m producers.build_replay DATA_DIR\n")
        raise SystemExit(2)
    counts = build(Path(sys.argv[1]))
    for name, (read_n, kept_n) in counts.items():
        sys.stdout.write(f"{name}: {kept_n} of {read_n} rows kept\n")
    sys.stdout.write(f"{sum(k for _, k in counts.values())} rows -> {OUT}\n")
