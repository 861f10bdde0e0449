"""Bodies in the real services' formats (trimmed to the fields that matter, plus noise)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

BASE_TS = 1_732_780_800  # 2024-11-28T08:00:00Z


def reddit_post(
    id36: str, *, sub: str = "Bitcoin", title: str | None = None, offset: int = 0, **extra: Any
) -> dict[str, Any]:
    data = {
        "approved_at_utc": None,
        "subreddit": sub,
        "selftext": f"body of {id36}",
        "author_fullname": "t2_abc",
        "title": title or f"Bitcoin post {id36}",
        "subreddit_name_prefixed": f"r/{sub}",
        "name": f"t3_{id36}",
        "id": id36,
        "score": 5,
        "num_comments": 2,
        "author": "satoshi_fan",
        "removed_by_category": None,
        "permalink": f"/r/{sub}/comments/{id36}/some_title/",
        "url": f"https://www.reddit.com/r/{sub}/comments/{id36}/some_title/",
        "created_utc": float(BASE_TS + offset),
        "over_18": False,
        "stickied": False,
    }
    data.update(extra)
    return {"kind": "t3", "data": data}


def reddit_comment(
    id36: str, *, sub: str = "Bitcoin", link: str = "t3_1abc", offset: int = 0, **extra: Any
) -> dict[str, Any]:
    data = {
        "subreddit_id": "t5_2qh1i",
        "link_id": link,
        "author": "hodler",
        "body": f"comment {id36}: ETH to the moon",
        "name": f"t1_{id36}",
        "id": id36,
        "parent_id": link,
        "score": 1,
        "subreddit": sub,
        "permalink": f"/r/{sub}/comments/1abc/x/{id36}/",
        "created_utc": float(BASE_TS + offset),
    }
    data.update(extra)
    return {"kind": "t1", "data": data}


def listing(children: list[dict[str, Any]], *, after: str | None = None, before: str | None = None) -> bytes:
    return json.dumps(
        {
            "kind": "Listing",
            "data": {
                "after": after,
                "dist": len(children),
                "modhash": "",
                "geo_filter": None,
                "children": children,
                "before": before,
            },
        }
    ).encode()


def token(expires_in: int = 86400) -> bytes:
    return json.dumps(
        {"access_token": "tok-123", "token_type": "bearer", "expires_in": expires_in, "scope": "*"}
    ).encode()


def rss(items: list[dict[str, str]], *, title: str = "Crypto News", encoding: str = "utf-8") -> bytes:
    parts = [
        f'<?xml version="1.0" encoding="{encoding}"?>',
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>',
        f"<title>{title}</title><link>https://example.com/</link><description>news</description>",
    ]
    for item in items:
        parts.append("<item>")
        parts.append(f"<title>{item['title']}</title>")
        if "link" in item:
            parts.append(f"<link>{item['link']}</link>")
        if "guid" in item:
            parts.append(f'<guid isPermaLink="false">{item["guid"]}</guid>')
        if "date" in item:
            parts.append(f"<pubDate>{item['date']}</pubDate>")
        parts.append(f"<description><![CDATA[<p>{item.get('summary', 'summary')}</p>]]></description>")
        parts.append("<dc:creator>Reporter</dc:creator></item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode(encoding)


def atom(entries: list[dict[str, str]], *, title: str = "Atom Crypto") -> bytes:
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>{title}</title><id>urn:feed</id><updated>2024-11-28T08:00:00Z</updated>",
    ]
    for entry in entries:
        parts.append(
            f"<entry><title>{entry['title']}</title><id>{entry['id']}</id>"
            f'<link href="{entry["link"]}"/><updated>{entry["updated"]}</updated>'
            f"<summary>{entry.get('summary', 'atom summary')}</summary>"
            "<author><name>A</name></author></entry>"
        )
    parts.append("</feed>")
    return "".join(parts).encode()


def rfc822(offset: int) -> str:
    return format_datetime(datetime.fromtimestamp(BASE_TS + offset, UTC), usegmt=True)


def markets(coins: dict[str, float], *, updated: str = "2024-11-28T08:00:00.123Z") -> bytes:
    return json.dumps(
        [
            {
                "id": coin,
                "symbol": coin[:3],
                "name": coin.title(),
                "image": "https://x/img.png",
                "current_price": price,
                "market_cap": price * 1e7,
                "market_cap_rank": i + 1,
                "total_volume": price * 1e5,
                "high_24h": price * 1.01,
                "low_24h": price * 0.99,
                "price_change_24h": price * 0.01,
                "price_change_percentage_24h": 1.2,
                "last_updated": updated,
                "price_change_percentage_24h_in_currency": 1.2,
            }
            for i, (coin, price) in enumerate(coins.items())
        ]
    ).encode()


def simple_price(coins: dict[str, float], *, updated: int = BASE_TS) -> bytes:
    return json.dumps(
        {
            coin: {
                "usd": price,
                "usd_market_cap": price * 1e7,
                "usd_24h_vol": price * 1e5,
                "usd_24h_change": -0.5,
                "last_updated_at": updated,
            }
            for coin, price in coins.items()
        }
    ).encode()


def newsapi(articles: list[dict[str, Any]]) -> bytes:
    return json.dumps({"status": "ok", "totalResults": len(articles), "articles": articles}).encode()


def newsapi_article(n: int, *, title: str | None = None) -> dict[str, Any]:
    return {
        "source": {"id": None, "name": "CoinDesk"},
        "author": "Reporter",
        "title": title or f"Bitcoin ETF story {n}",
        "description": f"<p>Description {n}</p>",
        "url": f"https://www.coindesk.com/markets/2024/11/28/story-{n}/",
        "urlToImage": None,
        "publishedAt": f"2024-11-28T08:{n:02d}:00Z",
        "content": "Lorem… [+1234 chars]",
    }
