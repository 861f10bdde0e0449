"""The local platform's services: how each is prepared, started, probed and versioned.

Every service runs under the home's supervisord (see :mod:`.supervisor`; no Docker engine
needed), binds to loopback, keeps its state under ``settings.home`` and is sized for a
2-core, 24 GB machine. Readiness is always a real protocol probe.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

import httpx
import redis
import yaml

from core.jars import REPO_ROOT, kafka_libs
from core.kafka import broker_ready
from core.redact import mask_url_credentials
from core.settings import Settings

DEPLOY = REPO_ROOT / "deploy"


class ServiceError(RuntimeError):
    """A service cannot be prepared or started; the message says what to do."""


class Service(ABC):
    """One managed process."""

    name: str
    description: str
    start_secs: int = 10
    """A process that exits sooner than this after its start is a failed start: supervisord
    retries it with backoff (1 s, 2 s, ...) and gives up after ``supervisor.start_retries``."""
    stop_timeout_s: int = 30
    """SIGTERM, then this long before supervisord kills the process tree."""
    stop_as_group: bool = True
    """SIGTERM the whole process group at once; False: the main process alone first, so it
    can shut its own children down in order (the tree is still killed after the timeout)."""
    reaps_orphans: bool = False
    """Start through ``cryptopulse.platform.orphans``: a server whose work runs in children
    that outlive a SIGKILLed parent (holding the port) gets them stopped before a restart."""
    needs: tuple[str, ...] = ()
    """Services that must answer before this one starts, when both start in one ``up``
    (each component also waits and retries on its own, which covers a later outage)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    @abstractmethod
    def host(self) -> str: ...

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state_dir(self) -> Path:
        return self.settings.home / self.name

    @property
    def log_path(self) -> Path:
        return self.settings.log_dir / f"{self.name}.log"

    def prepare(self) -> None:
        """Create state and config before the first start; idempotent."""
        self.state_dir.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def argv(self) -> list[str]: ...

    def env(self) -> dict[str, str]:
        return {}

    @abstractmethod
    def ready(self) -> bool:
        """A real protocol probe; must return quickly."""

    @abstractmethod
    def version(self) -> str: ...


def _require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        raise ServiceError(f"{name} not found: install the Debian package '{package}' (scripts/setup does)")
    return path


def _command_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)  # nosec B603 # version probes of installed tools, fixed argv
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


