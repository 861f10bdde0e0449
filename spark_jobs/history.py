"""History on first start: seed the lake and Redis with the bundled week of crypto posts and prices.

A fresh platform would start with empty charts and all-zero z-scores (they need trailing
windows). ``cryptopulse spark history`` (and the first ``cryptopulse up``) loads the
bundle built by :mod:`spark_jobs.build_history` instead:

1. place the bundle in time: its anchor (a UTC midnight) becomes the coming midnight and
   what lies after now is dropped, so ``spark.history_days`` days (7 by default) end now
   and the daily rhythm stays on the UTC clock; each coin's price walk is scaled so it
   ends at the bundle's level (where the live replay's walk starts);
2. score the distinct texts once with the model at ``model.uri`` (the champion, pinned to
   its version) and build every event as the wire record the stream would archive
   (:class:`ScoredPost` / :class:`PriceTick`, ids ``history:<dataset>:<row>:<n>``);
3. write them into the events lake in the archive's own layout
   (``seeded-events/kind=post|price/date=.../history-<sha>.parquet``, typed columns), so
   ``cryptopulse backfill --source lake`` reads them like archived events;
4. run that backfill over the seeded days (lake trend partitions, Redis windows, series
   history for z-scores and correlations), then set each coin's latest price and the
   latest-posts list;
5. write a marker (``lake/history-seed.json``: bundle sha256, range, counts).

A second run is a no-op while the marker is there and Redis still holds the seeded
windows; when Redis lost them (it restarted without persistence), the backfill runs
again from the events already in the lake. ``force`` re-seeds (new end time).

The seeded events go to ``seeded-events/`` beside the archive's ``events/`` (Spark reads
``events/`` only through its file-sink log, which would hide files written there); the
lake backfill reads both. A home whose archive has started without a seed (it ran before
this feature, so it has history of its own) is not seeded.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from core.settings import Settings
from schemas.events import PriceTick, ScoredPost, Source, content_hash, utc_now
from schemas.redis_keys import RedisKeys
from spark_jobs.lake import event_table, events_path, seeded_events_path, write_event_file
from spark_jobs.session import lake_dir

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from spark_jobs.backfill import BackfillResult

log = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path(__file__).parent / "data" / "history" / "history.jsonl.gz"
BUNDLE_FORMAT = "cryptopulse-history"
MARKER_NAME = "history-seed.json"
FILE_PREFIX = "history-"
LATEST_POSTS = 50
"""Newest history posts put on ``posts:latest``, so the feed is not empty either."""
Progress = Callable[[str], None]
Status = Literal["seeded", "restored", "already", "skipped"]


class HistoryError(RuntimeError):
    """The history cannot be seeded (bad bundle, no model, a lake that would hide it)."""


@dataclass(frozen=True)
class Bundle:
    """The parsed bundle: text pool, text events and price walks, relative to the anchor."""

    sha256: str
    meta: dict[str, Any]
    texts: list[dict[str, Any]]
    offsets: np.ndarray
    """Seconds before the anchor of each text event."""
    text_index: np.ndarray
    prices: dict[str, tuple[int, int, list[float]]]
    """coin -> (seconds before the anchor of the first value, step seconds, values)."""


@dataclass
class SeedResult:
    status: Status
    start: datetime | None = None
    end: datetime | None = None
    posts: int = 0
    prices: int = 0
    rejected_texts: int = 0
    model_version: str | None = None
    lake_files: int = 0
    trend_windows: int = 0
    redis_windows: int = 0
    seconds: float = 0.0
    reason: str = ""
    bundle_sha256: str = ""
    stages: dict[str, float] = field(default_factory=dict)


def bundle_path(settings: Settings) -> Path:
    return settings.spark.history_file or DEFAULT_BUNDLE


def marker_path(settings: Settings) -> Path:
    return lake_dir(settings) / MARKER_NAME


def load_bundle(path: Path) -> Bundle:
    """Read and check a bundle written by :mod:`spark_jobs.build_history`."""
    try:
        payload = path.read_bytes()
        lines = [json.loads(line) for line in gzip.decompress(payload).decode("utf-8").splitlines() if line]
    except FileNotFoundError:
        raise HistoryError(
            f"no history bundle at {path}; build it with `python -m spark_jobs.build_history`"
        ) from None
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HistoryError(f"history bundle {path} is not gzipped JSON lines: {exc}") from None
    if not lines or lines[0].get("t") != "meta" or lines[0].get("format") != BUNDLE_FORMAT:
        raise HistoryError(f"{path} is not a {BUNDLE_FORMAT} bundle (no meta line)")
    texts = [line for line in lines if line.get("t") == "text"]
    events = [line for line in lines if line.get("t") == "events"]
    if len(events) != 1 or not texts:
        raise HistoryError(f"{path}: expected one events line and at least one text")
    offsets = np.asarray(events[0]["offset_s"], dtype="int64")
    index = np.asarray(events[0]["text"], dtype="int64")
    if len(offsets) != len(index) or (len(index) and (index.min() < 0 or index.max() >= len(texts))):
        raise HistoryError(f"{path}: events refer to texts that are not in the bundle")
    prices = {
        str(line["coin"]): (
            int(line["first_offset_s"]),
            int(line["step_s"]),
            [float(v) for v in line["values"]],
        )
        for line in lines
        if line.get("t") == "prices"
    }
    return Bundle(hashlib.sha256(payload).hexdigest(), lines[0], texts, offsets, index, prices)


def next_midnight(moment: datetime) -> datetime:
    """The UTC midnight at or after ``moment``: where the bundle's anchor goes."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if day == moment else day + timedelta(days=1)


