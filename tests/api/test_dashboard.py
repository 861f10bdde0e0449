"""The Streamlit dashboard in headless Chromium: every page renders the data seeded in Redis.

Stack: seeded Redis views (unique key prefix) and isolated Kafka topics -> the API under
uvicorn -> ``streamlit run api/dashboard/app.py`` -> Chromium driven by chromedriver's
W3C WebDriver HTTP API (plain httpx; no selenium). Screenshots of each page are written
to ``$CRYPTOPULSE_TEST_ARTIFACTS/dashboard`` (default ``<home>/test-artifacts/dashboard``).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from api.main import create_app
from core.kafka import EventProducer
from core.settings import Settings
from schemas.redis_keys import RedisKeys
from schemas.topics import SCORED_POSTS
from tests.api.conftest import FakeRuntime, LiveServer, make_settings
from tests.api.seed import seed_views
from tests.api.test_feedback import add_candidate, feedback_records, scored
from tests.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]


def _wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


class Browser:
    """Minimal W3C WebDriver client over chromedriver."""

    def __init__(self, driver_url: str, profile: str) -> None:
        self.http = httpx.Client(base_url=driver_url, timeout=60)
        args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1400,1800",
        ]
        caps = {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}
        r = self.http.post("/session", json={"capabilities": {"alwaysMatch": caps}})
        r.raise_for_status()
        self.session = r.json()["value"]["sessionId"]

    def _cmd(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self.http.request(method, f"/session/{self.session}{path}", json=body)
        r.raise_for_status()
        return r.json()["value"]

    def go(self, url: str) -> None:
        self._cmd("POST", "/url", {"url": url})

    def text(self) -> str:
        return str(
            self._cmd("POST", "/execute/sync", {"script": "return document.body.innerText;", "args": []})
        )

    def wait_for(self, needles: list[str], timeout_s: float = 90.0, absent: tuple[str, ...] = ()) -> str:
        """The page text once it shows every needle and none of ``absent`` (a rerun replaces
        the previous run's elements only when it finishes)."""
        deadline = time.monotonic() + timeout_s
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if (
                all(n in text for n in needles)
                and not any(a in text for a in absent)
                and "Running..." not in text
            ):
                return text
            time.sleep(0.5)
        missing = [n for n in needles if n not in text]
        shown = [a for a in absent if a in text]
        raise AssertionError(f"page lacks {missing}, still shows {shown}; it shows:\n{text[:3000]}")

    def find(self, xpath: str, timeout_s: float = 60.0) -> str:
        """The W3C element reference of the first element matching ``xpath``, once rendered."""
        deadline = time.monotonic() + timeout_s
        while True:
            r = self.http.post(f"/session/{self.session}/element", json={"using": "xpath", "value": xpath})
            if r.status_code == 200:
                return str(next(iter(r.json()["value"].values())))
            if time.monotonic() > deadline:
                raise AssertionError(f"no element {xpath}: {r.text[:300]}; page:\n{self.text()[:2000]}")
            time.sleep(0.5)

    def click(self, xpath: str, timeout_s: float = 60.0) -> None:
        """Click the first element matching ``xpath``, waiting for it to render."""
        self._cmd("POST", f"/element/{self.find(xpath, timeout_s)}/click", {})

    def type(self, xpath: str, text: str) -> None:
        """Type ``text`` into the element matching ``xpath`` (a trailing newline submits it)."""
        self._cmd("POST", f"/element/{self.find(xpath)}/value", {"text": text})

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._cmd("GET", "/screenshot")))
        return path

    def close(self) -> None:
        try:
            self.http.delete(f"/session/{self.session}")
        finally:
            self.http.close()


