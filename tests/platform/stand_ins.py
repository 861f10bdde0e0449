"""Cheap stand-in services (small Python processes) for the supervision tests."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from core.settings import Settings, load_settings
from cryptopulse.platform.manager import Platform
from cryptopulse.platform.ownership import OWNER_ENV
from cryptopulse.platform.services import Service
from tests.ports import free_port

SCRIPTS = Path(__file__).with_name("scripts")
STAND_IN = SCRIPTS / "stand_in.py"


def stand_in(
    name: str, *options: str, start_secs: int = 1, stop_as_group: bool = True, needs: tuple[str, ...] = ()
) -> type[Service]:
    """A service running ``scripts/stand_in.py`` on a free port with ``options``."""
    chosen_port = free_port()

    class StandIn(Service):
        description = f"stand-in {name}"

        @property
        def host(self) -> str:
            return "127.0.0.1"

        @property
        def port(self) -> int:
            return chosen_port

        def argv(self) -> list[str]:
            return [sys.executable, str(STAND_IN), str(chosen_port), *options]

        def ready(self) -> bool:
            try:
                return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        def version(self) -> str:
            return "stand-in"

    StandIn.name = name
    StandIn.start_secs = start_secs
    StandIn.stop_as_group = stop_as_group
    StandIn.needs = needs
    return StandIn


@contextmanager
def private_home() -> Iterator[Path]:
    """A short home under /tmp (the supervisord socket path must stay under 108 bytes);
    whatever a test leaves running there is stopped afterwards."""
    home = Path(tempfile.mkdtemp(prefix="cp-", dir="/tmp"))
    try:
        yield home
    finally:
        Platform(load_settings(home=home), services=[]).down()
        shutil.rmtree(home, ignore_errors=True)


def home_settings(home: Path, **overrides: object) -> Settings:
    """Settings of ``home`` with ports of its own and quick give-ups (2 retries)."""
    return load_settings(home=home, supervisor={"metrics_port": free_port(), "start_retries": 2}, **overrides)


def marked(home: Path) -> list[psutil.Process]:
    """Every live process whose marker names ``home``."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get(OWNER_ENV, "").startswith(
                f"{home}::"
            ):
                found.append(process)
        except psutil.Error:
            continue
    return found


def eventually(check: Callable[[], object], timeout_s: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
