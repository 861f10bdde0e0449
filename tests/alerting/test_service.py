"""The alerting service against the real platform: an alert on the alerts topic reaches a
subscriber's webhook (a real HTTP server here) signed, the SSE stream and ``/v1/alerts``;
a failing receiver is retried then dead-lettered; a stop mid-retry loses nothing; and a real
Alertmanager (the Debian binary) forwards a Prometheus-style alert to the subscriber."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from alerting.service import AlertingService
from alerting.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from api.main import create_app
from core.cli import override
from core.kafka import EventProducer, follow_topic
from core.settings import Settings
from cryptopulse.platform.services import render_alertmanager_config
from schemas.events import Alert, AlertSeverity, DeadLetter
from schemas.redis_keys import RedisKeys
from schemas.topics import ALERTS, DEAD_LETTER
from tests.api.conftest import FakeRuntime, LiveServer
from tests.webhooks import Receiver

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(condition: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class Running:
    """An AlertingService consuming in a thread, its HTTP server on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.service = AlertingService(settings)
        self.port = 0
        self.thread = threading.Thread(target=self.service.run, daemon=True)

    def __enter__(self) -> Running:
        self.port = self.service.start_http("127.0.0.1", 0)
        self.thread.start()
        _wait(self.service.ready.is_set, 60, "the consumer's partition")
        return self

    def stop(self) -> None:
        self.service.request_stop()
        self.thread.join(timeout=30)
        self.service.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def metric(self, text: str) -> float:
        for line in httpx.get(f"http://127.0.0.1:{self.port}/metrics").text.splitlines():
            if line.startswith(text + " "):
                return float(line.split()[-1])
        return 0.0


@pytest.fixture
def settings(isolated_settings: Settings) -> Settings:
    return override(
        isolated_settings, "alerting", max_attempts=3, backoff_s=0.05, backoff_max_s=0.2, timeout_s=5
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, runtime=FakeRuntime())) as client:
        yield client


def _subscribe(api: TestClient, url: str, **body: Any) -> tuple[str, str]:
    r = api.post("/v1/alerts/subscriptions", json={"url": url, **body})
    assert r.status_code == 201, r.text
    return r.json()["subscription"]["id"], r.json()["secret"]


def _alert(kind: str = "volume_spike", coin: str | None = "bitcoin", tag: str = "") -> Alert:
    return Alert(
        source_id=f"{kind}:{coin}:5m:{tag or time.time_ns()}",
        event_time=datetime.now(UTC),
        kind=kind,
        severity=AlertSeverity.WARNING,
        coin=coin,
        message=f"{coin} mentions 4.1 sd above normal",
        value=4.1,
        threshold=3.0,
    )


def _publish(settings: Settings, *alerts: Alert) -> None:
    with EventProducer(settings, component="test") as producer:
        for alert in alerts:
            producer.send(ALERTS.name(settings), alert, key=ALERTS.key_of(alert))


def _dead_letters(settings: Settings, count: int, timeout_s: float = 30.0) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    deadline = time.monotonic() + timeout_s
    for received in follow_topic(
        settings,
        DEAD_LETTER,
        start="beginning",
        stop=lambda: len(found) >= count or time.monotonic() > deadline,
    ):
        if isinstance(received.event, DeadLetter):
            found.append(received.event)
    return found


def test_alert_reaches_a_signed_webhook_sse_and_the_alert_list(settings: Settings, api: TestClient) -> None:
    with Receiver([200]) as hook, Running(settings) as running:
        sid, secret = _subscribe(api, hook.url, coin="bitcoin", kinds=["volume_spike"], threshold=3)
        _subscribe(api, hook.url, coin="ethereum")  # another coin: not delivered
        _subscribe(api, hook.url, threshold=5)  # 4.1 is below its threshold: not delivered
        keys = RedisKeys(settings.redis.key_prefix)
        live = redis.Redis.from_url(settings.redis.dsn).pubsub()
        live.subscribe(keys.live_alerts())
        alert = _alert()
        _publish(settings, alert)

        _wait(lambda: hook.requests, what="the webhook")
        headers, body = hook.requests[0]
        assert verify(secret, headers[TIMESTAMP_HEADER.lower()], body, headers[SIGNATURE_HEADER.lower()])
        assert not verify(
            secret, headers[TIMESTAMP_HEADER.lower()], body + b"x", headers[SIGNATURE_HEADER.lower()]
        )
        payload = json.loads(body)
        assert Alert.model_validate(payload["alert"]) == alert
        assert (
            payload["subscription_id"] == sid and payload["delivery_id"] == headers["x-cryptopulse-delivery"]
        )
        assert "bitcoin" in payload["text"] and "bitcoin" in payload["content"]  # Slack and Discord

        message = _wait(
            lambda: live.get_message(ignore_subscribe_messages=True, timeout=0.5), what="SSE channel"
        )
        assert Alert.model_validate_json(message["data"]) == alert
        listed = api.get("/v1/alerts").json()["alerts"]
        assert any(a["source_id"] == alert.source_id for a in listed)
        _wait(lambda: running.metric('cryptopulse_alerting_deliveries_total{outcome="delivered"}') == 1)
        time.sleep(1.0)
        assert len(hook.requests) == 1  # only the matching subscription
        live.close()


