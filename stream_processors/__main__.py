"""``python -m stream_processors worker``: faust's own command line over the configured app."""

from __future__ import annotations

import sys

from core.logs import configure_logging
from core.settings import get_settings
from stream_processors.app import create_app
from stream_processors.liveness import restart_if_stalled, wait_for_previous_session


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    if "worker" in sys.argv[1:]:
        wait_for_previous_session(settings)
    app = create_app(settings)
    try:
        app.main()
    finally:  # faust stops by SystemExit; a stall (see liveness) restarts the worker instead
        restart_if_stalled(app.stalled)


if __name__ == "__main__":
    main()
