"""Bring services up, report on them and bring them down, idempotently.

``up`` starts what is not running (a live recorded process is left alone, a stale
pid file is cleaned), refuses clearly when a port is held by a process it did not
start, and waits on each service's real readiness probe. ``down`` stops only the
pids it recorded, in reverse start order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptopulse.platform.process import PidRecord, PortInUseError, ProcessTable, owned_by, port_owner
from cryptopulse.platform.services import PLATFORM_SERVICES, Service, ServiceError
from cryptopulse.settings import Settings

log = logging.getLogger(__name__)

Reporter = Callable[[str], None]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    description: str
    up: bool
    pid: int | None
    port: int
    url: str
    version: str
    managed: bool
    detail: str = ""


class Platform:
    """The set of services of one CryptoPulse home."""

    def __init__(self, settings: Settings, services: Sequence[type[Service]] = PLATFORM_SERVICES) -> None:
        self.settings = settings
        self.table = ProcessTable(settings.run_dir, rotate_log_bytes=settings.log_rotate_mb * 2**20)
        self.services: list[Service] = [cls(settings) for cls in services]

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        known = ", ".join(s.name for s in self.services)
        raise KeyError(f"unknown service {name!r}; known: {known}")

    def start(self, service: Service, report: Reporter = log.info, *, timeout_s: float = 120.0) -> PidRecord:
        """Start one service unless it already runs; wait until its probe answers."""
        record = self.table.get(service.name)
        owner = port_owner(service.host, service.port)
        if record is not None:
            if service.ready():
                report(f"{service.name}: already running (pid {record.pid})")
                return record
            report(f"{service.name}: running (pid {record.pid}) but not ready yet; waiting")
        else:
            if owner is not None:
                raise PortInUseError(
                    f"{service.name}: port {service.port} is held by pid {owner.pid} ({owner.name}), "
                    f"which cryptopulse did not start. Stop that process or choose another port "
                    f"(see CRYPTOPULSE_* settings for {service.name})."
                )
            service.prepare()
            record = self.table.start(
                service.name, service.argv(), log_path=service.log_path, env=service.env()
            )
            report(f"{service.name}: started (pid {record.pid}), waiting for it to answer")
        self._wait_ready(service, record, timeout_s)
        report(f"{service.name}: ready at {service.url}")
        return record

    def _wait_ready(self, service: Service, record: PidRecord, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        delay = 0.2
        while time.monotonic() < deadline:
            if service.ready():
                return
            if not record.alive():
                self.table.forget(record)
                raise ServiceError(
                    f"{service.name} exited during start-up; last lines of {service.log_path}:\n"
                    + tail(service.log_path, 25)
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
        raise ServiceError(
            f"{service.name} did not become ready within {timeout_s:.0f}s; see {service.log_path}:\n"
            + tail(service.log_path, 25)
        )

    def up(self, names: Iterable[str] | None = None, report: Reporter = log.info) -> None:
        with self.table.lock():
            for service in self._select(names):
                self.start(service, report)

    def down(self, names: Iterable[str] | None = None, report: Reporter = log.info) -> list[str]:
        """Stop recorded processes in reverse order; returns the names that were stopped."""
        stopped = []
        with self.table.lock():
            for service in reversed(self._select(names)):
                if self.table.stop(service.name):
                    stopped.append(service.name)
                    report(f"{service.name}: stopped")
                else:
                    report(f"{service.name}: not running")
        return stopped

    def status(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        statuses = []
        for service in self._select(names):
            record = self.table.get(service.name)
            ready = service.ready()
            owner = port_owner(service.host, service.port)
            managed = owned_by(record, owner) or (record is not None and ready)
            detail = ""
            if ready and not managed and owner is not None:
                detail = f"answered by pid {owner.pid} not started by cryptopulse"
            elif record is not None and not ready:
                detail = "process alive but not answering"
            statuses.append(
                ServiceStatus(
                    name=service.name,
                    description=service.description,
                    up=ready,
                    pid=record.pid if record else (owner.pid if owner else None),
                    port=service.port,
                    url=service.url,
                    version=service.version() if ready else "-",
                    managed=managed,
                    detail=detail,
                )
            )
        return statuses

    def _select(self, names: Iterable[str] | None) -> list[Service]:
        if names is None:
            return list(self.services)
        wanted = list(names)
        return [self.service(name) for name in wanted]


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log file, for error messages and ``cryptopulse logs``."""
    try:
        text = path.read_text("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log yet)"
    return "\n".join(text[-lines:])
