"""Altair charts of the dashboard (pure functions of API payloads, unit-testable)."""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import pandas as pd

MOOD_COLORS = [(25, "#d7301f"), (45, "#fc8d59"), (55, "#fee08b"), (75, "#91cf60"), (101, "#1a9850")]


def mood_color(index: float) -> str:
    return next(color for bound, color in MOOD_COLORS if index < bound)


def gauge(index: float, label: str) -> alt.LayerChart | alt.FacetChart:
    """A half-donut gauge 0-100 with the value and label in the middle."""
    segments = pd.DataFrame(
        [
            {"part": "value", "start": 0.0, "end": index, "color": mood_color(index)},
            {"part": "rest", "start": index, "end": 100.0, "color": "#e6e6e6"},
        ]
    )
    theta = alt.Scale(domain=[0, 100], range=[-math.pi / 2, math.pi / 2])
    arc = (
        alt.Chart(segments)
        .mark_arc(innerRadius=70, outerRadius=110)
        .encode(
            theta=alt.Theta("start:Q", scale=theta),
            theta2="end:Q",
            color=alt.Color("color:N", scale=None, legend=None),
            tooltip=["part", "end"],
        )
    )
    text = pd.DataFrame([{"t": f"{index:.0f}", "l": label}])
    value = alt.Chart(text).mark_text(fontSize=34, fontWeight="bold", dy=-20).encode(text="t:N")
    caption = alt.Chart(text).mark_text(fontSize=15, dy=10).encode(text="l:N")
    return alt.layer(arc, value, caption).properties(height=170, width=260)


def timeseries_frame(points: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(points)
    if frame.empty:
        return frame
    frame["window_start"] = pd.to_datetime(frame["window_start"], utc=True)
    return frame


def sentiment_chart(frame: pd.DataFrame) -> tuple[alt.LayerChart, alt.Chart]:
    """Sentiment line with the price overlaid on its own axis, and mention-volume bars."""
    x = alt.X("window_start:T", title="UTC", scale=alt.Scale(type="utc"), axis=alt.Axis(format="%m-%d %H:%M"))
    base = alt.Chart(frame).encode(x=x)
    score = base.mark_line(point=True, color="#1f77b4").encode(
        y=alt.Y("weighted_score:Q", title="sentiment (-1..1)", scale=alt.Scale(domain=[-1, 1])),
        tooltip=["window_start:T", "weighted_score:Q", "volume:Q", "price_close:Q"],
    )
    layers: list[Any] = [score]
    if "price_close" in frame and frame["price_close"].notna().any():
        price = base.mark_line(color="#ff7f0e", strokeDash=[4, 2]).encode(
            y=alt.Y(
                "price_close:Q", title="price", scale=alt.Scale(zero=False), axis=alt.Axis(orient="right")
            )
        )
        layers.append(price)
    top = alt.layer(*layers).resolve_scale(y="independent").properties(height=260)
    volume = (
        base.mark_bar(color="#9ecae1").encode(y=alt.Y("volume:Q", title="mentions")).properties(height=160)
    )
    return top, volume


def lead_lag_sentence(window: dict[str, Any] | None) -> str:
    """The Spark job's lead/lag estimate of a window in words (positive lag: sentiment moved first)."""
    lag = (window or {}).get("lead_lag_windows")
    corr = (window or {}).get("lead_lag_corr")
    if lag is None or corr is None:
        return "no lead/lag: too little history"
    strength = " (weak)" if abs(corr) < 0.3 else ""
    if lag == 0:
        return f"sentiment and price moved together (no lead), r={corr:.2f}{strength}"
    unit = "window" if abs(lag) == 1 else "windows"
    if lag > 0:
        return f"sentiment led price by {lag} {unit}, r={corr:.2f}{strength}"
    return f"price led sentiment by {-lag} {unit}, r={corr:.2f}{strength}"


def correlation_sentence(window: dict[str, Any] | None) -> str:
    """The rolling same-window sentiment/return correlation in words."""
    corr = (window or {}).get("sentiment_return_corr")
    if corr is None:
        return "rolling correlation: too little history"
    return f"rolling sentiment-return correlation r={corr:.2f} over the trailing windows"


def correlation_chart(frame: pd.DataFrame) -> alt.Chart | None:
    """Rolling sentiment-return correlation and the lead/lag correlation per window (None: no data)."""
    columns = [c for c in ("sentiment_return_corr", "lead_lag_corr") if c in frame]
    if not columns or not frame[columns].notna().any().any():
        return None
    names = {"sentiment_return_corr": "same window", "lead_lag_corr": "at the lead/lag"}
    long = frame[["window_start", *columns]].melt("window_start", var_name="series", value_name="r")
    long["series"] = long["series"].map(names)
    x = alt.X("window_start:T", title="UTC", scale=alt.Scale(type="utc"), axis=alt.Axis(format="%m-%d %H:%M"))
    return (
        alt.Chart(long.dropna())
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("r:Q", title="correlation", scale=alt.Scale(domain=[-1, 1])),
            color=alt.Color(
                "series:N",
                title="correlation",
                scale=alt.Scale(domain=list(names.values()), range=["#2ca02c", "#9467bd"]),
            ),
            tooltip=["window_start:T", "series:N", alt.Tooltip("r:Q", format=".2f")],
        )
        .properties(height=180)
    )


def money(price: float | None, currency: str | None = None) -> str:
    """A price as the dashboard prints it (more digits below 1, for the small coins)."""
    if price is None:
        return "n/a"
    text = f"{price:,.2f}" if price >= 1 else f"{price:.6g}"
    return f"{text} {currency.upper()}" if currency else text


def percent(value: float | None) -> str:
    """A return (0.004) as a signed percentage ("+0.40%")."""
    return "n/a" if value is None else f"{value:+.2%}"
