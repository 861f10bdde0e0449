"""End to end, the first minutes of a fresh home (issue 17's "done when").

``cryptopulse spark history`` seeds the bundled history (one day here, to keep the suite
short; ``up`` runs the same step with seven), then the worker, the Spark job, the API and
the alerting service start as ``cryptopulse up`` starts them, against the real broker,
Redis and a real (tiny) model. Checked: bitcoin has at least 48 five-minute windows with
history-based z-scores and a live price at once; a burst of bitcoin posts makes the Spark
job raise a volume spike or a sentiment shift, which reaches a subscribed webhook on a local
HTTP server with a valid HMAC-SHA256 signature; a second seed is a no-op.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from alerting.signing import verify
from core.kafka import EventProducer, ensure_topics
from core.settings import Settings, load_settings
from cryptopulse.platform.manager import Platform
from cryptopulse.platform.pipeline import (
    AlertDeliveryService,
    ApiService,
    SparkStreamingService,
    StreamWorkerService,
)
from schemas.events import NewsArticle
from schemas.topics import CATALOG, RAW_NEWS
from tests.cleanup import discard_run_data
from tests.e2e.loop_helpers import eventually, isolated_stack_env
from tests.webhooks import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

BURST = 60
"""Unique bitcoin headlines sent at once: the seeded day has a few per five minutes."""
BURST_ALERTS = ("volume_spike", "sentiment_shift")
"""What such a burst of bullish headlines raises: a volume spike, or a sentiment shift when
the seeded history's own bursts widen the volume z-score's spread at that hour."""


def _seed() -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # our own CLI with fixed arguments
        [sys.executable, "-m", "cryptopulse", "spark", "history"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture
def fresh_home(
    platform: Settings, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    env = {
        **isolated_stack_env(tmp_path / "home", tiny_model_dir, "first"),
        "CRYPTOPULSE_SPARK__HISTORY_DAYS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    ensure_topics(settings, CATALOG)
    try:
        yield settings
    finally:
        discard_run_data(settings)


def test_a_fresh_home_shows_history_prices_and_delivers_a_signed_alert(fresh_home: Settings) -> None:
    settings = fresh_home
    seed = _seed()
    assert seed.returncode == 0, seed.stdout[-2000:] + seed.stderr[-3000:]
    assert "history: seeded" in seed.stdout, seed.stdout[-2000:]

    services = [StreamWorkerService, SparkStreamingService, ApiService, AlertDeliveryService]
    manager = Platform(settings, services)
    with Receiver() as receiver:
        _first_minutes(settings, manager, receiver)


def _first_minutes(settings: Settings, manager: Platform, receiver: Receiver) -> None:
    try:
        manager.up()  # the order `up` uses: history first, then the services
        api = f"http://127.0.0.1:{settings.api.port}"

        # history at once: >= 48 five-minute windows of bitcoin, z-scores from the seeded past
        r = httpx.get(f"{api}/v1/coins/bitcoin/timeseries", params={"window": "5m", "limit": 500}, timeout=10)
        assert r.status_code == 200, r.text
        points = r.json()["points"]
        assert len(points) >= 48
        assert any(p["volume_zscore"] not in (None, 0.0) for p in points[-48:])
        sentiment = httpx.get(f"{api}/v1/coins/bitcoin/sentiment", params={"window": "5m"}, timeout=10)
        assert sentiment.status_code == 200, sentiment.text
        assert sentiment.json()["price"]["price"] > 0

        # a subscriber for bitcoin's volume spikes
        created = httpx.post(
            f"{api}/v1/alerts/subscriptions",
            json={"url": receiver.url, "coin": "bitcoin", "kinds": list(BURST_ALERTS)},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]

        # a burst of unique bitcoin headlines, scored by the worker, counted by Spark
        run = uuid.uuid4().hex[:8]
        producer = EventProducer(settings, component="e2e")
        try:
            for i in range(BURST):
                now = datetime.now(UTC)
                producer.send(
                    RAW_NEWS.name(settings),
                    NewsArticle(
                        source_id=f"e2e:{run}:{i}",
                        event_time=now,
                        ingest_time=now,
                        feed="e2e",
                        title=f"Bitcoin rallies as traders pile in, update {i} of {run}",
                        link=f"https://news.example.com/{run}/{i}",
                    ),
                )
            producer.flush(60.0)
        finally:
            producer.close()

        eventually(lambda: receiver.requests, 600, "a webhook for bitcoin's burst", every_s=3)
        headers, body = receiver.requests[0]
        signed_at, signature = headers.get("x-cryptopulse-timestamp"), headers.get("x-cryptopulse-signature")
        assert verify(secret, signed_at, body, signature)
        payload = json.loads(body)
        assert payload["alert"]["kind"] in BURST_ALERTS and payload["alert"]["coin"] == "bitcoin"
        assert payload["text"] and payload["content"]  # Slack and Discord read these

        again = _seed()
        assert again.returncode == 0 and "history: already" in again.stdout, again.stdout[-2000:]
    finally:
        manager.down()
