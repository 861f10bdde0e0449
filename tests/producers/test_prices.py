"""CoinGecko connector against a local server serving /coins/markets and /simple/price JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from core.settings import Settings
from producers.prices import PriceSource
from producers.runner import Runner
from schemas.events import PriceTick
from tests.producers import payloads as p
from tests.producers.conftest import RecordingProducer, make_settings, read_topic
from tests.producers.fakeserver import FakeServer, Reply

MARKETS = "/api/v3/coins/markets"
SIMPLE = "/api/v3/simple/price"


def run_once(settings: Settings, producer: RecordingProducer | None = None) -> Runner:
    runner = Runner(settings, PriceSource(settings), producer=producer)
    runner.run(cycles=1)
    return runner


def ticks(producer: RecordingProducer) -> list[PriceTick]:
    return [r for _, _, r in producer.sent if isinstance(r, PriceTick)]


def test_markets_batched_ticks_keyed_by_coin(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set(MARKETS, Reply(200, p.markets({"bitcoin": 95000.5, "ethereum": 3600.25})))
    run_once(unit_settings, recorder)
    got = ticks(recorder)
    assert [(t.coin, t.price) for t in got] == [("bitcoin", 95000.5), ("ethereum", 3600.25)]
    assert [k for _, k, _ in recorder.sent] == ["bitcoin", "ethereum"]
    btc = got[0]
    assert btc.event_time == datetime(2024, 11, 28, 8, 0, 0, 123000, tzinfo=UTC)
    assert btc.source_id == "bitcoin:2024-11-28T08:00:00.123Z"
    assert btc.market_cap == 95000.5 * 1e7 and btc.change_24h_pct == 1.2 and btc.provider == "coingecko"
    requests = server.hits(MARKETS)
    assert len(requests) == 1 and requests[0].query["ids"] == ["bitcoin,ethereum"]
    assert requests[0].query["vs_currency"] == ["usd"]


def test_unchanged_quotes_and_restart_do_not_duplicate(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set(MARKETS, Reply(200, p.markets({"bitcoin": 1.0, "ethereum": 2.0})))
    run_once(unit_settings, recorder)
    run_once(unit_settings, recorder)  # restart, same last_updated: nothing new
    assert len(ticks(recorder)) == 2
    server.set(
        MARKETS, Reply(200, p.markets({"bitcoin": 1.5, "ethereum": 2.5}, updated="2024-11-28T08:01:00Z"))
    )
    run_once(unit_settings, recorder)
    assert [t.price for t in ticks(recorder)] == [1.0, 2.0, 1.5, 2.5]


def test_429_backs_off_then_succeeds_with_demo_key(tmp_path, server: FakeServer) -> None:
    settings = make_settings(tmp_path, server, coingecko_api_key="CG-demo")
    server.set(
        MARKETS,
        Reply(
            429,
            b'{"status": {"error_code": 429, "error_message": "You\'ve exceeded the Rate Limit."}}',
            {"Retry-After": "0.2"},
        ),
        Reply(200, p.markets({"bitcoin": 10.0})),
    )
    recorder = RecordingProducer(settings)
    run_once(settings, recorder)
    assert [t.price for t in ticks(recorder)] == [10.0]
    assert all(r.headers["x-cg-demo-api-key"] == "CG-demo" for r in server.hits(MARKETS))
    assert server.hits(SIMPLE) == []


def test_persistent_429_fails_cycle_without_hammering_other_endpoint(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set(MARKETS, Reply(429, b"{}", {"Retry-After": "0.05"}))
    runner = run_once(unit_settings, recorder)
    assert runner.stats.failed_cycles == 1 and recorder.sent == []
    assert len(server.hits(MARKETS)) == 3 and server.hits(SIMPLE) == []


@pytest.mark.parametrize(
    "failure",
    [
        Reply(500, b"oops"),
        Reply(200, b'[{"id": "bitcoin", "current_pr'),
        Reply(200, b'{"error": "not a list"}'),
    ],
    ids=["5xx", "truncated", "wrong-shape"],
)
def test_markets_failure_falls_back_to_simple_price(
    failure: Reply, unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    server.set(MARKETS, failure)
    server.set(SIMPLE, Reply(200, p.simple_price({"bitcoin": 20.0, "ethereum": 3.0})))
    run_once(unit_settings, recorder)
    got = ticks(recorder)
    assert [(t.coin, t.price, t.volume_24h) for t in got] == [("bitcoin", 20.0, 2e6), ("ethereum", 3.0, 3e5)]
    assert got[0].event_time == datetime.fromtimestamp(p.BASE_TS, UTC)
    query = server.hits(SIMPLE)[0].query
    assert query["include_last_updated_at"] == ["true"] and query["vs_currencies"] == ["usd"]


def test_bad_quote_is_dead_lettered(
    unit_settings: Settings, server: FakeServer, recorder: RecordingProducer
) -> None:
    body = json.loads(p.markets({"bitcoin": 5.0, "ethereum": 1.0}))
    body[1]["current_price"] = None  # CoinGecko returns null for delisted/unpriced coins
    server.set(MARKETS, Reply(200, json.dumps(body).encode()))
    run_once(unit_settings, recorder)
    assert [t.coin for t in ticks(recorder)] == ["bitcoin"]
    assert recorder.dead[0]["reason"] == "invalid_schema" and recorder.dead[0]["source_id"].startswith(
        "ethereum:"
    )


@pytest.mark.integration
def test_prices_into_kafka(kafka_settings: Settings, server: FakeServer) -> None:
    server.set(MARKETS, Reply(200, p.markets({"bitcoin": 90000.0, "ethereum": 3000.0})))
    run_once(kafka_settings)
    run_once(kafka_settings)  # restart with unchanged quotes
    records = read_topic(kafka_settings, f"{kafka_settings.kafka.topic_prefix}.raw.prices")
    assert sorted((k, PriceTick.from_json(v).price) for k, v in records) == [
        ("bitcoin", 90000.0),
        ("ethereum", 3000.0),
    ]


@pytest.mark.integration
def test_cli_produce_prices_once(kafka_settings: Settings, server: FakeServer) -> None:
    """``cryptopulse produce prices --cycles 1`` end to end, configured only through the environment."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    server.set(MARKETS, Reply(200, p.markets({"bitcoin": 42.0})))
    env = {
        **os.environ,
        "CRYPTOPULSE_HOME": str(kafka_settings.home),
        "CRYPTOPULSE_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.kafka.bootstrap,
        "CRYPTOPULSE_KAFKA__TOPIC_PREFIX": kafka_settings.kafka.topic_prefix,
        "CRYPTOPULSE_PRODUCER__COINGECKO_BASE_URL": f"{server.url}/api/v3",
        "CRYPTOPULSE_PRODUCER__COINS": '["bitcoin"]',
        "CRYPTOPULSE_PRODUCER__COINGECKO_API_KEY": "CG-secret-value",
    }
    result = subprocess.run(
        [sys.executable, "-m", "cryptopulse", "produce", "prices", "--cycles", "1", "--no-metrics"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"prices: 1 records produced" in result.stdout
    assert b"CG-secret-value" not in result.stdout + result.stderr  # secrets never logged
    assert server.hits(MARKETS)[0].headers["x-cg-demo-api-key"] == "CG-secret-value"
    records = read_topic(kafka_settings, f"{kafka_settings.kafka.topic_prefix}.raw.prices")
    assert [(k, PriceTick.from_json(v).price) for k, v in records] == [("bitcoin", 42.0)]
