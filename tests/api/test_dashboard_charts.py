"""The dashboard's pure helpers: lead/lag and correlation in words, prices, the correlation chart."""

from __future__ import annotations

from typing import Any

import pytest

from api.dashboard.charts import (
    correlation_chart,
    correlation_sentence,
    lead_lag_sentence,
    money,
    percent,
    timeseries_frame,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("window", "words"),
    [
        ({"lead_lag_windows": 2, "lead_lag_corr": 0.41}, "sentiment led price by 2 windows, r=0.41"),
        ({"lead_lag_windows": -1, "lead_lag_corr": -0.33}, "price led sentiment by 1 window, r=-0.33"),
        (
            {"lead_lag_windows": 0, "lead_lag_corr": 0.8},
            "sentiment and price moved together (no lead), r=0.80",
        ),
        ({"lead_lag_windows": 3, "lead_lag_corr": 0.12}, "sentiment led price by 3 windows, r=0.12 (weak)"),
        ({"lead_lag_windows": None, "lead_lag_corr": None}, "no lead/lag: too little history"),
        ({}, "no lead/lag: too little history"),  # a window written before the fields existed
        (None, "no lead/lag: too little history"),
    ],
)
def test_lead_lag_in_words(window: dict[str, Any] | None, words: str) -> None:
    assert lead_lag_sentence(window) == words


def test_correlation_and_prices_in_words() -> None:
    assert correlation_sentence({"sentiment_return_corr": -0.256}) == (
        "rolling sentiment-return correlation r=-0.26 over the trailing windows"
    )
    assert correlation_sentence({"sentiment_return_corr": None}) == "rolling correlation: too little history"
    assert money(91000.0, "usd") == "91,000.00 USD" and money(0.000123456, None) == "0.000123456"
    assert money(None) == "n/a" and percent(0.004) == "+0.40%" and percent(-0.001) == "-0.10%"
    assert percent(None) == "n/a"


def test_correlation_chart_only_with_data() -> None:
    points: list[dict[str, Any]] = [
        {"window_start": "2026-11-28T18:00:00Z", "sentiment_return_corr": 0.1, "lead_lag_corr": 0.4},
        {"window_start": "2026-11-28T18:05:00Z", "sentiment_return_corr": None, "lead_lag_corr": 0.5},
    ]
    chart = correlation_chart(timeseries_frame(points))
    assert chart is not None
    spec = chart.to_dict()
    assert spec["encoding"]["y"]["scale"]["domain"] == [-1, 1]
    values = spec["datasets"][next(iter(spec["datasets"]))]
    assert sorted(v["series"] for v in values) == ["at the lead/lag", "at the lead/lag", "same window"]
    empty: list[dict[str, Any]] = [
        {"window_start": "2026-11-28T18:00:00Z", "sentiment_return_corr": None, "lead_lag_corr": None}
    ]
    assert correlation_chart(timeseries_frame(empty)) is None
    assert correlation_chart(timeseries_frame([{"window_start": "2026-11-28T18:00:00Z"}])) is None
