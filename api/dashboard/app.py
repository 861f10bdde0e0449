"""CryptoPulse dashboard: market mood, coins, posts and alerts, the review queue where a
person labels live posts, the model registry, and the Kafka topics view.

Run with ``cryptopulse dashboard``. Every number comes from the API (never Redis or
Kafka directly); each page refreshes itself every ``dashboard.refresh_s`` seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from api.dashboard.charts import (
    correlation_chart,
    correlation_sentence,
    gauge,
    lead_lag_sentence,
    money,
    percent,
    sentiment_chart,
    timeseries_frame,
)
from api.dashboard.client import ApiClient
from core.settings import get_settings

WINDOWS = ["1m", "5m", "1h", "1d"]


@st.cache_resource
def _client() -> ApiClient:
    return ApiClient(get_settings())


def _refresh_s() -> int:
    return get_settings().dashboard.refresh_s


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "no data"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _show_error(error: str | None) -> bool:
    if error:
        st.warning(error)
        return True
    return False


# Window whose return the pages without their own window selector show next to a price.
# (Comments, not docstrings: Streamlit would render a bare string literal on the page.)
PRICE_WINDOW = "5m"


def _prices() -> dict[str, dict[str, Any]]:
    """coin -> latest price tick and the latest 5m window's return, from ``/v1/coins``
    (one call; a page still renders without prices when it fails)."""
    coins = _client().get("/v1/coins", window=PRICE_WINDOW)
    if not coins.ok:
        return {}
    out = {}
    for c in coins.data["coins"]:
        tick, window = c.get("price"), c.get("sentiment")
        out[c["coin"]] = {
            "price": tick["price"] if tick else None,
            "vs_currency": tick["vs_currency"] if tick else None,
            "return": window.get("price_return") if window else None,
        }
    return out


def _priced(coins: list[str], prices: dict[str, dict[str, Any]]) -> str:
    """'bitcoin 91,000.00 USD (+0.10% 5m)' for each coin; just the name where no price is known."""
    parts = []
    for coin in coins:
        p = prices.get(coin)
        if p is None or p["price"] is None:
            parts.append(coin)
            continue
        ret = f" ({percent(p['return'])} {PRICE_WINDOW})" if p["return"] is not None else ""
        parts.append(f"{coin} {money(p['price'], p['vs_currency'])}{ret}")
    return " · ".join(parts)


def sidebar() -> None:
    """Model version and data freshness, on every page."""
    info = _client().get("/v1/info")
    with st.sidebar:
        st.caption(f"API: {_client().base_url}")
        if _show_error(info.error):
            return
        model = info.data["model"]
        fresh = info.data["freshness"]
        st.markdown(f"**Model version:** `{model['version'] or 'not loaded'}`")
        st.markdown(f"**Trend data:** {_age(fresh['window_age_s'])}")
        st.markdown(f"**Latest post:** {_age(fresh['post_age_s'])}")
        st.markdown(f"**Coins tracked:** {info.data['coins']}")
        st.caption(f"refreshes every {_refresh_s()}s · {datetime.now(UTC):%H:%M:%S} UTC")


def market_page() -> None:
    st.title("Market mood")
    window = st.segmented_control("Window", WINDOWS, default="1h", key="market_window") or "1h"

    @st.fragment(run_every=_refresh_s())
    def body() -> None:
        market = _client().get("/v1/market", window=window)
        trending = _client().get("/v1/trending", window=window, limit=10)
        alerts = _client().get("/v1/alerts", limit=5)
        left, right = st.columns([1, 2])
        with left:
            if not _show_error(market.error):
                m = market.data
                st.altair_chart(gauge(m["index"], m["label"]), use_container_width=False)
                st.metric(
                    "Mood index", f"{m['index']:.1f}", help="0 extreme fear · 50 neutral · 100 extreme greed"
                )
                st.caption(f"{m['label']} · {m['coins']} coins · {m['volume']} mentions")
                if m["parts"]:
                    st.table(
                        pd.DataFrame(m["parts"])[["name", "value", "weight", "detail"]].set_index("name")
                    )
        with right:
            st.subheader("Trending coins")
            if not _show_error(trending.error):
                items = trending.data["items"]
                prices = {p["coin"]: p for p in market.data.get("prices", [])} if market.ok else {}
                if items:
                    frame = pd.DataFrame(items)[["rank", "coin", "trend_score", "volume"]]
                    frame["trend_score"] = [f"{v:.2f}" for v in frame["trend_score"]]
                    frame["sentiment"] = [
                        f"{i['weighted_score']:+.2f}" if i["weighted_score"] is not None else "n/a"
                        for i in items
                    ]
                    frame["price"] = [
                        money(prices[c]["price"], prices[c]["vs_currency"]) if c in prices else "n/a"
                        for c in frame["coin"]
                    ]
                    frame[f"{window} return"] = [
                        percent(prices[c]["window_return"]) if c in prices else "n/a" for c in frame["coin"]
                    ]
                    frame["24h"] = [
                        f"{prices[c]['change_24h_pct']:+.2f}%"
                        if c in prices and prices[c]["change_24h_pct"] is not None
                        else "n/a"
                        for c in frame["coin"]
                    ]
                    st.table(frame.set_index("rank"))
                else:
                    st.info("no trending data for this window yet")
            st.subheader("Alerts")
            if not _show_error(alerts.error):
                _alerts(alerts.data["alerts"])

    body()


def _alerts(alerts: list[dict[str, Any]]) -> None:
    if not alerts:
        st.caption("no alerts")
    for a in alerts:
        color = {"critical": "red", "warning": "orange"}.get(a["severity"], "blue")
        st.markdown(
            f":{color}[**{a['severity']}**] **{a['kind']}** {a.get('coin') or ''} · {a['message']} · "
            f"`{a['event_time']}`"
        )


def coins_page() -> None:
    st.title("Coins")
    coins = _client().get("/v1/coins", window="5m")
    if _show_error(coins.error):
        return
    # Most-mentioned first, so the page opens on the coin people talk about now.
    ranked = sorted(
        coins.data["coins"],
        key=lambda c: (c["sentiment"]["volume"] if c["sentiment"] else -1, c["coin"]),
        reverse=True,
    )
    names = [c["coin"] for c in ranked]
    if not names:
        st.info("no coins tracked yet")
        return
    c0, c1, c2 = st.columns([1, 1, 1])
    query = c0.text_input("Search coins", key="coin_search", placeholder="e.g. sol").strip().lower()
    shown = [n for n in names if query in n] if query else names
    if not shown:
        st.info(f"no tracked coin matches {query!r}")
        return
    coin = c1.selectbox("Coin", shown, key="coin", help="most-mentioned first; type to search")
    window = c2.segmented_control("Window", WINDOWS, default="5m", key="coin_window") or "5m"

    @st.fragment(run_every=_refresh_s())
    def body() -> None:
        latest = _client().get(f"/v1/coins/{coin}/sentiment", window=window)
        series = _client().get(f"/v1/coins/{coin}/timeseries", window=window, limit=200)
        if _show_error(latest.error):
            return
        w = latest.data["latest"]
        price = latest.data.get("price")
        ret = latest.data.get("price_return")
        m1, m2, m3, m4, m5 = st.columns(5)
        m1.metric(f"{coin} sentiment", f"{w['weighted_score']:+.2f}")
        m2.metric("Mentions", f"{w['volume']}", help="mentions in the latest window")
        m3.metric(
            f"Price ({price['vs_currency'].upper()})" if price else "Price",
            money(price["price"]) if price else "n/a",
            delta=f"{percent(ret)} ({window})" if ret is not None else None,
            help="latest price; delta: its return over the latest window",
        )
        m4.metric(
            "Volume z-score", f"{w['volume_zscore']:.2f}" if w.get("volume_zscore") is not None else "n/a"
        )
        lag = w.get("lead_lag_windows")
        m5.metric(
            "Lead/lag (windows)",
            f"{lag:+d}" if lag is not None else "n/a",
            help="positive: sentiment moved before price (Spark's estimate over the trailing windows)",
        )
        st.caption(
            f"positive {w['positive_share']:.0%} · neutral {w['neutral_share']:.0%} · "
            f"negative {w['negative_share']:.0%} · window {w['window_start']} → {w['window_end']}"
        )
        if not _show_error(series.error):
            frame = timeseries_frame(series.data["points"])
            if frame.empty:
                st.info("no time series yet")
            else:
                st.subheader("Sentiment vs price")
                top, volume = sentiment_chart(frame)
                st.altair_chart(top, use_container_width=True)
                st.caption("blue: confidence-weighted sentiment · orange dashed: closing price (right axis)")
                st.markdown(f"**{lead_lag_sentence(w)}** · {correlation_sentence(w)}")
                corr = correlation_chart(frame)
                if corr is not None:
                    st.altair_chart(corr, use_container_width=True)
                st.altair_chart(volume, use_container_width=True)
        st.subheader("All coins")
        rows = [
            {
                "coin": c["coin"],
                "sentiment": c["sentiment"]["weighted_score"] if c["sentiment"] else None,
                "mentions": c["sentiment"]["volume"] if c["sentiment"] else None,
                "price": money(c["price"]["price"], c["price"]["vs_currency"]) if c["price"] else "n/a",
                "5m return": percent(c["sentiment"].get("price_return") if c["sentiment"] else None),
                "24h": f"{c['price']['change_24h_pct']:+.2f}%"
                if c["price"] and c["price"].get("change_24h_pct") is not None
                else "n/a",
                "lead/lag": lead_lag_sentence(c["sentiment"]),
            }
            for c in ranked
            if c["coin"] in shown
        ]
        st.table(pd.DataFrame(rows).set_index("coin"))

    body()


FEED_POSTS = 30
FEED_EXPLAINED = 10  # posts whose verdict is explained (the API caches each; GET /v1/posts/latest)


def _why(explanation: dict[str, Any] | None, post_label: str, model: str | None) -> str | None:
    """'why positive: `bullish` 0.70 · ...' for one post, or None when it was not explained."""
    if explanation is None:
        return None
    label = explanation["label"]
    words = " · ".join(f"`{s['text'].replace('`', '')}` {s['weight']:.2f}" for s in explanation["spans"])
    said = f"why {label}" if label == post_label else f"model {model} says {label}; why"
    if not words:
        return f"{said}: no single word or phrase drives this verdict"
    return f"{said}: {words}"


def feed_page() -> None:
    st.title("Latest posts")
    st.caption(
        f"newest scored posts (the first {FEED_EXPLAINED} with the words that drove their verdict, "
        "weighted by how much the label's probability drops without them); below them each "
        "source's data quality and the latest alerts"
    )

    @st.fragment(run_every=_refresh_s())
    def body() -> None:
        posts = _client().get("/v1/posts/latest", limit=FEED_POSTS, explain=FEED_EXPLAINED)
        if _show_error(posts.error):
            return
        if not posts.data["posts"]:
            st.info("no scored posts yet")
        if posts.data.get("explain_error"):
            st.caption(f"no explanations: {posts.data['explain_error']}")
        explained = {e["source_id"]: e for e in posts.data.get("explanations") or []}
        prices = _prices()
        colors = {"positive": "green", "neutral": "gray", "negative": "red"}
        for p in posts.data["posts"]:
            with st.container(border=True):
                coins = ", ".join(p["coins"]) or "-"
                color = colors.get(p["label"], "gray")
                st.markdown(
                    f":{color}[**{p['label']}**] · confidence {p['confidence']:.0%} · "
                    f"source {p['source']} ({p.get('channel') or '-'}) · coins: {coins}"
                )
                st.text(p["text"])
                why = _why(explained.get(p["source_id"]), p["label"], posts.data.get("explained_by"))
                if why:
                    st.markdown(why)
                if p["coins"]:
                    st.caption(f"prices: {_priced(p['coins'], prices)}")
                st.caption(f"{p['event_time']} · model {p['model_version']}")
        st.subheader("Data quality")
        quality = _client().get("/v1/quality")
        if not _show_error(quality.error):
            _quality(quality.data["sources"])
        st.subheader("Alerts")
        alerts = _client().get("/v1/alerts", limit=20)
        if not _show_error(alerts.error):
            _alerts(alerts.data["alerts"])

    body()


def _quality(reports: list[dict[str, Any]]) -> None:
    """Latest closed window per source: score, records, each rule's failure share."""
    if not reports:
        st.caption("no data-quality window has closed yet")
        return
    rows = []
    for r in reports:
        row: dict[str, Any] = {
            "source": r["source"],
            "window (UTC)": f"{r['window_start'][11:16]}-{r['window_end'][11:16]}",
            "records": r["records"],
            "quality score": f"{r['quality_score']:.1%}",
        }
        for rule, share in r["shares"].items():
            flag = " ⚠" if rule in r["breaches"] else ""
            row[rule] = f"{share:.1%} (max {r['thresholds'][rule]:.0%}){flag}"
        rows.append(row)
    st.table(pd.DataFrame(rows).set_index("source"))


