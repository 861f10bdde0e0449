"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"`` with the subscription's secret.

The timestamp is part of what is signed, so a receiver that also checks it is recent
(``tolerance_s``) cannot be fed an old, captured delivery again. This module is the
reference a receiver can copy (docs/alerts.md shows the same in a few lines).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "X-CryptoPulse-Signature"
TIMESTAMP_HEADER = "X-CryptoPulse-Timestamp"
SCHEME = "sha256="
DEFAULT_TOLERANCE_S = 300


def new_secret() -> str:
    """A fresh signing secret (256 bits, URL-safe)."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The header value: ``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return SCHEME + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str | None,
    body: bytes,
    header: str | None,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs ``body`` at ``timestamp`` with ``secret`` and the timestamp
    is within ``tolerance_s`` of now (constant-time comparison)."""
    if not timestamp or not header:
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, sent, body), header)
