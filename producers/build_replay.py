"""Build ``producers/data/replay/texts.jsonl`` from the bundled public data sets.

Run once by a maintainer (``python -m producers.build_replay DATA_DIR``, the folder of the
labelled sets as published, laid out like ``data/``); the
output is committed so the replay works with no network and no data directory. Only
sets whose terms allow redistribution with attribution are used; labels are dropped
(the replay is a text stream, not a training set). Rows are shuffled with a fixed seed
so the stream interleaves headlines and tweets, and each keeps its dataset row id.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "data" / "replay" / "texts.jsonl"


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
    with (root / "twitter_financial_news" / "valid.csv").open(encoding="utf-8", newline="") as handle:
        return [
            {"dataset": "twitter_financial_news", "row": f"valid-{i}", "kind": "news", "text": r["text"]}
            for i, r in enumerate(csv.DictReader(handle))
        ]


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


def build(root: Path, out: Path = OUT, seed: int = 13) -> int:
    rows = [r for r in _cryptolin(root) + _financial_news(root) + _stock_tweets(root) if r["text"].strip()]
    random.Random(seed).shuffle(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    return len(rows)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m producers.build_replay DATA_DIR\n")
        raise SystemExit(2)
    count = build(Path(sys.argv[1]))
    sys.stdout.write(f"{count} rows -> {OUT}\n")