def topics_page() -> None:
    st.title("Kafka topics")

    @st.fragment(run_every=_refresh_s())
    def body() -> None:
        topics = _client().get("/v1/admin/topics")
        if _show_error(topics.error):
            return
        rows = [
            {"topic": t["name"], "partitions": t["partitions"], "messages": t["messages"]}
            for t in topics.data["topics"]
        ]
        st.table(pd.DataFrame(rows).set_index("topic") if rows else pd.DataFrame())
        with st.expander("Partitions and offsets"):
            detail = [{"topic": t["name"], **p} for t in topics.data["topics"] for p in t["detail"]]
            if detail:
                st.table(pd.DataFrame(detail).set_index(["topic", "partition"]))
        st.subheader("Consumer groups")
        groups = _client().get("/v1/admin/consumer-groups")
        if not _show_error(groups.error):
            if groups.data["groups"]:
                st.table(
                    pd.DataFrame(
                        [
                            {"group": g["group"], "state": g["state"], "lag": g["lag"]}
                            for g in groups.data["groups"]
                        ]
                    ).set_index("group")
                )
            else:
                st.caption("no consumer groups on these topics")
        names = [t["name"] for t in topics.data["topics"]]
        if names:
            st.subheader("Latest messages")
            busiest = max(topics.data["topics"], key=lambda t: t["messages"])["name"]
            topic = st.selectbox("Topic", names, index=names.index(busiest), key="topic")
            messages = _client().get(f"/v1/admin/topics/{topic}/messages", limit=20)
            if not _show_error(messages.error):
                for m in messages.data["messages"]:
                    st.markdown(f"`p{m['partition']}@{m['offset']}` · key `{m['key']}` · {m['timestamp']}")
                    st.text(m["value"][:1000])

    body()


