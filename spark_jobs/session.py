"""One place that builds the SparkSession, so every job is sized the same way.

Sizing comes from ``settings.spark`` (``local[2]``, few shuffle partitions, driver
memory); on a cluster pass ``--master`` (or ``CRYPTOPULSE_SPARK__MASTER``) and the same
job runs unchanged. The Kafka connector jars are fetched once into the cache by
:func:`core.jars.spark_kafka_libs` and handed over through
``spark.jars``, so nothing is resolved from Ivy at runtime; on a cluster the driver serves
them to the executors.

On a cluster the executors' Python workers are not children of the driver: they start in
the executor's work folder with the worker's environment, so they would not find the
project's packages (the re-scoring pandas UDF imports ``spark_jobs``/``scoring``) unless
the project is installed into the interpreter they run. :func:`cluster_conf` therefore
puts the driver's project root on their ``PYTHONPATH`` and leaves the scratch space to
the worker (see docs/scaling.md). Local masters get none of it, so local runs are as before.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def lake_dir(settings: Settings) -> Path:
    """Root of the Parquet lake (``events/`` and ``trends/`` datasets)."""
    return settings.spark.lake_dir or settings.home / "lake"


def checkpoint_dir(settings: Settings) -> Path:
    """Root of the streaming checkpoints (one sub-folder per query)."""
    return settings.spark.checkpoint_dir or settings.home / "checkpoints"


def kafka_jars(settings: Settings) -> list[str]:
    """Paths of the spark-sql-kafka connector jars (fetched into the cache when missing)."""
    from core.jars import spark_kafka_libs

    folder = spark_kafka_libs(settings)
    jars = sorted(str(p) for p in folder.glob("*.jar"))
    if not jars:
        raise RuntimeError(f"no Spark Kafka connector jars in {folder}")
    return jars


def is_local(master: str) -> bool:
    """``local``, ``local[N]``, ``local[*]``, ``local[N,F]``: driver and executors share one JVM."""
    return master == "local" or master.startswith("local[")


JVM_OPTIONS = "-Duser.timezone=UTC -XX:+UseParallelGC"
"""The throughput collector: the trend jobs want throughput over pause times (a 1 GB heap
pauses for milliseconds), and it ran the backfill's aggregation ~13 % faster than the
default G1 here, cold and warm (docs/benchmarks.md, Spark)."""


def project_root() -> Path:
    """The folder that holds the project's packages (the repository, or site-packages)."""
    import spark_jobs

    return Path(spark_jobs.__file__).resolve().parents[1]


def cluster_conf() -> dict[str, str]:
    """What executors on a non-local master need beyond the local configuration.

    The same interpreter path is already shipped with every Python function
    (``PYSPARK_PYTHON``); the project root is appended to the executors' ``PYTHONPATH`` so
    the packages import there even when the project is run from a checkout rather than
    installed (the executors must see the same path: one machine, a shared file system, or
    the same image on every node).
    """
    inherited = os.environ.get("PYTHONPATH", "")
    paths = [str(project_root()), *(p for p in inherited.split(os.pathsep) if p)]
    return {"spark.executorEnv.PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


CONNECT_PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"
"""Spark's own Spark Connect server, started inside an application as a plugin."""


DEFAULT_CONNECT_PORT = 15002
"""Spark Connect's own default port, for an ``sc://HOST`` without one."""


class SparkUnavailable(RuntimeError):
    """The Spark Connect endpoint a backfill was told to use cannot be reached."""


_TOKEN_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "")  # nosec B104  # names, nothing binds here
"""Endpoint hosts a client on this machine reaches as ``localhost`` (every interface included)."""


def connect_url(settings: Settings) -> str:
    """``sc://HOST:PORT`` of the streaming job's Spark Connect endpoint.

    A loopback (or every-interface) endpoint is named ``localhost``: PySpark sends a bearer
    token over a plain connection only to that name (anywhere else it wants TLS)."""
    host = settings.spark.connect_host
    return f"sc://{'localhost' if host in _TOKEN_HOSTS else host}:{settings.spark.connect_port}"


CONNECT_TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"  # nosec B105  # a variable's name, not a secret
"""Where Spark Connect's server reads its pre-shared bearer token (a client without it is
refused, UNAUTHENTICATED). The stream hands it to its JVM in the environment, which only
the owner can read, not as a ``--conf``, which PySpark puts on the JVM's command line."""


def connect_token_file(settings: Settings) -> Path:
    """Where the streaming job leaves its endpoint's token for backfills on this machine:
    readable by its owner only, like the supervisor's socket beside it."""
    return settings.run_dir / "spark-connect.token"


def new_connect_token() -> str:
    """A fresh random token: every start of the endpoint gets its own."""
    return secrets.token_urlsafe(32)


