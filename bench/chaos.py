"""Chaos suite: SIGKILL each component under a sustained stream and prove nothing is lost.

A private platform (its own home under /tmp, its own free ports for Kafka, Redis,
MLflow, the API, the worker and every metrics endpoint, under its own supervisord) runs
the real pipeline with the suite's tiny model. A paced producer sends unique Reddit posts
for the whole run; one component at a time is killed with SIGKILL (``scoring`` is the
worker's scoring child alone) and supervisord (or the worker, for its child) must bring
it back. Afterwards every input id read back from the raw topics must have an outcome on
scored.posts or the dead-letter topic (``lost`` counts those that have none), the API
must have answered 503 with Retry-After (never 500) while Redis was away, and, when the
Spark job ran, its Redis views must equal a fresh backfill of the same events written
under another key prefix. Nothing of the shared platform is touched: only with
``--shared-kafka`` does the run use the shared broker, under a throw-away topic prefix,
and then it never kills it.

    .venv/bin/python bench/chaos.py --rate 20 --phase-s 40
    .venv/bin/python bench/chaos.py --components worker scoring redis --shared-kafka --no-views

Exits 1 when an input was lost, an id got two different outcomes, the API answered 500,
a component did not recover, or the views differ from the backfill.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402
import structlog  # noqa: E402

from bench.common import unique_post  # noqa: E402
from core.kafka import EventProducer, delete_prefixed_topics, ensure_topics  # noqa: E402
from core.settings import Settings, load_settings  # noqa: E402
from cryptopulse.platform.manager import Platform, tail  # noqa: E402
from cryptopulse.platform.pipeline import (  # noqa: E402
    ApiService,
    ReplayProducerService,
    SparkStreamingService,
    StreamWorkerService,
)
from cryptopulse.platform.services import KafkaService, MlflowService, RedisService, Service  # noqa: E402
from schemas.events import RedditPost  # noqa: E402
from schemas.topics import CATALOG, RAW_NEWS, RAW_REDDIT  # noqa: E402
from stream_processors.cleaning import REASON_DUPLICATE_ID  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.stream_processors.harness import OutputReader, read_all  # noqa: E402

log = structlog.get_logger("bench.chaos")

COMPONENTS = ("kafka", "worker", "scoring", "spark", "redis", "api", "producer", "mlflow")
"""Kill order of a full run; ``scoring`` is the worker's scoring child process alone."""

API_PATHS = ("/v1/coins?window=1d", "/v1/coins/bitcoin/sentiment?window=1d", "/v1/posts/latest", "/readyz")
"""Endpoints that read Redis, probed round-robin for the whole run."""

SPARK_FAMILIES_SKIPPED = ("spark:agg",)
"""The Spark job's internal component hashes: compared backfill-to-backfill by the Spark
tests, not to the stream (whose partial aggregates legitimately differ)."""


class ChaosError(RuntimeError):
    """The run could not set up or a component never came back; the message says which."""


@dataclass
class Phase:
    """One component's kill: when, how long until it was back, and what the API said meanwhile."""

    component: str
    started: float
    killed_at: float = 0.0
    killed_pid: int | None = None
    healthy_after_s: float | None = None
    flowing_after_s: float | None = None
    ended: float = 0.0
    note: str = ""

    @property
    def recovered_after_s(self) -> float | None:
        if self.healthy_after_s is None or self.flowing_after_s is None:
            return None
        return max(self.healthy_after_s, self.flowing_after_s)


@dataclass
class Row:
    component: str
    killed_at: str
    recovered_after_s: float | None
    inputs: int
    scored: int
    dead_letters: int
    lost: int
    conflicts: int
    duplicates_absorbed: int
    views_equal_backfill: str
    api_503: int
    api_503_without_retry_after: int
    api_500: int
    note: str = ""


