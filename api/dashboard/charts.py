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
