"""Signatures, the chat-compatible payload, backoff, matching and Alertmanager conversion."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerting.alertmanager import convert
from alerting.delivery import Deliverer, backoff_delay, delivery_id
from alerting.payload import encode, webhook_payload
from alerting.signing import new_secret, signature, verify
from core.settings import AlertingSettings, Settings
from cryptopulse.platform.services import (
    ALERTMANAGER_CONFIG,
    ALERTMANAGER_DOCKER_CONFIG,
    DOCKER_HOSTS,
    prometheus_config,
    render_alertmanager_config,
)
from schemas.events import Alert, AlertSeverity, AlertSubscription, WindowSize

pytestmark = pytest.mark.unit
SECRET = "whsec_" + "k" * 40  # pragma: allowlist secret


def _alert(**changes: object) -> Alert:
    fields: dict[str, object] = {
        "source_id": "volume_spike:bitcoin:5m:2026-01-01T00:00:00+00:00",
        "event_time": datetime(2026, 1, 1, tzinfo=UTC),
        "kind": "volume_spike",
        "severity": AlertSeverity.CRITICAL,
        "coin": "bitcoin",
        "window": WindowSize.FIVE_MINUTES,
        "message": "bitcoin mentions 7.2 sd above normal",
        "value": 7.2,
        "threshold": 3.0,
    }
    fields.update(changes)
    return Alert.model_validate(fields)


def _sub(**changes: object) -> AlertSubscription:
    fields: dict[str, object] = {
        "id": "sub_0123456789abcdef",
        "owner": "local",
        "kinds": ["volume_spike", "sentiment_shift"],
        "url": "http://127.0.0.1:9/hook",
        "secret": SECRET,
    }
    fields.update(changes)
    return AlertSubscription.model_validate(fields)


def test_signature_verifies_and_rejects_tampering_and_replays() -> None:
    body = b'{"text":"hi"}'
    now = int(time.time())
    header = signature(SECRET, now, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify(SECRET, str(now), body, header)
    assert not verify(SECRET, str(now), body + b" ", header)  # body changed
    assert not verify("whsec_other" + "x" * 30, str(now), body, header)  # wrong secret
    assert not verify(SECRET, str(now + 1), body, header)  # timestamp is signed too
    old = now - 3600
    assert not verify(SECRET, str(old), body, signature(SECRET, old, body))  # a replay an hour later
    assert not verify(SECRET, None, body, header) and not verify(SECRET, "x", body, header)
    assert new_secret() != new_secret()


def test_payload_serves_slack_discord_and_programs() -> None:
    alert = _alert()
    payload = webhook_payload(alert, _sub(), delivery_id(alert, _sub()))
    assert "volume spike bitcoin 5m" in payload["text"] and "[CRITICAL]" in payload["content"]
    assert payload["blocks"][0]["type"] == "section"
    assert Alert.model_validate(payload["alert"]) == alert
    assert json.loads(encode(payload)) == payload
    long = _alert(message="x" * 2000)
    assert len(webhook_payload(long, _sub(), "d")["content"]) <= 2000  # Discord's limit


def test_delivery_id_is_stable_per_alert_and_subscription() -> None:
    assert delivery_id(_alert(), _sub()) == delivery_id(_alert(), _sub())
    assert delivery_id(_alert(), _sub()) != delivery_id(_alert(), _sub(id="sub_fedcba9876543210"))


def test_a_refused_target_is_dead_lettered_without_a_request() -> None:
    """A subscription accepted earlier whose target is no longer allowed (a name that now
    resolves to cloud metadata, or private targets turned off) is never sent a request."""
    import httpx

    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(receiver))
    strict = Deliverer(AlertingSettings(allow_private_targets=False), client=client)
    result = strict.deliver(_alert(), _sub(url="http://127.0.0.1:9/hook"))
    assert result.outcome == "dead_lettered" and result.attempts == 0 and not sent
    assert result.reason == "webhook_target_refused" and "ALLOW_PRIVATE_TARGETS" in (result.error or "")
    metadata = Deliverer(AlertingSettings(), client=client).deliver(
        _alert(), _sub(url="http://169.254.169.254/x")
    )
    assert metadata.reason == "webhook_target_refused" and not sent
    delivered = Deliverer(AlertingSettings(), client=client).deliver(_alert(), _sub())
    assert delivered.outcome == "delivered" and len(sent) == 1


def test_backoff_grows_is_capped_and_jittered() -> None:
    settings = AlertingSettings(backoff_s=1.0, backoff_max_s=10.0)
    assert backoff_delay(1, settings, lambda: 0.0) == 0.5
    assert backoff_delay(1, settings, lambda: 1.0) == 1.0
    assert backoff_delay(3, settings, lambda: 1.0) == 4.0
    assert backoff_delay(30, settings, lambda: 1.0) == 10.0
    assert 5.0 <= backoff_delay(30, settings) <= 10.0


def test_subscription_matching() -> None:
    assert _sub().matches(_alert())
    assert not _sub(kinds=["model_drift"]).matches(_alert())
    assert _sub(coin="bitcoin").matches(_alert()) and not _sub(coin="ethereum").matches(_alert())
    assert not _sub(coin="bitcoin").matches(_alert(coin=None))
    assert _sub(threshold=7.0).matches(_alert()) and not _sub(threshold=8.0).matches(_alert())
    assert _sub(threshold=1.0).matches(_alert(value=-2.5))  # a fall counts by its size
    assert _sub(threshold=100.0).matches(_alert(value=None))


def test_alertmanager_notifications_become_alerts() -> None:
    base = {"status": "firing", "startsAt": "2026-01-01T10:00:00.123456789Z", "fingerprint": "abc123"}
    converted = convert(
        {
            "version": "4",
            "alerts": [
                {
                    **base,
                    "labels": {"alertname": "ModelDrift", "severity": "warning"},
                    "annotations": {"summary": "PSI 0.4"},
                },
                {
                    **base,
                    "labels": {"alertname": "Custom", "cryptopulse_kind": "data_quality", "coin": "bitcoin"},
                },
                {**base, "labels": {"alertname": "ComponentDown", "severity": "critical"}},
                {**base, "status": "resolved", "labels": {"alertname": "ModelDrift"}},
                {**base, "labels": {"alertname": "DataQualityLow"}, "startsAt": "not a time"},
                "junk",
            ],
        }
    )
    drift, custom = converted.alerts
    assert drift.kind == "model_drift" and drift.message == "PSI 0.4" and drift.severity == "warning"
    assert drift.event_time == datetime(2026, 1, 1, 10, 0, 0, 123000, tzinfo=UTC)  # wire times are ms
    assert drift.source_id.startswith("alertmanager:ModelDrift:abc123:")
    assert custom.kind == "data_quality" and custom.coin == "bitcoin" and custom.message == "Custom"
    assert [s["reason"] for s in converted.skipped] == [
        "no_cryptopulse_kind",
        "resolved",
        "invalid",
        "not_an_object",
    ]
    with pytest.raises(ValueError, match="no 'alerts' list"):
        convert({"status": "firing"})


def test_committed_alertmanager_config_is_current_and_prometheus_points_at_it() -> None:
    defaults = Settings.model_construct()
    assert ALERTMANAGER_CONFIG.read_text("utf-8") == render_alertmanager_config(defaults)
    local = prometheus_config(defaults)
    assert local["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9095"]}]}]}
    assert "alerting" not in prometheus_config(defaults, {"api": "api"})  # none named: none configured
    docker = prometheus_config(defaults, DOCKER_HOSTS)
    assert docker["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9095"]}]}]}
    assert ALERTMANAGER_DOCKER_CONFIG.read_text("utf-8") == render_alertmanager_config(
        defaults, receiver_host="alerting"
    )
    assert "http://alerting:9105/alertmanager" in ALERTMANAGER_DOCKER_CONFIG.read_text("utf-8")


def test_cli_registers_the_serve_command() -> None:
    import typer
    from typer.testing import CliRunner

    from alerting import cli

    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """A root like cryptopulse's."""

    cli.register(root)
    result = CliRunner().invoke(root, ["alerting", "serve", "--help"])
    assert result.exit_code == 0, result.output
    assert "--from-beginning" in result.output


