"""Which running processes belong to a CryptoPulse home, found from the processes themselves.

Every process supervisord starts for a home carries ``CRYPTOPULSE_OWNER=<home>::<service>``
in its environment, and its children inherit it (JVMs, uvicorn workers, the scoring child).
Scanning ``/proc`` for that marker finds a home's processes even when supervisord, its
socket or its pid file are gone, so ``status``, ``down`` and ``up`` never depend on one
fragile file. Nothing is ever signalled on a pid alone: a process is ours only while its
environment names this home, and psutil refuses to signal a pid that was reused since it
was looked at. Nothing compares wall-clock create times either (a stepped clock moved them).

Processes started by an older cryptopulse (before supervisord) have no marker; their pid
files ``run/<service>.json`` are still honoured while the recorded pid runs the recorded
command line, so ``cryptopulse down`` can stop such a platform. (Redis rewrites its command
line; for such a process the same executable, started within
:data:`LEGACY_START_SLACK_S` of the recorded time, is accepted instead.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

OWNER_ENV = "CRYPTOPULSE_OWNER"
"""Environment variable naming the home and service a process belongs to."""

SUPERVISORD = "supervisord"
"""The owner name of a home's supervisord process itself."""

_SEPARATOR = "::"

LEGACY_START_SLACK_S = 300.0
"""How far a legacy record's wall-clock start time may be from the process's (clock steps)."""


def owner_marker(home: Path, name: str) -> str:
    return f"{home}{_SEPARATOR}{name}"


def _marker_of(process: psutil.Process) -> str | None:
    try:
        return process.environ().get(OWNER_ENV)
    except (psutil.Error, OSError):
        return None


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class PortInUseError(RuntimeError):
    """A port a service needs is held by a process that is not that service."""


@dataclass(frozen=True)
class LegacyRecord:
    """A pid file ``run/<service>.json`` written by cryptopulse before supervisord ran services."""

    name: str
    path: Path
    pid: int
    argv: list[str]
    create_time: float | None

    def process(self) -> psutil.Process | None:
        """The recorded process while the pid still runs the recorded command line (or, for a
        process that rewrote it, the recorded executable started at about the recorded time)."""
        try:
            process = psutil.Process(self.pid)
            if not _alive(process) or not self.argv:
                return None
            if process.cmdline() == self.argv:
                return process
            same_exe = os.path.realpath(self.argv[0]) == os.path.realpath(process.exe())
            started_then = (
                self.create_time is not None
                and abs(process.create_time() - self.create_time) <= LEGACY_START_SLACK_S
            )
            return process if same_exe and started_then else None
        except (psutil.Error, OSError):
            return None


def legacy_records(run_dir: Path, skip: Iterable[str] = ()) -> tuple[list[LegacyRecord], list[Path]]:
    """Readable legacy pid files, and the paths of unreadable ones (``skip``: file names that
    are not pid files)."""
    records: list[LegacyRecord] = []
    unreadable: list[Path] = []
    if not run_dir.is_dir():
        return records, unreadable
    skipped = set(skip)
    for path in sorted(run_dir.glob("*.json")):
        if path.name in skipped:
            continue
        try:
            data = json.loads(path.read_text("utf-8"))
            created = data.get("create_time")
            records.append(
                LegacyRecord(
                    name=path.stem,
                    path=path,
                    pid=int(data["pid"]),
                    argv=[str(a) for a in data["argv"]],
                    create_time=float(created) if created is not None else None,
                )
            )
        except (OSError, ValueError, TypeError, KeyError):
            unreadable.append(path)
    return records, unreadable


@dataclass
class HomeProcesses:
    """Every live process of one home, by owner name (a service, or ``supervisord``)."""

    home: Path
    by_owner: dict[str, list[psutil.Process]] = field(default_factory=dict)
    legacy: dict[str, LegacyRecord] = field(default_factory=dict)
    """Services found through a legacy pid file rather than the marker."""

    def of(self, name: str) -> list[psutil.Process]:
        return [p for p in self.by_owner.get(name, []) if _alive(p)]

    def names(self) -> list[str]:
        return [name for name in self.by_owner if name != SUPERVISORD and self.of(name)]


