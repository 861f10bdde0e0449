"""CryptoPulse: real-time cryptocurrency sentiment intelligence.

This package is the roof: ``cryptopulse.cli`` (the ``cryptopulse`` command, which only
collects the stages' commands) and ``cryptopulse.platform`` (starts and stops processes).
The ground floor every stage builds on is the top-level ``core`` package.
"""

from core.version import __version__

__all__ = ["__version__"]
