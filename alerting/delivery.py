"""Signed webhook delivery with retries (exponential backoff, jitter) and a dead letter.

One :class:`Deliverer` sends one alert to one subscription: it signs the body, retries
what may succeed later (connection errors, timeouts, 408, 429, 5xx) with delays of
``backoff_s * 2**n`` (at most ``backoff_max_s``, half of it random so many failing
receivers do not retry in lockstep), and gives up after ``max_attempts``. A 4xx other
than 408/429 is the receiver saying no: retrying would not change its mind, so that
delivery is dead-lettered at once. Redirects are not followed (a webhook URL that moved
must be updated by its owner, not silently re-targeted).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx
import structlog

from alerting.payload import encode, webhook_payload
from alerting.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from core.egress import destination_problem
from core.settings import AlertingSettings
from core.version import __version__
from schemas.events import Alert, AlertSubscription

log = structlog.get_logger(__name__)

Outcome = Literal["delivered", "dead_lettered", "interrupted"]
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class DeliveryResult:
    """How one (alert, subscription) delivery ended."""

    subscription_id: str
    delivery_id: str
    outcome: Outcome
    attempts: int
    status: int | None = None
    error: str | None = None
    body: bytes = b""
    seconds: float = 0.0
    refused: bool = False
    """Never attempted: the target address is not allowed (core.egress)."""

    @property
    def reason(self) -> str:
        """The dead letter's reason code."""
        if self.refused:
            return "webhook_target_refused"
        return (
            "webhook_rejected"
            if self.status is not None and self.status not in RETRYABLE_STATUS
            else "webhook_failed"
        )


def delivery_id(alert: Alert, subscription: AlertSubscription) -> str:
    """Stable per (alert, subscription): a redelivery after a restart has the same id, so a
    receiver can drop duplicates."""
    digest = hashlib.sha256(f"{alert.source_id}\x00{subscription.id}".encode()).hexdigest()
    return f"dlv_{digest[:24]}"


def backoff_delay(
    attempt: int, settings: AlertingSettings, rng: Callable[[], float] = random.random
) -> float:
    """Delay before retry ``attempt`` (1 = the first retry): exponential, capped, half jitter."""
    full = min(settings.backoff_max_s, settings.backoff_s * 2 ** (attempt - 1))
    return full / 2 + rng() * full / 2  # nosec B311 # jitter, not cryptography


def _retry_after(response: httpx.Response, cap: float) -> float | None:
    """A 429/503's ``Retry-After`` in seconds (only the delta form), capped."""
    value = response.headers.get("Retry-After", "")
    return min(float(value), cap) if value.isdigit() else None


class Deliverer:
    """Sends signed webhooks; ``stop`` (an event) cuts waits short and ends retrying."""

    def __init__(
        self,
        settings: AlertingSettings,
        *,
        client: httpx.Client | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.client = client or httpx.Client(
            timeout=settings.timeout_s,
            follow_redirects=False,
            headers={"User-Agent": f"CryptoPulse-Alerts/{__version__}"},
        )

    def close(self) -> None:
        self.client.close()

    def deliver(self, alert: Alert, subscription: AlertSubscription) -> DeliveryResult:
        """Deliver until success, a refusal, ``max_attempts`` failures or a stop."""
        did = delivery_id(alert, subscription)
        body = encode(webhook_payload(alert, subscription, did))
        started = time.monotonic()
        refused = destination_problem(subscription.url, allow_private=self.settings.allow_private_targets)
        if refused:  # a name that now resolves somewhere it may not go: never retried
            log.warning("webhook target refused", subscription=subscription.id, delivery=did, reason=refused)
            return DeliveryResult(subscription.id, did, "dead_lettered", 0, None, refused, body, refused=True)
        status: int | None = None
        error: str | None = None
        attempt = 0
        while attempt < self.settings.max_attempts:
            if self.stop.is_set():
                return DeliveryResult(subscription.id, did, "interrupted", attempt, status, error, body)
            attempt += 1
            wait: float | None = None
            try:
                response = self._post(subscription, did, body)
                status, error = response.status_code, None
                if response.is_success:
                    log.info(
                        "webhook delivered",
                        subscription=subscription.id,
                        delivery=did,
                        alert=alert.source_id,
                        attempts=attempt,
                        status=status,
                    )
                    return DeliveryResult(
                        subscription.id,
                        did,
                        "delivered",
                        attempt,
                        status,
                        None,
                        body,
                        time.monotonic() - started,
                    )
                error = f"HTTP {status}: {response.text[:200]}"
                if status not in RETRYABLE_STATUS:
                    break
                wait = _retry_after(response, self.settings.backoff_max_s)
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"[:500]
            log.warning(
                "webhook attempt failed",
                subscription=subscription.id,
                delivery=did,
                attempt=attempt,
                max_attempts=self.settings.max_attempts,
                error=error,
            )
            if attempt < self.settings.max_attempts:
                self.stop.wait(wait if wait is not None else backoff_delay(attempt, self.settings))
        return DeliveryResult(
            subscription.id, did, "dead_lettered", attempt, status, error, body, time.monotonic() - started
        )

    def _post(self, subscription: AlertSubscription, did: str, body: bytes) -> httpx.Response:
        timestamp = int(time.time())
        return self.client.post(
            subscription.url,
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(subscription.secret, timestamp, body),
                TIMESTAMP_HEADER: str(timestamp),
                "X-CryptoPulse-Delivery": did,
            },
        )