def test_sse_stream_carries_alerts(settings: Settings) -> None:
    with Running(settings), LiveServer(create_app(settings, runtime=FakeRuntime())) as server:
        alert = _alert(kind="sentiment_shift", coin="ethereum")
        got: list[str] = []

        def read() -> None:
            url = f"{server.url}/v1/stream?events=scored,alert&coin=ethereum&max_events=1"
            with httpx.stream("GET", url, timeout=30) as r:
                for line in r.iter_lines():
                    got.append(line)
                    if line.startswith(": connected"):
                        _publish(settings, alert)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=40)
        assert "event: alert" in got
        data = next(line for line in got if line.startswith("data: "))
        assert Alert.model_validate_json(data.removeprefix("data: ")) == alert


def test_failing_receiver_is_retried_then_dead_lettered(settings: Settings, api: TestClient) -> None:
    with Receiver([500]) as failing, Receiver([404]) as gone, Running(settings) as running:
        sid, _ = _subscribe(api, failing.url)
        gone_id, _ = _subscribe(api, gone.url)
        with EventProducer(settings, component="test") as producer:  # not an alert: dead-lettered too
            producer.send_raw(ALERTS.name(settings), b'{"kind": "nonsense"}', key="junk")
        alert = _alert()
        _publish(settings, alert)
        letters = {d.original_key: d for d in _dead_letters(settings, 3)}
        assert letters["junk"].reason == "invalid_schema"
        assert letters["junk"].payload == '{"kind": "nonsense"}'
        assert len(failing.requests) == 3  # max_attempts
        assert len(gone.requests) == 1  # a 404 is not retried
        assert letters[sid].reason == "webhook_failed" and "3 attempts" in letters[sid].detail
        assert letters[gone_id].reason == "webhook_rejected" and "HTTP 404" in letters[gone_id].detail
        assert json.loads(letters[sid].payload)["alert"]["source_id"] == alert.source_id
        assert letters[sid].original_topic == ALERTS.name(settings) and letters[sid].component == "alerting"
        _wait(lambda: running.metric('cryptopulse_alerting_deliveries_total{outcome="dead_lettered"}') == 2)
        assert running.metric('cryptopulse_alerting_deliveries_total{outcome="attempt_failed"}') == 3 + 1


def test_a_stop_mid_retry_loses_nothing(settings: Settings, api: TestClient) -> None:
    patient = override(settings, "alerting", max_attempts=20, backoff_s=0.5, backoff_max_s=0.5)
    with Receiver([503, 200]) as first:
        _subscribe(api, first.url)
        delivered_elsewhere = Receiver([200])
        with delivered_elsewhere:
            _subscribe(api, delivered_elsewhere.url)
            running = Running(patient).__enter__()
            alert = _alert()
            _publish(settings, alert)
            _wait(lambda: first.requests and delivered_elsewhere.requests, what="first attempts")
            running.stop()  # during the back-off: the alert's offset stays uncommitted
            assert len(first.requests) == 1
            with Running(patient):
                _wait(lambda: len(first.requests) == 2, what="the delivery after the restart")
                time.sleep(1.0)
            # The subscriber already served is not sent the alert twice.
            assert len(delivered_elsewhere.requests) == 1
            assert json.loads(first.requests[1][1])["alert"]["source_id"] == alert.source_id


ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


@pytest.mark.skipif(
    not Path(ALERTMANAGER).exists(), reason="prometheus-alertmanager not installed (scripts/setup)"
)
def test_alertmanager_forwards_to_subscribers(settings: Settings, api: TestClient, tmp_path: Path) -> None:
    with Receiver([200]) as hook, Running(settings) as running:
        _, secret = _subscribe(api, hook.url, kinds=["model_drift"])
        am_port = _free_port()
        routed = override(settings, "alerting", port=running.port)
        config = tmp_path / "alertmanager.yml"
        config.write_text(render_alertmanager_config(routed, group_wait="1s"), "utf-8")
        log = (tmp_path / "am.log").open("wb")
        am = subprocess.Popen(  # the Debian binary with a test config
            [
                ALERTMANAGER,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{am_port}"
            _wait(lambda: _ok(f"{base}/-/ready"), 30, "Alertmanager ready")
            labels = {"alertname": "ModelDrift", "severity": "warning", "model_version": "m/3"}
            health = {"alertname": "ComponentDown", "severity": "critical", "job": "spark"}
            r = httpx.post(
                f"{base}/api/v2/alerts",
                json=[
                    {
                        "labels": labels,
                        "annotations": {"summary": "model m/3: confidence drifted (PSI 0.41)"},
                    },
                    {"labels": health, "annotations": {"summary": "spark is not answering /metrics"}},
                ],
            )
            assert r.status_code == 200, r.text
            _wait(lambda: hook.requests, 60, "the subscriber's webhook via Alertmanager")
            headers, body = hook.requests[0]
            assert verify(
                secret, headers["x-cryptopulse-timestamp"], body, headers["x-cryptopulse-signature"]
            )
            alert = Alert.model_validate(json.loads(body)["alert"])
            assert alert.kind == "model_drift" and "PSI 0.41" in alert.message
            assert alert.source_id.startswith("alertmanager:ModelDrift:")
            _wait(
                lambda: (
                    running.metric(
                        'cryptopulse_alerting_alertmanager_alerts_total{result="no_cryptopulse_kind"}'
                    )
                    == 1
                ),
                what="the service-health alert skipped",
            )
            time.sleep(1.0)
            assert len(hook.requests) == 1
        finally:
            am.terminate()
            am.wait(timeout=10)
            log.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
