"""Bring services up, report on them and bring them down, idempotently, through supervisord.

``up`` starts what is not running under the home's supervisord (which restarts it after a
crash and gives up on one that keeps failing), leaves a running service alone, refuses
clearly when a port is held by a process that is not that service, and waits on each
service's real readiness probe. ``down`` stops services through supervisord, then every
process that still carries this home's marker, so nothing ``up`` started survives it,
whatever happened to supervisord or its files. ``status`` combines supervisord's view,
the processes found by marker and the readiness probes.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from core.settings import Settings
from cryptopulse.platform.ownership import (
    SUPERVISORD,
    HomeProcesses,
    PortInUseError,
    PortOwner,
    legacy_records,
    port_owners,
    scan,
    terminate,
    wait_gone,
)
from cryptopulse.platform.services import PLATFORM_SERVICES, Service, ServiceError
from cryptopulse.platform.supervisor import EVENTS_PROGRAM, RESTARTS_FILE, ProgramInfo, Supervisor

log = logging.getLogger(__name__)

Reporter = Callable[[str], None]

SUPERVISORD_STOP_TIMEOUT_S = 90.0
"""How long supervisord may take to stop what still runs and exit before it is killed."""


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
    """A process of this home runs for the service (supervised or not)."""
    detail: str = ""
    state: str = "STOPPED"
    """supervisord's state (RUNNING, STARTING, BACKOFF, EXITED, FATAL, STOPPED) or UNSUPERVISED."""
    restarts: int | None = None
    """Automatic restarts since supervisord started; ``None`` when not known."""

    @property
    def supervised(self) -> bool:
        return self.state in ("STARTING", "RUNNING", "BACKOFF", "STOPPING")

    @property
    def gave_up(self) -> bool:
        return self.state == "FATAL"


@dataclass(frozen=True)
class SupervisorStatus:
    running: bool
    """supervisord answers on its socket."""
    pid: int | None
    config_path: Path
    detail: str


def _top_pid(processes: Sequence[psutil.Process]) -> int:
    """The pid of the process that started the others (its parent is not among them)."""
    pids = {p.pid for p in processes}
    tops = []
    for process in processes:
        try:
            if process.ppid() not in pids:
                tops.append(process.pid)
        except psutil.Error:
            continue
    return min(tops or pids)


