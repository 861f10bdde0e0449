"""Deployment files stay true to the code: compose, Prometheus config, Kafka pom."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pyspark
import pytest
import yaml

from cryptopulse.core.settings import Settings, env_var_names, load_settings
from cryptopulse.platform.services import (
    DOCKER_HOSTS,
    PROMETHEUS_CONFIG,
    PROMETHEUS_DOCKER_CONFIG,
    render_prometheus_config,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
SERVICES = COMPOSE["services"]
DEFAULTS = Settings.model_construct()
PROJECT_SERVICES = {"producer", "worker", "spark-streaming", "api", "dashboard"}


def test_prometheus_configs_are_current():
    assert PROMETHEUS_CONFIG.read_text() == render_prometheus_config(DEFAULTS), (
        "run: python -m cryptopulse.platform.services"
    )
    assert PROMETHEUS_DOCKER_CONFIG.read_text() == render_prometheus_config(DEFAULTS, DOCKER_HOSTS)


def test_compose_has_every_component():
    assert {"kafka", "kafka-ui", "redis", "mlflow", "prometheus", "grafana"} | PROJECT_SERVICES <= set(
        SERVICES
    )
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{DEFAULTS.kafka.version}"
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in " ".join(SERVICES).lower()
    assert SERVICES["kafka-ui"]["image"].startswith("ghcr.io/kafbat/kafka-ui")
    bootstrap = SERVICES["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]
    assert bootstrap in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def _host_ports(service: dict) -> set[int]:
    return {int(str(p).split(":")[0]) for p in service.get("ports", [])}


def test_compose_ports_match_settings():
    expected = {
        "kafka": DEFAULTS.kafka.port,
        "redis": DEFAULTS.redis.port,
        "mlflow": DEFAULTS.mlflow.port,
        "prometheus": DEFAULTS.prometheus.port,
        "api": DEFAULTS.api.port,
        "dashboard": DEFAULTS.dashboard.port,
        "worker": DEFAULTS.stream.web_port,
        "producer": DEFAULTS.producer.metrics_port,
        "spark-streaming": DEFAULTS.spark.metrics_port,
    }
    for name, port in expected.items():
        assert port in _host_ports(SERVICES[name]), f"{name} should publish {port}"


def test_compose_variables_are_real_settings_and_valid(monkeypatch):
    known = env_var_names()
    for name in PROJECT_SERVICES:
        env = SERVICES[name]["environment"]
        unknown = {k for k in env if k.startswith("CRYPTOPULSE_")} - known
        assert not unknown, f"{name}: not a setting: {unknown}"
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        settings = load_settings()
        assert settings.kafka.bootstrap == "kafka:19092"
        assert settings.redis.dsn == "redis://redis:6379/0"
        assert settings.mlflow.uri == "http://mlflow:5000"
        for key in env:
            monkeypatch.delenv(key)


def test_compose_project_services_match_scrape_hosts():
    for job, host in DOCKER_HOSTS.items():
        assert host in SERVICES, f"prometheus scrapes {host} for {job} but compose has no such service"


def test_compose_project_commands_exist():
    from typer.main import get_command

    from cryptopulse.cli.main import app

    cli = get_command(app)
    for name in PROJECT_SERVICES:
        words = SERVICES[name]["command"]
        command = cli
        for word in words:
            assert hasattr(command, "commands") and word in command.commands, (
                f"compose service {name} runs `cryptopulse {' '.join(words)}`, which does not exist"
            )
            command = command.commands[word]


def _pom_property(pom: Path, name: str) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find(f"m:properties/m:{name}", ns)
    assert node is not None and node.text
    return node.text


def test_kafka_pom_matches_settings():
    assert _pom_property(ROOT / "deploy/kafka/pom.xml", "kafka.version") == DEFAULTS.kafka.version


def test_spark_connector_matches_pyspark():
    assert _pom_property(ROOT / "deploy/spark/pom.xml", "spark.version") == pyspark.__version__


def test_no_machine_paths_committed():
    for path in [ROOT / "docker-compose.kafka.yml", *ROOT.glob("deploy/**/*.yml")]:
        assert not re.search(r"/root/|/home/\w+/|/work/", path.read_text()), path
