"""The Prometheus alerting rules: valid, about metrics that exist, and firing when they should."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = Path(__file__).with_name("prometheus_rules_test.yml")

pytestmark = pytest.mark.unit


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool missing: scripts/setup installs it with the Debian prometheus package"
    return found


def defined_metrics() -> set[str]:
    """Every cryptopulse_* metric family the components register."""
    import api.metrics  # noqa: F401
    import producers.metrics  # noqa: F401
    import stream_processors.metrics  # noqa: F401
    from cryptopulse.platform.events import RestartCounter
    from retraining.service import Metrics as RetrainMetrics
    from spark_jobs.metrics import SparkMetrics

    spark = CollectorRegistry()
    SparkMetrics(registry=spark)
    supervisor = CollectorRegistry()
    with tempfile.TemporaryDirectory() as folder:
        RestartCounter(Path(folder) / "restarts.json", supervisor)
    retrain = RetrainMetrics().registry
    families = [*REGISTRY.collect(), *spark.collect(), *supervisor.collect(), *retrain.collect()]
    return {f.name for f in families if f.name.startswith("cryptopulse_")}


def test_every_rule_is_about_a_metric_the_code_defines() -> None:
    # metric names, not label names (``cryptopulse_kind:`` routes an alert to subscribers)
    referenced = set(re.findall(r"cryptopulse_[a-z0-9_]+(?!\w|:)", RULES.read_text()))
    assert referenced, "no cryptopulse metric in the rules"
    suffixes = re.compile(r"_(total|bucket|count|sum)$")
    defined = defined_metrics()
    missing = sorted(name for name in referenced if suffixes.sub("", name) not in defined)
    assert not missing, f"rules use metrics no component defines: {missing}"


def test_rules_are_valid() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_fire_as_specified(tmp_path: Path) -> None:
    shutil.copyfile(RULES, tmp_path / "alerts.yml")
    shutil.copyfile(RULE_TESTS, tmp_path / "rules_test.yml")
    result = subprocess.run(
        [promtool(), "test", "rules", "rules_test.yml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