def score_texts(bundle: Bundle, settings: Settings) -> tuple[list[dict[str, Any] | None], str]:
    """Verdict of every distinct text (None when the model rejects it) and the model version."""
    from scoring.holder import load_runtime
    from scoring.registry_uri import pinned_uri

    try:
        uri = pinned_uri(settings.model.uri, settings)
        runtime = load_runtime(uri, settings, threads=os.cpu_count() or 1)
    except Exception as exc:  # registry away, no champion, broken artifact: say which
        raise HistoryError(f"cannot load the scoring model {settings.model.uri}: {exc}") from exc
    verdicts: list[dict[str, Any] | None] = []
    size = settings.model.batch_size
    texts = [t["text"] for t in bundle.texts]
    for begin in range(0, len(texts), size):
        for result in runtime.score(texts[begin : begin + size]):
            verdict = result.verdict()
            verdicts.append(None if verdict["label"] is None else verdict)
    return verdicts, runtime.model_version


def post_records(
    bundle: Bundle, verdicts: list[dict[str, Any] | None], anchor: datetime, start: datetime, end: datetime
) -> tuple[list[ScoredPost], int]:
    """The scored posts of the events in [start, end], oldest first, and how many were left out
    because the model rejected their text."""
    anchor_s = anchor.timestamp()
    occurrence: dict[int, int] = {}
    posts: list[ScoredPost] = []
    rejected = 0
    for offset, index in zip(bundle.offsets.tolist(), bundle.text_index.tolist(), strict=True):
        at = datetime.fromtimestamp(anchor_s - offset, UTC)
        if not start <= at <= end:
            continue
        n = occurrence[index] = occurrence.get(index, 0) + 1
        verdict = verdicts[index]
        if verdict is None:
            rejected += 1
            continue
        row = bundle.texts[index]
        posts.append(
            ScoredPost(
                source_id=f"history:{row['dataset']}:{row['row']}:{n}",
                event_time=at,
                ingest_time=at + timedelta(seconds=1),
                source=Source.REDDIT if row.get("kind") == "post" else Source.NEWS,
                text=row["text"],
                original_length=len(row["text"]),
                coins=row["coins"],
                channel=f"history:{row['dataset']}",
                url=row.get("url"),
                content_hash=content_hash(row["text"]),
                scored_time=at + timedelta(seconds=2),
                **verdict,
            )
        )
    return posts, rejected


def price_records(
    bundle: Bundle, coins: list[str], vs_currency: str, anchor: datetime, start: datetime, end: datetime
) -> list[PriceTick]:
    """Ticks of the tracked coins in [start, end], each walk scaled to end at its bundle level."""
    anchor_s = anchor.timestamp()
    ticks: list[PriceTick] = []
    for coin in coins:
        if coin not in bundle.prices:
            continue
        first, step, values = bundle.prices[coin]
        times = [anchor_s - first + k * step for k in range(len(values))]
        kept = [
            (t, v) for t, v in zip(times, values, strict=True) if start.timestamp() <= t <= end.timestamp()
        ]
        if not kept:
            continue
        scale = values[-1] / kept[-1][1]  # the level the bundle ends at, reached at `end`
        ticks += [
            PriceTick(
                source_id=PriceTick.make_source_id(coin, at),
                event_time=at,
                ingest_time=at,
                coin=coin,
                vs_currency=vs_currency,
                price=round(v * scale, 8),
                provider="history-random-walk",
            )
            for at, v in ((datetime.fromtimestamp(t, UTC), v) for t, v in kept)
        ]
    return ticks


