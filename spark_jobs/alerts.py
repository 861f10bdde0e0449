"""Alerts raised from trend windows as the streaming job writes them.

A sentiment shift is a window whose confidence-weighted score stands
``alert_sentiment_zscore`` standard deviations away from the coin's trailing windows
(``sentiment_zscore``) *and* moved at least ``alert_min_shift`` on the [-1, 1] scale
(``sentiment_change``): a calm series that wobbles by 0.01 has a large z-score but
nothing to say. A volume spike is a window whose mentions stand ``alert_zscore``
standard deviations above the coin's trailing windows (``volume_zscore``). Both need at
least ``alert_min_volume`` mentions, so a coin going from 1 to 3 mentions does not page
anyone. Each (kind, coin, window size, window start) alerts once: the alert's
``source_id`` is that tuple and Redis remembers it (``views.RedisViewWriter.raise_alert_once``),
so later micro-batches updating the same window, replays and restarts stay quiet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from core.settings import SparkSettings
from schemas.events import Alert, AlertSeverity, TrendWindow, utc_now


def _eligible(window: TrendWindow, settings: SparkSettings) -> bool:
    """Overall windows of an alerting size with enough mentions to mean something."""
    return (
        window.source == "all"
        and window.window.value in settings.alert_windows
        and window.volume >= settings.alert_min_volume
    )


def _window_alert(
    window: TrendWindow,
    kind: Literal["sentiment_shift", "volume_spike"],
    zscore: float,
    threshold: float,
    message: str,
) -> Alert:
    """An alert about one window, identified by (kind, coin, size, start); critical at 2x."""
    severity = AlertSeverity.CRITICAL if abs(zscore) >= 2 * threshold else AlertSeverity.WARNING
    return Alert(
        source_id=f"{kind}:{window.coin}:{window.window.value}:{window.window_start.isoformat()}",
        event_time=window.event_time,
        ingest_time=utc_now(),
        kind=kind,
        severity=severity,
        coin=window.coin,
        window=window.window,
        value=round(zscore, 3),
        threshold=threshold,
        message=message,
    )


def sentiment_shift_alerts(windows: Iterable[TrendWindow], settings: SparkSettings) -> list[Alert]:
    """Alerts for windows whose sentiment left its trailing range (overall source only)."""
    alerts = []
    threshold = settings.alert_sentiment_zscore
    for window in windows:
        zscore, change = window.sentiment_zscore, window.sentiment_change
        if (
            not _eligible(window, settings)
            or zscore is None
            or change is None
            or abs(zscore) < threshold
            or abs(change) < settings.alert_min_shift
        ):
            continue
        direction = "rose" if change > 0 else "fell"
        alerts.append(
            _window_alert(
                window,
                "sentiment_shift",
                zscore,
                threshold,
                f"{window.coin}: sentiment {direction} to {window.weighted_score:+.2f} "
                f"({change:+.2f} against its trailing windows, {abs(zscore):.1f} standard deviations) "
                f"in the {window.window.value} window from {window.window_start:%H:%M} UTC, "
                f"{window.volume} mentions",
            )
        )
    return alerts


def trend_alerts(windows: Iterable[TrendWindow], settings: SparkSettings) -> list[Alert]:
    """Every alert the trend windows raise: sentiment shifts, then volume spikes."""
    windows = list(windows)
    return sentiment_shift_alerts(windows, settings) + volume_spike_alerts(windows, settings)


def volume_spike_alerts(windows: Iterable[TrendWindow], settings: SparkSettings) -> list[Alert]:
    """Alerts for windows whose volume z-score crosses the threshold (overall source only)."""
    alerts = []
    for window in windows:
        zscore = window.volume_zscore
        if not _eligible(window, settings) or zscore is None or zscore < settings.alert_zscore:
            continue
        alerts.append(
            _window_alert(
                window,
                "volume_spike",
                zscore,
                settings.alert_zscore,
                f"{window.coin}: {window.volume} mentions in the {window.window.value} window from "
                f"{window.window_start:%H:%M} UTC, {zscore:.1f} standard deviations above its "
                "trailing windows",
            )
        )
    return alerts
