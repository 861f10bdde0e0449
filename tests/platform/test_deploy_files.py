"""Deployment files stay true to the code and hardened: compose, Dockerfile, Prometheus config, poms.

There is no Docker engine here, so the compose file is read the way ``docker compose config``
reads it: YAML with ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` interpolated from an
environment (``compose_config``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyspark
import pytest
import yaml

from core.settings import Settings, env_var_names, load_settings
from cryptopulse.platform.services import (
    DOCKER_HOSTS,
    MLFLOW_AUTH_CONFIG,
    PROMETHEUS_CONFIG,
    PROMETHEUS_DOCKER_CONFIG,
    render_mlflow_auth_ini,
    render_prometheus_config,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.kafka.yml").read_text()
CLUSTER_TEXT = (ROOT / "docker-compose.kafka-cluster.yml").read_text()
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
DEFAULTS = Settings.model_construct()
PROJECT_SERVICES = {"producer", "worker", "spark-streaming", "api", "dashboard", "model-init", "alerting"}
PUBLISHED = {"api": DEFAULTS.api.port, "dashboard": DEFAULTS.dashboard.port}
TOOLS = {"kafka-ui", "grafana"}
REDIS_PASSWORD = "0f1e2d3c4b5a"  # pragma: allowlist secret
MLFLOW_ADMIN_PASSWORD = "admin-5e1f0c2d9a7b"  # pragma: allowlist secret
MLFLOW_READER_PASSWORD = "reader-8c3b6a1e4f2d"  # pragma: allowlist secret
AUTHOR_SALT = "salt-6d2b9e1f"  # pragma: allowlist secret
COMPOSE_ENV = {
    "CRYPTOPULSE_REDIS_PASSWORD": REDIS_PASSWORD,
    "CRYPTOPULSE_DASHBOARD__API_KEY": "cp_dash",
    "CRYPTOPULSE_MLFLOW__ADMIN_PASSWORD": MLFLOW_ADMIN_PASSWORD,
    "CRYPTOPULSE_MLFLOW__READER_PASSWORD": MLFLOW_READER_PASSWORD,
    "CRYPTOPULSE_STREAM__AUTHOR_SALT": AUTHOR_SALT,
}

_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(ValueError):
    """A ``${VAR:?message}`` variable is unset (compose refuses the whole file)."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation (the subset the compose file uses)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        if op in (":-", ":?") and not value:
            value = None
        if value is not None:
            return value
        if op and op.endswith("?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op else ""

    return _VARIABLE.sub(replace, text)


def compose_config(env: Mapping[str, str] = COMPOSE_ENV, *, cluster: bool = False) -> dict[str, Any]:
    """The compose file as ``docker compose config`` sees it; with ``cluster``, merged with the
    3-broker override the way compose merges ``-f`` files (``merge``)."""
    config: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE_TEXT, env))
    if cluster:
        override = yaml.safe_load(interpolate(CLUSTER_TEXT, env))
        config = merge(config, {k: v for k, v in override.items() if not k.startswith("x-")})
    return config


def _mount_target(volume: str) -> str:
    return volume.split(":")[1]


def merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's merge of an override file (the rules the override uses): mappings merge key
    by key, ``volumes`` by mount target, other sequences append new items, scalars replace."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list):
        if key == "volumes":
            targets = {_mount_target(v) for v in override}
            return [v for v in base if _mount_target(v) not in targets] + override
        return base + [item for item in override if item not in base]
    return override


COMPOSE = compose_config()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
RAW_SERVICES: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_TEXT)["services"]


def test_interpolation_follows_compose_rules():
    assert interpolate("${A:-x} ${B} $${C} ${D:?need D}", {"A": "", "D": "d"}) == "x  ${C} d"
    with pytest.raises(MissingVariable, match="need D"):
        interpolate("${D:?need D}", {})