def write_events(settings: Settings, kind: str, records: list[Any], name: str) -> int:
    """Write records into ``seeded-events/kind=<kind>/date=<day>/<name>.parquet`` in the archive's
    typed layout (:func:`spark_jobs.lake.event_table`); one file per day, atomically by rename."""
    by_day: dict[str, list[Any]] = {}
    for record in records:
        by_day.setdefault(record.event_time.strftime("%Y-%m-%d"), []).append(record)
    for day, day_records in sorted(by_day.items()):
        folder = seeded_events_path(settings) / f"kind={kind}" / f"date={day}"
        write_event_file(event_table(day_records), folder, name)
    return len(by_day)


def remove_history_files(settings: Settings) -> int:
    """Delete the event files an earlier seed wrote (``force``); archived files are kept."""
    removed = 0
    for path in seeded_events_path(settings).glob(f"kind=*/date=*/{FILE_PREFIX}*.parquet"):
        path.unlink()
        removed += 1
    return removed


def archive_started(settings: Settings) -> bool:
    """Whether the streaming archive owns ``events/`` (its file sink log hides other files)."""
    return (events_path(settings) / "_spark_metadata").exists()


def redis_has_history(client: Any, settings: Settings, marker: dict[str, Any]) -> bool:
    """Whether the seeded 5-minute windows of the marker's busiest coin are still in Redis."""
    key = RedisKeys(settings.redis.key_prefix).trend_ts("5m", str(marker["check_coin"]))
    start, end = datetime.fromisoformat(marker["start"]), datetime.fromisoformat(marker["end"])
    return int(client.zcount(key, int(start.timestamp()), int(end.timestamp()))) > 0


def read_marker(settings: Settings) -> dict[str, Any] | None:
    path = marker_path(settings)
    if not path.exists():
        return None
    try:
        marker: dict[str, Any] = json.loads(path.read_text("utf-8"))
        datetime.fromisoformat(marker["start"]), datetime.fromisoformat(marker["end"]), marker["check_coin"]
    except (ValueError, KeyError, TypeError) as exc:
        raise HistoryError(f"unreadable seed marker {path} ({exc}); re-seed with --force") from None
    return marker


def write_marker(settings: Settings, marker: dict[str, Any]) -> None:
    path = marker_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", "utf-8")
    tmp.replace(path)


def busiest_coin(posts: list[ScoredPost]) -> str:
    counts: dict[str, int] = {}
    for post in posts:
        for coin in post.coins:
            counts[coin] = counts.get(coin, 0) + 1
    return max(sorted(counts), key=counts.__getitem__) if counts else "bitcoin"