@dataclass
class Load:
    """The sustained stream: unique posts at ``rate``/s until stopped, with send times."""

    settings: Settings
    rate: float
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    sent_at: dict[str, float] = field(default_factory=dict)
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def post(self, i: int) -> RedditPost:
        post: RedditPost = unique_post(i, self.run, author="chaos")
        return post

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="chaos-load", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # Long delivery timeout: a broker outage must delay records, not drop them.
        producer = EventProducer(
            self.settings, component="chaos", **{"linger.ms": 5, "message.timeout.ms": 600_000}
        )
        topic = RAW_REDDIT.name(self.settings)
        started = time.perf_counter()
        i = 0
        while not self._stop.is_set():
            due = int((time.perf_counter() - started) * self.rate) - i
            for _ in range(max(0, due)):
                record = self.post(i)
                try:
                    producer.send(topic, record)
                    self.sent_at[record.source_id] = time.time()
                except Exception as exc:  # BufferError while the broker is away: counted, the run goes on
                    self.failed += 1
                    log.warning("chaos send failed", error=str(exc))
                i += 1
            time.sleep(0.02)
        try:
            producer.flush(120.0)
        except Exception as exc:  # DeliveryError: those records never reached the broker (not inputs)
            log.warning("chaos flush incomplete", error=str(exc))
            self.failed += 1
        producer.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=180)


