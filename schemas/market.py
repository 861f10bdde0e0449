"""Reference market levels shared by the offline replay and the bundled history.

The replay producer's price random walk starts at these levels, and the bundled history's
walks (``spark_jobs/build_history.py``) end at them, so a fresh home's price charts run
from the seeded week straight into the live replay. Two stages use them and may not import
each other, hence this small shared module (data only, no I/O).
"""

from __future__ import annotations

REFERENCE_PRICES: dict[str, float] = {
    "bitcoin": 60_000.0,
    "ethereum": 3_000.0,
    "solana": 150.0,
    "ripple": 0.55,
    "cardano": 0.40,
    "dogecoin": 0.12,
    "binancecoin": 550.0,
    "tron": 0.15,
    "avalanche-2": 28.0,
    "chainlink": 13.0,
    "polkadot": 5.5,
    "litecoin": 70.0,
}
"""Rough late-2024 USD levels, so the random walks move somewhere plausible."""

DAILY_VOLATILITY = 0.03
"""Standard deviation of a day's log return in the simulated walks."""
