"""The JSON a webhook receives: readable by Slack and Discord as they are, and by programs.

Slack's incoming webhooks read ``text`` (and ``blocks``), Discord's read ``content``; both
ignore the other fields, so one body serves either, and ``alert`` carries the structured
record (the same JSON as on the alerts topic) for anything else.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.events import Alert, AlertSubscription

_ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
DISCORD_MAX = 2000
"""Discord refuses ``content`` longer than this."""


def headline(alert: Alert) -> str:
    """One line for chat: severity, kind, coin and window, then the message."""
    where = " ".join(part for part in (alert.coin, alert.window.value if alert.window else None) if part)
    kind = alert.kind.replace("_", " ")
    return f"[{alert.severity.value.upper()}] {kind}{f' {where}' if where else ''}: {alert.message}"


def webhook_payload(alert: Alert, subscription: AlertSubscription, delivery_id: str) -> dict[str, Any]:
    """The body of one delivery (a dict; :func:`encode` gives the exact bytes that are signed)."""
    line = headline(alert)
    facts = [f"*kind* {alert.kind}", f"*severity* {alert.severity.value}"]
    if alert.coin:
        facts.append(f"*coin* {alert.coin}")
    if alert.value is not None:
        facts.append(
            f"*value* {alert.value:g}" + (f" (threshold {alert.threshold:g})" if alert.threshold else "")
        )
    return {
        "text": f"{_ICONS.get(alert.severity.value, '')} {line}".strip(),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": line}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " | ".join(facts)}]},
        ],
        "content": line[:DISCORD_MAX],
        "alert": json.loads(alert.model_dump_json()),
        "subscription_id": subscription.id,
        "delivery_id": delivery_id,
    }


def encode(payload: dict[str, Any]) -> bytes:
    """Compact, stable JSON: the bytes sent are the bytes signed."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
