"""``python -m stream_processors worker``: faust's own command line over the configured app."""

from __future__ import annotations

import sys

from cryptopulse.logs import configure_logging
from cryptopulse.settings import get_settings
from stream_processors.app import create_app
from stream_processors.liveness import wait_for_previous_session


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    if "worker" in sys.argv[1:]:
        wait_for_previous_session(settings)
    create_app(settings).main()


if __name__ == "__main__":
    main()