def _compose_cli() -> list[str] | None:
    """``docker compose`` (v2 plugin) or ``docker-compose``; either validates offline."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_compose_file_validates_with_docker_compose(tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose client")
    no_dotenv = tmp_path / "empty.env"  # a developer's .env must not decide the outcome
    no_dotenv.write_text("")
    compose = ROOT / "docker-compose.kafka.yml"
    base = [*cli, "--env-file", str(no_dotenv), "-f", str(compose), "--profile", "tools", "config", "-q"]
    env = {"PATH": "/usr/bin:/bin", **COMPOSE_ENV}
    ok = subprocess.run(base, capture_output=True, text=True, env=env, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    cluster = [*base[:-4], "-f", str(ROOT / "docker-compose.kafka-cluster.yml"), *base[-4:]]
    merged = subprocess.run(cluster, capture_output=True, text=True, env=env, cwd=ROOT)
    assert merged.returncode == 0, merged.stderr
    refused = subprocess.run(base, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, cwd=ROOT)
    assert refused.returncode != 0 and "CRYPTOPULSE_REDIS_PASSWORD" in refused.stderr


def test_prometheus_configs_are_current():
    assert PROMETHEUS_CONFIG.read_text() == render_prometheus_config(DEFAULTS), (
        "run: python -m cryptopulse.platform.services"
    )
    assert PROMETHEUS_DOCKER_CONFIG.read_text() == render_prometheus_config(DEFAULTS, DOCKER_HOSTS)


def test_compose_has_every_component():
    components = {"kafka", "kafka-ui", "redis", "mlflow", "prometheus", "grafana", "alertmanager"}
    assert components | PROJECT_SERVICES <= set(SERVICES)
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{DEFAULTS.kafka.version}"
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in " ".join(SERVICES).lower()
    assert SERVICES["kafka-ui"]["image"].startswith("ghcr.io/kafbat/kafka-ui:")
    bootstrap = SERVICES["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]
    assert bootstrap in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_images_are_pinned():
    for name, service in SERVICES.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag not in ("latest", "main", "master"), f"{name}: {image} is not pinned"


def test_only_api_and_dashboard_publish_ports_on_loopback():
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published - TOOLS == set(PUBLISHED)
    for name, port in PUBLISHED.items():
        assert SERVICES[name]["ports"] == [f"127.0.0.1:{port}:{port}"]
    api_port = DEFAULTS.api.port
    assert RAW_SERVICES["api"]["ports"] == [f"${{CRYPTOPULSE_PUBLISH_HOST:-127.0.0.1}}:{api_port}:{api_port}"]
    public = compose_config({**COMPOSE_ENV, "CRYPTOPULSE_PUBLISH_HOST": "0.0.0.0"})["services"]
    assert public["api"]["ports"] == [f"0.0.0.0:{api_port}:{api_port}"]
    # the dashboard has no login of its own: it never leaves loopback
    assert public["dashboard"]["ports"] == SERVICES["dashboard"]["ports"]


def test_everything_else_stays_on_the_internal_network():
    assert COMPOSE["networks"]["backend"]["internal"] is True
    for name in (
        "kafka",
        "redis",
        "mlflow",
        "mlflow-accounts",
        "prometheus",
        "producer",
        "worker",
        "spark-streaming",
        "model-init",
        "alerting",
        "alertmanager",
    ):
        assert "ports" not in SERVICES[name], f"{name} must not publish ports"
        # alerting also joins edge, for its outbound webhooks (test_alerting_and_alertmanager_stay_internal)
        internal = ["backend", "edge"] if name == "alerting" else ["backend"]
        assert SERVICES[name]["networks"] == internal, f"{name} belongs on the internal network only"
    assert "backend" not in SERVICES["dashboard"]["networks"], "the dashboard reads the API only"


def test_container_ports_match_settings():
    expected = {
        "kafka": "19092",
        "redis": str(DEFAULTS.redis.port),
        "mlflow": str(DEFAULTS.mlflow.port),
        "prometheus": str(DEFAULTS.prometheus.port),
        "worker": str(DEFAULTS.stream.web_port),
        "producer": str(DEFAULTS.producer.metrics_port),
        "spark-streaming": str(DEFAULTS.spark.metrics_port),
        "alerting": str(DEFAULTS.alerting.port),
        "alertmanager": str(DEFAULTS.alerting.alertmanager_port),
    }
    for name, port in expected.items():
        assert SERVICES[name]["expose"] == [port], f"{name} should expose {port}"


def test_tools_are_opt_in_loopback_and_read_only():
    for name in TOOLS:
        assert SERVICES[name]["profiles"] == ["tools"], f"{name} must be opt-in"
        for port in SERVICES[name]["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    ui = SERVICES["kafka-ui"]["environment"]
    assert ui["KAFKA_CLUSTERS_0_READONLY"] == "true"
    assert ui.get("DYNAMIC_CONFIG_ENABLED", "false") == "false"
    grafana = SERVICES["grafana"]["environment"]
    assert grafana.get("GF_AUTH_ANONYMOUS_ENABLED", "false") == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in grafana


def test_redis_requires_a_password():
    with pytest.raises(MissingVariable, match="CRYPTOPULSE_REDIS_PASSWORD"):
        compose_config({})
    redis = SERVICES["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == REDIS_PASSWORD
    # the healthcheck authenticates (redis-cli reads REDISCLI_AUTH)
    assert redis["environment"]["REDISCLI_AUTH"] == REDIS_PASSWORD
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    on_backend = {name for name in PROJECT_SERVICES if "backend" in SERVICES[name]["networks"]}
    assert on_backend == PROJECT_SERVICES - {"dashboard"}
    for name in on_backend:
        url = SERVICES[name]["environment"]["CRYPTOPULSE_REDIS__URL"]
        assert url == f"redis://:{REDIS_PASSWORD}@redis:6379/0", name
    assert "CRYPTOPULSE_REDIS__URL" not in SERVICES["dashboard"]["environment"]


def test_compose_variables_are_real_settings_and_valid(monkeypatch):
    known = env_var_names()
    for name in PROJECT_SERVICES:
        env = SERVICES[name]["environment"]
        unknown = {k for k in env if k.startswith("CRYPTOPULSE_")} - known
        assert not unknown, f"{name}: not a setting: {unknown}"
        with monkeypatch.context() as scoped:
            for key, value in env.items():
                scoped.setenv(key, str(value))
            settings = load_settings()
        assert settings.env == "prod"
        assert settings.api.auth_enabled, f"{name}: prod runs the API with keys"
        if "CRYPTOPULSE_REDIS__URL" in env:
            assert settings.kafka.bootstrap == "kafka:19092"
            assert settings.redis.dsn == f"redis://:{REDIS_PASSWORD}@redis:6379/0"
            assert settings.mlflow.uri == "http://mlflow:5000"
    dashboard = SERVICES["dashboard"]["environment"]
    assert RAW_SERVICES["dashboard"]["environment"]["CRYPTOPULSE_DASHBOARD__API_KEY"] == (
        "${CRYPTOPULSE_DASHBOARD__API_KEY:-}"
    )
    assert dashboard["CRYPTOPULSE_DASHBOARD__API_URL"] == f"http://api:{DEFAULTS.api.port}"


def test_mlflow_runs_basic_auth_without_default_secrets():
    for variable in ("CRYPTOPULSE_MLFLOW__ADMIN_PASSWORD", "CRYPTOPULSE_MLFLOW__READER_PASSWORD"):
        with pytest.raises(MissingVariable, match=variable):
            compose_config({k: v for k, v in COMPOSE_ENV.items() if k != variable})
    mlflow = SERVICES["mlflow"]
    script = " ".join(mlflow["command"])
    assert "exec mlflow server --app-name basic-auth" in script
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat /mlflow/flask-secret-key)" in script, "compose's $$ escape"
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == MLFLOW_ADMIN_PASSWORD
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_USERNAME"] == "admin"
    config = mlflow["environment"]["MLFLOW_AUTH_CONFIG_PATH"]
    assert f"./deploy/mlflow/basic_auth.ini:{config}:ro" in mlflow["volumes"]
    assert MLFLOW_AUTH_CONFIG.read_text() == render_mlflow_auth_ini(
        "sqlite:////mlflow/basic_auth.db", "admin"
    )
    ini = MLFLOW_AUTH_CONFIG.read_text()
    assert "default_permission = READ" in ini and "admin_password" not in ini
    # the auth database is in the volume, so the admin and the reader survive a restart
    assert "mlflow-data:/mlflow" in mlflow["volumes"]


def _settings_of(service: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    with monkeypatch.context() as scoped:
        for key, value in SERVICES[service]["environment"].items():
            scoped.setenv(key, str(value))
        return load_settings()


def test_services_read_the_registry_and_only_the_model_cli_writes(monkeypatch):
    for name in PROJECT_SERVICES - {"dashboard", "model-init"}:
        account = _settings_of(name, monkeypatch).mlflow
        assert account.username == "cryptopulse-reader", name
        assert account.password is not None and account.password.get_secret_value() == MLFLOW_READER_PASSWORD
        assert SERVICES[name]["depends_on"]["mlflow-accounts"] == {
            "condition": "service_completed_successfully"
        }
    gate = _settings_of("model-init", monkeypatch).mlflow
    assert gate.username == "admin" and gate.password is not None
    assert gate.password.get_secret_value() == MLFLOW_ADMIN_PASSWORD
    accounts = _settings_of("mlflow-accounts", monkeypatch)
    assert accounts.env == "prod" and accounts.mlflow.uri == "http://mlflow:5000"
    assert accounts.mlflow.admin_password is not None and accounts.mlflow.reader_password is not None
    assert accounts.mlflow.reader_password.get_secret_value() == MLFLOW_READER_PASSWORD
    assert "ensure_reader_account" in " ".join(SERVICES["mlflow-accounts"]["entrypoint"])
    assert SERVICES["mlflow-accounts"]["restart"] == "no"
    assert "CRYPTOPULSE_MLFLOW__USERNAME" not in SERVICES["dashboard"]["environment"]


def test_spark_checkpoints_outlive_the_container():
    assert "spark-data:/data" in SERVICES["spark-streaming"]["volumes"]


def test_model_init_runs_once_before_the_pipeline():
    init = SERVICES["model-init"]
    assert init["command"] == ["model", "ensure-default"]
    assert init["restart"] == "no"
    assert init["build"]["args"]["INSTALL_TRAIN"] == "1", "training needs the image with torch"
    assert init["image"] != SERVICES["api"]["image"]
    for name in PROJECT_SERVICES - {"model-init", "dashboard"}:
        dependency = SERVICES[name]["depends_on"]["model-init"]
        assert dependency == {"condition": "service_completed_successfully"}, name
    assert SERVICES["dashboard"]["depends_on"]["api"] == {"condition": "service_healthy"}
    assert "healthcheck" in SERVICES["api"]


def test_compose_project_services_match_scrape_hosts():
    for job, host in DOCKER_HOSTS.items():
        assert host in SERVICES, f"prometheus scrapes {host} for {job} but compose has no such service"
    # every scraped project service binds its /metrics beyond loopback (the network is internal)
    assert SERVICES["worker"]["environment"]["CRYPTOPULSE_STREAM__WEB_HOST"] == "0.0.0.0"
    assert SERVICES["producer"]["environment"]["CRYPTOPULSE_PRODUCER__METRICS_HOST"] == "0.0.0.0"
    assert SERVICES["spark-streaming"]["environment"]["CRYPTOPULSE_SPARK__METRICS_HOST"] == "0.0.0.0"
    scraped = yaml.safe_load(PROMETHEUS_DOCKER_CONFIG.read_text())["scrape_configs"]
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in scraped if "static_configs" in job
    }
    assert targets["producers"] == [f"producer:{DEFAULTS.producer.metrics_port}"]
    assert targets["spark-streaming"] == [f"spark-streaming:{DEFAULTS.spark.metrics_port}"]


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


def _instructions(name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in DOCKERFILE.splitlines() if line.startswith(f"{name} ")]


def test_image_runs_as_an_unprivileged_user():
    users = _instructions("USER")
    assert users, "the image must not run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert re.search(rf"useradd\b.*--uid {user}\b", DOCKERFILE)
    assert re.search(r"chown [\w:]+ /data /cache", DOCKERFILE), "/data and /cache belong to the user"
    assert DOCKERFILE.index("USER ") > DOCKERFILE.rindex("RUN "), "nothing runs as root after USER"
    assert _instructions("ARG") == ["INSTALL_TRAIN=0"], "serving image by default, training opt-in"


TRAINING_ONLY = ("torch", "nvidia-", "cuda-", "triton", "optimum", "sentence-transformers")


def _serving_requirements(lock: str) -> list[str]:
    """The Dockerfile's awk filter of the lock, run in Python: whole entries are kept or dropped."""
    match = re.search(r"skip = \(\$0 ~ /(.+?)/\)", DOCKERFILE)
    assert match, "the serving image filters requirements/lock.txt with awk"
    dropped = re.compile(match.group(1))
    kept, skip = [], False
    for line in lock.splitlines():
        if re.match(r"[^ #]", line):
            skip = bool(dropped.match(line))
        if not skip:
            kept.append(line)
    joined = "\n".join(kept).replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_serving_image_installs_whole_hashed_pins_without_torch():
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    assert re.search(r"^torch==", lock, re.MULTILINE), "the lock has the train extra"
    requirements = _serving_requirements(lock)
    pin = re.compile(r"^([A-Za-z0-9._-]+)==\S+(?:\s+--hash=sha256:[0-9a-f]{64})+\s*$")
    names = set()
    for requirement in requirements:
        parsed = pin.match(requirement)
        assert parsed, f"not one whole hashed pin: {requirement[:120]}"
        names.add(parsed.group(1).lower())
    assert {"onnxruntime", "mlflow", "fastapi", "pyspark"} <= names
    assert not {name for name in names if name.startswith(TRAINING_ONLY)}
    assert "--require-hashes" in DOCKERFILE


