"""Alertmanager's webhook notifications turned into ``Alert`` records.

Prometheus evaluates ``deploy/prometheus/alerts.yml`` and sends firing alerts to
Alertmanager, which groups them and POSTs them (webhook format version 4) to the alerting
service. Each firing alert whose kind is known becomes an :class:`Alert` on the alerts
topic, so it reaches subscribers, the SSE stream and ``/v1/alerts`` by the same path as
the pipeline's own alerts. The kind is the ``cryptopulse_kind`` label when a rule sets
one, else the rule's name in :data:`KIND_BY_ALERTNAME`; any other alert (service health:
a component down, high latency) has no ``Alert`` kind, so it is skipped with the reason
logged and counted. Resolved notifications are skipped too: an ``Alert`` is an event,
not a state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_args

from pydantic import ValidationError

from schemas.events import Alert, AlertKind, AlertSeverity

KIND_LABEL = "cryptopulse_kind"
KIND_BY_ALERTNAME: dict[str, str] = {"ModelDrift": "model_drift", "DataQualityLow": "data_quality"}
"""Rules whose alerts are CryptoPulse alerts even without the label (deploy/prometheus/alerts.yml)."""
KINDS = frozenset(get_args(AlertKind))
_COIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


@dataclass
class Converted:
    """What one notification held: the alerts to publish and why the others were skipped."""

    alerts: list[Alert] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _severity(value: str | None) -> AlertSeverity:
    try:
        return AlertSeverity(value or "warning")
    except ValueError:
        return AlertSeverity.WARNING


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _time(value: Any) -> datetime:
    """Alertmanager's RFC 3339 times (nanoseconds and all) as an aware datetime."""
    text = str(value)
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text)


def convert(notification: Any) -> Converted:
    """Alerts from one webhook body; raises ``ValueError`` when it is not a notification."""
    if not isinstance(notification, dict) or not isinstance(notification.get("alerts"), list):
        raise ValueError("not an Alertmanager webhook notification: no 'alerts' list")
    out = Converted()
    for raw in notification["alerts"]:
        if not isinstance(raw, dict):
            out.skipped.append({"alertname": "?", "reason": "not_an_object"})
            continue
        labels = _mapping(raw.get("labels"))
        annotations = _mapping(raw.get("annotations"))
        name = str(labels.get("alertname", "?"))
        if raw.get("status") != "firing":
            out.skipped.append({"alertname": name, "reason": "resolved"})
            continue
        kind = labels.get(KIND_LABEL) or KIND_BY_ALERTNAME.get(name)
        if kind not in KINDS:
            out.skipped.append({"alertname": name, "reason": "no_cryptopulse_kind"})
            continue
        coin = labels.get("coin")
        try:
            started = _time(raw.get("startsAt"))
            alert = Alert(
                source_id=f"alertmanager:{name}:{raw.get('fingerprint') or 'nofp'}:{started.isoformat()}"[
                    :256
                ],
                event_time=started,
                kind=kind,
                severity=_severity(labels.get("severity")),
                coin=coin if isinstance(coin, str) and _COIN.match(coin) else None,
                message=str(annotations.get("summary") or annotations.get("description") or name)[:2000],
            )
        except (ValueError, ValidationError) as exc:
            out.skipped.append({"alertname": name, "reason": "invalid", "detail": str(exc)[:300]})
            continue
        out.alerts.append(alert)
    return out