LABELS = ["negative", "neutral", "positive"]
LABEL_COLORS = {"positive": "green", "neutral": "gray", "negative": "red"}
REASONS = {
    "low_confidence": "low confidence",
    "members_disagree": "ensemble members disagree",
    "challenger_disagrees": "challenger disagrees",
    "coin_shift": "coin sentiment just shifted",
}


def _send_feedback(source_id: str, label: str, model_label: str) -> None:
    """Button callback: runs before the rerun, so the page shows the result right away."""
    result = _client().post("/v1/feedback", {"source_id": source_id, "label": label})
    verb = "confirmed" if label == model_label else "corrected to"
    if result.ok:
        st.session_state["review_message"] = ("success", f"{source_id}: {verb} {label}")
    else:
        st.session_state["review_message"] = ("error", result.error or "feedback not recorded")


def review_page() -> None:
    """Posts the model is least sure about (or disagrees on) first; one click per answer."""
    st.title("Review")
    st.caption(
        "Confirm or correct the model's label; your answers join the next training run. "
        "Most useful first: low confidence, members or challenger disagree, coins that just shifted."
    )
    message = st.session_state.pop("review_message", None)
    if message is not None:
        (st.success if message[0] == "success" else st.error)(message[1])
    limit = st.slider("Posts", 5, 50, 10, step=5, key="review_limit")
    st.button("Refresh", key="review_refresh")
    queue = _client().get("/v1/review", limit=limit)
    if _show_error(queue.error):
        return
    if not queue.data["items"]:
        st.info("nothing waiting for review")
        return
    prices = _prices()
    for item in queue.data["items"]:
        sid = item["source_id"]
        with st.container(border=True):
            reasons = ", ".join(REASONS.get(r, r) for r in item["reasons"]) or "-"
            challenger = item.get("challenger_label")
            color = LABEL_COLORS.get(item["label"], "gray")
            st.markdown(
                f"model: :{color}[**{item['label']}**] · confidence {item['confidence']:.0%}"
                + (f" · challenger: **{challenger}**" if challenger else "")
                + f" · priority {item['priority']:.2f}"
            )
            st.text(item["text"])
            st.caption(
                f"why: {reasons} · coins: {', '.join(item['coins']) or '-'} · source {item['source']} · "
                f"{item['event_time']} · `{sid}`"
            )
            if item["coins"]:
                st.caption(f"prices: {_priced(item['coins'], prices)}")
            columns = st.columns(len(LABELS) + 1)
            columns[0].button(
                f"Confirm {item['label']}",
                key=f"confirm-{sid}",
                type="primary",
                on_click=_send_feedback,
                args=(sid, item["label"], item["label"]),
            )
            others = [label for label in LABELS if label != item["label"]]
            for column, label in zip(columns[1:], others, strict=False):
                column.button(
                    f"Correct: {label}",
                    key=f"{label}-{sid}",
                    on_click=_send_feedback,
                    args=(sid, label, item["label"]),
                )