@pytest.fixture(scope="module")
def artifacts(platform: Settings) -> Path:
    root = Path(os.environ.get("CRYPTOPULSE_TEST_ARTIFACTS") or platform.home / "test-artifacts")
    out = root / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def stack(isolated_settings: Settings) -> Iterator[dict[str, Any]]:
    """Seeded Redis + Kafka messages, the API, Streamlit and a Chromium session."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium/chromedriver not installed")
    settings = make_settings(isolated_settings, prefix=isolated_settings.redis.key_prefix)
    sync = redis.Redis.from_url(settings.redis.dsn)
    seeded = seed_views(sync, settings.redis.key_prefix)
    # Review candidates as the stream worker writes them (most useful first).
    add_candidate(
        sync,
        settings.redis.key_prefix,
        scored("t3_rev0", "Not sure what to make of this BTC dip"),
        9.5,
        ["low_confidence", "challenger_disagrees"],
        "negative",
    )
    add_candidate(
        sync,
        settings.redis.key_prefix,
        scored("t3_rev1", "ETH merge anniversary thread", coins=["ethereum"]),
        4.0,
        ["members_disagree"],
    )
    topic = SCORED_POSTS.name(settings)
    with EventProducer(settings, component="dashboard-test") as producer:
        for post in seeded["posts"]:
            producer.send(topic, post)
        producer.flush()

    procs: list[subprocess.Popen[bytes]] = []
    profile = tempfile.mkdtemp(prefix="cp-chromium-")
    browser: Browser | None = None
    with LiveServer(create_app(settings, runtime=FakeRuntime())) as api:
        try:
            st_port, driver_port = free_port(), free_port()
            env = {
                **os.environ,
                "CRYPTOPULSE_DASHBOARD__API_URL": api.url,
                "CRYPTOPULSE_DASHBOARD__REFRESH_S": "30",
                "CRYPTOPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            }
            log = (artifacts_dir(settings) / "streamlit.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "streamlit",
                        "run",
                        str(REPO / "api" / "dashboard" / "app.py"),
                        "--server.port",
                        str(st_port),
                        "--server.address",
                        "127.0.0.1",
                        "--server.headless",
                        "true",
                        "--browser.gatherUsageStats",
                        "false",
                        "--server.fileWatcherType",
                        "none",
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                )
            )
            procs.append(
                subprocess.Popen(
                    [CHROMEDRIVER, f"--port={driver_port}"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            _wait_http(f"http://127.0.0.1:{st_port}/_stcore/health")
            _wait_http(f"http://127.0.0.1:{driver_port}/status")
            browser = Browser(f"http://127.0.0.1:{driver_port}", profile)
            yield {
                "browser": browser,
                "url": f"http://127.0.0.1:{st_port}",
                "seeded": seeded,
                "topic": topic,
                "api": api.url,
                "settings": settings,
                "redis": sync,
            }
        finally:
            if browser is not None:
                browser.close()
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            shutil.rmtree(profile, ignore_errors=True)
            keys = list(sync.scan_iter(f"{settings.redis.key_prefix}:*"))
            if keys:
                sync.delete(*keys)
            sync.close()


def artifacts_dir(settings: Settings) -> Path:
    root = Path(os.environ.get("CRYPTOPULSE_TEST_ARTIFACTS") or settings.home / "test-artifacts")
    out = root / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_every_page_shows_seeded_data(stack: dict[str, Any], artifacts: Path) -> None:
    browser: Browser = stack["browser"]
    url = stack["url"]
    pages = {
        "market": [
            "Market mood",
            "Mood index",
            "Trending coins",
            "trend_score",
            "solana",
            "volume_spike",
            "Model version",
            "fake/1",
            # Price, the 1h window's return and the 24h change next to each trending coin.
            "91,000.00 USD",
            "3,100.00 USD",
            "1h return",
            "+0.10%",
            "-0.10%",
            "+1.50%",
        ],
        "coins": [
            "bitcoin sentiment",  # opens on the most-mentioned coin
            "Search coins",
            "Mentions",
            "91,000.00 USD",
            "+0.10% (5m)",
            "Price (USD)",
            "91,000.00",
            "Lead/lag (windows)",
            "+2",
            "Sentiment vs price",
            "sentiment led price by 2 windows, r=0.41",
            "rolling sentiment-return correlation r=0.12 over the trailing windows",
            "All coins",
            "ethereum",
            "price led sentiment by 1 window, r=-0.33",
            "no lead/lag: too little history",
            "140.00 USD",
        ],
        "posts": [
            "Bitcoin ETF inflows hit a record",
            "Ethereum gas fees spike again",
            "confidence 80%",
            "source reddit",
            "coins: bitcoin, ethereum",
            # The words that drove a verdict (the fake model keys on "bull").
            "why positive: bullish",
            "no single word or phrase drives this verdict",
            "prices: bitcoin 91,000.00 USD (+0.10% 5m) · ethereum 3,100.00 USD (-0.10% 5m)",
            "Data quality",
            "91.0%",
            "8.0% (max 5%) ⚠",
        ],
        "review": [
            "Review",
            "Not sure what to make of this BTC dip",
            "challenger: negative",
            "low confidence, challenger disagrees",
            "ETH merge anniversary thread",
            "Confirm neutral",
            "Correct: positive",
            "prices: bitcoin 91,000.00 USD (+0.10% 5m)",
        ],
        # Before /v1/models exists the page says so instead of failing.
        "models": ["Models", "Registered versions", "Model events"],
        "topics": [
            "Kafka topics",
            stack["topic"],
            "Consumer groups",
            "Latest messages",
            "t3_seed0",
            "Bitcoin ETF inflows hit a record",
        ],
    }
    for page, needles in pages.items():
        browser.go(f"{url}/" if page == "market" else f"{url}/{page}")  # market is the default page
        text = browser.wait_for(needles)
        assert "Page not found" not in text and "Traceback" not in text
        shot = browser.screenshot(artifacts / f"{page}.png")
        assert shot.stat().st_size > 20_000, f"{shot} looks blank"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Coins: the search box narrows the coins; the page follows the one match.
    browser.go(f"{url}/coins")
    browser.wait_for(["bitcoin sentiment", "Search coins"])
    browser.type("//input[@aria-label='Search coins']", "sol\n")
    text = browser.wait_for(
        ["solana sentiment", "140.00 USD", "no lead/lag: too little history"],
        absent=("bitcoin sentiment", "price led sentiment"),  # the other coins are filtered out
    )
    assert "Traceback" not in text
    browser.screenshot(artifacts / "coins-search.png")
    browser.type("//input[@aria-label='Search coins']", "\ue003" * 3 + "zzz\n")  # 3 backspaces
    browser.wait_for(["no tracked coin matches 'zzz'"])

    # Try it: the default text scored with its explanation.
    browser.go(f"{url}/try")
    browser.wait_for(["Try it", "Score"])
    browser.click("//button[contains(., 'Score')]")
    text = browser.wait_for(["Label", "positive", "probability drop", "bullish", "model fake/1"])
    assert "Traceback" not in text
    browser.screenshot(artifacts / "try.png")

    # Review: one click confirms the top post; it reaches the feedback topic and leaves the queue.
    browser.go(f"{url}/review")
    browser.wait_for(["Not sure what to make of this BTC dip", "Correct: positive"])
    browser.click("(//button[contains(., 'Confirm neutral')])[1]")  # the top post's
    text = browser.wait_for(["t3_rev0: confirmed neutral"])
    assert "Not sure what to make of this BTC dip" not in text
    settings: Settings = stack["settings"]
    assert stack["redis"].sismember(RedisKeys(settings.redis.key_prefix).review_done(), "t3_rev0")
    assert feedback_records(settings) == 1
