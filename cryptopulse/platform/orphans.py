"""Reap a service's orphans, then become the service.

``python -m cryptopulse.platform.orphans HOME NAME -- COMMAND...``

Some servers do their work in child processes: ``mlflow server`` runs uvicorn as a child.
When such a parent is SIGKILLed, the child is orphaned, keeps the port and keeps answering,
and supervisord's restart cannot bind the port, so the service runs on unsupervised (the
chaos suite found this). A service that can leave orphans therefore starts through this shim
(``Service.reaps_orphans``): it stops every process still carrying the service's owner
marker (never itself or its ancestors; ``ownership.scan`` protects them), then ``exec``s
the command, which keeps the pid supervisord watches.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from cryptopulse.platform.ownership import scan, terminate

log = logging.getLogger(__name__)

REAP_TIMEOUT_S = 20.0
"""SIGTERM, then SIGKILL after this long: an orphaned server gets time to close cleanly."""


def shim_argv(home: Path, name: str, command: list[str]) -> list[str]:
    """``command`` started through the shim."""
    return [sys.executable, "-m", "cryptopulse.platform.orphans", str(home), name, "--", *command]


def reap(home: Path, name: str, timeout_s: float = REAP_TIMEOUT_S) -> list[int]:
    """Stop what is left of an earlier run of ``name`` in ``home``; returns their pids."""
    orphans = scan(home).of(name)
    if orphans:
        pids = [p.pid for p in orphans]
        log.warning("stopping orphans of an earlier %s run: %s", name, pids)
        terminate(orphans, timeout_s, home=home, name=name)
        return pids
    return []


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: python -m cryptopulse.platform.orphans HOME NAME -- COMMAND...\n")
        return 2
    home, name, command = Path(argv[0]), argv[1], argv[3:]
    reap(home, name)
    os.execv(command[0], command)  # nosec B606 # the service's own command, from our config
    return 0  # not reached: execv replaces this process


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s orphans %(levelname)s %(message)s")
    sys.exit(main(sys.argv[1:]))