def _rows(data: Any, *names: str) -> list[dict[str, Any]] | None:
    """The list in a response: the body itself, or its first list under ``names``."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for name in names:
            if isinstance(data.get(name), list):
                return list(data[name])
    return None


def _cell(value: Any) -> Any:
    return ", ".join(map(str, value)) if isinstance(value, list) else value


def models_page() -> None:
    """Registered versions with their aliases, and the registry's moves, newest first."""
    st.title("Models")

    @st.fragment(run_every=_refresh_s())
    def body() -> None:
        st.subheader("Registered versions")
        versions = _client().get("/v1/models")
        if versions.status == 404:
            st.info("this API does not serve the model registry (GET /v1/models) yet")
        elif not _show_error(versions.error):
            data = versions.data if isinstance(versions.data, dict) else {}
            if data.get("model"):
                st.caption(
                    f"{data['model']} · champion {data.get('champion') or '-'} · "
                    f"this API serves {data.get('serving') or '-'}"
                )
            rows = _rows(versions.data, "versions", "models", "items")
            if rows is None:
                st.json(versions.data)
            elif not rows:
                st.caption("no registered versions")
            else:
                frame = pd.DataFrame(
                    [{k: _cell(v) for k, v in r.items() if not isinstance(v, dict)} for r in rows]
                )
                st.table(frame)
        st.subheader("Model events")
        events = _client().get("/v1/models/events")
        if events.status == 404:
            st.info("this API does not serve model events (GET /v1/models/events) yet")
        elif not _show_error(events.error):
            items = _rows(events.data, "events", "items")
            if items is None:
                st.json(events.data)
            elif not items:
                st.caption("no model events yet")
            else:
                columns = ["event_time", "model", "action", "alias", "version", "previous_version"]
                columns += ["reasons", "actor"]
                st.table(pd.DataFrame([{c: _cell(e.get(c)) for c in columns} for e in items]))

    body()