def _protected_pids() -> set[int]:
    """This process and its ancestors: never ours to signal, whatever their environment says."""
    pids = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        pids |= {p.pid for p in psutil.Process().parents()}
    return pids


def scan(home: Path, run_dir: Path | None = None, skip_files: Iterable[str] = ()) -> HomeProcesses:
    """Find the processes of ``home``: by marker, plus legacy pid files under ``run_dir``."""
    found: dict[str, list[psutil.Process]] = defaultdict(list)
    protected = _protected_pids()
    prefix = f"{home}{_SEPARATOR}"
    for process in psutil.process_iter():
        if process.pid in protected:
            continue
        marker = _marker_of(process)
        if marker and marker.startswith(prefix) and _alive(process):
            found[marker[len(prefix) :]].append(process)
    result = HomeProcesses(home=home, by_owner=dict(found))
    if run_dir is not None:
        records, _ = legacy_records(run_dir, skip_files)
        for record in records:
            leader = record.process()
            if leader is None or leader.pid in protected:
                continue
            with contextlib.suppress(psutil.Error):
                members = [leader, *leader.children(recursive=True)]
                result.by_owner.setdefault(record.name, []).extend(
                    p for p in members if p not in result.by_owner.get(record.name, [])
                )
                result.legacy[record.name] = record
    return result


def still_ours(process: psutil.Process, home: Path, name: str, legacy: LegacyRecord | None = None) -> bool:
    """Re-check ownership right before a signal: the marker (or the legacy record's command
    line for its leader and that leader's descendants)."""
    if not _alive(process):
        return False
    if _marker_of(process) == owner_marker(home, name):
        return True
    if legacy is not None:
        leader = legacy.process()
        if leader is not None:
            with contextlib.suppress(psutil.Error):
                return process == leader or process in leader.children(recursive=True)
    return False


def wait_gone(processes: Iterable[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until ``processes`` exited (zombies count as gone); returns those still alive."""
    pending = list(processes)
    deadline = time.monotonic() + timeout_s
    while True:
        pending = [p for p in pending if _alive(p)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.1)


def terminate(
    processes: list[psutil.Process],
    timeout_s: float,
    *,
    home: Path,
    name: str,
    legacy: LegacyRecord | None = None,
) -> None:
    """Stop one service's processes gracefully: its top processes first, then the rest, then SIGKILL.

    The top processes (those whose parent is not among ``processes``) get SIGTERM alone and
    half the timeout to stop their own children in order (the Spark driver stops its queries
    before its JVM). Each process is re-checked to be ours right before every signal.
    """
    members = [p for p in processes if still_ours(p, home, name, legacy)]
    if not members:
        return
    pids = {p.pid for p in members}
    tops = []
    for process in members:
        with contextlib.suppress(psutil.Error):
            if process.ppid() not in pids:
                tops.append(process)
    _signal(tops, home, name, legacy, kill=False)
    wait_gone(tops, timeout_s / 2)
    _signal(members, home, name, legacy, kill=False)
    alive = wait_gone(members, timeout_s / 2)
    if alive:
        log.warning(
            "processes ignored SIGTERM; killing", extra={"service": name, "pids": [p.pid for p in alive]}
        )
        _signal(alive, home, name, legacy, kill=True)
        wait_gone(alive, 10)


def _signal(
    processes: list[psutil.Process], home: Path, name: str, legacy: LegacyRecord | None, *, kill: bool
) -> None:
    for process in processes:
        if not still_ours(process, home, name, legacy):
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            if kill:
                process.kill()
            else:
                process.terminate()


@dataclass(frozen=True)
class PortOwner:
    pid: int | None
    command: str
    owner: str | None
    """The marker of the listening process (``<home>::<service>``), when it has one."""


def port_owners(ports: Iterable[int]) -> dict[int, PortOwner]:
    """Who listens on each of ``ports`` (any address); free ports are absent."""
    wanted = set(ports)
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        connections = []
    owners: dict[int, PortOwner] = {}
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port not in wanted:
            continue
        command, marker = "?", None
        if conn.pid:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(conn.pid)
                command = " ".join(process.cmdline()[:3]) or process.name()
                marker = _marker_of(process)
        owners.setdefault(conn.laddr.port, PortOwner(conn.pid, command, marker))
    return owners
