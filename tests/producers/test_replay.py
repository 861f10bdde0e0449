"""Replay: realistic records with stable ids, pacing, event time, checkpoints, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from core.settings import Settings, load_settings
from producers.replay import ReplaySource, load_rows, news_source_id, reddit_fullname
from producers.runner import Runner
from schemas.events import NewsArticle, PriceTick, RedditPost, utc_now
from tests.ports import free_port
from tests.producers.conftest import RecordingProducer, read_topic

ROOT = Path(__file__).resolve().parents[2]


def replay_settings(home: Path, **producer: object) -> Settings:
    return load_settings(home=home, producer={"replay_rate": 5000, "flush_every": 20, **producer})


def run(settings: Settings, producer: RecordingProducer, **kwargs: object) -> ReplaySource:
    source = ReplaySource(settings, **kwargs)  # type: ignore[arg-type]
    Runner(settings, source, producer=producer).run()
    return source


def texts(producer: RecordingProducer) -> list[NewsArticle | RedditPost]:
    return [r for _, _, r in producer.sent if isinstance(r, NewsArticle | RedditPost)]


def test_bundled_data_is_real_and_small() -> None:
    rows = load_rows()
    assert len(rows) > 700
    assert {r["dataset"] for r in rows} == {"cryptolin", "twitter_financial_news", "stock_tweets"}
    assert len({(r["dataset"], r["row"]) for r in rows}) == len(rows)
    assert (ROOT / "producers/data/replay/texts.jsonl").stat().st_size < 3_000_000
    assert (ROOT / "producers/data/replay/SOURCES.md").exists()


def test_bundled_texts_are_all_crypto() -> None:
    """Every replayed text tags a catalog coin as the worker tags it (no ``unknown_coin``
    dead letters, no text that adds nothing to a trend); stock news is not in it."""
    from producers.build_replay import crypto_coins, tagged_text
    from scoring.coins import CoinCatalog

    catalog = CoinCatalog.default()
    rows = load_rows()
    assert all(catalog.tag(tagged_text(r["text"])) for r in rows)
    assert all(crypto_coins(r) for r in rows)
    assert not [r for r in rows if r["text"].startswith("$SOL - ReneSola")]
    # the filter: a finance-set row needs a crypto word, a CryptoLin row only a coin
    stock = {"dataset": "twitter_financial_news", "row": "x", "text": "$SOL - ReneSola beats on revenue"}
    assert catalog.tag(stock["text"]) == ["solana"] and crypto_coins(stock) == []
    crypto = {"dataset": "twitter_financial_news", "row": "y", "text": "Solana token rallies"}
    assert crypto_coins(crypto) == ["solana"]
    assert crypto_coins({"dataset": "cryptolin", "row": "z", "text": "Ripple wins in court"}) == ["ripple"]


def test_records_look_like_real_sources_with_stable_ids(tmp_path: Path) -> None:
    settings = replay_settings(tmp_path)
    producer = RecordingProducer(settings)
    before = utc_now()
    run(settings, producer, limit=60)
    rows = load_rows()[:60]
    got = texts(producer)
    assert len(got) == 60
    for row, record in zip(rows, got, strict=True):
        if row["kind"] == "post":
            assert isinstance(record, RedditPost)
            assert record.source_id == reddit_fullname(row["dataset"], row["row"])
            assert (record.title + record.selftext) == row["text"]
        else:
            assert isinstance(record, NewsArticle)
            assert (
                record.source_id
                == news_source_id(row["dataset"], row["row"])
                == (f"replay:{row['dataset']}:{row['row']}")
            )
            assert record.title == row["text"]
        assert before <= record.event_time <= utc_now() + timedelta(seconds=1)
    prices = [r for _, _, r in producer.sent if isinstance(r, PriceTick)]
    assert {t.coin for t in prices} == set(settings.producer.coins)
    assert all(t.provider == "replay-random-walk" and t.price > 0 for t in prices)
    assert {k for t, k, r in producer.sent if isinstance(r, PriceTick)} == set(settings.producer.coins)


def test_restart_resumes_without_duplicates_or_gaps(tmp_path: Path) -> None:
    settings = replay_settings(tmp_path)
    first, second = RecordingProducer(settings), RecordingProducer(settings)
    run(settings, first, limit=45)
    run(settings, second, limit=30)
    ids = [r.source_id for r in texts(first) + texts(second)]
    expected = [
        reddit_fullname(r["dataset"], r["row"])
        if r["kind"] == "post"
        else news_source_id(r["dataset"], r["row"])
        for r in load_rows()[:75]
    ]
    assert ids == expected
    state = json.loads((tmp_path / "producers" / "replay.json").read_text())
    assert state["position"] == 75 and state["pass"] == 0


def test_a_slow_replay_checkpoints_by_time_not_only_by_count(tmp_path: Path) -> None:
    """At a slow rate ``flush_every`` records take hours; a crash would re-send them all,
    most older than the worker's de-duplication window. Batches also end on time."""
    settings = replay_settings(tmp_path, replay_rate=40, flush_every=500, checkpoint_every_s=0.05)
    producer = RecordingProducer(settings)
    run(settings, producer, limit=8)
    assert len(texts(producer)) == 8
    assert producer.flushes >= 4  # 8 records at 40/s span 0.2 s: a flush and checkpoint every ~0.05 s
    state = json.loads((tmp_path / "producers" / "replay.json").read_text())
    assert state["position"] == 8


