"""supervisord event listener: counts each service's automatic restarts.

supervisord starts this as ``[eventlistener:cryptopulse-events]`` and sends it every
PROCESS_STATE event over stdin/stdout (supervisord's event listener protocol). A restart
is a start that supervisord made on its own: after an unexpected exit (``autorestart``)
or after a failed start (BACKOFF). Starts asked for by ``cryptopulse up`` are not counted.

The counts (since this supervisord started; a restarted listener carries on from the file)
go to ``run/restarts.json`` for
``cryptopulse status`` and to Prometheus as ``cryptopulse_service_restarts_total`` and
``cryptopulse_service_gave_up`` on ``supervisor.metrics_port`` (scrape job ``supervisor``).
The listener must never stop answering supervisord: a bad event is logged and acknowledged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger("cryptopulse.platform.events")

AUTOMATIC_FROM = frozenset({"BACKOFF", "EXITED"})


class RestartCounter:
    """Turns PROCESS_STATE events into restart counts, a file and Prometheus metrics."""

    def __init__(
        self, state_path: Path, registry: CollectorRegistry, ignore: str = "", supervisord_pid: int = 0
    ) -> None:
        self.state_path = state_path
        self.ignore = ignore
        self.supervisord_pid = supervisord_pid
        self.restarts = self._load()
        self.unexpected_exit: dict[str, bool] = {}
        self.restarts_total = Counter(
            "cryptopulse_service_restarts",
            "Automatic restarts of a service by supervisord (crash or failed start)",
            ["service"],
            registry=registry,
        )
        self.gave_up = Gauge(
            "cryptopulse_service_gave_up",
            "1 while supervisord has given up restarting a service (FATAL)",
            ["service"],
            registry=registry,
        )
        for name, count in self.restarts.items():
            self.restarts_total.labels(service=name).inc(count)
        self._save()

    def _load(self) -> dict[str, int]:
        """The counts of an earlier listener of the same supervisord (it crashed and came back)."""
        try:
            data = json.loads(self.state_path.read_text("utf-8"))
            if data.get("supervisord_pid") == self.supervisord_pid:
                return {str(k): int(v) for k, v in data["restarts"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass
        return {}

    def handle(self, event: str, payload: str) -> None:
        fields = dict(token.split(":", 1) for token in payload.split("\n", 1)[0].split() if ":" in token)
        name = fields.get("processname", "")
        if not name or name == self.ignore:
            return
        state = event.removeprefix("PROCESS_STATE_")
        if state == "EXITED":
            self.unexpected_exit[name] = fields.get("expected") == "0"
        elif state == "STARTING":
            origin = fields.get("from_state", "")
            automatic = origin == "BACKOFF" or (origin == "EXITED" and self.unexpected_exit.get(name, False))
            if automatic:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self.restarts_total.labels(service=name).inc()
                log.warning("%s restarted by supervisord (after %s)", name, origin)
                self._save()
            else:
                self.restarts_total.labels(service=name).inc(0)
            self.gave_up.labels(service=name).set(0)
        elif state == "FATAL":
            self.gave_up.labels(service=name).set(1)
            log.error("supervisord gave up on %s", name)

    def _save(self) -> None:
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(
            json.dumps({"supervisord_pid": self.supervisord_pid, "restarts": self.restarts}), "utf-8"
        )
        tmp.replace(self.state_path)


def listen(counter: RestartCounter, stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """supervisord's listener protocol until stdin closes (supervisord exited)."""
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        header = stdin.readline().decode("utf-8", "replace")
        if not header:
            return
        headers = dict(token.split(":", 1) for token in header.split() if ":" in token)
        payload = stdin.read(int(headers.get("len", "0"))).decode("utf-8", "replace")
        try:
            counter.handle(headers.get("eventname", ""), payload)
        except Exception:  # never leave supervisord waiting for an answer
            log.exception("event not understood: %r %r", header.strip(), payload)
        stdout.write(b"RESULT 2\nOK")
        stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True, help="restart counts file (JSON)")
    parser.add_argument("--port", type=int, required=True, help="Prometheus /metrics port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    registry = CollectorRegistry()
    counter = RestartCounter(
        args.state,
        registry,
        ignore=os.environ.get("SUPERVISOR_PROCESS_NAME", ""),
        supervisord_pid=os.getppid(),
    )
    threading.Thread(target=serve_metrics, args=(args.host, args.port, registry), daemon=True).start()
    listen(counter, sys.stdin.buffer, sys.stdout.buffer)


def serve_metrics(host: str, port: int, registry: CollectorRegistry, retry_s: float = 30.0) -> None:
    """Serve /metrics; while the port is taken (another home's listener), keep counting into
    the state file and try again now and then."""
    while True:
        try:
            start_http_server(port, addr=host, registry=registry)
            return
        except OSError as exc:
            log.error("metrics port %s unavailable (%s); retrying in %.0f s", port, exc, retry_s)
            time.sleep(retry_s)


if __name__ == "__main__":
    main()