def publish_connect_token(settings: Settings, token: str) -> None:
    """Write ``token`` to :func:`connect_token_file` (mode 0600, replaced atomically), once
    the endpoint it opens is serving."""
    path = connect_token_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token)
    staged.replace(path)


def read_connect_token(settings: Settings) -> str | None:
    """The running endpoint's token, or None when no streaming job of this home serves one."""
    try:
        return connect_token_file(settings).read_text().strip() or None
    except OSError:
        return None


def withdraw_connect_token(settings: Settings, token: str | None) -> None:
    """Remove the token file when it still holds ``token`` (the endpoint is going away); a
    newer endpoint's token (a restarted stream's) is left alone."""
    if token is not None and read_connect_token(settings) == token:
        connect_token_file(settings).unlink(missing_ok=True)


def serves_connect(spark: SparkSession) -> bool:
    """Whether this application serves Spark Connect (:func:`connect_server_conf`)."""
    return CONNECT_PLUGIN in (spark.conf.get("spark.plugins", "") or "")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As a server binds: a restarted stream's old connections in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _answers(url: str, timeout_s: float = 0.5) -> bool:
    authority = url.removeprefix("sc://").split("/", 1)[0]
    host, colon, port = authority.rpartition(":")
    if not colon or "]" in port:  # no port: Spark Connect's default
        host, port = authority, str(DEFAULT_CONNECT_PORT)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def connect_server_conf(settings: Settings) -> dict[str, str]:
    """What makes an application serve Spark Connect (``spark stream`` asks for it): none
    when the port is 0 or already taken (another stream job, a test), which only costs
    backfills their warm start, never the stream its start. The endpoint runs whatever it
    is sent, so :func:`build_spark` gives it a token that clients must hold."""
    host, port = settings.spark.connect_host, settings.spark.connect_port
    if port == 0:
        return {}
    if not _port_free(host, port):
        log.warning(
            "spark connect port in use; this application serves no Spark Connect endpoint",
            extra={"host": host, "port": port},
        )
        return {}
    return {
        "spark.plugins": CONNECT_PLUGIN,
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
    }


def remote_spark(url: str, token: str | None = None) -> SparkSession:
    """A Spark Connect session on ``url``: the queries run in that application's JVM (and
    its executors), the rest of the job (pandas, Redis) here. PySpark runs one mode per
    process: after this, the process builds no classic session. ``token`` is sent as the
    bearer token (kept out of the URL, which is logged)."""
    from pyspark import SparkContext
    from pyspark.sql.connect.client import DefaultChannelBuilder
    from pyspark.sql.connect.session import SparkSession as RemoteSparkSession

    if SparkContext._active_spark_context is not None:
        # What ``builder.remote`` refuses too: the Connect flag below would switch the
        # functions of the classic session already running here to Connect columns.
        raise RuntimeError("a classic Spark session runs in this process; Spark Connect cannot join it")
    channel = DefaultChannelBuilder(url)
    if token is not None:
        channel.set(DefaultChannelBuilder.PARAM_TOKEN, token)
    # What ``SparkSession.builder.remote(url)`` does, with a channel that carries the token:
    # the flag makes ``pyspark.sql.functions`` build Connect columns in this process.
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    remote = RemoteSparkSession.builder.channelBuilder(channel).getOrCreate()
    remote.conf.set("spark.sql.session.timeZone", "UTC")
    log.info("spark connect session ready", extra={"url": url, "version": remote.version})
    return cast("SparkSession", remote)  # the same API; what ``builder.remote`` returns too


def backfill_spark(
    settings: Settings, *, app_name: str | None = None, master: str | None = None
) -> tuple[SparkSession, str]:
    """The session a backfill runs in, and where that is (the CLI says it).

    A one-off Spark session pays the JVM's start and warm-up on every backfill: about half
    of a 1 M event backfill here (docs/benchmarks.md, Spark). With ``backfill_remote``
    ``auto`` (the default) the backfill therefore runs in the streaming job's application
    through its Spark Connect endpoint when one answers, and starts its own session when
    none does (or when ``--master`` asks for a particular cluster); ``local`` always
    starts its own; an ``sc://`` URL must answer.
    """
    choice = settings.spark.backfill_remote
    if master is None and choice != "local":
        explicit = choice.startswith("sc://")
        url = choice if explicit else connect_url(settings)
        # An explicit URL carries its own credentials (``;token=...`` or the
        # SPARK_CONNECT_AUTHENTICATE_TOKEN variable). The stream's endpoint is used only
        # while the token it issued is there (a port held by anything else is never tried)
        # and only on loopback: PySpark wants TLS to send a token anywhere else, which a
        # plain endpoint would answer with minutes of retries.
        token = None if explicit else read_connect_token(settings)
        local = url.startswith("sc://localhost:")
        if explicit and not _answers(url):
            raise SparkUnavailable(f"nothing answers at {url} (spark.backfill_remote)")
        if explicit or (settings.spark.connect_port and token is not None and local and _answers(url)):
            try:
                return remote_spark(url, token), f"the Spark application at {url} (Spark Connect)"
            except Exception as exc:
                # A Spark Connect session switches this process's PySpark into Connect mode;
                # whatever runs next here (the session of our own below) needs classic back.
                os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
                if explicit:
                    raise SparkUnavailable(f"Spark Connect at {url}: {exc}") from exc
                log.warning(
                    "spark connect endpoint unusable, starting a session of its own",
                    extra={"url": url, "error": repr(exc)},
                )
    spark = build_spark(settings, app_name=app_name, master=master)
    return spark, f"a new Spark session ({spark.sparkContext.master})"


