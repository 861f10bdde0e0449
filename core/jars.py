"""Fetch JVM jars from Maven Central into the project cache, once.

Apache Kafka (the real broker, main class ``kafka.Kafka``) and Spark's Kafka
connector are resolved by Maven from the poms in ``deploy/``; Maven's own local
repository (``~/.m2``) caches downloads across clones, and the copied jar folder is
reused as long as it is complete (a marker file is written last).

``python -m core.jars`` fetches both; the setup script calls it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
SPARK_POM = REPO_ROOT / "deploy" / "spark" / "pom.xml"
MARKER = ".complete"


class JarFetchError(RuntimeError):
    pass


def _fetch(pom: Path, target: Path, properties: dict[str, str]) -> Path:
    if (target / MARKER).is_file():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarFetchError("Maven (mvn) is not installed; run scripts/setup first")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
        *(f"-D{key}={value}" for key, value in properties.items()),
    ]
    log.info("fetching jars from Maven Central", extra={"pom": str(pom), "target": str(target)})
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # nosec B603 # mvn with our own pom and cache paths, no shell
    if result.returncode != 0:
        raise JarFetchError(f"mvn failed for {pom.name}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    (staging / MARKER).write_text("ok\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def kafka_libs(settings: Settings) -> Path:
    """Folder of the Kafka broker's jars for ``settings.kafka.version``, fetched if missing."""
    target = settings.cache_dir / "jars" / f"kafka-{settings.kafka.version}"
    return _fetch(KAFKA_POM, target, {"kafka.version": settings.kafka.version})


def spark_kafka_libs(settings: Settings) -> Path:
    """Folder of Spark's Kafka connector jars, version matched to the installed pyspark."""
    import pyspark

    version = pyspark.__version__
    target = settings.cache_dir / "jars" / f"spark-sql-kafka-{version}"
    return _fetch(SPARK_POM, target, {"spark.version": version})


def main() -> int:
    settings = get_settings()
    try:
        for fetch in (kafka_libs, spark_kafka_libs):
            path = fetch(settings)
            sys.stdout.write(f"jars ready: {path} ({len(list(path.glob('*.jar')))} jars)\n")
    except JarFetchError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
