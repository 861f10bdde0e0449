"""Every /v1 read endpoint with good and bad input, against real Redis seeded by the writer helpers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.trending import trend_score
from schemas.events import TrendWindow
from tests.api.conftest import make_settings
from tests.api.seed import COINS, LEAD_LAG

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int, text: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"]
    if text:
        assert text in body["detail"], body
    return body


def test_coins_lists_tracked_coins_with_latest_sentiment(client: TestClient, seeded: dict[str, Any]) -> None:
    r = client.get("/v1/coins", params={"window": "5m"})
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 3 and body["window"] == "5m"
    by_coin = {c["coin"]: c for c in body["coins"]}
    assert set(by_coin) == set(COINS)
    expected = max(
        (w for w in seeded["windows"] if w.coin == "bitcoin" and w.window == "5m"),
        key=lambda w: w.window_start,
    )
    assert TrendWindow.model_validate(by_coin["bitcoin"]["sentiment"]) == expected
    assert by_coin["bitcoin"]["price"]["price"] == COINS["bitcoin"]["price"]


def test_coins_empty_when_nothing_seeded(client: TestClient) -> None:
    r = client.get("/v1/coins")
    assert r.status_code == 200 and r.json()["coins"] == []


def test_coin_sentiment(client: TestClient, seeded: dict[str, Any]) -> None:
    for window in ("1m", "5m", "1h", "1d"):
        r = client.get("/v1/coins/ethereum/sentiment", params={"window": window})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["coin"] == "ethereum" and body["latest"]["window"] == window
        assert body["latest"]["mean_score"] < 0  # seeded bearish
        assert body["age_s"] >= 0
        # The latest price and its return over the window, next to the sentiment.
        assert body["price"]["price"] == COINS["ethereum"]["price"]
        assert body["price"]["change_24h_pct"] == 1.5
        assert body["price_return"] == body["latest"]["price_return"] == -0.001
        assert (body["latest"]["lead_lag_windows"], body["latest"]["lead_lag_corr"]) == LEAD_LAG["ethereum"]
    solana = client.get("/v1/coins/solana/sentiment").json()["latest"]
    assert solana["lead_lag_windows"] is None and solana["lead_lag_corr"] is None  # too little history
    points = client.get("/v1/coins/bitcoin/timeseries", params={"window": "1h", "limit": 3}).json()["points"]
    assert [p["lead_lag_windows"] for p in points] == [2, 2, 2]


def test_unknown_coin_is_404_problem(client: TestClient, seeded: dict[str, Any]) -> None:
    body = assert_problem(client.get("/v1/coins/dogecash/sentiment"), 404, "not tracked")
    assert body["type"].endswith("/unknown-coin")
    assert_problem(client.get("/v1/coins/dogecash/timeseries"), 404)


def test_tracked_coin_without_this_window_is_404(client: TestClient, seeded: dict[str, Any]) -> None:
    assert_problem(
        client.get("/v1/coins/bitcoin/sentiment", params={"window": "1h_5m"}), 404, "no 1h_5m window"
    )


@pytest.mark.parametrize("window", ["2m", "", "1H", "hour"])
def test_bad_window_is_422_problem(client: TestClient, seeded: dict[str, Any], window: str) -> None:
    body = assert_problem(client.get("/v1/coins/bitcoin/sentiment", params={"window": window}), 422)
    assert body["errors"][0]["loc"] == ["query", "window"]
    assert_problem(client.get("/v1/trending", params={"window": window}), 422)


def test_bad_coin_id_is_422(client: TestClient) -> None:
    assert_problem(client.get("/v1/coins/Bit%20Coin/sentiment"), 422)


def test_timeseries_range_and_limit(client: TestClient, seeded: dict[str, Any]) -> None:
    series = sorted(
        (w for w in seeded["windows"] if w.coin == "solana" and w.window == "1m"),
        key=lambda w: w.window_start,
    )
    r = client.get("/v1/coins/solana/timeseries", params={"window": "1m"})
    body = r.json()
    assert r.status_code == 200 and body["count"] == len(series) == 30
    assert [p["window_start"] for p in body["points"]] == [
        w.model_dump(mode="json")["window_start"] for w in series
    ]

    start, end = series[10].window_start, series[19].window_start
    r = client.get(
        "/v1/coins/solana/timeseries",
        params={"window": "1m", "from": start.isoformat(), "to": end.isoformat()},
    )
    body = r.json()
    assert body["count"] == 10 and body["from"].startswith(start.strftime("%Y-%m-%dT%H:%M"))
    r = client.get("/v1/coins/solana/timeseries", params={"window": "1m", "limit": 5})
    points = r.json()["points"]
    assert len(points) == 5
    assert points[-1]["window_start"] == series[-1].model_dump(mode="json")["window_start"]  # newest kept


def test_timeseries_bad_input(client: TestClient, seeded: dict[str, Any]) -> None:
    now = seeded["now"]
    assert_problem(
        client.get(
            "/v1/coins/bitcoin/timeseries",
            params={"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()},
        ),
        422,
        "from must not be after to",
    )
    assert_problem(client.get("/v1/coins/bitcoin/timeseries", params={"from": "yesterday"}), 422)
    assert_problem(
        client.get("/v1/coins/bitcoin/timeseries", params={"from": "2026-01-01T00:00:00"}), 422, "timezone"
    )
    assert_problem(client.get("/v1/coins/bitcoin/timeseries", params={"limit": 0}), 422)
    assert_problem(client.get("/v1/coins/bitcoin/timeseries", params={"limit": 5001}), 422)


def test_trending_ranks_by_the_documented_score(client: TestClient, seeded: dict[str, Any]) -> None:
    r = client.get("/v1/trending", params={"window": "1h", "limit": 3})
    body = r.json()
    assert r.status_code == 200 and body["count"] == 3
    scores = [i["trend_score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    latest = {
        w.coin: w
        for w in sorted((w for w in seeded["windows"] if w.window == "1h"), key=lambda w: w.window_start)
    }
    for item in body["items"]:
        assert item["trend_score"] == pytest.approx(trend_score(latest[item["coin"]]), abs=1e-5)
        assert item["volume"] == latest[item["coin"]].volume and item["enough_mentions"]
    assert [i["rank"] for i in body["items"]] == [1, 2, 3]
    # A floor above every volume: nobody has enough mentions, the order stays by score.
    thin = client.get("/v1/trending", params={"window": "1h", "min_mentions": 10**6}).json()
    assert not any(i["enough_mentions"] for i in thin["items"])
    assert [i["coin"] for i in thin["items"]] == [i["coin"] for i in body["items"]]
    assert_problem(client.get("/v1/trending", params={"limit": 0}), 422)


def test_market_mood(client: TestClient, seeded: dict[str, Any]) -> None:
    body = client.get("/v1/market", params={"window": "1h"}).json()
    assert 0 <= body["index"] <= 100 and body["coins"] == 3
    assert {p["name"] for p in body["parts"]} == {"sentiment", "breadth", "momentum", "activity"}
    assert body["label"] in {"extreme fear", "fear", "neutral", "greed", "extreme greed"}
    prices = {p["coin"]: p for p in body["prices"]}
    assert set(prices) == set(COINS)
    assert (
        prices["bitcoin"]["price"] == COINS["bitcoin"]["price"] and prices["bitcoin"]["vs_currency"] == "usd"
    )
    assert prices["bitcoin"]["change_24h_pct"] == 1.5 and prices["bitcoin"]["window_return"] == 0.001
    assert prices["ethereum"]["window_return"] == -0.001 and prices["ethereum"]["as_of"]


def test_market_without_data(client: TestClient) -> None:
    body = client.get("/v1/market").json()
    assert body["label"] == "no data" and body["index"] == 50 and body["parts"] == []
    assert body["prices"] == []


def test_posts_with_explanations(client: TestClient, seeded: dict[str, Any]) -> None:
    plain = client.get("/v1/posts/latest", params={"limit": 4}).json()
    assert plain["explanations"] is None and plain["explained_by"] is None
    body = client.get("/v1/posts/latest", params={"limit": 4, "explain": 4}).json()
    assert body["count"] == 4 and body["explained_by"] == "fake/1" and body["explain_error"] is None
    assert [e["source_id"] for e in body["explanations"]] == [p["source_id"] for p in body["posts"]]
    oldest = body["explanations"][-1]  # "Bitcoin ETF inflows hit a record, very bullish for BTC"
    assert oldest["label"] == "positive"
    assert "bullish" in [s["text"] for s in oldest["spans"]]
    span = oldest["spans"][0]
    assert body["posts"][-1]["text"][span["start"] : span["end"]] == span["text"]
    assert body["explanations"][0]["spans"] == []  # the fake sees nothing in "BTC and ETH both ..."
    # Only the first N, and a cached second call answers the same.
    two = client.get("/v1/posts/latest", params={"limit": 4, "explain": 2}).json()
    assert len(two["explanations"]) == 2 and two["explanations"] == body["explanations"][:2]
    assert_problem(client.get("/v1/posts/latest", params={"explain": 11}), 422)
    assert_problem(client.get("/v1/posts/latest", params={"explain": -1}), 422)


def test_posts_explain_without_model_still_lists_posts(redis_settings: Any, seeded: dict[str, Any]) -> None:
    from pathlib import Path

    from api.main import create_app

    settings = make_settings(redis_settings, prefix=redis_settings.redis.key_prefix)
    missing = Path(settings.home) / "no-such-model"
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"uri": str(missing)})})
    with TestClient(create_app(settings)) as c:  # really tries to load, and fails
        r = c.get("/v1/posts/latest", params={"limit": 2, "explain": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 2 and body["explanations"] is None
    assert "not loaded" in body["explain_error"]


def test_posts_and_alerts(client: TestClient, seeded: dict[str, Any]) -> None:
    posts = client.get("/v1/posts/latest", params={"limit": 3}).json()
    assert posts["count"] == 3
    assert posts["posts"][0]["source_id"] == seeded["posts"][-1].source_id  # newest first
    only_eth = client.get("/v1/posts/latest", params={"coin": "ethereum"}).json()["posts"]
    assert only_eth and all("ethereum" in p["coins"] for p in only_eth)
    alerts = client.get("/v1/alerts").json()
    assert alerts["count"] == 1 and alerts["alerts"][0]["kind"] == "volume_spike"
    assert_problem(client.get("/v1/posts/latest", params={"limit": 501}), 422)


def test_data_quality_latest_and_history(client: TestClient, seeded: dict[str, Any]) -> None:
    latest = client.get("/v1/quality").json()
    assert latest["count"] == 2
    by_source = {r["source"]: r for r in latest["sources"]}
    newest = [r for r in seeded["quality"] if r.source == "reddit"][-1]
    assert by_source["reddit"]["window_start"] == newest.model_dump(mode="json")["window_start"]
    assert by_source["reddit"]["breaches"] == ["language"] and by_source["news"]["breaches"] == []
    assert by_source["reddit"]["quality_score"] == pytest.approx(0.91)
    history = client.get("/v1/quality/reddit", params={"limit": 5}).json()
    assert history["count"] == 2
    starts = [w["window_start"] for w in history["windows"]]
    assert starts == sorted(starts, reverse=True)  # newest first
    assert_problem(client.get("/v1/quality/twitter"), 404)
    assert_problem(client.get("/v1/quality/reddit", params={"limit": 0}), 422)


def test_info_reports_model_and_freshness(client: TestClient, seeded: dict[str, Any]) -> None:
    body = client.get("/v1/info").json()
    assert body["model"] == {"loaded": True, "version": "fake/1", "uri": body["model"]["uri"], "error": None}
    assert body["coins"] == 3
    assert body["freshness"]["window_age_s"] is not None and body["freshness"]["window_age_s"] < 300
    assert body["freshness"]["post_age_s"] is not None


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"]["ok"] and ready.json()["model"]["loaded"]
    client.get("/v1/coins")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'cryptopulse_api_requests_total{method="GET",route="/v1/coins",status="200"}' in metrics.text


def test_unknown_route_is_problem(client: TestClient) -> None:
    assert_problem(client.get("/v1/nope"), 404)
    assert_problem(client.delete("/v1/coins"), 405)


def test_openapi_document_is_complete(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/v1/coins",
        "/v1/coins/{coin}/sentiment",
        "/v1/coins/{coin}/timeseries",
        "/v1/trending",
        "/v1/market",
        "/v1/score",
        "/v1/stream",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    sentiment = paths["/v1/coins/{coin}/sentiment"]["get"]["responses"]
    assert PROBLEM in sentiment["404"]["content"] and PROBLEM in sentiment["422"]["content"]
    assert doc["components"]["schemas"]["SentimentResponse"]["examples"]
    assert "text/event-stream" in paths["/v1/stream"]["get"]["responses"]["200"]["content"]
    score_body = doc["components"]["schemas"]["ScoreRequest"]["properties"]["texts"]
    assert score_body["maxItems"] == 64 and score_body["minItems"] == 1


def test_view_cache_bounds_staleness(redis_settings: Any, sync_redis: Any, seeded: dict[str, Any]) -> None:
    """A new window shows after at most api.view_cache_s; with 0 it shows at once."""
    import time

    from api.main import create_app
    from tests.api.conftest import FakeRuntime, make_settings
    from tests.api.seed import make_window
    from views import RedisViewWriter

    prefix = redis_settings.redis.key_prefix
    latest = max(
        (w for w in seeded["windows"] if w.coin == "bitcoin" and w.window == "1m"),
        key=lambda w: w.window_start,
    )
    for step, cache_s in ((1, 0.0), (2, 0.3)):
        newer = make_window("bitcoin", latest.window, latest.window_start + timedelta(minutes=step), 99)
        expected = newer.model_dump(mode="json")["window_start"]
        settings = make_settings(redis_settings, prefix=prefix, view_cache_s=cache_s)
        with TestClient(create_app(settings, runtime=FakeRuntime())) as c:
            before = c.get("/v1/coins/bitcoin/sentiment", params={"window": "1m"}).json()["latest"][
                "window_start"
            ]
            views = RedisViewWriter(sync_redis, prefix)
            views.add_trend_windows([newer], publish=False)
            views.flush()
            now = c.get("/v1/coins/bitcoin/sentiment", params={"window": "1m"}).json()["latest"][
                "window_start"
            ]
            if cache_s == 0:
                assert now == expected
            else:
                assert now == before != expected
                time.sleep(cache_s + 0.05)
                after = c.get("/v1/coins/bitcoin/sentiment", params={"window": "1m"}).json()["latest"]
                assert after["window_start"] == expected


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/coins", {"window": "7m"}),
        ("/v1/market", {"window": "week"}),
        ("/v1/coins/bitcoin/timeseries", {"window": "1y"}),
        ("/v1/alerts", {"limit": 0}),
        ("/v1/alerts", {"limit": "many"}),
        ("/v1/posts/latest", {"coin": "NOT A COIN"}),
        ("/v1/trending", {"limit": 101}),
    ],
)
def test_bad_query_parameters_are_422(
    client: TestClient, seeded: dict[str, Any], path: str, params: dict[str, Any]
) -> None:
    body = assert_problem(client.get(path, params=params), 422)
    assert body["errors"] and body["errors"][0]["loc"][0] == "query"
