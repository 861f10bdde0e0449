"""Prometheus metrics of the stream worker, served at /metrics on the faust web port.

Names carry the ``cryptopulse_stream_`` prefix; labels are low-cardinality (agent,
output kind, reason, topic/partition), never ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("cryptopulse_stream_events_in_total", "records consumed", ["agent"])
EVENTS_OUT = Counter("cryptopulse_stream_events_out_total", "records produced", ["agent", "output"])
DEAD_LETTERS = Counter(
    "cryptopulse_stream_dead_letters_total", "records sent to the dead-letter topic", ["component", "reason"]
)
REDELIVERED = Counter(
    "cryptopulse_stream_redelivered_total", "records seen again after a restart (at-least-once)", ["agent"]
)
E2E_LATENCY = Histogram(
    "cryptopulse_stream_e2e_latency_seconds",
    "ingest_time to scored record produced",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
BATCH_SIZE = Histogram(
    "cryptopulse_stream_batch_size",
    "records per scoring micro-batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
INFERENCE = Histogram(
    "cryptopulse_stream_inference_seconds",
    "model time per micro-batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
CLEAN_TIME = Histogram(
    "cryptopulse_stream_clean_seconds",
    "clean+validate time per record",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01),
)
VERDICTS = Counter(
    "cryptopulse_stream_verdicts_total", "scored posts by label: the live label mix", ["label"]
)
CONFIDENCE = Histogram(
    "cryptopulse_stream_confidence",
    "confidence of each verdict (a falling median is an early sign of drift)",
    buckets=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
)
CONSUMER_LAG = Gauge(
    "cryptopulse_stream_consumer_lag", "highwater minus next offset to read", ["topic", "partition"]
)
MODEL_INFO = Gauge("cryptopulse_stream_model_info", "model version in service (value 1)", ["model_version"])
MODEL_SWAPS = Counter("cryptopulse_stream_model_swaps_total", "hot swaps of the scoring model")
REDIS_ERRORS = Counter("cryptopulse_stream_redis_errors_total", "failed live mirror/publish calls")
QUALITY_SHARE = Gauge(
    "cryptopulse_stream_quality_failure_share",
    "share of a source's records failing a data-quality rule in the last closed window",
    ["source", "rule"],
)
QUALITY_SCORE = Gauge(
    "cryptopulse_stream_quality_score",
    "share of a source's records passing every rule (last window)",
    ["source"],
)
QUALITY_RECORDS = Gauge(
    "cryptopulse_stream_quality_window_records", "records of a source in the last closed window", ["source"]
)
ALERTS_RAISED = Counter("cryptopulse_stream_alerts_total", "alerts raised by the worker", ["kind", "rule"])
DRIFT_PSI = Gauge(
    "cryptopulse_stream_drift_psi",
    "PSI of live predictions against the model's reference (last closed window)",
    ["model_version", "signal"],
)
STALL_RESTARTS = Gauge(
    "cryptopulse_stream_stall_restarts",
    "times this worker restarted itself (in place) after a stalled source partition, since it was started",
)
OFFSET_GAPS = Counter(
    "cryptopulse_stream_offset_gaps_total",
    "jumps over unread offsets in a source partition (faust commits past them; none expected)",
    ["topic"],
)
SHADOW_VERDICTS = Counter(
    "cryptopulse_stream_shadow_verdicts_total",
    "challenger verdicts on live posts, by whether the champion agreed",
    ["champion", "challenger", "agree"],
)
SHADOW_SKIPPED = Counter(
    "cryptopulse_stream_shadow_skipped_total",
    "scored posts the shadow agent did not score (no_challenger, not_sampled, stale, "
    "redelivered, challenger_failed)",
    ["reason"],
)
SHADOW_AGREEMENT = Gauge(
    "cryptopulse_stream_shadow_agreement",
    "share of shadow verdicts where champion and challenger chose the same label (all workers)",
    ["champion", "challenger"],
)
SHADOW_RECORDS = Gauge(
    "cryptopulse_stream_shadow_records",
    "shadow verdicts of the pair (all workers)",
    ["champion", "challenger"],
)
SHADOW_FEEDBACK_ACCURACY = Gauge(
    "cryptopulse_stream_shadow_feedback_accuracy",
    "share of feedback labels the model (champion or challenger) matched, on shadow-scored posts",
    ["champion", "challenger", "model"],
)
SHADOW_FEEDBACK_LABELS = Gauge(
    "cryptopulse_stream_shadow_feedback_labels",
    "feedback labels on shadow-scored posts of the pair (all workers)",
    ["champion", "challenger"],
)
CHALLENGER_INFO = Gauge(
    "cryptopulse_stream_challenger_info", "challenger version in shadow service (value 1)", ["model_version"]
)
REVIEW_QUEUED = Counter(
    "cryptopulse_stream_review_candidates_total", "posts written to the review queue (new or re-ranked)"
)