class KafkaService(Service):
    """Apache Kafka 4.x, one combined broker+controller node in KRaft mode."""

    name = "kafka"
    description = "Apache Kafka broker (KRaft)"
    start_secs = 20  # a broker that cannot use its storage or ports exits after ~10 s

    @property
    def host(self) -> str:
        return self.settings.kafka.host

    @property
    def port(self) -> int:
        return self.settings.kafka.port

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    def server_properties(self) -> dict[str, str]:
        k = self.settings.kafka
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{k.host}:{k.controller_port}",
            "listeners": f"PLAINTEXT://{k.host}:{k.port},CONTROLLER://{k.host}:{k.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{k.host}:{k.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(k.default_partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.hours": "168",
            "log.segment.bytes": str(256 * 1024 * 1024),
            "auto.create.topics.enable": "false",
        }

    def _kafka_java(self) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise ServiceError("java not found: install a JDK 17+ (Debian 'openjdk-17-jre-headless')")
        return [
            java,
            f"-Xms{self.settings.kafka.heap}",
            f"-Xmx{self.settings.kafka.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:MaxMetaspaceSize=256m",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={DEPLOY / 'kafka' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.settings.log_dir}",
            "-cp",
            f"{self.libs}/*",
        ]

    @cached_property
    def libs(self) -> Path:
        return kafka_libs(self.settings)

    def prepare(self) -> None:
        super().prepare()
        self.config_path.write_text(
            "# generated by cryptopulse from settings; edits are overwritten\n"
            + "".join(f"{key}={value}\n" for key, value in self.server_properties().items()),
            "utf-8",
        )
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_id = self._random_cluster_id()
        result = subprocess.run(  # nosec B603 # Kafka's storage tool with our config and a generated cluster id
            [
                *self._kafka_java(),
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(self.config_path),
                "--standalone",
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def _random_cluster_id(self) -> str:
        """A random cluster id as Kafka's ``Uuid.randomUuid`` makes them: URL-safe base64 that
        never starts with ``-``, which the storage tool would read as an option (1 id in 64)."""
        import base64

        while True:
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            if not cluster_id.startswith("-"):
                return cluster_id

    def argv(self) -> list[str]:
        return [*self._kafka_java(), "kafka.Kafka", str(self.config_path)]

    def ready(self) -> bool:
        return broker_ready(self.settings, timeout_s=2.0)

    def version(self) -> str:
        return self.settings.kafka.version


class RedisService(Service):
    """Redis with AOF persistence: it holds the materialized views."""

    name = "redis"
    description = "Redis (materialized views, rate limits, API keys)"

    @property
    def host(self) -> str:
        return self.settings.redis.host

    @property
    def port(self) -> int:
        return self.settings.redis.port

    @property
    def url(self) -> str:
        # Shown by `cryptopulse up` and `status`: never with the password.
        return mask_url_credentials(self.settings.redis.dsn)

    def argv(self) -> list[str]:
        return [
            _require_binary("redis-server", "redis-server"),
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.state_dir),
            "--daemonize",
            "no",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory",
            self.settings.redis.maxmemory,
            "--maxmemory-policy",
            "noeviction",
            "--protected-mode",
            "yes",
            # The title rewrite would overwrite the environment that names the process's owner.
            "--set-proc-title",
            "no",
        ]

    def _client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def ready(self) -> bool:
        try:
            return bool(self._client().ping())
        except redis.RedisError:
            return False

    def version(self) -> str:
        try:
            return str(self._client().info("server")["redis_version"])
        except redis.RedisError:
            return _command_version([_require_binary("redis-server", "redis-server"), "--version"])


MLFLOW_AUTH_APP = "basic-auth"
MLFLOW_AUTH_CONFIG = DEPLOY / "mlflow" / "basic_auth.ini"
"""The Compose MLflow's basic-auth config (rendered by ``render_mlflow_auth_ini``)."""


def render_mlflow_auth_ini(database_uri: str, admin_username: str, admin_password: str | None = None) -> str:
    """MLflow's basic-auth configuration: every account reads, nothing else is granted.

    ``default_permission = READ`` is what a user without an explicit grant gets on every
    experiment and model; the services' reader account has no grant, so it can load the
    champion but not move it. Only the admin (the model CLI's promotion gate) can. The
    admin password is never in the Compose file (``MLFLOW_AUTH_ADMIN_PASSWORD`` there);
    the local platform writes it into its own copy, readable by the owner only.
    """
    lines = [
        "# MLflow basic-auth app (mlflow server --app-name basic-auth), env=prod.",
        "# Generated by cryptopulse.platform.services.render_mlflow_auth_ini.",
        "[mlflow]",
        "default_permission = READ",
        f"database_uri = {database_uri}",
        f"admin_username = {admin_username}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false",
    ]
    if admin_password is not None:
        lines.append(f"admin_password = {admin_password}")
    return "\n".join(lines) + "\n"


class MlflowService(Service):
    """MLflow tracking server: SQLite backend, local artifact store, one worker.

    With ``env=prod`` it runs MLflow's basic-auth app: anonymous requests get 401, every
    account reads (services use ``mlflow.reader_username``, which ``ready`` creates) and
    only the admin account, the model CLI's, can register versions or move ``champion``.
    """

    name = "mlflow"
    reaps_orphans = True  # `mlflow server` runs uvicorn as a child, which a SIGKILL orphans
    description = "MLflow tracking server and model registry"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._reader_ready = False

    @property
    def host(self) -> str:
        return self.settings.mlflow.host

    @property
    def port(self) -> int:
        return self.settings.mlflow.port

    @property
    def auth(self) -> bool:
        return self.settings.env == "prod"

    @property
    def auth_config_path(self) -> Path:
        return self.state_dir / "basic_auth.ini"

    @property
    def secret_key_path(self) -> Path:
        return self.state_dir / "flask-secret-key"

    def prepare(self) -> None:
        super().prepare()
        if not self.auth:
            return
        from scoring.registry_uri import RegistryAccessError, check_registry_passwords

        try:
            check_registry_passwords(self.settings)
        except RegistryAccessError as exc:
            raise ServiceError(str(exc)) from None
        account = self.settings.mlflow
        assert account.admin_password is not None  # nosec B101 # narrowing: checked by the caller
        _write_private(
            self.auth_config_path,
            render_mlflow_auth_ini(
                f"sqlite:///{self.state_dir / 'basic_auth.db'}",
                account.admin_username,
                account.admin_password.get_secret_value(),
            ),
        )
        self._secret_key()

    def _secret_key(self) -> str:
        """The auth app's CSRF key: random, made once, the same for every worker and restart."""
        if not self.secret_key_path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _write_private(self.secret_key_path, uuid.uuid4().hex + uuid.uuid4().hex)
        return self.secret_key_path.read_text("utf-8").strip()

    def argv(self) -> list[str]:
        auth = ["--app-name", MLFLOW_AUTH_APP] if self.auth else []
        return [*self._server_argv(), *auth]

    def _server_argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.state_dir / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.state_dir / "artifacts"),
            "--serve-artifacts",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.settings.mlflow.workers),
        ]

    def env(self) -> dict[str, str]:
        # No GenAI job runners (huey consumers): the registry and tracking are all we use.
        env = {
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MALLOC_ARENA_MAX": "2",
            "HF_HUB_OFFLINE": "1",
        }
        if self.auth:
            # The admin password stays in the owner-only ini, not in supervisord's config.
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(self.auth_config_path)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = self._secret_key()
        return env

    def ready(self) -> bool:
        try:
            healthy = httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
        if not healthy or not self.auth or self._reader_ready:
            return healthy
        # The services cannot read the registry until their account exists.
        import logging

        from scoring.registry_uri import ensure_reader_account

        try:
            ensure_reader_account(self.settings)
        except Exception as exc:  # MLflow's REST errors, a wrong admin password
            logging.getLogger(__name__).warning("mlflow reader account not ready: %s", exc)
            return False
        self._reader_ready = True
        return True

    def version(self) -> str:
        try:
            answer = httpx.get(f"{self.url}/version", timeout=2)
            if answer.status_code == 200:  # with basic auth (prod) it is 401 to anonymous callers
                return answer.text.strip()
        except httpx.HTTPError:
            pass
        from importlib.metadata import version

        return version("mlflow")


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a password or key)."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text, "utf-8")


PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"


def scrape_targets(settings: Settings, hosts: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every component's ``/metrics`` endpoint, by job name; ``hosts`` gives the host per job
    (the Docker Compose config uses service names instead of loopback). The ``supervisor``
    job (restart counts of the local supervisord) exists only locally: Compose restarts
    containers itself; so does ``retrain`` (the learning loop's scheduler)."""
    ports = {
        "prometheus": settings.prometheus.port,
        "api": settings.api.port,
        "stream-worker": settings.stream.web_port,
        "producers": settings.producer.metrics_port,
        "spark-streaming": settings.spark.metrics_port,
        "mlflow": settings.mlflow.port,
    }
    if hosts is None:
        ports["supervisor"] = settings.supervisor.metrics_port
        ports["retrain"] = settings.learning.orchestrator_metrics_port  # local only (no Compose service yet)
        ports["alerting"] = settings.alerting.port
        return {job: f"127.0.0.1:{port}" for job, port in ports.items()}
    if "alerting" in hosts:
        ports["alerting"] = settings.alerting.port
    return {job: f"{hosts.get(job, '127.0.0.1')}:{port}" for job, port in ports.items()}


DOCKER_HOSTS = {
    "prometheus": "prometheus",
    "api": "api",
    "stream-worker": "worker",
    "producers": "producer",
    "spark-streaming": "spark-streaming",
    "mlflow": "mlflow",
    "alerting": "alerting",
    "alertmanager": "alertmanager",
}
"""Compose service names of the scrape targets and of Alertmanager (see docker-compose.kafka.yml)."""


def prometheus_config(settings: Settings, hosts: Mapping[str, str] | None = None) -> dict[str, object]:
    """The Prometheus configuration for these settings (``deploy/prometheus/prometheus.yml``
    is this with default settings; a test keeps the two in step). Firing alerts go to the
    Alertmanager (local, or the one ``hosts`` names; none when ``hosts`` names none)."""
    config: dict[str, object] = {
        "global": {
            "scrape_interval": settings.prometheus.scrape_interval,
            "evaluation_interval": settings.prometheus.scrape_interval,
            "external_labels": {"system": "cryptopulse"},
        },
        "rule_files": ["alerts.yml"],
    }
    alertmanager = (hosts or {}).get("alertmanager", "127.0.0.1" if hosts is None else None)
    if alertmanager is not None:
        config["alerting"] = {
            "alertmanagers": [
                {"static_configs": [{"targets": [f"{alertmanager}:{settings.alerting.alertmanager_port}"]}]}
            ]
        }
    config["scrape_configs"] = [
        _scrape_job(job, target, scaled=hosts is not None and job in SCALED_JOBS)
        for job, target in scrape_targets(settings, hosts).items()
    ]
    return config


SCALED_JOBS = frozenset({"stream-worker"})
"""Jobs whose Compose service may run several replicas (``--scale worker=N``): a static
target would reach one replica at a time, so Prometheus resolves every replica's address."""


def _scrape_job(job: str, target: str, *, scaled: bool) -> dict[str, object]:
    if not scaled:
        return {"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}
    host, _, port = target.rpartition(":")
    return {
        "job_name": job,
        "metrics_path": "/metrics",
        "dns_sd_configs": [{"names": [host], "type": "A", "port": int(port)}],
    }


def render_prometheus_config(settings: Settings, hosts: Mapping[str, str] | None = None) -> str:
    return (
        "# Generated from cryptopulse.platform.services.prometheus_config with default settings\n"
        "# (python -m cryptopulse.platform.services). `cryptopulse up` renders the same for the\n"
        "# active settings into its home directory; a test fails when this file is stale.\n"
        + yaml.safe_dump(prometheus_config(settings, hosts), sort_keys=False)
    )


PROMETHEUS_DOCKER_CONFIG = DEPLOY / "prometheus" / "prometheus.docker.yml"


def write_prometheus_configs() -> None:
    """Regenerate the committed Prometheus and Alertmanager configs (local and Docker Compose)."""
    defaults = Settings.model_construct()  # defaults only: ignore this shell's env
    PROMETHEUS_CONFIG.write_text(render_prometheus_config(defaults), "utf-8")
    PROMETHEUS_DOCKER_CONFIG.write_text(render_prometheus_config(defaults, DOCKER_HOSTS), "utf-8")
    ALERTMANAGER_CONFIG.parent.mkdir(exist_ok=True)
    ALERTMANAGER_CONFIG.write_text(render_alertmanager_config(defaults), "utf-8")
    ALERTMANAGER_DOCKER_CONFIG.write_text(
        render_alertmanager_config(defaults, receiver_host=DOCKER_HOSTS["alerting"]), "utf-8"
    )


class PrometheusService(Service):
    """Prometheus scraping every component's ``/metrics``."""

    name = "prometheus"
    description = "Prometheus metrics"

    @property
    def host(self) -> str:
        return self.settings.prometheus.host

    @property
    def port(self) -> int:
        return self.settings.prometheus.port

    def prepare(self) -> None:
        super().prepare()
        (self.state_dir / "prometheus.yml").write_text(render_prometheus_config(self.settings), "utf-8")
        shutil.copyfile(DEPLOY / "prometheus" / "alerts.yml", self.state_dir / "alerts.yml")

    def argv(self) -> list[str]:
        return [
            _require_binary("prometheus", "prometheus"),
            f"--config.file={self.state_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.state_dir / 'data'}",
            f"--storage.tsdb.retention.time={self.settings.prometheus.retention}",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
        ]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def version(self) -> str:
        try:
            data = httpx.get(f"{self.url}/api/v1/status/buildinfo", timeout=2).json()
            return str(data["data"]["version"])
        except (httpx.HTTPError, KeyError, ValueError):
            return _command_version([_require_binary("prometheus", "prometheus"), "--version"]).split()[2]


ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_DOCKER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.docker.yml"
"""The Compose variant: the receiver is the ``alerting`` service, not loopback."""


def alertmanager_config(
    settings: Settings, *, receiver_host: str = "127.0.0.1", group_wait: str = "10s"
) -> dict[str, object]:
    """Alertmanager's configuration: every alert, ungrouped, to the alerting service's
    ``POST /alertmanager`` (which keeps the CryptoPulse alerts among them and publishes them on
    the alerts topic, so they reach subscribers by the pipeline's own path). Resolved
    notifications are not sent: an ``Alert`` record is an event, not a state."""
    return {
        "route": {
            "receiver": "cryptopulse-alerting",
            "group_by": ["..."],
            "group_wait": group_wait,
            "group_interval": "1m",
            "repeat_interval": "4h",
        },
        "receivers": [
            {
                "name": "cryptopulse-alerting",
                "webhook_configs": [
                    {
                        "url": f"http://{receiver_host}:{settings.alerting.port}/alertmanager",
                        "send_resolved": False,
                        "max_alerts": 0,
                    }
                ],
            }
        ],
    }


def render_alertmanager_config(settings: Settings, **options: str) -> str:
    return (
        "# Generated from cryptopulse.platform.services.alertmanager_config with default settings\n"
        "# (python -m cryptopulse.platform.services). `cryptopulse up` renders the same for the\n"
        "# active settings into its home directory; a test fails when this file is stale.\n"
        + yaml.safe_dump(alertmanager_config(settings, **options), sort_keys=False)
    )


class AlertmanagerService(Service):
    """Prometheus Alertmanager (the Debian package): routes Prometheus's alerts to the
    alerting service's webhook receiver. A single node: clustering is switched off."""

    name = "alertmanager"
    description = "Prometheus Alertmanager (alerts to the alerting service)"

    @property
    def host(self) -> str:
        return self.settings.prometheus.host

    @property
    def port(self) -> int:
        return self.settings.alerting.alertmanager_port

    @property
    def config_path(self) -> Path:
        return self.state_dir / "alertmanager.yml"

    def prepare(self) -> None:
        super().prepare()
        self.config_path.write_text(render_alertmanager_config(self.settings), "utf-8")

    def argv(self) -> list[str]:
        return [
            _require_binary("prometheus-alertmanager", "prometheus-alertmanager"),
            f"--config.file={self.config_path}",
            f"--storage.path={self.state_dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--cluster.listen-address=",
            "--data.retention=120h",
        ]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def version(self) -> str:
        try:
            data = httpx.get(f"{self.url}/api/v2/status", timeout=2).json()
            return str(data["versionInfo"]["version"])
        except (httpx.HTTPError, KeyError, ValueError, TypeError):
            out = _command_version(
                [_require_binary("prometheus-alertmanager", "prometheus-alertmanager"), "--version"]
            )
            return out.split()[2] if len(out.split()) > 2 else out


PLATFORM_SERVICES: tuple[type[Service], ...] = (
    KafkaService,
    RedisService,
    MlflowService,
    AlertmanagerService,
    PrometheusService,
)


if __name__ == "__main__":
    write_prometheus_configs()
