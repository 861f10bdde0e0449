"""One supervisord per CryptoPulse home: its configuration, its lifecycle and its XML-RPC API.

supervisord (Debian's ``supervisor``) keeps the pids, restarts a crashed service with
backoff, gives up on one that keeps failing (state FATAL) and rotates the service logs;
cryptopulse only writes its configuration from the :class:`Service` definitions and talks
to it over the unix socket ``<home>/run/supervisor.sock``. Everything lives under the home:

- ``run/supervisord.conf``: the daemon, its socket and the restart-counting event listener
  (``supervisorctl -c <home>/run/supervisord.conf status`` works on it);
- ``run/programs/<service>.conf``: one ``[program:<service>]`` per service, written when
  ``up`` starts that service (a service is only configured when it can start);
- ``run/restarts.json``: automatic restarts per service, kept by :mod:`.events`;
- ``logs/<service>.log`` (rotated by supervisord) and ``logs/supervisord.log``.
"""

from __future__ import annotations

import configparser
import contextlib
import http.client
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import xmlrpc.client  # nosec B411 # only our own supervisord, over the home's unix socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import Settings
from cryptopulse.platform.orphans import shim_argv
from cryptopulse.platform.ownership import OWNER_ENV, SUPERVISORD, owner_marker
from cryptopulse.platform.services import Service, ServiceError

log = logging.getLogger(__name__)

EVENTS_PROGRAM = "cryptopulse-events"
RESTARTS_FILE = "restarts.json"
ALIVE_STATES = frozenset({"STARTING", "RUNNING", "BACKOFF", "STOPPING"})
"""supervisord states in which a program has (or is about to have) a process."""

_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux; leave room for the NUL


class _Faults:
    """supervisord's XML-RPC fault codes (``supervisor.xmlrpc.Faults``) that we act on."""

    BAD_NAME = 10
    SPAWN_ERROR = 50
    ALREADY_STARTED = 60
    NOT_RUNNING = 70
    ALREADY_ADDED = 90


@dataclass(frozen=True)
class ProgramInfo:
    """supervisord's view of one program (``getProcessInfo``)."""

    name: str
    state: str
    pid: int
    exit_status: int
    description: str

    @property
    def alive(self) -> bool:
        return self.state in ALIVE_STATES and self.pid > 0

    @classmethod
    def from_rpc(cls, info: Mapping[str, Any]) -> ProgramInfo:
        return cls(
            name=str(info["name"]),
            state=str(info["statename"]),
            pid=int(info["pid"]),
            exit_status=int(info["exitstatus"]),
            description=str(info["description"]),
        )


def _ini_value(value: str, what: str) -> str:
    """``value`` escaped for supervisord's configparser (``%`` expansions, inline comments)."""
    if "\n" in value or "\r" in value or re.search(r"\s[;#]", value):
        raise ServiceError(f"{what} cannot be written to a supervisord configuration: {value!r}")
    return value.replace("%", "%%")


def _environment(env: Mapping[str, str]) -> str:
    """``KEY="value",...`` as supervisord's ``environment=`` parses it (quotes are not escapable)."""
    pairs = []
    for key, value in sorted(env.items()):
        quote = "'" if '"' in value else '"'
        stripped = value[:1] in ("'", '"') or value[-1:] in ("'", '"')  # supervisord strips them
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or quote in value or stripped:
            raise ServiceError(f"environment variable {key} cannot be passed through supervisord: {value!r}")
        pairs.append(f"{key}={quote}{value}{quote}")
    return _ini_value(",".join(pairs), "the environment")


def forwarded_environment() -> dict[str, str]:
    """The caller's ``CRYPTOPULSE_*`` settings, passed to every service it starts (supervisord's
    own environment is that of the ``up`` that started it, which may be another shell)."""
    return {k: v for k, v in os.environ.items() if k.startswith("CRYPTOPULSE_") and k != OWNER_ENV}


