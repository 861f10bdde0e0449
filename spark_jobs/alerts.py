"""Alerts raised from trend windows as the streaming job writes them.

A volume spike is a window whose mentions stand ``alert_zscore`` standard deviations
above the coin's trailing windows (``volume_zscore``, computed by the job) with at
least ``alert_min_volume`` mentions, so a coin going from 1 to 3 mentions does not
page anyone. Each (coin, window size, window start) alerts once: the alert's
``source_id`` is that triple and Redis remembers it (``schemas.redis_keys.raise_alert_once``),
so later micro-batches updating the same window, replays and restarts stay quiet.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptopulse.settings import SparkSettings
from schemas.events import Alert, AlertSeverity, TrendWindow, utc_now


def volume_spike_alerts(windows: Iterable[TrendWindow], settings: SparkSettings) -> list[Alert]:
    """Alerts for windows whose volume z-score crosses the threshold (overall source only)."""
    alerts = []
    for window in windows:
        zscore = window.volume_zscore
        if (
            window.source != "all"
            or window.window.value not in settings.alert_windows
            or zscore is None
            or zscore < settings.alert_zscore
            or window.volume < settings.alert_min_volume
        ):
            continue
        severity = AlertSeverity.CRITICAL if zscore >= 2 * settings.alert_zscore else AlertSeverity.WARNING
        alerts.append(
            Alert(
                source_id=f"volume_spike:{window.coin}:{window.window.value}:{window.window_start.isoformat()}",
                event_time=window.event_time,
                ingest_time=utc_now(),
                kind="volume_spike",
                severity=severity,
                coin=window.coin,
                window=window.window,
                value=round(zscore, 3),
                threshold=settings.alert_zscore,
                message=(
                    f"{window.coin}: {window.volume} mentions in the {window.window.value} window from "
                    f"{window.window_start:%H:%M} UTC, {zscore:.1f} standard deviations above its "
                    "trailing windows"
                ),
            )
        )
    return alerts