def highlighted(text: str, spans: list[dict[str, Any]], label: str) -> str:
    """The text as Markdown with the spans that drove the label marked in the label's colour."""
    color = {"positive": "green", "negative": "red"}.get(label, "blue")
    out, last = [], 0
    for span in sorted(spans, key=lambda s: s["start"]):
        out.append(text[last : span["start"]])
        out.append(f":{color}-background[{text[span['start'] : span['end']]}]")
        last = span["end"]
    out.append(text[last:])
    return "".join(out)


def try_page() -> None:
    st.title("Try it")
    st.caption("Score your own text with the serving model and see which words drove the verdict.")
    text = st.text_area("Text", "Bitcoin ETF inflows hit a record as traders turn bullish", max_chars=1000)
    if not st.button("Score", type="primary") or not text.strip():
        return
    result = _client().post("/v1/score", {"texts": [text]}, explain="true")
    if _show_error(result.error):
        return
    item = result.data["results"][0]
    if item.get("error"):
        st.warning(item["error"])
        return
    m1, m2, m3 = st.columns(3)
    m1.metric("Label", item["label"])
    m2.metric("Score", f"{item['score']:+.2f}", help="p(positive) - p(negative)")
    m3.metric("Confidence", f"{item['confidence']:.0%}")
    st.markdown(highlighted(text, item.get("explanation") or [], item["label"]))
    spans = item.get("explanation") or []
    if spans:
        st.table(pd.DataFrame(spans)[["text", "weight"]].rename(columns={"weight": "probability drop"}))
    else:
        st.caption("no single word or phrase moves this verdict")
    st.caption(f"model {result.data['model_version']} · coins: {', '.join(item['coins']) or 'none'}")
    if item["coins"]:
        st.caption(f"prices: {_priced(item['coins'], _prices())}")


def main() -> None:
    st.set_page_config(page_title="CryptoPulse", layout="wide")
    pages = [
        st.Page(market_page, title="Market", url_path="market", default=True),
        st.Page(coins_page, title="Coins", url_path="coins"),
        st.Page(feed_page, title="Posts & alerts", url_path="posts"),
        st.Page(review_page, title="Review", url_path="review"),
        st.Page(try_page, title="Try it", url_path="try"),
        st.Page(models_page, title="Models", url_path="models"),
        st.Page(topics_page, title="Topics", url_path="topics"),
    ]
    navigation = st.navigation(pages)
    sidebar()
    navigation.run()


main()
