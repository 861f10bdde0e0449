"""API key scopes: what a key may do beyond reading the views.

Its own module, free of imports, so the CLI can offer the choices without loading the
request-path code.
"""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    ADMIN = "admin"
    """/v1/admin: raw Kafka messages (texts with author names, dead letters with payloads)."""
    LABEL = "label"
    """POST /v1/feedback: a person's label for a live post, which feeds the next training run."""
    ALERTS = "alerts"
    """/v1/alerts/subscriptions: webhooks that receive alerts (the server calls URLs the key names)."""
