"""The one label order shared by training, export and serving.

Every probability vector in CryptoPulse is indexed by this tuple, so the ONNX head,
the linear model, the combiner and the API can never disagree on which column is which.
"""

from __future__ import annotations

from typing import Final, Literal

Label = Literal["negative", "neutral", "positive"]
LABELS: Final[tuple[Label, Label, Label]] = ("negative", "neutral", "positive")
LABEL_TO_ID: Final[dict[str, int]] = {name: i for i, name in enumerate(LABELS)}
NEGATIVE, NEUTRAL, POSITIVE = 0, 1, 2

VERDICT_FIELDS = ("label", "score", "confidence", "p_negative", "p_neutral", "p_positive", "model_version")
"""The verdict columns a scored text gets wherever it is written (score CLI, Spark backfill)."""
VERDICT_FLOATS = ("score", "confidence", "p_negative", "p_neutral", "p_positive")