class Platform:
    """The set of services of one CryptoPulse home."""

    def __init__(self, settings: Settings, services: Sequence[type[Service]] = PLATFORM_SERVICES) -> None:
        self.settings = settings
        self.supervisor = Supervisor(settings)
        self.services: list[Service] = [cls(settings) for cls in services]

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        known = ", ".join(s.name for s in self.services)
        raise KeyError(f"unknown service {name!r}; known: {known}")

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialize ``up``/``down`` of one home: two concurrent ``up`` runs must not both
        start a service."""
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.settings.run_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def processes(self) -> HomeProcesses:
        """Every live process of this home, found by marker (and legacy pid files)."""
        return scan(self.settings.home, self.settings.run_dir, skip_files=[RESTARTS_FILE])

    # -- up ----------------------------------------------------------------------------------

    def _ensure_supervisord(self, report: Reporter) -> None:
        if self.supervisor.reachable():
            return
        deaf = self.processes().of(SUPERVISORD)
        if deaf:
            raise ServiceError(
                f"supervisord of {self.settings.home} runs (pid {_top_pid(deaf)}) but does not answer "
                f"on {self.supervisor.socket_path}. `cryptopulse down` stops it and every service of "
                "this home; then run `cryptopulse up` again."
            )
        self.supervisor.start_daemon()
        report(f"supervisord: started (pid {self.supervisor.pid()}), {self.supervisor.config_path}")

    def start(self, service: Service, report: Reporter = log.info, *, timeout_s: float = 120.0) -> int:
        """Start one service under supervisord unless it already runs; wait until its probe
        answers. Returns the service's pid."""
        pid, waiting = self._launch(service, report, timeout_s)
        if waiting:
            self._await_ready(service, report, timeout_s)
        return pid

    def _launch(self, service: Service, report: Reporter, timeout_s: float) -> tuple[int, bool]:
        """Start one service unless it already runs, without waiting for it to answer; returns
        its pid and whether it still has to be waited for."""
        info = self.supervisor.program(service.name)
        if info is not None and info.alive:
            if service.ready():
                report(f"{service.name}: already running (pid {info.pid})")
                return info.pid, False
            report(f"{service.name}: running (pid {info.pid}) but not ready yet; waiting")
            return info.pid, True
        unsupervised = self._adopt_unsupervised(service, report, timeout_s)
        if unsupervised is not None:
            return unsupervised, False
        owner = port_owners([service.port]).get(service.port)
        if owner is not None:
            raise PortInUseError(self._port_message(service, owner))
        service.prepare()
        self._ensure_supervisord(report)
        self.supervisor.configure(service)
        self.supervisor.start(service.name)
        started = self.supervisor.program(service.name)
        pid = started.pid if started is not None else 0
        report(f"{service.name}: started (pid {pid}), waiting for it to answer")
        return pid, True

    def _await_ready(self, service: Service, report: Reporter, timeout_s: float) -> None:
        self._wait_ready(service, timeout_s)
        report(f"{service.name}: ready at {service.url}")

    def _adopt_unsupervised(self, service: Service, report: Reporter, timeout_s: float) -> int | None:
        """A process of this service that supervisord does not know (supervisord was killed, or
        an older cryptopulse started it) is left running, never started twice; returns its pid,
        or ``None`` once no such process runs."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.processes()
            processes = found.of(service.name)
            if not processes:
                return None
            pid = _top_pid(processes)
            if service.ready():
                how = "an older cryptopulse's pid file" if service.name in found.legacy else "its marker"
                report(
                    f"{service.name}: running without supervision (pid {pid}, found by {how}); left "
                    f"running, but nothing restarts it after a crash. `cryptopulse down {service.name} "
                    f"&& cryptopulse up {service.name}` puts it under supervisord."
                )
                return pid
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"{service.name} runs without supervision (pid {pid}) but does not answer; "
                    f"`cryptopulse down {service.name}` stops it"
                )
            time.sleep(1.0)

    def _port_message(self, service: Service, owner: PortOwner) -> str:
        holder = f"port {service.port} is held by pid {owner.pid} ({owner.command})"
        home, _, other = (owner.owner or "").rpartition("::")
        if home == str(self.settings.home):
            return f"{service.name}: {holder}, which is this home's {other}; check the port settings"
        if home:
            return f"{service.name}: {holder}, a service of the CryptoPulse home {home}; choose another port"
        return (
            f"{service.name}: {holder}, which cryptopulse did not start. Stop that process or "
            f"choose another port (see CRYPTOPULSE_* settings for {service.name})."
        )

    def _wait_ready(self, service: Service, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        delay = 0.2
        while time.monotonic() < deadline:
            if service.ready():
                return
            info = self.supervisor.program(service.name)
            if info is None:
                raise ServiceError(
                    f"supervisord stopped answering while {service.name} started; "
                    f"see {self.supervisor.log_path}"
                )
            if info.state == "FATAL":
                raise ServiceError(
                    f"{service.name} exited during start-up and supervisord gave up after "
                    f"{self.settings.supervisor.start_retries} retries; last lines of {service.log_path}:\n"
                    + tail(service.log_path, 25)
                )
            if info.state == "STOPPED" or (info.state == "EXITED" and info.exit_status == 0):
                raise ServiceError(
                    f"{service.name} stopped during start-up ({info.description}); last lines of "
                    f"{service.log_path}:\n" + tail(service.log_path, 25)
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
        raise ServiceError(
            f"{service.name} did not become ready within {timeout_s:.0f}s; see {service.log_path}:\n"
            + tail(service.log_path, 25)
        )

    def up(
        self, names: Iterable[str] | None = None, report: Reporter = log.info, *, timeout_s: float = 120.0
    ) -> None:
        """Start the services (all, or ``names``) in list order without waiting between them:
        one waits only for the services it ``needs`` that start in the same call, and then
        every started service is waited for. Independent services (Kafka, Redis and MLflow;
        the worker, the Spark job and the API) thus start side by side, and a slow JVM start
        no longer delays the rest."""
        selected = self._select(names)
        with self._lock():
            pending: dict[str, Service] = {}
            for service in selected:
                for needed in service.needs:
                    if needed in pending:
                        self._await_ready(pending.pop(needed), report, timeout_s)
                _, waiting = self._launch(service, report, timeout_s)
                if waiting:
                    pending[service.name] = service
            for service in pending.values():
                self._await_ready(service, report, timeout_s)

    # -- down --------------------------------------------------------------------------------

    def down(self, names: Iterable[str] | None = None, report: Reporter = log.info) -> list[str]:
        """Stop services in reverse order, then (``names`` omitted) everything else of this home,
        supervisord included; returns the names of the services that were running."""
        whole_home = names is None
        selected = self._select(names)
        stopped: list[str] = []
        with self._lock():
            reachable = self.supervisor.reachable()
            found = self.processes()
            running_before = set(found.names())
            deaf = [] if reachable else found.of(SUPERVISORD)
            if deaf:
                # It would restart what we stop, and it can only stop all of its programs.
                if not whole_home:
                    raise ServiceError(
                        f"supervisord (pid {_top_pid(deaf)}) does not answer on "
                        f"{self.supervisor.socket_path}, so it cannot stop single services; "
                        "`cryptopulse down` stops it and every service of this home"
                    )
                report(f"supervisord (pid {_top_pid(deaf)}) does not answer on its socket; stopping it")
                self._terminate(deaf, SUPERVISORD, SUPERVISORD_STOP_TIMEOUT_S)
            for service in reversed(selected):
                went_with_supervisord = bool(deaf) and service.name in running_before
                if self._stop(service.name, service.stop_timeout_s, reachable, report, went_with_supervisord):
                    stopped.append(service.name)
            if whole_home:
                stopped += self._stop_the_rest(reachable, {s.name for s in selected}, report)
            elif reachable and not self._anything_running():
                self._stop_supervisord()
            self._remove_stale_legacy_records(None if whole_home else {s.name for s in selected})
        return stopped

    def _stop(
        self, name: str, timeout_s: float, reachable: bool, report: Reporter, stopped_already: bool = False
    ) -> bool:
        """Stop one service through supervisord, then whatever of it still runs; True if it ran
        (``stopped_already``: a dying supervisord stopped it just before)."""
        ran = stopped_already or (reachable and self.supervisor.stop(name, timeout_s))
        found = self.processes()
        leftovers = found.of(name)
        if leftovers:  # not supervised, or children that outlived their parent
            self._terminate(leftovers, name, timeout_s, found)
        if ran:
            report(f"{name}: stopped")
        elif leftovers:
            report(f"{name}: stopped (it ran without supervision, pid {_top_pid(leftovers)})")
        else:
            report(f"{name}: not running")
        return ran or bool(leftovers)

    def _stop_the_rest(self, reachable: bool, done: set[str], report: Reporter) -> list[str]:
        """Whatever else of this home runs: programs this Platform does not list, then
        supervisord, then any process still carrying this home's marker."""
        stopped = []
        if reachable:
            others = [
                info.name
                for info in self.supervisor.programs().values()
                if info.name not in done and info.name != EVENTS_PROGRAM and info.alive
            ]
            stopped += [name for name in others if self._stop(name, SUPERVISORD_STOP_TIMEOUT_S, True, report)]
        self._stop_supervisord()
        found = self.processes()
        for name in found.names():
            if name not in (SUPERVISORD, EVENTS_PROGRAM) and name not in stopped:
                report(f"{name}: stopped (it ran without supervision, pid {_top_pid(found.of(name))})")
                stopped.append(name)
            self._terminate(found.of(name), name, SUPERVISORD_STOP_TIMEOUT_S, found)
        return stopped

    def _anything_running(self) -> bool:
        found = self.processes()
        services = [name for name in found.names() if name not in (SUPERVISORD, EVENTS_PROGRAM)]
        programs = self.supervisor.programs().values()
        return bool(services) or any(p.alive for p in programs if p.name != EVENTS_PROGRAM)

    def _stop_supervisord(self) -> None:
        self.supervisor.shutdown()
        left = wait_gone(self.processes().of(SUPERVISORD), SUPERVISORD_STOP_TIMEOUT_S)
        if left:
            self._terminate(left, SUPERVISORD, 30.0)

    def _terminate(
        self, processes: list[psutil.Process], name: str, timeout_s: float, found: HomeProcesses | None = None
    ) -> None:
        legacy = found.legacy.get(name) if found else None
        terminate(processes, timeout_s, home=self.settings.home, name=name, legacy=legacy)

    def _remove_stale_legacy_records(self, names: set[str] | None) -> None:
        """Pid files of an older cryptopulse go once their process is gone (never before)."""
        records, unreadable = legacy_records(self.settings.run_dir, [RESTARTS_FILE])
        for record in records:
            if (names is None or record.name in names) and record.process() is None:
                record.path.unlink(missing_ok=True)
        if names is None:
            for path in unreadable:
                log.warning("unreadable pid file removed", extra={"path": str(path)})
                path.unlink(missing_ok=True)

    # -- status ------------------------------------------------------------------------------

    def supervisor_status(self) -> SupervisorStatus:
        pid = self.supervisor.pid()
        if pid is not None:
            return SupervisorStatus(True, pid, self.supervisor.config_path, "")
        deaf = self.processes().of(SUPERVISORD)
        if deaf:
            detail = (
                f"runs (pid {_top_pid(deaf)}) but does not answer on {self.supervisor.socket_path}; "
                "`cryptopulse down` stops it and every service of this home"
            )
            return SupervisorStatus(False, _top_pid(deaf), self.supervisor.config_path, detail)
        return SupervisorStatus(False, None, self.supervisor.config_path, "not running")

    def status(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        selected = self._select(names)
        programs = self.supervisor.programs()
        found = self.processes()
        restarts = self.supervisor.restarts() if programs else None
        owners = port_owners(s.port for s in selected)
        if programs:
            why_unsupervised = "supervisord lost track of it"
        elif found.of(SUPERVISORD):
            why_unsupervised = "supervisord does not answer on its socket"
        else:
            why_unsupervised = "supervisord is not running"
        statuses = []
        for service in selected:
            info = programs.get(service.name)
            own = found.of(service.name)
            ready = service.ready()
            if service.name in found.legacy:
                why = "started by an older cryptopulse (pid file)"
            else:
                why = why_unsupervised
            state, pid, detail = _describe(service.name, info, own, ready, owners.get(service.port), why)
            statuses.append(
                ServiceStatus(
                    name=service.name,
                    description=service.description,
                    up=ready,
                    pid=pid,
                    port=service.port,
                    url=service.url,
                    version=service.version() if ready else "-",
                    managed=(info is not None and info.alive) or bool(own),
                    detail=detail,
                    state=state,
                    restarts=None if restarts is None else restarts.get(service.name, 0),
                )
            )
        return statuses

    def _select(self, names: Iterable[str] | None) -> list[Service]:
        if names is None:
            return list(self.services)
        return [self.service(name) for name in names]


def _describe(
    name: str,
    info: ProgramInfo | None,
    own: list[psutil.Process],
    ready: bool,
    owner: PortOwner | None,
    why_unsupervised: str,
) -> tuple[str, int | None, str]:
    """State, pid and a human explanation (with the fix, where one is needed) of one service."""
    if info is not None and info.alive:
        detail = ""
        if not ready:
            detail = {
                "STARTING": "starting",
                "BACKOFF": "exited; supervisord retries it with backoff",
            }.get(info.state, "process alive but not answering")
        return info.state, info.pid, detail
    if own:
        return (
            "UNSUPERVISED",
            _top_pid(own),
            f"runs without supervision: {why_unsupervised}; nothing restarts it after a crash. "
            f"Fix: `cryptopulse down {name} && cryptopulse up {name}`",
        )
    state = info.state if info is not None else "STOPPED"
    if state == "FATAL":
        return (
            state,
            None,
            f"gave up after repeated crashes; see `cryptopulse logs {name}`, then `cryptopulse up {name}`",
        )
    if ready and owner is not None:
        return state, owner.pid, f"answered by pid {owner.pid} not started by cryptopulse"
    return state, None, ""


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log file, for error messages and ``cryptopulse logs``."""
    try:
        text = path.read_text("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log yet)"
    return "\n".join(text[-lines:])
