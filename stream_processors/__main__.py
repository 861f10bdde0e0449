"""``python -m stream_processors worker``: faust's own command line over the configured app."""

from __future__ import annotations

from cryptopulse.logs import configure_logging
from stream_processors.app import create_app


def main() -> None:
    configure_logging()
    create_app().main()


if __name__ == "__main__":
    main()