def test_up_supervises_alertmanager_and_the_alerting_service(tmp_path: Path) -> None:
    import configparser

    from core.settings import load_settings
    from cryptopulse.platform.pipeline import PIPELINE_SERVICES, AlertDeliveryService
    from cryptopulse.platform.services import PLATFORM_SERVICES, AlertmanagerService
    from cryptopulse.platform.supervisor import Supervisor

    settings = load_settings(home=tmp_path, alerting={"port": 19105, "alertmanager_port": 19095})
    assert AlertmanagerService in PLATFORM_SERVICES and AlertDeliveryService in PIPELINE_SERVICES
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(Supervisor(settings).program_config(AlertDeliveryService(settings), {}, tmp_path))
    assert parser["program:alerting"]["command"].endswith("-m cryptopulse alerting serve")
    assert AlertDeliveryService(settings).url == "http://127.0.0.1:19105"

    manager = AlertmanagerService(settings)
    manager.prepare()
    rendered = manager.config_path.read_text("utf-8")
    assert "url: http://127.0.0.1:19105/alertmanager" in rendered  # the active settings' port
    if shutil.which("prometheus-alertmanager") or Path("/usr/bin/prometheus-alertmanager").exists():
        argv = manager.argv()
        assert "--web.listen-address=127.0.0.1:19095" in argv and "--cluster.listen-address=" in argv
