"""Start, find and stop the local processes that ``cryptopulse up`` owns.

Each started process gets a pid file (JSON: pid, process start time, argv) under
``settings.run_dir``. A pid file is trusted only while a process with that pid *and*
that start time exists, so a crash or a reboot leaves a stale file that is detected
and removed rather than a wrong process being signalled. ``down`` signals only pids
recorded here: never anything found by name or port.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PidRecord:
    name: str
    pid: int
    create_time: float
    argv: list[str]
    log_path: str

    def alive(self) -> bool:
        try:
            process = psutil.Process(self.pid)
            return (
                abs(process.create_time() - self.create_time) < 1.0
                and process.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False


@dataclass(frozen=True)
class PortOwner:
    pid: int | None
    name: str


class PortInUseError(RuntimeError):
    """A port we need is held by a process that ``cryptopulse up`` did not start."""


def rotate_log(path: Path, max_bytes: int) -> None:
    """Move ``path`` to ``path.1`` (replacing the older copy) once it exceeds ``max_bytes``.

    Service logs are appended across restarts; without this a broker that the test
    suite restarts many times fills the disk.
    """
    try:
        if path.stat().st_size > max_bytes:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


class ProcessTable:
    """The pid files of one CryptoPulse home."""

    def __init__(self, run_dir: Path, rotate_log_bytes: int | None = None) -> None:
        self.run_dir = run_dir
        self.rotate_log_bytes = rotate_log_bytes

    def _path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def get(self, name: str) -> PidRecord | None:
        """The live record for ``name``; a stale pid file is removed and ``None`` returned."""
        path = self._path(name)
        try:
            record = PidRecord(**json.loads(path.read_text("utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            log.warning("unreadable pid file removed", extra={"path": str(path), "error": str(exc)})
            path.unlink(missing_ok=True)
            return None
        if record.alive():
            return record
        log.info("stale pid file removed", extra={"service": name, "pid": record.pid})
        path.unlink(missing_ok=True)
        return None

    def records(self) -> list[PidRecord]:
        if not self.run_dir.is_dir():
            return []
        found = (self.get(path.stem) for path in sorted(self.run_dir.glob("*.json")))
        return [record for record in found if record is not None]

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> PidRecord:
        """Start ``argv`` detached in its own session, output appended to ``log_path``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.rotate_log_bytes is not None:
            rotate_log(log_path, self.rotate_log_bytes)
        with log_path.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name}\n".encode())
            out.flush()
            process = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                close_fds=True,
            )
        record = PidRecord(
            name=name,
            pid=process.pid,
            create_time=psutil.Process(process.pid).create_time(),
            argv=list(argv),
            log_path=str(log_path),
        )
        tmp = self._path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(record.__dict__), "utf-8")
        tmp.replace(self._path(name))
        return record

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialize ``up``/``down`` of one home: two concurrent ``up`` runs must not both
        start a service and then clean up each other's pid files."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def forget(self, record: PidRecord) -> None:
        """Remove ``record``'s pid file, but only while it still describes that process."""
        current = self._path(record.name)
        try:
            if json.loads(current.read_text("utf-8")).get("pid") == record.pid:
                current.unlink(missing_ok=True)
        except (FileNotFoundError, ValueError):
            pass

    def stop(self, name: str, *, timeout_s: float = 30.0) -> bool:
        """SIGTERM the recorded process (then its group), SIGKILL after ``timeout_s``; True if it
        was running."""
        record = self.get(name)
        if record is None:
            return False
        _terminate_group(record.pid, timeout_s)
        self._path(name).unlink(missing_ok=True)
        return True


def _group_members(pid: int) -> list[psutil.Process]:
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return []


def _terminate_group(pid: int, timeout_s: float) -> None:
    """Stop a service's process group gracefully: the leader first, then the rest, then SIGKILL.

    The leader gets SIGTERM alone and half the timeout to shut its own children down in
    order (the Spark driver stops its queries before its JVM; the faust worker flushes and
    commits before its scoring child exits). Signalling the whole group at once would kill
    those children under the leader's feet. Whatever is left then gets SIGTERM as a group.
    """
    members = _group_members(pid)
    if members:
        with contextlib.suppress(psutil.Error):
            members[0].terminate()
        psutil.wait_procs(members[:1], timeout=timeout_s / 2)
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        for member in members:
            with contextlib.suppress(psutil.Error):
                member.terminate()
    _, alive = psutil.wait_procs(members, timeout=timeout_s / 2)
    if alive:
        log.warning("processes ignored SIGTERM; killing", extra={"pids": [p.pid for p in alive]})
        for member in alive:
            with contextlib.suppress(psutil.Error):
                member.kill()
        psutil.wait_procs(alive, timeout=10)


def port_owner(host: str, port: int) -> PortOwner | None:
    """Who listens on ``port`` (any address), or ``None`` when it is free."""
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        connections = []
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            name = "?"
            if conn.pid:
                with contextlib.suppress(psutil.Error):
                    name = " ".join(psutil.Process(conn.pid).cmdline()[:3]) or psutil.Process(conn.pid).name()
            return PortOwner(conn.pid, name)
    return None


def owned_by(record: PidRecord | None, owner: PortOwner | None) -> bool:
    """Whether the listener on a port belongs to the recorded process tree."""
    if record is None or owner is None or owner.pid is None:
        return False
    return owner.pid in {p.pid for p in _group_members(record.pid)}