class Supervisor:
    """The supervisord of one home."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.run_dir
        self.config_path = self.run_dir / "supervisord.conf"
        self.socket_path = self.run_dir / "supervisor.sock"
        self.pid_path = self.run_dir / "supervisord.pid"
        self.programs_dir = self.run_dir / "programs"
        self.restarts_path = self.run_dir / RESTARTS_FILE
        self.log_path = settings.log_dir / "supervisord.log"

    # -- configuration ---------------------------------------------------------------------

    def _rotation(self) -> str:
        return f"{self.settings.log_rotate_mb}MB"

    def main_config(self) -> str:
        logs = self.settings.log_dir
        events_argv = [
            sys.executable,
            "-m",
            "cryptopulse.platform.events",
            "--state",
            str(self.restarts_path),
            "--port",
            str(self.settings.supervisor.metrics_port),
        ]
        events_env = {OWNER_ENV: owner_marker(self.settings.home, EVENTS_PROGRAM)}
        sections = {
            "unix_http_server": {"file": str(self.socket_path), "chmod": "0700"},
            "supervisord": {
                "logfile": str(self.log_path),
                "logfile_maxbytes": self._rotation(),
                "logfile_backups": "1",
                "loglevel": "info",
                "pidfile": str(self.pid_path),
                "childlogdir": str(logs),
                "identifier": "cryptopulse",
            },
            "rpcinterface:supervisor": {
                "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
            },
            "supervisorctl": {"serverurl": f"unix://{self.socket_path}"},
            f"eventlistener:{EVENTS_PROGRAM}": {
                "command": shlex.join(events_argv),
                "events": "PROCESS_STATE",
                "autostart": "true",
                "autorestart": "true",
                "stopasgroup": "true",
                "environment": _environment(events_env),
                "stdout_logfile": "NONE",  # stdout is the event protocol channel
                "stderr_logfile": str(logs / f"{EVENTS_PROGRAM}.log"),
                "stderr_logfile_maxbytes": self._rotation(),
                "stderr_logfile_backups": "1",
            },
            "include": {"files": str(self.programs_dir / "*.conf")},
        }
        return _render(sections, "supervisord of this CryptoPulse home")

    def program_config(self, service: Service, environment: Mapping[str, str], directory: Path) -> str:
        """``[program:<service>]``: restart on an unexpected exit, give up after
        ``supervisor.start_retries`` failed starts, stop the whole process tree."""
        env = {
            **environment,
            **service.env(),
            OWNER_ENV: owner_marker(self.settings.home, service.name),
        }
        argv = service.argv()
        if service.reaps_orphans:
            argv = shim_argv(self.settings.home, service.name, argv)
        program = {
            "command": shlex.join(argv),
            "directory": str(directory),
            "environment": _environment(env),
            "autostart": "false",
            "autorestart": "unexpected",
            "exitcodes": "0",
            "startsecs": str(service.start_secs),
            "startretries": str(self.settings.supervisor.start_retries),
            "stopsignal": "TERM",
            "stopwaitsecs": str(service.stop_timeout_s),
            "stopasgroup": "true" if service.stop_as_group else "false",
            "killasgroup": "true",
            "redirect_stderr": "true",
            "stdout_logfile": str(service.log_path),
            "stdout_logfile_maxbytes": self._rotation(),
            "stdout_logfile_backups": "1",
        }
        return _render({f"program:{service.name}": program}, f"service {service.name}")

    def write_main_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.programs_dir.mkdir(exist_ok=True)
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.config_path, self.main_config())

    def _set_corrupt_programs_aside(self) -> None:
        """Move program files that do not parse out of the include glob: one damaged file must
        not stop supervisord from reading the rest. A running program keeps running; its file
        is written again when ``up`` next starts it."""
        for path in sorted(self.programs_dir.glob("*.conf")):
            parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
            try:
                parser.read(path, encoding="utf-8")
                valid = parser.sections() == [f"program:{path.stem}"]
            except (configparser.Error, UnicodeDecodeError):
                valid = False
            if not valid:
                log.warning("unreadable program file set aside", extra={"path": str(path)})
                path.replace(path.with_name(path.name + ".corrupt"))

    # -- XML-RPC ---------------------------------------------------------------------------

    def call(self, method: str, *args: Any, timeout_s: float = 10.0) -> Any:
        proxy = xmlrpc.client.ServerProxy(
            "http://localhost/RPC2", transport=_UnixTransport(self.socket_path, timeout_s)
        )
        return getattr(proxy, method)(*args)

    def reachable(self) -> bool:
        """Whether supervisord answers on its socket."""
        try:
            return bool(self.call("supervisor.getState", timeout_s=5.0)["statename"] == "RUNNING")
        except (OSError, xmlrpc.client.Error, http.client.HTTPException, KeyError):
            return False

    def pid(self) -> int | None:
        try:
            return int(self.call("supervisor.getPID", timeout_s=5.0))
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return None

    def programs(self) -> dict[str, ProgramInfo]:
        """Every program supervisord knows, or nothing when it does not answer."""
        try:
            infos = self.call("supervisor.getAllProcessInfo")
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return {}
        return {info.name: info for info in map(ProgramInfo.from_rpc, infos)}

    def program(self, name: str) -> ProgramInfo | None:
        try:
            return ProgramInfo.from_rpc(self.call("supervisor.getProcessInfo", name))
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == _Faults.BAD_NAME:
                return None
            raise
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return None

    # -- lifecycle -------------------------------------------------------------------------

    def start_daemon(self, timeout_s: float = 30.0) -> None:
        """Start this home's supervisord (it daemonizes); wait until it answers."""
        if len(str(self.socket_path).encode()) > _MAX_SOCKET_PATH:
            raise ServiceError(
                f"{self.socket_path} is too long for a unix socket; choose a shorter CRYPTOPULSE_HOME"
            )
        binary = shutil.which("supervisord") or "/usr/bin/supervisord"
        if not Path(binary).exists():
            raise ServiceError(
                "supervisord not found: install the Debian package 'supervisor' (scripts/setup does)"
            )
        self.write_main_config()
        env = {**os.environ, OWNER_ENV: owner_marker(self.settings.home, SUPERVISORD)}
        result = subprocess.run(  # nosec B603 # supervisord with the config we write, no shell
            [binary, "-c", str(self.config_path)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            start_new_session=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"supervisord did not start:\n{result.stdout}{result.stderr}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.reachable():
                return
            time.sleep(0.1)
        raise ServiceError(f"supervisord did not answer on {self.socket_path}; see {self.log_path}")

    def configure(self, service: Service) -> None:
        """Write ``service``'s program file and make supervisord load it (the service is stopped)."""
        self.write_main_config()
        path = self.programs_dir / f"{service.name}.conf"
        _write_private(path, self.program_config(service, forwarded_environment(), Path.cwd()))
        self._set_corrupt_programs_aside()
        try:
            added, changed, _removed = self.call("supervisor.reloadConfig")[0]
            if service.name in changed:
                self.call("supervisor.removeProcessGroup", service.name)
            if service.name in added or service.name in changed:
                self.call("supervisor.addProcessGroup", service.name)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != _Faults.ALREADY_ADDED:
                raise ServiceError(
                    f"supervisord could not load {path}: {fault.faultString}; see {self.log_path}"
                ) from None

    def start(self, name: str) -> None:
        """Ask supervisord to start ``name`` without waiting (readiness is probed by the caller)."""
        try:
            self.call("supervisor.startProcess", name, False)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == _Faults.ALREADY_STARTED:
                return
            raise ServiceError(f"supervisord could not start {name}: {fault.faultString}") from None

    def stop(self, name: str, timeout_s: float) -> bool:
        """Stop ``name`` (supervisord signals, waits ``stopwaitsecs``, then kills); True if it ran."""
        try:
            self.call("supervisor.stopProcess", name, True, timeout_s=timeout_s + 15)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode in (_Faults.NOT_RUNNING, _Faults.BAD_NAME):
                return False
            raise ServiceError(f"supervisord could not stop {name}: {fault.faultString}") from None
        return True

    def shutdown(self) -> bool:
        """Ask supervisord to stop every program and exit; True when it was asked."""
        try:
            self.call("supervisor.shutdown")
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return False
        return True

    def restarts(self) -> dict[str, int] | None:
        """Automatic restarts per service since supervisord started (``None``: not known, e.g.
        the listener of a new supervisord has not written its file yet)."""
        try:
            data = json.loads(self.restarts_path.read_text("utf-8"))
            if data["supervisord_pid"] != self.pid():
                return None
            return {str(k): int(v) for k, v in data["restarts"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None


def _render(sections: Mapping[str, Mapping[str, str]], what: str) -> str:
    lines = [f"; generated by cryptopulse for the {what}; edits are overwritten"]
    for section, options in sections.items():
        lines.append(f"\n[{section}]")
        lines.extend(
            f"{key}={_ini_value(value, f'{section} {key}') if key != 'environment' else value}"
            for key, value in options.items()
        )
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only (program environments may hold secrets)."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix socket (what ``supervisorctl`` does)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path, self._timeout)
