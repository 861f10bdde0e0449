"""``python -m producers reddit|news|prices|replay``: the same commands as ``cryptopulse produce``."""

from __future__ import annotations

from producers.cli import app

if __name__ == "__main__":
    app(prog_name="python -m producers")