def test_dockerignore_keeps_secrets_and_local_state_out():
    entries = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    required = {".env", "**/.env", ".venv", ".git", "**/__pycache__", ".cache", ".pytest_cache"}
    required |= {".mypy_cache", ".cryptopulse", "mlruns", "*.onnx", "bench/results"}
    assert required <= entries, f"missing: {required - entries}"
    # the one re-inclusion: the bundled default model (a manifest-verified data file, no secret)
    assert {entry for entry in entries if entry.startswith("!")} == {"!models/default/artifact/model.onnx"}
    assert not {"data", "data/", "deploy", "requirements"} & entries, "the build needs these"


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
    """Deploy files, docs and the bundled model's JSON (its config names working directories)."""
    paths = [
        *ROOT.glob("docker-compose*.yml"),
        *ROOT.glob("deploy/**/*.yml"),
        *ROOT.glob("docs/**/*.md"),
        ROOT / "README.md",
        *ROOT.glob("models/default/**/*.json"),
        *ROOT.glob("producers/data/**/*.md"),
    ]
    assert any(p.match("models/default/bundle.json") for p in paths)
    for path in paths:
        assert not re.search(r"/root/|/home/\w+/|/work/", path.read_text("utf-8")), path


def test_the_worker_scales_to_n_replicas(monkeypatch):
    """`up --scale worker=N`: nothing about the worker may be unique to one container."""
    worker = SERVICES["worker"]
    assert not {"container_name", "ports", "hostname"} & set(worker), "fixed names/ports block --scale"
    assert "container_name" not in " ".join(RAW_SERVICES), "no service pins a container name"
    # replicas share one salt (from .env), or each would hash the same author differently
    assert RAW_SERVICES["worker"]["environment"]["CRYPTOPULSE_STREAM__AUTHOR_SALT"].startswith(
        "${CRYPTOPULSE_STREAM__AUTHOR_SALT:?"
    )
    with pytest.raises(MissingVariable, match="CRYPTOPULSE_STREAM__AUTHOR_SALT"):
        compose_config({k: v for k, v in COMPOSE_ENV.items() if k != "CRYPTOPULSE_STREAM__AUTHOR_SALT"})
    salt = _settings_of("worker", monkeypatch).stream.author_salt
    assert salt is not None and salt.get_secret_value() == AUTHOR_SALT
    # partitions bound how many workers share a topic: .env raises them for every service
    from schemas.topics import CLEAN_POSTS, FEEDBACK, RAW_NEWS, RAW_PRICES, RAW_REDDIT, SCORED_POSTS

    assert _settings_of("worker", monkeypatch).kafka.default_partitions == 3
    wide = compose_config({**COMPOSE_ENV, "CRYPTOPULSE_KAFKA__DEFAULT_PARTITIONS": "8"})["services"]
    assert wide["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == "8"
    for name in PROJECT_SERVICES - {"dashboard"}:
        with monkeypatch.context() as scoped:
            for key, value in wide[name]["environment"].items():
                scoped.setenv(key, str(value))
            settings = load_settings()
        for spec in (RAW_REDDIT, RAW_NEWS, RAW_PRICES, CLEAN_POSTS, SCORED_POSTS, FEEDBACK):
            assert spec.partition_count(settings) == 8, f"{name}: {spec.suffix}"
    docs = (ROOT / "docs" / "platform.md").read_text()
    assert "--scale worker=" in docs and "CRYPTOPULSE_KAFKA__DEFAULT_PARTITIONS" in docs


CLUSTER = compose_config(cluster=True)
BROKERS = ("kafka", "kafka-2", "kafka-3")


def test_cluster_override_runs_three_kraft_brokers():
    services = CLUSTER["services"]
    voters = {f"{i}@{name}:9093" for i, name in enumerate(BROKERS, start=1)}
    cluster_ids = set()
    for node, name in enumerate(BROKERS, start=1):
        broker = services[name]
        env = broker["environment"]
        assert broker["image"] == SERVICES["kafka"]["image"], name
        assert env["KAFKA_NODE_ID"] == str(node), name
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, name
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:19092", name
        for key in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"):
            assert env[key] == "3", f"{name}: {key}"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2", name
        assert broker["networks"] == ["backend"] and "ports" not in broker, name
        assert broker["volumes"] == [f"kafka-cluster-{node}:/var/lib/kafka/data"], "own log dir per broker"
        assert "healthcheck" in broker, name
        cluster_ids.add(env["CLUSTER_ID"])
    assert len(cluster_ids) == 1, "every broker formats with the same cluster id"
    assert {"kafka-cluster-1", "kafka-cluster-2", "kafka-cluster-3"} <= set(CLUSTER["volumes"])
    ui = services["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]
    assert set(ui.split(",")) == {f"{name}:19092" for name in BROKERS}


def test_cluster_override_replicates_every_topic_three_times(monkeypatch):
    """Every project service that talks to Kafka gets all three brokers and RF 3 through its
    environment (core.kafka.ensure_topics and faust create topics with the setting)."""
    services = CLUSTER["services"]
    talkers = {
        name
        for name, s in SERVICES.items()
        if "CRYPTOPULSE_KAFKA__BOOTSTRAP_SERVERS" in s.get("environment", {})
    }
    assert talkers == PROJECT_SERVICES - {"dashboard"}
    for name in talkers:
        with monkeypatch.context() as scoped:
            for key, value in services[name]["environment"].items():
                scoped.setenv(key, str(value))
            settings = load_settings()
        assert settings.kafka.replication_factor == 3, name
        assert set(settings.kafka.bootstrap.split(",")) == {f"{b}:19092" for b in BROKERS}, name
        assert settings.redis.dsn == f"redis://:{REDIS_PASSWORD}@redis:6379/0", f"{name}: base env kept"
        for broker in BROKERS:
            assert services[name]["depends_on"][broker] == {"condition": "service_healthy"}, name
    # the base file alone keeps one broker and RF 1
    assert "kafka-2" not in SERVICES
    assert _settings_of("worker", monkeypatch).kafka.replication_factor == 1


def test_cluster_override_keeps_the_hardening():
    services = CLUSTER["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published - TOOLS == set(PUBLISHED)
    for name in published:
        assert services[name]["ports"] == SERVICES[name]["ports"], f"{name}: the override publishes nothing"
    assert CLUSTER["networks"] == COMPOSE["networks"]


def test_alerting_and_alertmanager_stay_internal():
    alerting = SERVICES["alerting"]
    assert alerting["command"] == ["alerting", "serve"]
    assert alerting["image"] == SERVICES["api"]["image"], "the app image"
    assert alerting["environment"]["CRYPTOPULSE_ALERTING__PORT"] == str(DEFAULTS.alerting.port)
    assert alerting["environment"]["CRYPTOPULSE_ALERTING__HOST"] == "0.0.0.0"  # nosec B104 # in its container
    assert alerting["networks"] == ["backend", "edge"] and "ports" not in alerting
    manager = SERVICES["alertmanager"]
    repository, _, tag = manager["image"].rpartition(":")
    assert repository == "prom/alertmanager" and re.fullmatch(r"v\d+\.\d+\.\d+", tag)
    assert manager["networks"] == ["backend"] and "ports" not in manager
    config = "/etc/alertmanager/alertmanager.yml"
    assert f"./deploy/alertmanager/alertmanager.docker.yml:{config}:ro" in manager["volumes"]
    receiver = (ROOT / "deploy/alertmanager/alertmanager.docker.yml").read_text()
    assert f"http://alerting:{DEFAULTS.alerting.port}/alertmanager" in receiver
    assert f"--config.file={config}" in manager["command"]
    assert f"--web.listen-address=:{DEFAULTS.alerting.alertmanager_port}" in manager["command"]
    assert "alertmanager-data" in COMPOSE["volumes"]
