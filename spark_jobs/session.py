"""One place that builds the SparkSession, so every job is sized the same way.

Sizing comes from ``settings.spark`` (``local[2]``, few shuffle partitions, driver
memory); on a cluster pass ``--master`` (or ``CRYPTOPULSE_SPARK__MASTER``) and the same
job runs unchanged. The Kafka connector jars are fetched once into the cache by
:func:`core.jars.spark_kafka_libs` and handed over through
``spark.jars``, so nothing is resolved from Ivy at runtime.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

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


def build_spark(
    settings: Settings, *, app_name: str | None = None, master: str | None = None, kafka: bool = True
) -> SparkSession:
    """Build (or reuse) the SparkSession configured from settings.

    ``kafka=False`` skips the connector jars for lake-only jobs and unit tests.
    """
    from pyspark.sql import SparkSession

    # Python workers must run the same interpreter as the driver (pandas UDFs, venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    spark_conf = settings.spark
    builder = (
        SparkSession.builder.appName(app_name or spark_conf.app_name)
        .master(master or spark_conf.master)
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
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.local.dir", str(settings.cache_dir / "spark-tmp"))
    )
    if kafka:
        builder = builder.config("spark.jars", ",".join(kafka_jars(settings)))
    for key, value in spark_conf.extra_conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info(
        "spark session ready",
        extra={"master": spark.sparkContext.master, "version": spark.version, "kafka": kafka},
    )
    return spark