def test_loop_marks_new_passes_and_one_pass_mode_stops(tmp_path: Path) -> None:
    rows = [{"dataset": "d", "row": str(i), "kind": "news", "text": f"Bitcoin text {i}"} for i in range(3)]
    settings = replay_settings(tmp_path)
    producer = RecordingProducer(settings)
    run(settings, producer, limit=7, rows=rows)
    assert [r.source_id for r in texts(producer)] == [
        "replay:d:0",
        "replay:d:1",
        "replay:d:2",
        "replay:d:0:p1",
        "replay:d:1:p1",
        "replay:d:2:p1",
        "replay:d:0:p2",
    ]
    once = replay_settings(tmp_path / "once", replay_loop=False)
    producer = RecordingProducer(once)
    source = run(once, producer, rows=rows)
    assert source.finished and len(texts(producer)) == 3


def test_rate_and_time_compression(tmp_path: Path) -> None:
    settings = replay_settings(
        tmp_path, replay_rate=100, replay_time_compression=3600, replay_price_interval_s=600
    )
    producer = RecordingProducer(settings)
    started = time.monotonic()
    run(settings, producer, limit=40)
    elapsed = time.monotonic() - started
    assert 0.35 <= elapsed < 5  # 40 records at 100/s
    times = [r.event_time for r in texts(producer)]
    spread = (times[-1] - times[0]).total_seconds()
    assert 0.35 * 3600 <= spread <= 5 * 3600  # one wall second covers an hour of event time
    assert times == sorted(times)
    ticks = [r for _, _, r in producer.sent if isinstance(r, PriceTick)]
    assert len(ticks) >= 2 * len(settings.producer.coins)  # a tick round per 10 event-minutes


@pytest.mark.integration
def test_replay_process_sigterm_flushes_checkpoints_and_resumes(platform: Settings, tmp_path: Path) -> None:
    """``python -m producers replay`` as the platform runs it: SIGTERM, then restart, no dups, no gaps."""
    from core.kafka import ensure_topics
    from tests.producers.conftest import RAW_SPECS

    prefix = f"tp-{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = {
        **os.environ,
        "CRYPTOPULSE_HOME": str(tmp_path),
        "CRYPTOPULSE_KAFKA__BOOTSTRAP_SERVERS": platform.kafka.bootstrap,
        "CRYPTOPULSE_KAFKA__TOPIC_PREFIX": prefix,
        "CRYPTOPULSE_PRODUCER__REPLAY_RATE": "200",
        "CRYPTOPULSE_PRODUCER__FLUSH_EVERY": "50",
        "CRYPTOPULSE_PRODUCER__METRICS_PORT": str(port),
    }
    settings = load_settings(home=tmp_path, kafka={**platform.kafka.model_dump(), "topic_prefix": prefix})
    ensure_topics(settings, RAW_SPECS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "producers", "replay"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        metrics = ""
        while time.monotonic() < deadline:
            try:
                metrics = (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                )
            except OSError:
                metrics = ""
            if 'cryptopulse_producer_records_produced_total{source="replay"' in metrics:
                break
            time.sleep(0.3)
        assert "cryptopulse_producer_last_success_timestamp_seconds" in metrics
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"records produced" in out
    position = json.loads((tmp_path / "producers" / "replay.json").read_text())["position"]
    assert position > 0

    resumed = subprocess.run(
        [sys.executable, "-m", "producers", "replay", "--limit", "25", "--no-metrics"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]

    rows = load_rows()[: position + 25]
    expected = sorted(
        reddit_fullname(r["dataset"], r["row"])
        if r["kind"] == "post"
        else news_source_id(r["dataset"], r["row"])
        for r in rows
    )
    landed = [k for k, _ in read_topic(settings, f"{prefix}.raw.news")]
    landed += [k for k, _ in read_topic(settings, f"{prefix}.raw.reddit")]
    assert sorted(k or "" for k in landed) == expected  # every row exactly once across the restart
    assert read_topic(settings, f"{prefix}.raw.prices")