def seed_history(
    settings: Settings,
    *,
    end: datetime | None = None,
    force: bool = False,
    spark: SparkSession | None = None,
    client: Any | None = None,
    progress: Progress | None = None,
) -> SeedResult:
    """Seed the bundled history ending at ``end`` (default now); see the module doc.

    Raises :class:`HistoryError` for everything a user can act on (bundle, model, Redis,
    the backfill's own checks), so ``up`` and the command exit with one clear message.
    """
    import redis

    from spark_jobs.backfill import BackfillError

    try:
        return _seed(settings, end=end, force=force, spark=spark, client=client, progress=progress)
    except BackfillError as exc:
        raise HistoryError(f"history backfill failed: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise HistoryError(f"Redis failed during the history seed: {exc}") from exc


def _seed(
    settings: Settings,
    *,
    end: datetime | None,
    force: bool,
    spark: SparkSession | None,
    client: Any | None,
    progress: Progress | None,
) -> SeedResult:
    from spark_jobs.backfill import redis_client

    started = time.perf_counter()

    def step(message: str) -> None:
        log.info("history: %s", message, extra={"elapsed_s": round(time.perf_counter() - started, 1)})
        if progress is not None:
            progress(message)

    client = client if client is not None else redis_client(settings)
    marker = read_marker(settings)
    if marker is not None and not force:
        if redis_has_history(client, settings, marker):
            return SeedResult(
                "already",
                reason=f"seeded before ({marker_path(settings)})",
                bundle_sha256=marker["bundle_sha256"],
            )
        step("Redis lost the seeded windows: backfilling them again from the lake")
        start, end_at = datetime.fromisoformat(marker["start"]), datetime.fromisoformat(marker["end"])
        backfill = _backfill(settings, spark, client, start, end_at, step)
        return SeedResult(
            "restored",
            start=start,
            end=end_at,
            trend_windows=backfill.trends,
            redis_windows=backfill.redis_windows,
            seconds=time.perf_counter() - started,
            bundle_sha256=marker["bundle_sha256"],
        )
    if marker is None and archive_started(settings):
        reason = f"{events_path(settings)} holds this home's own history; the seed is for a fresh home"
        if force:
            raise HistoryError(reason)
        return SeedResult("skipped", reason=reason)

    path = bundle_path(settings)
    bundle = load_bundle(path)
    days = settings.spark.history_days
    if days >= int(bundle.meta.get("days", 0)):
        raise HistoryError(
            f"spark.history_days={days} needs a bundle of more than {days} days; "
            f"{path} has {bundle.meta.get('days')}"
        )
    end = (end or utc_now()).astimezone(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(days=days)
    anchor = next_midnight(end)
    stages: dict[str, float] = {}
    mark = time.perf_counter()
    step(f"scoring {len(bundle.texts)} distinct texts with {settings.model.uri}")
    verdicts, model_version = score_texts(bundle, settings)
    stages["score"], mark = time.perf_counter() - mark, time.perf_counter()
    posts, rejected = post_records(bundle, verdicts, anchor, start, end)
    ticks = price_records(
        bundle, list(settings.producer.coins), settings.producer.vs_currency, anchor, start, end
    )
    if not posts:
        raise HistoryError(
            f"{path} has no text events between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M}"
        )
    step(
        f"writing {len(posts):,} posts and {len(ticks):,} price ticks "
        f"({start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC) into the lake"
    )
    if force:
        remove_history_files(settings)
    name = f"{FILE_PREFIX}{bundle.sha256[:12]}"
    files = write_events(settings, "post", posts, name) + write_events(settings, "price", ticks, name)
    stages["build_and_write"], mark = time.perf_counter() - mark, time.perf_counter()
    backfill = _backfill(settings, spark, client, start, end, step)
    stages["backfill"], mark = time.perf_counter() - mark, time.perf_counter()
    _latest_views(client, settings, posts, ticks)
    check_coin = busiest_coin(posts)
    result = SeedResult(
        "seeded",
        start=start,
        end=end,
        posts=len(posts),
        prices=len(ticks),
        rejected_texts=rejected,
        model_version=model_version,
        lake_files=files,
        trend_windows=backfill.trends,
        redis_windows=backfill.redis_windows,
        seconds=time.perf_counter() - started,
        bundle_sha256=bundle.sha256,
        stages=stages,
        reason=f"{rejected} text events left out: the model rejected their text" if rejected else "",
    )
    write_marker(
        settings,
        {
            "bundle_sha256": bundle.sha256,
            "bundle": str(path),
            "start": start.isoformat(),
            "end": end.isoformat(),
            "check_coin": check_coin,
            "posts": len(posts),
            "prices": len(ticks),
            "model_version": model_version,
            "seeded_at": utc_now().isoformat(),
        },
    )
    log.info("history seeded", extra={k: str(v) for k, v in asdict(result).items()})
    return result


def _backfill(
    settings: Settings,
    spark: SparkSession | None,
    client: Any,
    start: datetime,
    end: datetime,
    step: Callable[[str], None],
) -> BackfillResult:
    """``backfill --source lake`` over the seeded days (a session of its own unless given one)."""
    from spark_jobs.backfill import STAGES, run_backfill
    from spark_jobs.session import build_spark

    own = spark is None
    session = (
        spark
        if spark is not None
        else build_spark(settings, app_name=f"{settings.spark.app_name}-history", kafka=False)
    )
    try:
        return run_backfill(
            session,
            settings,
            start.date(),
            end.date(),
            source="lake",
            client=client,
            progress=lambda message, number: step(f"backfill {number}/{STAGES}: {message}"),
        )
    finally:
        if own:
            session.stop()


def _latest_views(client: Any, settings: Settings, posts: list[ScoredPost], ticks: list[PriceTick]) -> None:
    """Each coin's newest tick on ``price:latest`` (kept if a newer live one is there) and the
    newest posts on ``posts:latest``, so the price panel and the feed show something at once."""
    from views import RedisViewWriter

    writer = RedisViewWriter(client, settings.redis.key_prefix)
    newest: dict[str, PriceTick] = {}
    for tick in ticks:
        newest[tick.coin] = tick
    for tick in newest.values():
        writer.add_price(tick)
    writer.add_scored_posts(posts[-LATEST_POSTS:], publish=False)
    writer.flush()