@dataclass
class Outputs:
    """Scored and dead-letter records as they arrive (a thread polls an OutputReader)."""

    settings: Settings
    reader: OutputReader | None = None
    last_arrival: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.reader = OutputReader(self.settings)
        self._thread = threading.Thread(target=self._loop, name="chaos-outputs", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        assert self.reader is not None  # nosec B101 # a typing narrowing: set by start()
        while not self._stop.is_set():
            if self.reader.poll(0.5):
                self.last_arrival = time.time()

    def last_outcome_after(self, t: float, sent_at: dict[str, float]) -> bool:
        """Some input sent after ``t`` already has an outcome (the stream flows end to end)."""
        assert self.reader is not None  # nosec B101 # a typing narrowing: set by start()
        received = dict(self.reader.received_at)
        return any(sent_at.get(sid, 0.0) > t for sid in received) or any(
            sent_at.get(d["source_id"], 0.0) > t for d in list(self.reader.dead)
        )

    def wait_for(self, ids: set[str], timeout_s: float) -> set[str]:
        """The ids still without an outcome after waiting up to ``timeout_s`` (the polling
        thread keeps reading meanwhile)."""
        assert self.reader is not None  # nosec B101 # a typing narrowing: set by start()
        reader = self.reader
        wait_until(lambda: ids <= reader.ids(), timeout_s, every_s=1.0)
        return ids - reader.ids()

    def outcome_since(self, t: float) -> bool:
        """A new outcome arrived after ``t``: the worker makes progress again (on a loaded
        machine it may still be working through the backlog the outage built up)."""
        return self.last_arrival > t

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.reader is not None:
            self.reader.close()


@dataclass
class ApiProbe:
    """Polls Redis-backed API endpoints all run long: (time, status, has Retry-After)."""

    url: str
    interval_s: float = 0.1
    answers: list[tuple[float, int, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="chaos-api", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            i = 0
            while not self._stop.is_set():
                path = API_PATHS[i % len(API_PATHS)]
                i += 1
                try:
                    response = client.get(path)
                    self.answers.append(
                        (time.time(), response.status_code, "retry-after" in response.headers)
                    )
                except httpx.HTTPError:
                    pass  # the API itself is down (its own kill phase): no answer is no 500
                self._stop.wait(self.interval_s)

    def between(self, start: float, end: float) -> list[tuple[float, int, bool]]:
        return [a for a in list(self.answers) if start <= a[0] <= end]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


# -- the private platform ------------------------------------------------------------------


def private_env(
    home: Path,
    model_dir: Path,
    *,
    shared_kafka: Settings | None,
    shared_mlflow: Settings | None,
    tag: str,
) -> dict[str, str]:
    """Every CRYPTOPULSE_* variable of the private platform (supervisord forwards them to the
    services): own home, own ports, own topic and key prefixes."""
    env = {
        "CRYPTOPULSE_HOME": str(home),
        "CRYPTOPULSE_MODEL__URI": str(model_dir),
        "CRYPTOPULSE_KAFKA__TOPIC_PREFIX": f"chaos-{tag}",
        "CRYPTOPULSE_REDIS__PORT": str(free_port()),
        "CRYPTOPULSE_REDIS__KEY_PREFIX": f"chaos-{tag}",
        "CRYPTOPULSE_MLFLOW__PORT": str(free_port()),
        "CRYPTOPULSE_PROMETHEUS__PORT": str(free_port()),
        "CRYPTOPULSE_STREAM__WEB_PORT": str(free_port()),
        "CRYPTOPULSE_SPARK__METRICS_PORT": str(free_port()),
        "CRYPTOPULSE_SPARK__TRIGGER_INTERVAL": "5 seconds",
        "CRYPTOPULSE_API__PORT": str(free_port()),
        "CRYPTOPULSE_API__WORKERS": "1",
        "CRYPTOPULSE_API__VIEW_CACHE_S": "0",
        "CRYPTOPULSE_API__ANONYMOUS_RATE_LIMIT_PER_MINUTE": "0",
        "CRYPTOPULSE_DASHBOARD__PORT": str(free_port()),
        "CRYPTOPULSE_PRODUCER__METRICS_PORT": str(free_port()),
        "CRYPTOPULSE_PRODUCER__REPLAY_RATE": "2",
        "CRYPTOPULSE_SUPERVISOR__METRICS_PORT": str(free_port()),
        "CRYPTOPULSE_SUPERVISOR__START_RETRIES": "5",
        "CRYPTOPULSE_LEARNING__ORCHESTRATOR_METRICS_PORT": str(free_port()),
    }
    if shared_mlflow is not None:  # read-only registry look-ups (the worker's shadow agent)
        env["CRYPTOPULSE_MLFLOW__PORT"] = str(shared_mlflow.mlflow.port)
        if shared_mlflow.mlflow.tracking_uri:
            env["CRYPTOPULSE_MLFLOW__TRACKING_URI"] = shared_mlflow.mlflow.tracking_uri
    if shared_kafka is None:
        env["CRYPTOPULSE_KAFKA__PORT"] = str(free_port())
        env["CRYPTOPULSE_KAFKA__CONTROLLER_PORT"] = str(free_port())
    else:
        env["CRYPTOPULSE_KAFKA__BOOTSTRAP_SERVERS"] = shared_kafka.kafka.bootstrap
        env["CRYPTOPULSE_KAFKA__PORT"] = str(shared_kafka.kafka.port)
    return env


@contextmanager
def private_platform(
    components: list[str],
    *,
    shared_kafka: bool,
    views: bool,
    model: Path | None = None,
    start_s: float = 600.0,
) -> Iterator[tuple[Settings, Platform]]:
    """Start the private platform; stop all of it (supervisord included) and delete its home,
    whatever happens, and the run's topics when the broker is the shared one."""
    from tests.tiny_model import tiny_model_dir

    defaults = load_settings()  # the shared platform's settings, read before the private ones replace them
    shared = defaults if shared_kafka else None
    if shared is not None and "kafka" in components:
        raise ChaosError("--shared-kafka cannot kill the broker: the shared platform is not ours to kill")
    model_dir = model or tiny_model_dir(defaults)
    home = Path(tempfile.mkdtemp(prefix="cp-chaos-"))  # private, mode 0700
    tag = uuid.uuid4().hex[:8]
    saved = {k: v for k, v in os.environ.items() if k.startswith("CRYPTOPULSE_")}
    for key in saved:
        os.environ.pop(key)  # the private platform must not inherit the shared one's settings
    os.environ.update(
        private_env(
            home,
            model_dir,
            shared_kafka=shared,
            shared_mlflow=None if "mlflow" in components else defaults,
            tag=tag,
        )
    )
    settings = load_settings()
    services: list[type[Service]] = [] if shared is not None else [KafkaService]
    services.append(RedisService)
    if "mlflow" in components:
        services.append(MlflowService)
    services += [StreamWorkerService, ApiService]
    if views or "spark" in components:
        services.append(SparkStreamingService)
    if "producer" in components:
        services.append(ReplayProducerService)
    platform = Platform(settings, services)
    names = [cls(settings).name for cls in services]
    try:

        def report(message: str) -> None:
            log.info("platform", message=message)

        # One service at a time, with a start limit that a loaded 2-core machine can meet.
        for service in platform.services:
            if service.name in ("worker", "spark", "api", "producer"):
                ensure_topics(settings, CATALOG)
            platform.start(service, report, timeout_s=start_s)
        yield settings, platform
    except BaseException:
        for name in names:  # the evidence goes with the home: show it first
            print(
                f"--- {name}.log (last lines)\n{tail(settings.log_dir / f'{name}.log', 30)}", file=sys.stderr
            )
        raise
    finally:
        try:
            try:
                platform.down(report=lambda m: log.info("platform down", message=m))
            except Exception as exc:  # once more: supervisord and anything marked with this home
                log.warning("platform down failed; retrying", error=str(exc))
                Platform(settings, services=[]).down()
        finally:
            if shared is not None:
                try:
                    delete_prefixed_topics(settings)
                except Exception as exc:  # the shared broker is away: say so, the home still goes
                    log.warning("could not delete the run's topics", error=str(exc))
            for key in [k for k in os.environ if k.startswith("CRYPTOPULSE_")]:
                os.environ.pop(key)
            os.environ.update(saved)
            shutil.rmtree(home, ignore_errors=True)


# -- killing and recovery --------------------------------------------------------------------


def scoring_child(worker_pid: int) -> psutil.Process | None:
    """The worker's scoring process (a ``spawn`` child; the resource tracker is not it)."""
    try:
        for child in psutil.Process(worker_pid).children(recursive=True):
            cmdline = " ".join(child.cmdline())
            if "spawn_main" in cmdline and child.status() != psutil.STATUS_ZOMBIE:
                return child
    except psutil.Error:
        return None
    return None


def target_pid(platform: Platform, component: str) -> int:
    service = "worker" if component == "scoring" else component
    info = platform.supervisor.program(service)
    if info is None or not info.alive:
        raise ChaosError(f"{service} is not running under the private supervisord")
    if component != "scoring":
        return int(info.pid)
    child = scoring_child(int(info.pid))
    if child is None:
        raise ChaosError(f"the worker (pid {info.pid}) has no scoring child; is stream.scoring_process on?")
    return child.pid


def healthy_again(platform: Platform, component: str, killed_pid: int) -> bool:
    """Back under a new pid and answering its real readiness probe."""
    service = "worker" if component == "scoring" else component
    info = platform.supervisor.program(service)
    if info is None or not info.alive or info.state != "RUNNING":
        return False
    if component == "scoring":
        child = scoring_child(int(info.pid))
        return child is not None and child.pid != killed_pid and platform.service("worker").ready()
    return int(info.pid) != killed_pid and platform.service(service).ready()


def wait_until(check: Callable[[], bool], timeout_s: float, every_s: float = 0.25) -> float | None:
    """Seconds until ``check`` held, or None after ``timeout_s``."""
    start = time.time()
    while time.time() - start < timeout_s:
        if check():
            return time.time() - start
        time.sleep(every_s)
    return None


def kill_phase(
    platform: Platform, component: str, phase_s: float, recover_s: float, outputs: Outputs
) -> Phase:
    phase = Phase(component=component, started=time.time())
    time.sleep(phase_s / 2)
    pid = target_pid(platform, component)
    phase.killed_pid = pid
    phase.killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    log.info("killed", component=component, pid=pid)
    phase.healthy_after_s = wait_until(lambda: healthy_again(platform, component, pid), recover_s)
    back = time.time()
    remaining = max(1.0, recover_s - (back - phase.killed_at))
    flowed = wait_until(lambda: outputs.outcome_since(back), remaining)
    phase.flowing_after_s = None if flowed is None else time.time() - phase.killed_at
    if phase.recovered_after_s is None:
        phase.note = "did not recover within the limit"
    log.info("recovered", component=component, after_s=phase.recovered_after_s)
    time.sleep(phase_s / 2)
    phase.ended = time.time()
    return phase


# -- accounting ------------------------------------------------------------------------------


def input_times(settings: Settings) -> dict[str, float]:
    """Every post id the broker holds on the raw text topics, with its ingest time."""
    found: dict[str, float] = {}
    for spec in (RAW_REDDIT, RAW_NEWS):
        for _, _, _, value in read_all(settings, spec.name(settings), timeout_s=60):
            record = json.loads(value)
            at = datetime.fromisoformat(str(record["ingest_time"]).replace("Z", "+00:00")).timestamp()
            found.setdefault(record["source_id"], at)
    return found


RESENT = REASON_DUPLICATE_ID
"""The dead-letter reason of a second copy of an id already handled: absorbed, not an outcome
of its own. (``duplicate_content`` is an outcome: another id carried the same text first.)"""


def account(
    ids: list[str], scored: Counter[str], dead: dict[str, list[str]]
) -> tuple[int, int, int, int, int]:
    """(scored, dead letters, lost, conflicts, duplicates absorbed) of these input ids.

    A second copy of the same outcome (an at-least-once replay after a crash, or a
    ``duplicate_source_id`` dead letter for a record a restarted producer sent again) is absorbed
    downstream; an id with no outcome (or only ``duplicate_source_id`` dead letters) is lost; an id
    both scored and dead-lettered for a real reason is a conflict.
    """
    n_scored = n_dead = lost = conflicts = dups = 0
    for sid in ids:
        copies = scored.get(sid, 0)
        reasons = dead.get(sid, [])
        real = [r for r in reasons if r != RESENT]
        if copies == 0 and not real:
            # Nothing, or only ``duplicate_source_id`` dead letters: the first delivery's outcome is missing.
            lost += 1
            continue
        if copies and real:
            conflicts += 1
            dups += copies + len(reasons) - 2
            continue
        if copies:
            n_scored += 1
        else:
            n_dead += 1
        dups += copies + len(reasons) - 1
    return n_scored, n_dead, lost, conflicts, dups


# -- views vs backfill -------------------------------------------------------------------------


def spark_views(client: redis.Redis, prefix: str, families: set[str] | None = None) -> dict[str, Any]:
    """The Spark-written views under ``prefix`` keyed without it; ``families`` (first key
    segments, e.g. ``trend``) limits them to what the backfill writes."""
    out: dict[str, Any] = {}
    for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        rest = key[len(prefix) + 1 :]
        if any(rest.startswith(skip) for skip in SPARK_FAMILIES_SKIPPED):
            continue
        if families is not None and rest.split(":", 1)[0] not in families:
            continue
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            out[rest] = client.get(key)
        elif kind == "zset":
            out[rest] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            out[rest] = client.hgetall(key)
        elif kind == "set":
            out[rest] = sorted(client.smembers(key))
        elif kind == "list":
            out[rest] = client.lrange(key, 0, -1)
    return out


def settle_views(settings: Settings, timeout_s: float, quiet_s: float = 20.0) -> bool:
    """Wait until the streaming job's trend views stop changing (its last micro-batch ran)."""
    client = redis.Redis.from_url(settings.redis.dsn)
    try:
        last = spark_views(client, settings.redis.key_prefix, {"trend", "trending"})
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            time.sleep(quiet_s)
            now = spark_views(client, settings.redis.key_prefix, {"trend", "trending"})
            if now == last and now:
                return True
            last = now
        return False
    finally:
        client.close()


def views_equal_backfill(
    settings: Settings, days: tuple[str, str], timeout_s: float, dump: Path | None = None
) -> tuple[bool, str]:
    """Backfill the same days from Kafka under another key prefix (and lake) and compare;
    ``dump`` receives both sides of every differing key (the private home is deleted)."""
    prefix = f"{settings.redis.key_prefix}-bf"
    env = {
        **os.environ,
        "CRYPTOPULSE_REDIS__KEY_PREFIX": prefix,
        "CRYPTOPULSE_SPARK__LAKE_DIR": str(settings.home / "lake-backfill"),
        "CRYPTOPULSE_SPARK__CHECKPOINT_DIR": str(settings.home / "checkpoints-backfill"),
    }
    result = subprocess.run(  # nosec B603 # our own CLI with fixed arguments
        [sys.executable, "-m", "cryptopulse", "spark", "backfill", "--from", days[0], "--to", days[1]],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        return False, f"backfill failed: {(result.stdout + result.stderr)[-1500:]}"
    client = redis.Redis.from_url(settings.redis.dsn)
    try:
        backfilled = spark_views(client, prefix)
        families = {key.split(":", 1)[0] for key in backfilled}
        streamed = spark_views(client, settings.redis.key_prefix, families)
    finally:
        client.close()
    if not backfilled:
        return False, "the backfill wrote no views"
    if streamed == backfilled:
        return True, f"{len(backfilled)} keys equal ({', '.join(sorted(families))})"
    only_stream = sorted(set(streamed) - set(backfilled))
    only_backfill = sorted(set(backfilled) - set(streamed))
    differ = sorted(k for k in set(streamed) & set(backfilled) if streamed[k] != backfilled[k])
    if dump is not None:
        keys = [*only_stream, *only_backfill, *differ]
        sides = {k: {"stream": streamed.get(k), "backfill": backfilled.get(k)} for k in keys}
        dump.write_text(json.dumps(sides, indent=1, default=_plain), "utf-8")
    by_family = Counter(k.split(":", 1)[0] for k in [*only_stream, *only_backfill, *differ])
    return False, (
        f"differ ({dict(by_family)} keys by family): only stream {only_stream[:5]}, "
        f"only backfill {only_backfill[:5]}, values {differ[:5]}"
    )


def _plain(value: object) -> object:
    """Redis bytes (and tuples of them) as JSON for the dump."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# -- the run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    components: list[str] = list(args.components)
    with private_platform(
        components, shared_kafka=args.shared_kafka, views=args.views, model=args.model, start_s=args.start_s
    ) as (
        settings,
        platform,
    ):
        load = Load(settings, args.rate)
        outputs = Outputs(settings)
        api = ApiProbe(f"http://127.0.0.1:{settings.api.port}")
        outputs.start()
        load.start()
        api.start()
        phases: list[Phase] = []
        started = time.time()
        try:
            warm = wait_until(lambda: outputs.last_outcome_after(started, load.sent_at), args.recover_s)
            if warm is None:
                raise ChaosError(
                    f"no outcome within {args.recover_s:.0f}s of the first post; see {settings.log_dir}"
                )
            log.info("stream flowing", after_s=round(warm, 1))
            for component in components:
                phases.append(kill_phase(platform, component, args.phase_s, args.recover_s, outputs))
        finally:
            load.stop()
        assert outputs.reader is not None  # nosec B101 # a typing narrowing: set by start()
        log.info("load stopped; reading the inputs back", sent=len(load.sent_at))
        inputs = input_times(settings)
        log.info("draining", inputs=len(inputs), outcomes=len(outputs.reader.ids()))
        missing = outputs.wait_for(set(inputs), args.drain_s)
        log.info("drained", missing=len(missing))
        outputs.stop()
        api.stop()
        redis_errors = dict(Counter(a[1] for a in api.answers))
        views_ok, views_detail = (None, "not checked (--no-views)")
        if args.views:
            if "producer" in components:
                # The replay keeps producing: a backfill would race it and miss its newest posts.
                platform.down(["producer"], report=lambda message: log.info("views", message=message))
            settle_views(settings, args.drain_s)
            days = sorted({datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d") for t in inputs.values()})
            views_ok, views_detail = views_equal_backfill(
                settings, (days[0], days[-1]), args.backfill_s, dump=args.views_dump
            )
        reader = outputs.reader
        scored = Counter(r["source_id"] for r in reader.scored)
        dead: dict[str, list[str]] = {}
        for record in reader.dead:
            dead.setdefault(record["source_id"], []).append(record.get("reason", "?"))
        rows = []
        bounds = [(p, p.started, p.ended) for p in phases]
        for index, (phase, start, end) in enumerate(bounds):
            lo = started if index == 0 else start
            hi = float("inf") if index == len(bounds) - 1 else end
            ids = [sid for sid, at in inputs.items() if lo <= at < hi]
            n_scored, n_dead, lost, conflicts, dups = account(ids, scored, dead)
            outage_end = phase.killed_at + (phase.recovered_after_s or (phase.ended - phase.killed_at))
            during = api.between(phase.killed_at, outage_end)
            whole = api.between(start, phase.ended)
            rows.append(
                Row(
                    component=phase.component,
                    killed_at=datetime.fromtimestamp(phase.killed_at, UTC).strftime("%H:%M:%S"),
                    recovered_after_s=None
                    if phase.recovered_after_s is None
                    else round(phase.recovered_after_s, 1),
                    inputs=len(ids),
                    scored=n_scored,
                    dead_letters=n_dead,
                    lost=lost,
                    conflicts=conflicts,
                    duplicates_absorbed=dups,
                    views_equal_backfill="-" if views_ok is None else ("yes" if views_ok else "NO"),
                    api_503=sum(1 for a in during if a[1] == 503),
                    api_503_without_retry_after=sum(1 for a in during if a[1] == 503 and not a[2]),
                    api_500=sum(1 for a in whole if a[1] >= 500 and a[1] != 503),
                    note=phase.note,
                )
            )
        return {
            "rows": [asdict(r) for r in rows],
            "inputs": len(inputs),
            "missing_after_drain": len(missing),
            "send_failures": load.failed,
            "api_status_counts": redis_errors,
            "api_500_total": sum(1 for a in api.answers if a[1] >= 500 and a[1] != 503),
            "views_equal_backfill": views_ok,
            "views_detail": views_detail,
            "rate": args.rate,
            "phase_s": args.phase_s,
            "components": components,
            "shared_kafka": args.shared_kafka,
            "load_average": os.getloadavg(),
        }


HEADER = (
    "| component | killed at (UTC) | recovered after s | inputs | scored | dead letters | lost "
    "| conflicts | duplicates absorbed | views == backfill | API 503 (no Retry-After) | API 500 |"
)


def table(result: dict[str, Any]) -> str:
    lines = [HEADER, "|" + "---|" * 12]
    for r in result["rows"]:
        recovered = "NOT RECOVERED" if r["recovered_after_s"] is None else f"{r['recovered_after_s']:.1f}"
        lines.append(
            f"| {r['component']} | {r['killed_at']} | {recovered} | {r['inputs']} | {r['scored']} "
            f"| {r['dead_letters']} | {r['lost']} | {r['conflicts']} | {r['duplicates_absorbed']} "
            f"| {r['views_equal_backfill']} | {r['api_503']} ({r['api_503_without_retry_after']}) "
            f"| {r['api_500']} |"
        )
    return "\n".join(lines)


def failures(result: dict[str, Any]) -> list[str]:
    """Why the run fails the issue's bar; empty when every component passed."""
    found = []
    for r in result["rows"]:
        name = r["component"]
        if r["recovered_after_s"] is None:
            found.append(f"{name}: did not recover")
        if r["lost"]:
            found.append(f"{name}: {r['lost']} inputs lost")
        if r["conflicts"]:
            found.append(f"{name}: {r['conflicts']} ids both scored and dead-lettered")
        if r["api_500"]:
            found.append(f"{name}: the API answered 500 {r['api_500']} times")
        if name == "redis" and r["api_503_without_retry_after"]:
            found.append("redis: 503 without Retry-After")
    if result["api_500_total"]:
        found.append(f"the API answered 500 {result['api_500_total']} times in all")
    if result["views_equal_backfill"] is False:
        found.append(f"views differ from the backfill: {result['views_detail']}")
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="unique posts per second (default 20)")
    parser.add_argument(
        "--phase-s", type=float, default=40.0, help="seconds per component: half before the kill, half after"
    )
    parser.add_argument(
        "--components",
        nargs="+",
        choices=COMPONENTS,
        default=list(COMPONENTS),
        help="what to kill, in order (default: all; scoring = the worker's scoring child alone)",
    )
    parser.add_argument("--start-s", type=float, default=600.0, help="longest wait for a service to start")
    parser.add_argument("--recover-s", type=float, default=180.0, help="longest wait for a recovery")
    parser.add_argument("--drain-s", type=float, default=180.0, help="longest wait for the last outcomes")
    parser.add_argument("--backfill-s", type=float, default=600.0, help="limit of the backfill run")
    parser.add_argument(
        "--shared-kafka",
        action="store_true",
        help="use the shared broker (throw-away topic prefix) instead of a private one; cannot kill kafka",
    )
    parser.add_argument(
        "--no-views", dest="views", action="store_false", help="skip Spark and the views == backfill check"
    )
    parser.add_argument(
        "--model", type=Path, help="model artifact directory (default: the test suite's tiny model)"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument(
        "--views-dump", type=Path, help="write both sides of every view that differs from the backfill here"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through private_platform's teardown

    signal.signal(signal.SIGTERM, stop)
    try:
        result = run(args)
    except ChaosError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    print(f"\nviews == backfill: {result['views_detail']}")
    print(f"API answers by status: {result['api_status_counts']}; load average {result['load_average']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), "utf-8")
    problems = failures(result)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