def _start(builder: Any, token: str | None) -> SparkSession | None:
    """``builder.getOrCreate()`` with ``token`` in the environment the JVM starts with (None:
    the Spark Connect plugin could not bind its port)."""
    previous = os.environ.get(CONNECT_TOKEN_ENV)
    if token is not None:
        os.environ[CONNECT_TOKEN_ENV] = token
    try:
        return cast("SparkSession", builder.getOrCreate())
    except Exception as exc:
        if token is None or "SparkConnectService" not in str(exc):
            raise
        return None
    finally:  # this process's own Connect clients (if any) must not pick the token up
        if previous is None:
            os.environ.pop(CONNECT_TOKEN_ENV, None)
        else:
            os.environ[CONNECT_TOKEN_ENV] = previous


def build_spark(
    settings: Settings,
    *,
    app_name: str | None = None,
    master: str | None = None,
    kafka: bool = True,
    connect_server: bool = False,
) -> SparkSession:
    """Build (or reuse) the SparkSession configured from settings.

    ``kafka=False`` skips the connector jars for lake-only jobs and unit tests;
    ``connect_server=True`` (the streaming job) also serves Spark Connect
    (:func:`connect_server_conf`).
    """
    from pyspark.sql import SparkSession

    # Python workers must run the same interpreter as the driver (pandas UDFs, venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    spark_conf = settings.spark
    master = master or spark_conf.master
    builder = (
        SparkSession.builder.appName(app_name or spark_conf.app_name)
        .master(master)
        .config("spark.driver.memory", spark_conf.driver_memory)
        .config("spark.sql.shuffle.partitions", str(spark_conf.shuffle_partitions))
        .config("spark.default.parallelism", str(spark_conf.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.ui.enabled", str(spark_conf.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.streaming.stateStore.stateSchemaCheck", "true")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.extraJavaOptions", JVM_OPTIONS)
        .config("spark.executor.extraJavaOptions", JVM_OPTIONS)
    )
    if is_local(master):
        # Shuffle spill stays in the project cache; a cluster worker uses its own local dirs
        # (SPARK_LOCAL_DIRS), which exist on its machine where this path may not.
        builder = builder.config("spark.local.dir", str(settings.cache_dir / "spark-tmp"))
    else:
        for key, value in cluster_conf().items():
            builder = builder.config(key, value)
    if kafka:
        builder = builder.config("spark.jars", ",".join(kafka_jars(settings)))
    connect = connect_server_conf(settings) if connect_server else {}
    for key, value in connect.items():
        builder = builder.config(key, value)
    for key, value in spark_conf.extra_conf.items():
        builder = builder.config(key, value)
    token = new_connect_token() if connect else None
    spark = _start(builder, token)
    if spark is None:
        # The port was free at the probe and taken at the plugin's bind (another stream job
        # starting at the same moment): start without the endpoint, as a taken port does.
        log.warning(
            "spark connect port taken at start; this application serves no Spark Connect endpoint",
            extra={"host": spark_conf.connect_host, "port": spark_conf.connect_port},
        )
        spark = builder.config("spark.plugins", spark_conf.extra_conf.get("spark.plugins", "")).getOrCreate()
    elif token is not None and serves_connect(spark):
        if spark.sparkContext._jvm.java.lang.System.getenv(CONNECT_TOKEN_ENV) == token:  # type: ignore[union-attr]
            publish_connect_token(settings, token)  # backfills may use the endpoint now
        else:  # a JVM started before in this process: it serves with whatever it was given
            log.warning(
                "spark connect endpoint started without this process's token; backfills will not use it"
            )
    spark.sparkContext.setLogLevel("WARN")
    log.info(
        "spark session ready",
        extra={"master": spark.sparkContext.master, "version": spark.version, "kafka": kafka},
    )
    return spark
